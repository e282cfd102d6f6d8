//! The keyring as a [`KeyProvider`]: data keys are wrapped exactly as the ESDK
//! raw AES keyring wraps them, with provider ID `envarc` and key name
//! `<cmk-uuid>/v<N>`, so the official SDKs read envarc's messages given that
//! backing key's material. Decrypt reads the CMK and version from the EDK's
//! key name and uses that historical backing key, of any key in the keyring.

use std::sync::Arc;

use uuid::Uuid;

use super::cmk::{key_name, parse_key_name, KeySpec};
use super::KeyringData;
use crate::envelope::provider::unwrap_first;
use crate::envelope::raw_aes::key_name_of;
use crate::envelope::{
    DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, ProviderError, RawAesKey,
};
use crate::{Error, Result};

/// The ESDK provider ID (raw AES key namespace) of every keyring EDK.
pub const PROVIDER_ID: &str = "envarc";

/// A snapshot of the keyring taken when the provider was made, optionally
/// bound to one CMK for generating and wrapping.
pub struct KeyringProvider {
    data: Arc<KeyringData>,
    label: Arc<str>,
    bound: Option<Bound>,
    only_bound: bool,
}

struct Bound {
    key_id: Uuid,
    version: u32,
    wrap: RawAesKey,
}

impl KeyringProvider {
    pub(crate) fn bound(
        data: Arc<KeyringData>,
        label: Arc<str>,
        key_id: Uuid,
    ) -> Result<KeyringProvider> {
        let (version, m) = data
            .current_key(&key_id, KeySpec::SymmetricDefault)
            .map_err(|message| Error::Key { message })?;
        let wrap = RawAesKey::new(PROVIDER_ID, &key_name(&key_id, version), m.expose())?;
        Ok(KeyringProvider {
            data,
            label,
            bound: Some(Bound {
                key_id,
                version,
                wrap,
            }),
            only_bound: false,
        })
    }

    pub(crate) fn unbound(data: Arc<KeyringData>, label: Arc<str>) -> KeyringProvider {
        KeyringProvider {
            data,
            label,
            bound: None,
            only_bound: false,
        }
    }

    /// Restricts decryption to EDKs of the bound key (KMS Decrypt with KeyId).
    pub fn only_this_key(mut self) -> KeyringProvider {
        self.only_bound = self.bound.is_some();
        self
    }

    /// The versions of CMK `key_id` that this provider refuses to unwrap with
    /// (retired, pending deletion, destroyed), ascending; empty for a key that
    /// is not in the keyring. See [`Keyring::retired_versions`](super::Keyring::retired_versions).
    pub fn retired_versions(&self, key_id: &Uuid) -> Vec<u32> {
        self.data.retired_versions(key_id)
    }

    /// The CMK new data keys are wrapped under, and its current version.
    pub fn key(&self) -> Option<(Uuid, u32)> {
        self.bound.as_ref().map(|b| (b.key_id, b.version))
    }

    fn bound_or_err(&self) -> std::result::Result<&Bound, ProviderError> {
        self.bound.as_ref().ok_or_else(|| {
            ProviderError::Other(
                "no key selected to wrap new data keys: pass --key KEY (a key id or alias/NAME; \
                 see `envarc key list`)"
                    .into(),
            )
        })
    }
}

impl KeyProvider for KeyringProvider {
    fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> std::result::Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        let b = self.bound_or_err()?;
        let key = DataKey::generate();
        let edk = b.wrap.wrap(&key, ctx)?;
        Ok((key, vec![edk]))
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> std::result::Result<DataKey, ProviderError> {
        let candidates = edks
            .iter()
            .filter(|e| e.provider_id == PROVIDER_ID)
            .filter_map(|edk| {
                let name = key_name_of(&edk.provider_info)?;
                let (id, version) = parse_key_name(name)?;
                Some((edk, name, id, version))
            })
            .filter(|(_, _, id, _)| {
                !self.only_bound || self.bound.as_ref().map(|b| b.key_id) == Some(*id)
            });
        unwrap_first(
            edks,
            candidates,
            |(edk, name, id, version)| {
                self.data
                    .historical_key(&id, version, KeySpec::SymmetricDefault)
                    .map_err(ProviderError::KeyUnusable)
                    .and_then(|m| RawAesKey::new(PROVIDER_ID, name, m.expose()))
                    .and_then(|k| k.unwrap(edk, ctx))
            },
            || match (&self.bound, self.only_bound) {
                (Some(b), true) => format!("key {} of the keyring {}", b.key_id, self.label),
                _ => format!("the keyring {}", self.label),
            },
        )
    }

    fn wrap_data_key(
        &self,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> std::result::Result<Vec<EncryptedDataKey>, ProviderError> {
        Ok(vec![self.bound_or_err()?.wrap.wrap(key, ctx)?])
    }
}
