//! How commands talk to the user: a human line on stderr-free stdout, JSON with
//! `--json`, nothing with `--quiet`; progress bars only on a terminal.

use std::io::{IsTerminal, Write};

use serde::Serialize;

use super::progress_bar::{Bar, WarningsOnly};
use super::GlobalArgs;
use crate::progress::{Progress, Silent};

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

    /// The JSON document of a command, pretty-printed, when --json is on.
    pub fn json<T: Serialize>(&self, value: &T) -> crate::Result<()> {
        if self.json {
            let s = serde_json::to_string_pretty(value)
                .map_err(|e| crate::Error::Other(e.to_string()))?;
            let mut o = std::io::stdout().lock();
            writeln!(o, "{s}").map_err(|e| crate::Error::io("writing to stdout", e))?;
        }
        Ok(())
    }

    /// A progress sink: a bar on a terminal; elsewhere (or with --json) only
    /// warnings, on stderr; nothing with --quiet.
    pub fn progress(&self) -> Box<dyn Progress> {
        if self.quiet {
            Box::new(Silent)
        } else if self.tty && !self.json {
            Box::new(Bar::new())
        } else {
            Box::new(WarningsOnly)
        }
    }
}
