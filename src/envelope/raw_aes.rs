//! A static AES wrapping key, byte-compatible with the ESDK raw AES keyring:
//! provider ID = key namespace; provider info = key name || tag length in bits
//! (u32 BE, 128) || IV length (u32 BE, 12) || IV; ciphertext = wrapped data key
//! || tag; AES-GCM with the serialized encryption context as AAD.
//!
//! The local CMK keyring writes exactly this EDK (namespace `envarc`, name
//! `<cmk-uuid>/v<N>`), so the official SDKs can read envarc's messages given
//! the backing key's material.

use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{aes::Aes192, Aes128Gcm, Aes256Gcm, AesGcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

use super::provider::{unwrap_first, ProviderError};
use super::{context, DataKey, EncryptedDataKey, EncryptionContext, KeyProvider};

type Aes192Gcm = AesGcm<Aes192, U12>;

const TAG_BITS: u32 = 128;
const IV_LEN: usize = 12;
/// Bytes that follow the key name in the provider info.
const INFO_SUFFIX: usize = 4 + 4 + IV_LEN;

/// A raw AES-128/192/256 wrapping key with its namespace and name. No `Debug`.
pub struct RawAesKey {
    namespace: String,
    name: String,
    material: Zeroizing<Vec<u8>>,
}

impl RawAesKey {
    /// Builds a key from 16, 24 or 32 bytes of material.
    pub fn new(namespace: &str, name: &str, material: &[u8]) -> Result<RawAesKey, ProviderError> {
        if ![16, 24, 32].contains(&material.len()) {
            return Err(ProviderError::Other(format!(
                "a raw AES wrapping key must be 16, 24 or 32 bytes, this one is {} bytes; \
                 create one with: head -c 32 /dev/urandom > wrapping.key",
                material.len()
            )));
        }
        if namespace.is_empty() || name.is_empty() {
            return Err(ProviderError::Other(
                "a raw AES wrapping key needs a non-empty namespace and name".into(),
            ));
        }
        Ok(RawAesKey {
            namespace: namespace.to_string(),
            name: name.to_string(),
            material: Zeroizing::new(material.to_vec()),
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether this key is the one an EDK names.
    pub fn matches(&self, edk: &EncryptedDataKey) -> bool {
        edk.provider_id == self.namespace
            && key_name_of(&edk.provider_info) == Some(self.name.as_str())
    }

    /// Wraps a data key under this key for `ctx`.
    pub fn wrap(
        &self,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> Result<EncryptedDataKey, ProviderError> {
        let aad = context::serialize(ctx).map_err(|e| ProviderError::Other(e.to_string()))?;
        let mut iv = [0u8; IV_LEN];
        rand::rngs::OsRng.fill_bytes(&mut iv);
        let payload = Payload {
            msg: key.expose(),
            aad: &aad,
        };
        let nonce = Nonce::from(iv);
        let ciphertext = match self.material.len() {
            16 => Aes128Gcm::new_from_slice(&self.material)
                .unwrap()
                .encrypt(&nonce, payload),
            24 => Aes192Gcm::new_from_slice(&self.material)
                .unwrap()
                .encrypt(&nonce, payload),
            _ => Aes256Gcm::new_from_slice(&self.material)
                .unwrap()
                .encrypt(&nonce, payload),
        }
        .map_err(|_| ProviderError::Other("AES-GCM wrap failed".into()))?;
        let mut info = Vec::with_capacity(self.name.len() + INFO_SUFFIX);
        info.extend_from_slice(self.name.as_bytes());
        info.extend_from_slice(&TAG_BITS.to_be_bytes());
        info.extend_from_slice(&(IV_LEN as u32).to_be_bytes());
        info.extend_from_slice(&iv);
        Ok(EncryptedDataKey {
            provider_id: self.namespace.clone(),
            provider_info: info,
            ciphertext,
        })
    }

    /// Unwraps an EDK that [`matches`](Self::matches) this key.
    pub fn unwrap(
        &self,
        edk: &EncryptedDataKey,
        ctx: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let failed = || ProviderError::UnwrapFailed {
            key: format!("{}:{}", self.namespace, self.name),
        };
        let info = &edk.provider_info;
        if info.len() < INFO_SUFFIX {
            return Err(failed());
        }
        let iv = &info[info.len() - IV_LEN..];
        let aad = context::serialize(ctx).map_err(|e| ProviderError::Other(e.to_string()))?;
        let payload = Payload {
            msg: &edk.ciphertext,
            aad: &aad,
        };
        let nonce = Nonce::try_from(iv).map_err(|_| failed())?;
        let plain = Zeroizing::new(
            match self.material.len() {
                16 => Aes128Gcm::new_from_slice(&self.material)
                    .unwrap()
                    .decrypt(&nonce, payload),
                24 => Aes192Gcm::new_from_slice(&self.material)
                    .unwrap()
                    .decrypt(&nonce, payload),
                _ => Aes256Gcm::new_from_slice(&self.material)
                    .unwrap()
                    .decrypt(&nonce, payload),
            }
            .map_err(|_| failed())?,
        );
        DataKey::from_slice(&plain).ok_or_else(failed)
    }
}

/// The key name inside a raw-AES provider info, if the info has that layout
/// (tag length 128 bits and IV length 12 after the name).
pub fn key_name_of(info: &[u8]) -> Option<&str> {
    if info.len() < INFO_SUFFIX {
        return None;
    }
    let (name, rest) = info.split_at(info.len() - INFO_SUFFIX);
    if rest[..4] != TAG_BITS.to_be_bytes() || rest[4..8] != (IV_LEN as u32).to_be_bytes() {
        return None;
    }
    std::str::from_utf8(name).ok()
}

impl KeyProvider for RawAesKey {
    fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        let key = DataKey::generate();
        let edk = self.wrap(&key, ctx)?;
        Ok((key, vec![edk]))
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let candidates = edks.iter().filter(|e| self.matches(e));
        unwrap_first(
            edks,
            candidates,
            |edk| self.unwrap(edk, ctx),
            || format!("{}:{}", self.namespace, self.name),
        )
    }

    fn wrap_data_key(
        &self,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> Result<Vec<EncryptedDataKey>, ProviderError> {
        Ok(vec![self.wrap(key, ctx)?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_all_key_sizes() {
        for len in [16, 24, 32] {
            let k = RawAesKey::new("ns", "name", &vec![7u8; len]).unwrap();
            let mut ctx = EncryptionContext::new();
            ctx.insert("a".into(), "b".into());
            let (dk, edks) = k.generate_data_key(&ctx).unwrap();
            assert_eq!(key_name_of(&edks[0].provider_info), Some("name"));
            let back = k.decrypt_data_key(&edks, &ctx).unwrap();
            assert_eq!(back.expose(), dk.expose());
            ctx.insert("a".into(), "c".into());
            assert!(k.decrypt_data_key(&edks, &ctx).is_err(), "context is bound");
        }
    }

    #[test]
    fn rejects_bad_material_length() {
        assert!(RawAesKey::new("ns", "n", &[0u8; 20]).is_err());
    }
}
