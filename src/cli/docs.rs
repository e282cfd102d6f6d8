//! `envarc completions SHELL` and `envarc man`: generated from the clap
//! definitions, so they never drift from the commands (as ripgrep and restic
//! ship theirs).

use std::io::Write;
use std::path::PathBuf;

use envarc::error::exit;
use envarc::{Error, Result};

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for. Install, e.g.: bash: `envarc completions
    /// bash > /etc/bash_completion.d/envarc`; zsh: into a folder of $fpath
    /// as `_envarc`; fish: `~/.config/fish/completions/envarc.fish`.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// Write one page per command into DIR (envarc.1, envarc-encrypt.1,
    /// envarc-key-create.1, …) instead of printing envarc(1).
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

fn stdout_error(e: std::io::Error) -> Error {
    Error::io("writing to stdout", e)
}

pub fn completions(a: CompletionsArgs) -> Result<i32> {
    let mut cmd = super::command();
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "envarc", &mut buf);
    std::io::stdout()
        .lock()
        .write_all(&buf)
        .map_err(stdout_error)?;
    Ok(exit::OK)
}

pub fn man(a: ManArgs) -> Result<i32> {
    let cmd = super::command();
    if let Some(dir) = a.output_dir {
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        clap_mangen::generate_to(cmd, &dir)
            .map_err(|e| Error::io(format!("writing manual pages into {}", dir.display()), e))?;
        return Ok(exit::OK);
    }
    let mut buf = Vec::new();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render(&mut buf).map_err(stdout_error)?;
    commands_section(&cmd, &mut buf);
    std::io::stdout()
        .lock()
        .write_all(&buf)
        .map_err(stdout_error)?;
    Ok(exit::OK)
}

/// Escapes text for roff: backslashes, and a leading `.` or `'` (a request).
fn roff(text: &str) -> String {
    let t = text.replace('\\', "\\e").replace('-', "\\-");
    if t.starts_with('.') || t.starts_with('\'') {
        format!("\\&{t}")
    } else {
        t
    }
}

/// A COMMANDS section naming every command, nested ones included (the
/// SUBCOMMANDS section clap_mangen writes has the top level only).
fn commands_section(cmd: &clap::Command, out: &mut Vec<u8>) {
    fn walk(cmd: &clap::Command, path: &str, out: &mut Vec<u8>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            let name = format!("{path} {}", sub.get_name());
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            out.extend_from_slice(
                format!(".TP\n\\fB{}\\fR\n{}\n", roff(&name), roff(&about)).as_bytes(),
            );
            walk(sub, &name, out);
        }
    }
    out.extend_from_slice(b".SH COMMANDS\n");
    walk(cmd, cmd.get_name(), out);
    out.extend_from_slice(
        b".SH \"SEE ALSO\"\nOne page per command: \\fBenvarc man \\-\\-output\\-dir DIR\\fR.\n",
    );
}
