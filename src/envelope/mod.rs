//! AWS Encryption SDK message format, version 2 (and version 1 for the
//! explicit legacy read mode).
//!
//! Layout of this module, after rage's split between format and I/O:
//! - [`context`]: the encryption context and its canonical serialization;
//! - [`header`]: pure parse/serialize of the message header, no I/O;
//! - [`suite`]: algorithm suites, HKDF key derivation and key commitment;
//! - [`stream`]: framed body as `Write`/`Read` adapters with an explicit `finish()`
//!   (the reading side in `decryptor.rs`, re-exported by `stream`);
//! - [`provider`]: the `KeyProvider` seam and the data-key types;
//! - [`raw_aes`]: a static wrapping key, byte-compatible with the ESDK raw AES keyring.

pub mod context;
mod decryptor;
mod error;
pub mod header;
pub mod pipeline;
pub mod provider;
pub mod raw_aes;
pub mod signing;
pub mod stream;
pub mod suite;

pub use context::EncryptionContext;
pub use error::{from_io, Error};
pub use header::{ContentType, EncryptedDataKey, Header, MessageId};
pub use provider::{DataKey, KeyProvider, ProviderError};
pub use raw_aes::RawAesKey;
pub use stream::{decrypt_to_vec, encrypt_to_vec, open_header, Decryptor, Encryptor, MessageInfo};
pub use suite::Suite;

/// Default plaintext bytes per frame (see the Performance notes in README.md).
pub const DEFAULT_FRAME_LENGTH: u32 = 64 * 1024;

/// Whether non-committing suites (format v1, 0x0178) may be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CommitmentPolicy {
    /// Only key-committing suites are written or read (the ESDK default).
    #[default]
    RequireCommitment,
    /// Also read the older non-committing 0x0178 suite. Never used for writing.
    AllowLegacyRead,
}

/// Bounds applied to untrusted input while reading a message, so that a hostile
/// header cannot make the reader allocate or loop without bound.
#[derive(Clone, Debug)]
pub struct ReadLimits {
    /// Largest frame length (bytes of plaintext per frame) accepted.
    pub max_frame_length: u32,
    /// Largest header (including the encryption context and all EDKs) accepted.
    pub max_header_size: usize,
    /// Largest number of encrypted data keys accepted in one header.
    pub max_edks: usize,
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            max_frame_length: 16 * 1024 * 1024,
            max_header_size: 64 * 1024,
            max_edks: 16,
        }
    }
}

/// Everything a reader needs besides the key provider.
#[derive(Clone, Debug, Default)]
pub struct DecryptOptions {
    pub policy: CommitmentPolicy,
    pub limits: ReadLimits,
    /// Pairs the caller requires. A pair present in the header must have this
    /// value; a pair absent from the header is a "reproduced" pair that the
    /// writer authenticated without storing (the ESDK required-context CMM).
    pub expected_context: EncryptionContext,
}

/// Everything a writer needs besides the key provider.
#[derive(Clone, Debug)]
pub struct EncryptOptions {
    pub suite: Suite,
    pub frame_length: u32,
    pub context: EncryptionContext,
}

impl Default for EncryptOptions {
    fn default() -> Self {
        EncryptOptions {
            suite: Suite::Aes256GcmHkdfSha512Commit,
            frame_length: DEFAULT_FRAME_LENGTH,
            context: EncryptionContext::new(),
        }
    }
}
