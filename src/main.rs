//! Thin entry point: parse, run, map the outcome to an exit code. The CLI
//! lives in the binary: the library (`envarc::…`) never sees it.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::parse();
    let code = match cli::run(cli) {
        Ok(code) => code,
        Err(e) if e.is_broken_pipe() => envarc::error::exit::OK,
        // Not an error of the run: the user asked it to stop.
        Err(e @ envarc::Error::Interrupted(_)) => {
            eprintln!("envarc: {e}");
            e.exit_code()
        }
        Err(e) => {
            eprintln!("envarc: error: {e}");
            e.exit_code()
        }
    };
    ExitCode::from(code.clamp(0, 255) as u8)
}
