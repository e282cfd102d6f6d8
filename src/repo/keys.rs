//! Which key and which version of it wrapped a data key, read from an EDK
//! alone (no key needed): what `stats`, `rewrap` and `reencrypt` sort
//! messages by.
//!
//! - keyring EDKs (provider ID `envarc`, key name `<cmk-uuid>/v<N>`): the CMK
//!   and its backing-key version;
//! - transit EDKs (provider ID `envarc-transit`, info `<mount>/<name>`,
//!   ciphertext `vault:v<N>:…`): the transit key and its version;
//! - any other raw-AES EDK: the wrapping key's name; raw keys have no versions;
//! - AWS KMS EDKs (provider ID `aws-kms`, info = the key ARN): the key.
//!
//! On top of that, the repository's key policy (security invariant 9): a
//! message is read only if every EDK in its header names one of the keys of
//! the authenticated config and no retired version of it ([`KeyPolicy`]).

use std::fmt;

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::envelope::raw_aes::key_name_of;
use crate::envelope::{DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, ProviderError};
use crate::keyring::cmk::parse_key_name;
use crate::providers::transit;
use crate::providers::ProviderKind;
use crate::{Error, Result};

/// A key and, where the provider has them, one version of it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyVersion {
    /// `keyring`, `transit`, `raw-aes`, `aws-kms`, or the EDK's provider ID
    /// for others.
    pub provider: String,
    /// Keyring: the CMK's UUID. Transit: `<mount>/<name>`. Raw AES: the key
    /// name (`<namespace>:<name>` when the namespace is not `envarc`).
    pub key: String,
    /// Backing-key (keyring) or key (transit) version; `None` for raw keys,
    /// and for AWS KMS, which rotates inside the service and whose EDKs do not
    /// say which version wrapped them.
    pub version: Option<u32>,
}

impl KeyVersion {
    /// The provider's kind; `None` for an EDK of a provider envarc does not know.
    pub fn kind(&self) -> Option<ProviderKind> {
        ProviderKind::of(&self.provider)
    }

    /// What wrapped `edk`.
    pub fn of(edk: &EncryptedDataKey) -> KeyVersion {
        if edk.provider_id == transit::PROVIDER_ID {
            let key = transit::edk_key(edk)
                .map(|k| format!("{}/{}", k.mount, k.name))
                .unwrap_or_else(|| String::from_utf8_lossy(&edk.provider_info).into_owned());
            return KeyVersion {
                provider: ProviderKind::Transit.into(),
                key,
                version: transit::edk_version(edk),
            };
        }
        // The AWS KMS provider ID is its kind; the provider info is the key ARN.
        if edk.provider_id == ProviderKind::AwsKms.as_str() {
            return KeyVersion {
                provider: ProviderKind::AwsKms.into(),
                key: String::from_utf8_lossy(&edk.provider_info).into_owned(),
                version: None,
            };
        }
        let name = key_name_of(&edk.provider_info);
        if edk.provider_id == crate::keyring::PROVIDER_ID {
            if let Some((id, v)) = name.and_then(parse_key_name) {
                return KeyVersion {
                    provider: ProviderKind::Keyring.into(),
                    key: id.to_string(),
                    version: Some(v),
                };
            }
        }
        match name {
            Some(n) => KeyVersion {
                provider: ProviderKind::RawAes.into(),
                key: raw_key_name(&edk.provider_id, n),
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
        let p = &self.provider;
        match (self.kind(), self.version) {
            (Some(ProviderKind::Keyring), Some(v)) => write!(f, "{}/v{v}", self.key),
            (Some(ProviderKind::Transit), Some(v)) => write!(f, "transit:{} v{v}", self.key),
            (_, Some(v)) => write!(f, "{p}:{} v{v}", self.key),
            (_, None) => write!(f, "{p}:{}", self.key),
        }
    }
}

/// Which key provider and key the repository's messages are wrapped with, as
/// recorded in the config: `{"provider": "raw-aes", "key": NAME, "namespace": NS}`
/// or `{"provider": "keyring", "key": "<cmk-uuid>"}` or `{"provider": "aws-kms",
/// "key": "<key ARN>"}` or `{"provider": "transit", "key": NAME, "mount": M}`.
/// The CLI turns this (plus the key arguments of the command) into a
/// [`KeyProvider`].
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyRef {
    /// Serialized as its name (`"keyring"`, …); a config naming a provider
    /// this envarc does not know is refused when it is read.
    pub provider: ProviderKind,
    pub key: String,
    /// Provider-specific, non-secret parameters (e.g. the raw-AES namespace).
    #[serde(flatten)]
    pub params: BTreeMap<String, String>,
}

impl KeyRef {
    /// A key without parameters.
    pub fn new(provider: ProviderKind, key: impl Into<String>) -> KeyRef {
        KeyRef {
            provider,
            key: key.into(),
            params: BTreeMap::new(),
        }
    }

    /// The transit mount this key lives under (its recorded `mount`, else
    /// the default).
    pub fn transit_mount(&self) -> &str {
        self.params
            .get("mount")
            .map_or(crate::providers::DEFAULT_TRANSIT_MOUNT, String::as_str)
    }

    /// Whether an EDK named `kv` was wrapped by this key (any version).
    pub fn names(&self, kv: &KeyVersion) -> bool {
        match self.provider {
            ProviderKind::Keyring | ProviderKind::AwsKms => {
                kv.kind() == Some(self.provider) && kv.key == self.key
            }
            ProviderKind::Transit => {
                kv.kind() == Some(ProviderKind::Transit)
                    && kv.key == format!("{}/{}", self.transit_mount(), self.key)
            }
            ProviderKind::RawAes => {
                let ns = self
                    .params
                    .get("namespace")
                    .map_or("envarc", String::as_str);
                let want = raw_key_name(ns, &self.key);
                // A raw key named like a keyring key (`<uuid>/vN`) reads as one.
                let as_keyring = kv.kind() == Some(ProviderKind::Keyring)
                    && ns == "envarc"
                    && kv
                        .version
                        .is_some_and(|v| format!("{}/v{v}", kv.key) == self.key);
                (kv.kind() == Some(ProviderKind::RawAes) && kv.key == want) || as_keyring
            }
        }
    }
}

/// How a raw AES key is named in a [`KeyVersion`]: `NAME` in envarc's own
/// namespace, `NAMESPACE:NAME` in any other.
fn raw_key_name(namespace: &str, name: &str) -> String {
    if namespace == "envarc" {
        name.to_string()
    } else {
        format!("{namespace}:{name}")
    }
}

/// "raw-aes key NAME (namespace NS)" for messages.
pub fn describe_key(k: &KeyRef) -> String {
    let mut s = format!("{} key {}", k.provider, k.key);
    for (name, value) in &k.params {
        s.push_str(&format!(", {name} {value}"));
    }
    s
}

/// Which EDKs a repository accepts: those of its own keys, minus retired
/// versions. Built from the authenticated config only.
#[derive(Clone, Debug)]
pub struct KeyPolicy {
    keys: Vec<KeyRef>,
    retired: Vec<KeyVersion>,
}

impl KeyPolicy {
    pub fn new(keys: &[KeyRef], retired: &[KeyVersion]) -> KeyPolicy {
        KeyPolicy {
            keys: keys.to_vec(),
            retired: retired.to_vec(),
        }
    }

    /// Why `edk` is refused, or `None` when it is one of ours.
    pub fn refusal(&self, edk: &EncryptedDataKey) -> Option<String> {
        let kv = KeyVersion::of(edk);
        if !self.keys.iter().any(|k| k.names(&kv)) {
            return Some(format!(
                "it is wrapped by {kv}, which is not one of this repository's keys"
            ));
        }
        if self.retired.iter().any(|r| r == &kv) {
            return Some(format!(
                "it is wrapped by {kv}, a version this repository retired"
            ));
        }
        None
    }

    /// Checks every EDK of a message: all must pass (a message that also
    /// carries a foreign or retired EDK is not one this repository wrote).
    pub fn check(&self, edks: &[EncryptedDataKey]) -> std::result::Result<(), String> {
        if edks.is_empty() {
            return Err("it carries no wrapped data key".into());
        }
        match edks.iter().find_map(|e| self.refusal(e)) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

/// A key provider that unwraps only what the [`KeyPolicy`] admits: the
/// repository reads through it, so no path can decrypt a message under a
/// foreign key or a retired version, even one that skips the header check.
///
/// It also remembers recently unwrapped data keys by (EDKs, context): every
/// chunk of a file carries the same EDKs, so a restore or verify asks a KMS
/// or transit server once per file, not once per chunk. A remembered key is
/// only handed out for exactly the EDK bytes and context that unwrapped it,
/// and the message header is still authenticated under it. Zeroized on drop.
pub struct PolicyProvider {
    inner: Box<dyn KeyProvider>,
    policy: KeyPolicy,
    cache: std::sync::Mutex<HashMap<[u8; 32], zeroize::Zeroizing<[u8; 32]>>>,
}

/// Data keys remembered at most (about 64 bytes each).
const CACHED_KEYS: usize = 4096;

fn cache_key(edks: &[EncryptedDataKey], context: &EncryptionContext) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for e in edks {
        for part in [e.provider_id.as_bytes(), &e.provider_info, &e.ciphertext] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    for (k, v) in context {
        for part in [k.as_bytes(), v.as_bytes()] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    h.finalize().into()
}

impl PolicyProvider {
    pub fn new(inner: Box<dyn KeyProvider>, policy: KeyPolicy) -> PolicyProvider {
        PolicyProvider {
            inner,
            policy,
            cache: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    pub fn set_policy(&mut self, policy: KeyPolicy) {
        self.policy = policy;
    }

    pub fn inner(&self) -> &dyn KeyProvider {
        self.inner.as_ref()
    }

    pub fn into_inner(self) -> Box<dyn KeyProvider> {
        self.inner
    }
}

impl KeyProvider for PolicyProvider {
    fn generate_data_key(
        &self,
        context: &EncryptionContext,
    ) -> std::result::Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        self.inner.generate_data_key(context)
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> std::result::Result<DataKey, ProviderError> {
        self.policy
            .check(edks)
            .map_err(|why| ProviderError::KeyUnusable(format!("message refused: {why}")))?;
        let id = cache_key(edks, context);
        if let Some(k) = self.cache.lock().expect("no panics holding it").get(&id) {
            return Ok(DataKey::from_slice(k.as_ref()).expect("32 bytes"));
        }
        let key = self.inner.decrypt_data_key(edks, context)?;
        let mut cache = self.cache.lock().expect("no panics holding it");
        if cache.len() >= CACHED_KEYS {
            cache.clear();
        }
        cache.insert(id, zeroize::Zeroizing::new(*key.expose()));
        Ok(key)
    }

    fn wrap_data_key(
        &self,
        key: &DataKey,
        context: &EncryptionContext,
    ) -> std::result::Result<Vec<EncryptedDataKey>, ProviderError> {
        self.inner.wrap_data_key(key, context)
    }

    fn max_in_flight(&self) -> usize {
        self.inner.max_in_flight()
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
        assert_eq!(
            (kv.provider.as_str(), kv.version),
            (ProviderKind::Keyring.as_str(), Some(3))
        );
        assert_eq!(kv.key, id.to_string());
        assert_eq!(kv.to_string(), format!("{id}/v3"));

        let raw = RawAesKey::new("envarc", "test-key", &[1u8; 32]).unwrap();
        let kv = KeyVersion::of(&edk_of(&raw));
        assert_eq!(
            kv,
            KeyVersion {
                provider: ProviderKind::RawAes.into(),
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
                provider: ProviderKind::Keyring.into(),
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

    #[test]
    fn the_policy_admits_only_the_repository_keys_and_live_versions() {
        let id = uuid::Uuid::new_v4();
        let ours = KeyRef {
            provider: ProviderKind::Keyring,
            key: id.to_string(),
            params: Default::default(),
        };
        let v1 = RawAesKey::new("envarc", &format!("{id}/v1"), &[1u8; 32]).unwrap();
        let v2 = RawAesKey::new("envarc", &format!("{id}/v2"), &[2u8; 32]).unwrap();
        let other = RawAesKey::new(
            "envarc",
            &format!("{}/v1", uuid::Uuid::new_v4()),
            &[3u8; 32],
        )
        .unwrap();
        let retired = KeyVersion::of(&edk_of(&v1));
        let policy = KeyPolicy::new(&[ours], &[retired]);
        assert!(policy.check(&[edk_of(&v2)]).is_ok());
        assert!(policy
            .check(&[edk_of(&v1)])
            .unwrap_err()
            .contains("retired"));
        assert!(policy
            .check(&[edk_of(&other)])
            .unwrap_err()
            .contains("not one of"));
        assert!(policy.check(&[edk_of(&v2), edk_of(&other)]).is_err());
        assert!(policy.check(&[]).is_err());
    }
}
