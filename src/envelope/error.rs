use std::io;

use super::provider::ProviderError;

/// What can go wrong while writing or reading a message. Every message says what
/// happened and, where there is one, what the user can do about it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("the message ends early (truncated): it is incomplete and cannot be decrypted")]
    Truncated,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("invalid request: {0}")]
    Invalid(String),
    #[error("unsupported message format version {0:#04x}; envarc reads ESDK message format 2 (and 1 in legacy mode)")]
    UnsupportedVersion(u8),
    #[error("unknown algorithm suite {0:#06x}; envarc reads 0x0478 (AES-256-GCM, HKDF-SHA512, key commitment), 0x0578 (the same, signed with ECDSA P-384) and its ChaCha20-Poly1305 extension 0xcc20")]
    UnknownSuite(u16),
    #[error("algorithm suite {0:#06x} signs messages with ECDSA but does not commit to its key (message format 1), so it is refused; envarc reads the signed committing suite 0x0578")]
    SignedSuite(u16),
    #[error("algorithm suite {0:#06x} does not commit to its key, so it is refused by default; pass --legacy-non-committing to read it anyway (only if you trust whoever wrote it)")]
    NonCommittingSuite(u16),
    #[error("the header is larger than the read limit of {limit} bytes; raise --max-header-size if this message is legitimate")]
    HeaderTooLarge { limit: usize },
    #[error("the header lists {count} encrypted data keys, more than the limit of {limit}; raise --max-edks if this message is legitimate")]
    TooManyEdks { count: usize, limit: usize },
    #[error("frame length {length} is larger than the read limit of {limit} bytes; raise --max-frame-length if this message is legitimate")]
    FrameTooLong { length: u64, limit: u64 },
    #[error("header authentication failed: the header was altered or the data key is wrong")]
    HeaderAuth,
    #[error("key commitment check failed: the data key does not match the one this message was written with (tampered or mismatched key)")]
    Commitment,
    #[error(
        "frame {sequence} failed authentication: the ciphertext was altered, reordered or spliced"
    )]
    FrameAuth { sequence: u32 },
    #[error("frame {sequence} has an IV that is not its sequence number: the message was forged or written by a broken encryptor, and is refused")]
    FrameIv { sequence: u32 },
    #[error("frame sequence number {found} found where {expected} was expected: frames were reordered, dropped or spliced")]
    Sequence { expected: u32, found: u32 },
    #[error("the message signature does not verify: the message was altered after it was written, or forged by someone who held its data key")]
    SignatureAuth,
    #[error("bytes follow the final frame: the message was extended or concatenated with another")]
    TrailingData,
    #[error("encryption context mismatch for key '{key}': the message was written with another value for it, or without it; check the pairs you require")]
    ContextMismatch { key: String },
    #[error("message ID mismatch: expected {expected}, found {found} (the message was swapped or replaced)")]
    MessageIdMismatch { expected: String, found: String },
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// True when the error means the bytes are not an authentic message, or not
    /// the message the caller asked for (wrong context or message ID), as opposed
    /// to an I/O problem, a limit, or a key that is unavailable.
    pub fn is_integrity(&self) -> bool {
        matches!(
            self,
            Error::Truncated
                | Error::Malformed(_)
                | Error::HeaderAuth
                | Error::Commitment
                | Error::FrameAuth { .. }
                | Error::Sequence { .. }
                | Error::FrameIv { .. }
                | Error::SignatureAuth
                | Error::TrailingData
                | Error::ContextMismatch { .. }
                | Error::MessageIdMismatch { .. }
        )
    }
}

impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        match e {
            Error::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other),
        }
    }
}

/// Recovers an envelope error that travelled through `io::Read`/`io::Write`.
pub fn from_io(e: io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        let inner = e.into_inner().expect("checked above");
        return *inner.downcast::<Error>().expect("checked above");
    }
    Error::Io(e)
}
