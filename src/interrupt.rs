//! Interrupts (SIGINT, SIGTERM) as a flag the library checks between steps.
//!
//! The default action of those signals kills the process where it stands:
//! the run's own lock and temporary files stay behind and the terminal keeps
//! a half-drawn progress line. Instead, once [`install`] ran, a signal only
//! raises a flag; long operations call [`check`] between steps (per chunk,
//! per file, per deletion), which returns [`Error::Interrupted`], and the
//! ordinary error path drops the lock and the temporary files (both remove
//! themselves on drop). A second signal ends the process at once with 130,
//! for a run stuck where it does not check.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crate::{Error, Result};

static FLAG: OnceLock<Arc<AtomicBool>> = OnceLock::new();

fn flag() -> &'static Arc<AtomicBool> {
    FLAG.get_or_init(|| Arc::new(AtomicBool::new(false)))
}

/// Routes SIGINT and SIGTERM to the flag (idempotent). Called by the CLI
/// once a command is past its prompts, so a Ctrl-C at a passphrase prompt
/// still ends the process at once.
pub fn install() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            // Order matters: the conditional exit sees the flag as it was
            // before this signal, so only a second signal exits.
            let _ = signal_hook::flag::register_conditional_shutdown(
                sig,
                crate::error::exit::INTERRUPTED,
                Arc::clone(flag()),
            );
            let _ = signal_hook::flag::register(sig, Arc::clone(flag()));
        }
    });
}

/// True once a signal asked the run to stop.
pub fn requested() -> bool {
    flag().load(Ordering::Relaxed)
}

/// Raises the flag as a signal would (tests, and a caller that stops a run).
pub fn request() {
    flag().store(true, Ordering::Relaxed);
}

/// `Err(Interrupted("nothing saved"))` once a signal asked the run to stop;
/// callers that saved something replace the message with what they saved.
pub fn check() -> Result<()> {
    if requested() {
        Err(Error::Interrupted("nothing saved".into()))
    } else {
        Ok(())
    }
}
