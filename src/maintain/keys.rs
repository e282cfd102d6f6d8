//! Which key and which version of it wrapped a data key, read from an EDK
//! alone (no key needed): what `stats`, `rewrap` and `reencrypt` sort
//! messages by.
//!
//! - keyring EDKs (provider ID `envarc`, key name `<cmk-uuid>/v<N>`): the CMK
//!   and its backing-key version;
//! - transit EDKs (provider ID `envarc-transit`, info `<mount>/<name>`,
//!   ciphertext `vault:v<N>:…`): the transit key and its version;
//! - any other raw-AES EDK: the wrapping key's name; raw keys have no versions.

use std::fmt;

use serde::Serialize;

use crate::envelope::raw_aes::key_name_of;
use crate::envelope::EncryptedDataKey;
use crate::keyring::cmk::parse_key_name;
use crate::providers::transit;
use crate::{Error, Result};

/// Provider kind of a keyring CMK (as in the repository config).
pub const KEYRING: &str = "keyring";
/// Provider kind of an OpenBao / Vault transit key.
pub const TRANSIT: &str = "transit";
/// Provider kind of a raw AES wrapping key.
pub const RAW_AES: &str = "raw-aes";

/// A key and, where the provider has them, one version of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct KeyVersion {
    /// `keyring`, `transit`, `raw-aes`, or the EDK's provider ID for others.
    pub provider: String,
    /// Keyring: the CMK's UUID. Transit: `<mount>/<name>`. Raw AES: the key
    /// name (`<namespace>:<name>` when the namespace is not `envarc`).
    pub key: String,
    /// Backing-key (keyring) or key (transit) version; `None` for raw keys.
    pub version: Option<u32>,
}

impl KeyVersion {
    /// What wrapped `edk`.
    pub fn of(edk: &EncryptedDataKey) -> KeyVersion {
        if edk.provider_id == transit::PROVIDER_ID {
            let key = transit::edk_key(edk)
                .map(|k| format!("{}/{}", k.mount, k.name))
                .unwrap_or_else(|| String::from_utf8_lossy(&edk.provider_info).into_owned());
            return KeyVersion {
                provider: TRANSIT.into(),
                key,
                version: transit::edk_version(edk),
            };
        }
        let name = key_name_of(&edk.provider_info);
        if edk.provider_id == crate::keyring::PROVIDER_ID {
            if let Some((id, v)) = name.and_then(parse_key_name) {
                return KeyVersion {
                    provider: KEYRING.into(),
                    key: id.to_string(),
                    version: Some(v),
                };
            }
        }
        match name {
            Some(n) => KeyVersion {
                provider: RAW_AES.into(),
                key: if edk.provider_id == "envarc" {
                    n.to_string()
                } else {
                    format!("{}:{n}", edk.provider_id)
                },
                version: None,
            },
            None => KeyVersion {
                provider: edk.provider_id.clone(),
                key: String::from_utf8_lossy(&edk.provider_info).into_owned(),
                version: None,
            },
        }
    }

    /// The same key without a version.
    pub fn same_key(&self, other: &KeyVersion) -> bool {
        self.provider == other.provider && self.key == other.key
    }

    /// Parses `KEY/vN` as `--key-version` takes it, where KEY is what
    /// `resolve` turns into a [`KeyVersion`] without version (the CLI resolves
    /// aliases through the keyring and `transit:NAME` through the config).
    pub fn parse_spec(
        spec: &str,
        resolve: impl FnOnce(&str) -> Result<KeyVersion>,
    ) -> Result<KeyVersion> {
        let bad = || {
            Error::Usage(format!(
                "'{spec}' is not KEY/vN: name a key (alias/NAME, a key id, or transit:NAME) and a version, e.g. alias/backup/v1"
            ))
        };
        let (key, v) = spec.rsplit_once("/v").ok_or_else(bad)?;
        if key.is_empty() || v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let version: u32 = v.parse().map_err(|_| bad())?;
        if version == 0 {
            return Err(bad());
        }
        let mut k = resolve(key)?;
        k.version = Some(version);
        Ok(k)
    }
}

impl fmt::Display for KeyVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.provider.as_str(), self.version) {
            (KEYRING, Some(v)) => write!(f, "{}/v{v}", self.key),
            (TRANSIT, Some(v)) => write!(f, "transit:{} v{v}", self.key),
            (p, Some(v)) => write!(f, "{p}:{} v{v}", self.key),
            (p, None) => write!(f, "{p}:{}", self.key),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{DataKey, EncryptionContext, KeyProvider, RawAesKey};

    fn edk_of(p: &dyn KeyProvider) -> EncryptedDataKey {
        p.generate_data_key(&EncryptionContext::new())
            .unwrap()
            .1
            .remove(0)
    }

    #[test]
    fn keyring_raw_and_transit_edks_are_told_apart() {
        let id = uuid::Uuid::new_v4();
        let name = format!("{id}/v3");
        let kr = RawAesKey::new("envarc", &name, &[1u8; 32]).unwrap();
        let kv = KeyVersion::of(&edk_of(&kr));
        assert_eq!((kv.provider.as_str(), kv.version), (KEYRING, Some(3)));
        assert_eq!(kv.key, id.to_string());
        assert_eq!(kv.to_string(), format!("{id}/v3"));

        let raw = RawAesKey::new("envarc", "test-key", &[1u8; 32]).unwrap();
        let kv = KeyVersion::of(&edk_of(&raw));
        assert_eq!(
            kv,
            KeyVersion {
                provider: RAW_AES.into(),
                key: "test-key".into(),
                version: None
            }
        );
        let other_ns = RawAesKey::new("ns", "k", &[1u8; 32]).unwrap();
        assert_eq!(KeyVersion::of(&edk_of(&other_ns)).key, "ns:k");

        let t = EncryptedDataKey {
            provider_id: transit::PROVIDER_ID.into(),
            provider_info: b"transit/backup".to_vec(),
            ciphertext: b"vault:v12:abcd".to_vec(),
        };
        let kv = KeyVersion::of(&t);
        assert_eq!((kv.key.as_str(), kv.version), ("transit/backup", Some(12)));
        let _ = DataKey::generate();
    }

    #[test]
    fn key_version_specs() {
        let resolve = |k: &str| {
            Ok(KeyVersion {
                provider: KEYRING.into(),
                key: k.to_uppercase(),
                version: None,
            })
        };
        let kv = KeyVersion::parse_spec("alias/backup/v2", resolve).unwrap();
        assert_eq!((kv.key.as_str(), kv.version), ("ALIAS/BACKUP", Some(2)));
        for bad in ["alias/backup", "alias/backup/v", "/v1", "k/v0", "k/vx"] {
            assert!(KeyVersion::parse_spec(bad, resolve).is_err(), "{bad}");
        }
    }
}
