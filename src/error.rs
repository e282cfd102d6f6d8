//! The crate-wide error: each layer has its own error type; this one gathers
//! them and decides the process exit code (see README "Exit codes").

use std::io;

use crate::envelope;

/// Exit codes, documented in README.md. Stable: scripts depend on them.
pub mod exit {
    pub const OK: i32 = 0;
    /// Any failure not listed below (I/O, bad input file, …).
    pub const FAILURE: i32 = 1;
    /// Wrong command-line usage (clap also uses 2).
    pub const USAGE: i32 = 2;
    /// The run completed but some items failed: a backup saved an incomplete
    /// snapshot, a restore skipped files.
    pub const PARTIAL: i32 = 3;
    /// Data failed authentication or is corrupt; verify found problems.
    pub const INTEGRITY: i32 = 4;
    /// A key is unavailable: wrong passphrase, unknown, disabled or pending
    /// deletion, or no key can unwrap the data key.
    pub const KEY: i32 = 5;
    /// The repository or keyring is locked by another process.
    pub const LOCKED: i32 = 6;
    /// Interrupted by a signal (128 + SIGINT).
    pub const INTERRUPTED: i32 = 130;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Envelope(#[from] envelope::Error),
    #[error("{0}")]
    Usage(String),
    #[error("{message}")]
    Key { message: String },
    #[error("{0}")]
    Locked(String),
    #[error("{0}")]
    Integrity(String),
    #[error("{context}: {source}{}", io_advice(.source))]
    Io { context: String, source: io::Error },
    #[error("{0}")]
    Other(String),
    /// A signal stopped the run; the message says what was saved.
    #[error("interrupted: {0}")]
    Interrupted(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// What sort of failure this is: what code that recovers from some
    /// failures branches on, and what [`Error::exit_code`] reports.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Envelope(e) => match e {
                // A key service that cannot be reached is not a key problem.
                envelope::Error::Provider(envelope::ProviderError::Unavailable(_)) => {
                    ErrorKind::Failure
                }
                envelope::Error::Provider(_) => ErrorKind::Key,
                envelope::Error::Invalid(_) => ErrorKind::Usage,
                e if e.is_integrity() => ErrorKind::Integrity,
                _ => ErrorKind::Failure,
            },
            Error::Usage(_) => ErrorKind::Usage,
            Error::Key { .. } => ErrorKind::Key,
            Error::Locked(_) => ErrorKind::Locked,
            Error::Integrity(_) => ErrorKind::Integrity,
            Error::Io { .. } | Error::Other(_) => ErrorKind::Failure,
            Error::Interrupted(_) => ErrorKind::Interrupted,
        }
    }

    /// Data that is damaged, forged or not this repository's (exit 4).
    pub fn is_integrity(&self) -> bool {
        self.kind() == ErrorKind::Integrity
    }

    /// A key that does not open the data or may not be used (exit 5); not
    /// a key service that cannot be reached.
    pub fn is_key_problem(&self) -> bool {
        self.kind() == ErrorKind::Key
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind() {
            ErrorKind::Usage => exit::USAGE,
            ErrorKind::Key => exit::KEY,
            ErrorKind::Locked => exit::LOCKED,
            ErrorKind::Integrity => exit::INTEGRITY,
            ErrorKind::Failure => exit::FAILURE,
            ErrorKind::Interrupted => exit::INTERRUPTED,
        }
    }

    /// True for a write to a closed pipe (`envarc decrypt x | head`): exit quietly.
    pub fn is_broken_pipe(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == io::ErrorKind::BrokenPipe,
            Error::Envelope(envelope::Error::Io(e)) => e.kind() == io::ErrorKind::BrokenPipe,
            _ => false,
        }
    }
}

impl From<envelope::ProviderError> for Error {
    fn from(e: envelope::ProviderError) -> Error {
        Error::Envelope(envelope::Error::Provider(e))
    }
}

/// The sorts of failure, one per documented exit code other than 0 and 3
/// (partial success is a report's verdict, not an error).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    Usage,
    Key,
    Locked,
    Integrity,
    Failure,
    Interrupted,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What to do about an I/O error whose cause lies outside envarc.
fn io_advice(e: &io::Error) -> &'static str {
    // By kind, not errno: tempfile wraps the OS error with its path.
    match e.kind() {
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            "; the file system is full: free some space there and run the command again \
             (what earlier runs saved is intact; this run's partial output is unused)"
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            "; the file system is read-only: remount it read-write, or use a command that only reads"
        }
        _ => "",
    }
}
