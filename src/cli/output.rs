//! How commands talk to the user: a human line on stderr-free stdout, JSON with
//! `--json`, with `--quiet` only errors and per-file failures; progress bars only on a terminal.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use super::progress_bar::{Bar, WarningsOnly};
use super::GlobalArgs;
use envarc::progress::Progress;

pub struct Output {
    pub json: bool,
    pub quiet: bool,
    tty: bool,
}

impl Output {
    pub fn new(g: &GlobalArgs) -> Output {
        Output {
            json: g.json,
            quiet: g.quiet,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// A human-readable line on stdout (suppressed by --json and --quiet).
    pub fn say(&self, line: impl AsRef<str>) {
        if !self.json && !self.quiet {
            let mut o = std::io::stdout().lock();
            let _ = writeln!(o, "{}", line.as_ref());
        }
    }

    /// A warning on stderr (shown unless --quiet; JSON users still see it).
    pub fn warn(&self, line: impl AsRef<str>) {
        if !self.quiet {
            eprintln!("envarc: warning: {}", line.as_ref());
        }
    }

    /// A warning that matters even to a quiet nightly job (a flag that did
    /// nothing, a keyring inside the backed-up tree): shown whatever the
    /// verbosity.
    pub fn alert(&self, line: impl AsRef<str>) {
        eprintln!("envarc: warning: {}", line.as_ref());
    }

    /// The last line of a run that exits 3 or 4, on stderr whatever the
    /// verbosity, so a journal always says how much went wrong.
    pub fn failed(&self, n: usize, detail: impl AsRef<str>) {
        eprintln!(
            "envarc: {} failed{}",
            super::fmt::plural(n as u64, "entry", "entries"),
            detail.as_ref()
        );
    }

    /// The JSON document of a command, pretty-printed, when --json is on.
    pub fn json<T: Serialize>(&self, value: &T) -> envarc::Result<()> {
        if self.json {
            let s = serde_json::to_string_pretty(value)
                .map_err(|e| envarc::Error::Other(e.to_string()))?;
            let mut o = std::io::stdout().lock();
            writeln!(o, "{s}").map_err(|e| envarc::Error::io("writing to stdout", e))?;
        }
        Ok(())
    }

    /// A progress sink: a bar on a terminal; elsewhere (or with --json or
    /// --quiet) only warnings, on stderr: each names a file that failed, which
    /// a quiet job's log must still say.
    pub fn progress(&self) -> Box<dyn Progress> {
        if self.tty && !self.json && !self.quiet {
            Box::new(Bar::new())
        } else {
            Box::new(WarningsOnly)
        }
    }
}
