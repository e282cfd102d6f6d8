//! The OpenBao / Vault transit engine as a key provider: a self-hosted,
//! rotating CMK service. Transit keys have numbered versions, and every
//! transit ciphertext names the version that made it (`vault:v3:…`), so
//! decrypt, rewrap and `min_decryption_version` work per data key.
//!
//! EDK layout (documented in the README):
//! - provider ID: [`PROVIDER_ID`] (`envarc-transit`);
//! - provider info: `<mount>/<key name>` in UTF-8 (the server address is not
//!   stored: servers move, mounts and key names stay);
//! - ciphertext: the transit ciphertext string (`vault:vN:base64`) as bytes.
//!
//! Binding the encryption context: transit ignores `context` on non-derived
//! keys, and OpenBao 2.7's `rewrap` ignores `associated_data` (so data keys
//! bound with associated data could never be rewrapped). envarc therefore
//! requires keys created with `derived=true` and sends as transit `context`
//! the bytes [`CONTEXT_PREFIX`] followed by the ESDK serialization of the
//! message's encryption context; a different context derives a different key
//! and decrypt fails. Wrapping with a non-derived key is refused.

use std::sync::OnceLock;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::http::{Client, ClientConfig, Failure};
use super::transit_config::{check_key_name, normalize_mount, TransitConfig, DEFAULT_MOUNT};
use crate::envelope::provider::unwrap_first;
use crate::envelope::{
    context, DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, ProviderError,
};

/// ESDK provider ID of transit-wrapped data keys.
pub const PROVIDER_ID: &str = "envarc-transit";

/// Prefix of the transit derivation context (also keeps it non-empty, which
/// derived keys require, when the encryption context is empty).
pub const CONTEXT_PREFIX: &[u8] = b"envarc/transit/v1\0";

/// A transit key: mount and name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitKey {
    pub mount: String,
    pub name: String,
}

/// What `GET <mount>/keys/<name>` says about a key (for `stats` and checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransitKeyInfo {
    pub key: TransitKey,
    pub key_type: String,
    pub derived: bool,
    pub latest_version: u32,
    pub min_decryption_version: u32,
    pub min_encryption_version: u32,
    /// Seconds; 0 when automatic rotation is off.
    pub auto_rotate_period_secs: u64,
}

/// Key provider over the transit HTTP API. `Send + Sync`: one provider (one
/// connection pool) serves every worker thread; no lock is held per request.
pub struct TransitProvider {
    client: Client,
    /// Mount override; `None` means [`DEFAULT_MOUNT`] / the EDK's own mount.
    mount: Option<String>,
    /// The key new data keys are wrapped with; `None`: decrypt and rewrap only,
    /// for any transit key named by the message.
    key: Option<String>,
    /// Set once the wrapping key was seen to be a derived key.
    checked: OnceLock<()>,
}

/// The version in a transit ciphertext: `vault:v3:…` → 3. `None` for EDKs of
/// other providers or malformed ciphertexts.
pub fn edk_version(edk: &EncryptedDataKey) -> Option<u32> {
    if edk.provider_id != PROVIDER_ID {
        return None;
    }
    let rest = edk.ciphertext.strip_prefix(b"vault:v")?;
    let end = rest.iter().position(|&b| b == b':')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// The transit key an EDK names, if it is a well-formed transit EDK.
pub fn edk_key(edk: &EncryptedDataKey) -> Option<TransitKey> {
    if edk.provider_id != PROVIDER_ID {
        return None;
    }
    let info = std::str::from_utf8(&edk.provider_info).ok()?;
    let (mount, name) = info.rsplit_once('/')?;
    check_key_name(name).ok()?;
    Some(TransitKey {
        mount: normalize_mount(mount).ok()?,
        name: name.to_string(),
    })
}

/// The transit `context` for an encryption context (base64, as the API wants).
pub fn derivation_context(ctx: &EncryptionContext) -> Result<String, ProviderError> {
    let mut bytes = CONTEXT_PREFIX.to_vec();
    bytes.extend(context::serialize(ctx).map_err(|e| ProviderError::Other(e.to_string()))?);
    Ok(B64.encode(bytes))
}

#[derive(Deserialize)]
struct Wrapped<T> {
    data: T,
}

#[derive(Deserialize)]
struct CiphertextData {
    ciphertext: String,
}

#[derive(Deserialize)]
struct PlaintextData {
    plaintext: String,
}

#[derive(Deserialize)]
struct DataKeyData {
    ciphertext: String,
    plaintext: String,
}

/// Which call failed, for messages and the capability a policy needs.
#[derive(Clone, Copy)]
enum Op {
    ReadKey,
    DataKey,
    Encrypt,
    Decrypt,
    Rewrap,
}

impl Op {
    fn path(self, k: &TransitKey) -> String {
        let verb = match self {
            Op::ReadKey => "keys",
            Op::DataKey => "datakey/plaintext",
            Op::Encrypt => "encrypt",
            Op::Decrypt => "decrypt",
            Op::Rewrap => "rewrap",
        };
        format!("{}/{verb}/{}", k.mount, k.name)
    }

    fn capability(self) -> &'static str {
        match self {
            Op::ReadKey => "read",
            _ => "update",
        }
    }
}

impl TransitProvider {
    /// A provider for `cfg`. With `key`, it wraps new data keys under that
    /// transit key and unwraps only EDKs of that key; without, it unwraps and
    /// rewraps EDKs of any transit key on the server. No request is made yet.
    pub fn new(cfg: TransitConfig, key: Option<&str>) -> Result<TransitProvider, String> {
        if let Some(k) = key {
            check_key_name(k)?;
        }
        let client = Client::new(&ClientConfig {
            base: &cfg.addr,
            token: &cfg.token,
            namespace: cfg.namespace.as_deref(),
            ca_file: cfg.ca_file.as_deref(),
            timeout: cfg.timeout,
            tries: cfg.tries,
            max_in_flight: cfg.max_in_flight,
        })?;
        Ok(TransitProvider {
            client,
            mount: cfg.mount,
            key: key.map(str::to_string),
            checked: OnceLock::new(),
        })
    }

    /// The server address (never with the token).
    pub fn address(&self) -> &str {
        self.client.base()
    }

    /// The key new data keys are wrapped with, if any.
    pub fn wrapping_key(&self) -> Option<TransitKey> {
        Some(TransitKey {
            mount: self.mount.clone().unwrap_or_else(|| DEFAULT_MOUNT.into()),
            name: self.key.clone()?,
        })
    }

    /// Re-encrypts a transit EDK under the newest version of its key on the
    /// server (`<mount>/rewrap/<name>`): no plaintext data key is sent or
    /// received. The EDK keeps its provider ID and info.
    pub fn rewrap_edk(
        &self,
        edk: &EncryptedDataKey,
        ctx: &EncryptionContext,
    ) -> Result<EncryptedDataKey, ProviderError> {
        let (k, data): (_, Wrapped<CiphertextData>) = self.post_edk(Op::Rewrap, edk, ctx)?;
        self.edk(&k, data.data.ciphertext)
    }

    /// [`rewrap_edk`](Self::rewrap_edk) for every transit EDK in `edks`; the
    /// EDKs of other providers are kept as they are.
    pub fn rewrap_edks(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<Vec<EncryptedDataKey>, ProviderError> {
        edks.iter()
            .map(|e| {
                if e.provider_id == PROVIDER_ID {
                    self.rewrap_edk(e, ctx)
                } else {
                    Ok(e.clone())
                }
            })
            .collect()
    }

    /// Reads a key's versions and settings (`read` on `<mount>/keys/<name>`).
    pub fn key_info(&self, key: &TransitKey) -> Result<TransitKeyInfo, ProviderError> {
        let out = self
            .client
            .get(&Op::ReadKey.path(key))
            .map_err(|f| self.failure(Op::ReadKey, key, None, f))?;
        let v: Wrapped<serde_json::Value> = self.parse(&out, Op::ReadKey, key)?;
        let d = &v.data;
        let num = |k: &str| d.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
        Ok(TransitKeyInfo {
            key: key.clone(),
            key_type: d.get("type").and_then(|x| x.as_str()).unwrap_or("").into(),
            derived: d.get("derived").and_then(|x| x.as_bool()).unwrap_or(false),
            latest_version: num("latest_version") as u32,
            min_decryption_version: num("min_decryption_version") as u32,
            min_encryption_version: num("min_encryption_version") as u32,
            auto_rotate_period_secs: num("auto_rotate_period"),
        })
    }

    /// The wrapping key, checked (once) to be a derived key: on any other,
    /// transit would silently ignore the encryption context.
    fn wrapping_key_checked(&self) -> Result<TransitKey, ProviderError> {
        let k = self.wrapping_key().ok_or_else(|| {
            ProviderError::Other(
                "this transit provider has no wrapping key; pass --key transit:KEYNAME".into(),
            )
        })?;
        if self.checked.get().is_none() {
            let info = self.key_info(&k)?;
            if !info.derived {
                return Err(ProviderError::KeyUnusable(format!(
                    "{} is not a derived key (derived=false): transit ignores the encryption context on such keys, so envarc refuses to wrap data keys with it. Create a derived key (`bao write {}/keys/NEWNAME derived=true`; an existing key cannot be made derived) and use --key transit:NEWNAME",
                    self.what(&k),
                    k.mount
                )));
            }
            let _ = self.checked.set(());
        }
        Ok(k)
    }

    fn key_of(&self, edk: &EncryptedDataKey) -> Result<TransitKey, ProviderError> {
        let mut k = edk_key(edk).ok_or_else(|| {
            ProviderError::Other(format!(
                "malformed transit EDK ({}): its provider info is not <mount>/<key name>",
                edk.describe()
            ))
        })?;
        if let Some(m) = &self.mount {
            k.mount = m.clone();
        }
        Ok(k)
    }

    fn accepts(&self, edk: &EncryptedDataKey) -> bool {
        match (&self.key, edk_key(edk)) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(name), Some(k)) => {
                *name == k.name && self.mount.as_ref().is_none_or(|m| *m == k.mount)
            }
        }
    }

    fn unwrap_one(
        &self,
        edk: &EncryptedDataKey,
        ctx: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let (k, data): (_, Wrapped<PlaintextData>) = self.post_edk(Op::Decrypt, edk, ctx)?;
        self.data_key(Zeroizing::new(data.data.plaintext), &k)
    }

    /// Sends an EDK's transit ciphertext with the derivation context to `op`
    /// (decrypt or rewrap) of the key it names, and parses the answer.
    fn post_edk<T: serde::de::DeserializeOwned>(
        &self,
        op: Op,
        edk: &EncryptedDataKey,
        ctx: &EncryptionContext,
    ) -> Result<(TransitKey, T), ProviderError> {
        let k = self.key_of(edk)?;
        let body = serde_json::json!({
            "ciphertext": ciphertext_str(edk, &k)?,
            "context": derivation_context(ctx)?,
        });
        let out = self
            .client
            .post(&op.path(&k), &body)
            .map_err(|f| self.failure(op, &k, edk_version(edk), f))?;
        let data = self.parse(&out, op, &k)?;
        Ok((k, data))
    }

    fn data_key(&self, b64: Zeroizing<String>, k: &TransitKey) -> Result<DataKey, ProviderError> {
        let bytes = Zeroizing::new(B64.decode(b64.as_bytes()).unwrap_or_default());
        DataKey::from_slice(&bytes).ok_or_else(|| {
            ProviderError::Other(format!(
                "{} returned a data key that is not 32 bytes; is this a transit engine?",
                self.what(k)
            ))
        })
    }

    fn edk(&self, k: &TransitKey, ciphertext: String) -> Result<EncryptedDataKey, ProviderError> {
        if !ciphertext.starts_with("vault:v") {
            return Err(ProviderError::Other(format!(
                "{} returned a ciphertext that does not start with vault:v; is this a transit engine?",
                self.what(k)
            )));
        }
        Ok(EncryptedDataKey {
            provider_id: PROVIDER_ID.into(),
            provider_info: format!("{}/{}", k.mount, k.name).into_bytes(),
            ciphertext: ciphertext.into_bytes(),
        })
    }

    fn parse<T: serde::de::DeserializeOwned>(
        &self,
        body: &[u8],
        op: Op,
        k: &TransitKey,
    ) -> Result<T, ProviderError> {
        serde_json::from_slice(body).map_err(|_| {
            ProviderError::Other(format!(
                "{} answered {} with unexpected JSON; is {} an OpenBao/Vault server with a transit engine at '{}'?",
                self.what(k),
                op.path(k),
                self.address(),
                k.mount
            ))
        })
    }

    fn what(&self, k: &TransitKey) -> String {
        format!("{} at {}", key_desc(k), self.address())
    }

    /// Phrases a failed request for the user: what happened, to which key at
    /// which server, and what to do. Never includes the token.
    fn failure(&self, op: Op, k: &TransitKey, version: Option<u32>, f: Failure) -> ProviderError {
        let what = self.what(k);
        let addr = self.address();
        match f {
            Failure::Status { code, errors } => {
                let said = errors.join("; ");
                let has = |s: &str| errors.iter().any(|e| e.contains(s));
                if has("sealed") {
                    ProviderError::KeyUnusable(format!(
                        "the OpenBao/Vault server at {addr} is sealed, so {} cannot be used: unseal it (bao operator unseal) and try again",
                        key_desc(k)
                    ))
                } else if code == 403 {
                    ProviderError::KeyUnusable(format!(
                        "permission denied for {what}: the token in BAO_TOKEN/VAULT_TOKEN is invalid or expired, or its policy lacks '{}' on {}. Log in again (bao login) or ask for that policy",
                        op.capability(),
                        op.path(k)
                    ))
                } else if has("encryption key not found") || (code == 404 && said.is_empty()) {
                    ProviderError::KeyUnusable(format!(
                        "{what} does not exist: create it with `bao write {}/keys/{} derived=true`, or check the key name and --transit-mount",
                        k.mount, k.name
                    ))
                } else if has("no handler for route") {
                    ProviderError::KeyUnusable(format!(
                        "no transit engine is mounted at '{}' on {addr} (looking for transit key '{}'): enable one with `bao secrets enable -path={} transit`, or pass --transit-mount",
                        k.mount, k.name, k.mount
                    ))
                } else if has("disallowed by policy") {
                    self.too_old(k, version)
                } else if has("message authentication failed") {
                    ProviderError::UnwrapFailed {
                        key: format!("{what}{}", version.map(|v| format!(" v{v}")).unwrap_or_default()),
                    }
                } else {
                    let said = if said.is_empty() { "no details".into() } else { said };
                    ProviderError::Other(format!(
                        "{what}: {} failed with HTTP {code}: {said}",
                        op.path(k)
                    ))
                }
            }
            Failure::Redirect { code, location } => ProviderError::Unavailable(format!(
                "the server at {addr} redirected the request for {} to {location} (HTTP {code}); envarc does not follow redirects with a token: set BAO_ADDR/VAULT_ADDR to the active node's address",
                key_desc(k)
            )),
            Failure::Network { detail, tries } => ProviderError::Unavailable(format!(
                "cannot reach OpenBao/Vault at {addr} for {}: {detail} (tried {tries} time{}). Is the server running, and is BAO_ADDR/VAULT_ADDR right?",
                key_desc(k),
                if tries == 1 { "" } else { "s" }
            )),
            Failure::Timeout { secs } => ProviderError::Unavailable(format!(
                "OpenBao/Vault at {addr} did not answer within {secs} s for {}: try again later, or raise --transit-timeout",
                key_desc(k)
            )),
            Failure::Tls { detail } => ProviderError::Unavailable(format!(
                "TLS connection to {addr} failed for {}: {detail}. If the server's certificate comes from a private CA, pass --transit-ca-file FILE (or set BAO_CACERT/VAULT_CACERT)",
                key_desc(k)
            )),
            Failure::BadResponse(detail) => ProviderError::Other(format!(
                "unexpected answer from {addr} for {}: {detail}",
                key_desc(k)
            )),
        }
    }

    /// The message for a ciphertext below `min_decryption_version`, with the
    /// key's current setting when the token may read it.
    fn too_old(&self, k: &TransitKey, version: Option<u32>) -> ProviderError {
        let v = version
            .map(|v| format!("v{v}"))
            .unwrap_or_else(|| "an old version".into());
        let min = self
            .key_info(k)
            .map(|i| format!(" (now {})", i.min_decryption_version))
            .unwrap_or_default();
        ProviderError::KeyUnusable(format!(
            "{} refuses to decrypt this data key: it was wrapped by key version {v}, below the key's min_decryption_version{min}. Lower it (`bao write {}/keys/{}/config min_decryption_version=N`) to read this data, and rewrap old data before raising it",
            self.what(k),
            k.mount,
            k.name
        ))
    }
}

fn key_desc(k: &TransitKey) -> String {
    format!("transit key '{}' (mount '{}')", k.name, k.mount)
}

fn ciphertext_str<'a>(edk: &'a EncryptedDataKey, k: &TransitKey) -> Result<&'a str, ProviderError> {
    std::str::from_utf8(&edk.ciphertext)
        .ok()
        .filter(|s| s.starts_with("vault:v"))
        .ok_or_else(|| ProviderError::UnwrapFailed {
            key: format!("{}: the EDK is not a transit ciphertext", key_desc(k)),
        })
}

impl KeyProvider for TransitProvider {
    fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        let k = self.wrapping_key_checked()?;
        let body = serde_json::json!({
            "bits": 256,
            "context": derivation_context(ctx)?,
        });
        let out = self
            .client
            .post(&Op::DataKey.path(&k), &body)
            .map_err(|f| self.failure(Op::DataKey, &k, None, f))?;
        let data: Wrapped<DataKeyData> = self.parse(&out, Op::DataKey, &k)?;
        let DataKeyData {
            ciphertext,
            plaintext,
        } = data.data;
        let key = self.data_key(Zeroizing::new(plaintext), &k)?;
        Ok((key, vec![self.edk(&k, ciphertext)?]))
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let candidates = edks.iter().filter(|e| self.accepts(e));
        unwrap_first(
            edks,
            candidates,
            |edk| self.unwrap_one(edk, ctx),
            || match self.wrapping_key() {
                Some(k) => format!("{PROVIDER_ID}:{}/{}", k.mount, k.name),
                None => format!("any {PROVIDER_ID} key at {}", self.address()),
            },
        )
    }

    /// Wraps an existing data key with `<mount>/encrypt/<name>`: this sends the
    /// plaintext data key to the server (over TLS in production), for moving
    /// data from another provider to transit. Rewrapping data that is already
    /// under transit should use [`TransitProvider::rewrap_edk`] instead.
    fn wrap_data_key(
        &self,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> Result<Vec<EncryptedDataKey>, ProviderError> {
        #[derive(serde::Serialize)]
        struct EncryptRequest<'a> {
            plaintext: &'a str,
            context: &'a str,
        }
        let k = self.wrapping_key_checked()?;
        // Borrowed, not copied into a serde_json::Value: the only copies of
        // the key are zeroizing buffers.
        let plaintext = Zeroizing::new(B64.encode(key.expose()));
        let context = derivation_context(ctx)?;
        let body = EncryptRequest {
            plaintext: &plaintext,
            context: &context,
        };
        let out = self
            .client
            .post(&Op::Encrypt.path(&k), &body)
            .map_err(|f| self.failure(Op::Encrypt, &k, None, f))?;
        let data: Wrapped<CiphertextData> = self.parse(&out, Op::Encrypt, &k)?;
        Ok(vec![self.edk(&k, data.data.ciphertext)?])
    }

    fn max_in_flight(&self) -> usize {
        self.client.max_in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn edk(info: &str, ct: &str) -> EncryptedDataKey {
        EncryptedDataKey {
            provider_id: PROVIDER_ID.into(),
            provider_info: info.as_bytes().to_vec(),
            ciphertext: ct.as_bytes().to_vec(),
        }
    }

    #[test]
    fn versions_and_keys_of_edks() {
        let e = edk("team/transit/backup", "vault:v12:AAAA");
        assert_eq!(edk_version(&e), Some(12));
        assert_eq!(
            edk_key(&e),
            Some(TransitKey {
                mount: "team/transit".into(),
                name: "backup".into()
            })
        );
        assert_eq!(edk_version(&edk("transit/k", "vault:vx:AAAA")), None);
        assert_eq!(edk_version(&edk("transit/k", "garbage")), None);
        assert_eq!(edk_key(&edk("nokey", "vault:v1:A")), None);
        assert_eq!(edk_key(&edk("../sys/k", "vault:v1:A")), None);
        let mut other = edk("transit/k", "vault:v1:A");
        other.provider_id = "envarc".into();
        assert_eq!(edk_version(&other), None);
        assert_eq!(edk_key(&other), None);
    }

    #[test]
    fn derivation_context_is_prefixed_and_distinct() {
        let empty = derivation_context(&EncryptionContext::new()).unwrap();
        assert_eq!(B64.decode(&empty).unwrap(), CONTEXT_PREFIX);
        let mut a = EncryptionContext::new();
        a.insert("repo".into(), "1".into());
        let mut b = a.clone();
        b.insert("repo".into(), "2".into());
        assert_ne!(
            derivation_context(&a).unwrap(),
            derivation_context(&b).unwrap()
        );
    }

    #[test]
    fn provider_is_send_and_sync() {
        fn assert_both<T: Send + Sync>() {}
        assert_both::<TransitProvider>();
    }
}
