//! The seam between the message format and whoever holds wrapping keys: the
//! static raw-AES key, the local CMK keyring, and later remote key services.

use zeroize::Zeroizing;

use super::{EncryptedDataKey, EncryptionContext};

/// A plaintext 256-bit data key. No `Debug`, no `Clone`: it is zeroized on drop
/// and can only be borrowed as bytes.
pub struct DataKey(Zeroizing<[u8; 32]>);

impl DataKey {
    /// A fresh random data key from the operating system's CSPRNG.
    pub fn generate() -> DataKey {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, k.as_mut());
        DataKey(k)
    }

    /// Takes ownership of key bytes that a provider unwrapped.
    pub fn from_slice(bytes: &[u8]) -> Option<DataKey> {
        let mut k = Zeroizing::new([0u8; 32]);
        if bytes.len() != 32 {
            return None;
        }
        k.copy_from_slice(bytes);
        Some(DataKey(k))
    }

    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Errors of a key provider. They name keys, never key material.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// None of the message's EDKs is one this provider can unwrap.
    #[error("no usable key for this message: it was wrapped by {found}; tried {tried}")]
    NoMatchingKey { found: String, tried: String },
    /// The key exists but may not be used now (disabled, pending deletion, …).
    #[error("{0}")]
    KeyUnusable(String),
    /// The key is known but unwrapping failed: wrong material or a tampered EDK.
    #[error("could not unwrap the data key with {key}: wrong key material, or the EDK or encryption context was altered")]
    UnwrapFailed { key: String },
    /// The key service could not be reached or did not answer in time
    /// (network down, timeouts, repeated 5xx). Not a key problem: exit 1.
    #[error("{0}")]
    Unavailable(String),
    /// Anything else, already phrased for the user.
    #[error("{0}")]
    Other(String),
}

/// Anything that can hand out data keys (GenerateDataKey) and unwrap them (Decrypt).
pub trait KeyProvider: Send + Sync {
    /// Generates a fresh data key and wraps it under every key this provider
    /// wraps with. The context is the message's full encryption context.
    fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), ProviderError>;

    /// Unwraps the first EDK it can; reports which keys it tried when none works.
    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> Result<DataKey, ProviderError>;

    /// Wraps an existing data key anew (used by rewrap). The default generates
    /// nothing: providers that support rewrap override it.
    fn wrap_data_key(
        &self,
        _key: &DataKey,
        _context: &EncryptionContext,
    ) -> Result<Vec<EncryptedDataKey>, ProviderError> {
        Err(ProviderError::Other(
            "this key provider cannot re-wrap an existing data key".into(),
        ))
    }

    /// How many calls this provider serves well at once. Local providers are
    /// CPU-bound (1: one per core is plenty); a remote key service answers
    /// many requests concurrently, so pipelines that call it per file run at
    /// least this many workers to overlap the round trips.
    fn max_in_flight(&self) -> usize {
        1
    }
}

/// The one "try each EDK, first that works" loop of every provider's
/// `decrypt_data_key`: calls `unwrap` on each candidate in order (a lazy
/// iterator, so a provider's filters run as they did inline) and returns the
/// first data key. When all fail, the error of the first attempt: the EDK
/// the header lists first is the one its writer meant first, and later
/// failures mostly repeat the same cause. With no candidate at all among
/// `edks`, `NoMatchingKey` naming them and what the provider looked for
/// (`tried`).
pub fn unwrap_first<T>(
    edks: &[EncryptedDataKey],
    candidates: impl IntoIterator<Item = T>,
    mut unwrap: impl FnMut(T) -> Result<DataKey, ProviderError>,
    tried: impl FnOnce() -> String,
) -> Result<DataKey, ProviderError> {
    let mut first_err = None;
    for c in candidates {
        match unwrap(c) {
            Ok(key) => return Ok(key),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    Err(first_err.unwrap_or_else(|| ProviderError::NoMatchingKey {
        found: describe_edks(edks),
        tried: tried(),
    }))
}

/// Describes EDKs for an error message: provider and key name, never bytes.
pub fn describe_edks(edks: &[EncryptedDataKey]) -> String {
    let names: Vec<String> = edks.iter().map(|e| e.describe()).collect();
    if names.is_empty() {
        "no key".into()
    } else {
        names.join(", ")
    }
}
