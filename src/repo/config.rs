//! The repository config (`config`): authenticated settings and the
//! repository secrets.
//!
//! The object is JSON that a reader without keys can show:
//!
//! ```text
//! {"format": 2, "id": UUID, "generation": N, "keys": [KeyRef…], "retired": […],
//!  "suite": …, "frame_length": …, "pack_size": …, "chunker": {…},
//!  "compression": …, "sealed": base64(ESDK message)}
//! ```
//!
//! `sealed` is a message of kind `config` (context `{envarc-repo: id,
//! envarc-kind: config}`) under the repository's keys; its plaintext holds the
//! same settings and the secrets (chunk-ID MAC key, chunker key). Only
//! `format`, `id`, `keys` and `generation` are read from the clear JSON, and
//! only to pick key providers and check the pin before any key is used; every
//! setting comes from the sealed copy, and a clear field that differs from it
//! (or is added, or missing) is refused (exit 4) naming the field. Parsing is
//! pure ([`OuterConfig::parse`], [`decode_sealed`], [`compare`]), so it can be
//! fuzzed.

use base64::Engine;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::envelope::{
    decrypt_to_vec, encrypt_to_vec, CommitmentPolicy, DecryptOptions, EncryptOptions, KeyProvider,
    ProviderError, ReadLimits, Suite,
};
use crate::providers::ProviderKind;
use crate::{Error, Result};

use super::chunker::ChunkerParams;
use super::compress::Compression;
use super::keys::{describe_key, KeyPolicy, KeyRef, KeyVersion};
use super::{encryption_context, Kind};

/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 2;
/// Largest frame length a repository may use (what `init` accepts).
pub const MAX_FRAME_LENGTH: u32 = 16 * 1024 * 1024;
/// Default target size of a pack.
pub const DEFAULT_PACK_SIZE: u64 = 16 * 1024 * 1024;
/// Largest pack target: offsets in the index are 32-bit.
pub const MAX_PACK_SIZE: u64 = 1 << 30;
/// Largest config object read (a config is a few KiB).
const MAX_CONFIG_SIZE: usize = 1024 * 1024;

/// The authenticated settings. Every field is in the sealed message; the
/// clear copy in the JSON must equal it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub format: u32,
    /// Random UUID; bound into every message's encryption context.
    pub id: String,
    /// Grows by one with every change of the config (key set, retired
    /// versions); clients pin the highest seen, so an older config cannot
    /// be replayed to undo a retirement.
    pub generation: u64,
    /// Every data key is wrapped under each of these keys.
    pub keys: Vec<KeyRef>,
    /// Key versions whose messages this repository refuses.
    #[serde(default)]
    pub retired: Vec<KeyVersion>,
    /// Suite of new messages, by CLI name (`aes-256-gcm`, `chacha20-poly1305`).
    pub suite: String,
    /// Plaintext bytes per frame of new messages.
    pub frame_length: u32,
    /// Target size of a pack.
    pub pack_size: u64,
    pub chunker: ChunkerParams,
    /// Default compression of backups (a backup may choose another).
    pub compression: Compression,
}

/// The repository secrets: they exist only inside the sealed config. No
/// `Debug`, zeroized on drop.
#[derive(Clone, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct Secrets {
    /// Keys the chunk-ID MAC (keyed BLAKE3).
    pub(crate) mac_key: [u8; 32],
    /// Derives the chunker's gear table.
    pub(crate) chunker_key: [u8; 32],
}

impl Secrets {
    pub fn generate() -> Secrets {
        let mut s = Secrets {
            mac_key: [0; 32],
            chunker_key: [0; 32],
        };
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut s.mac_key);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut s.chunker_key);
        s
    }
}

/// The sealed plaintext (JSON: key references flatten their parameters,
/// which postcard cannot encode).
#[derive(Serialize, Deserialize)]
struct Sealed {
    config: Config,
    secrets: Secrets,
}

/// Choices made at `envarc init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub suite: Suite,
    pub frame_length: u32,
    pub pack_size: u64,
    pub chunker: ChunkerParams,
    pub compression: Compression,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            suite: Suite::Aes256GcmHkdfSha512Commit,
            frame_length: crate::envelope::DEFAULT_FRAME_LENGTH,
            pack_size: DEFAULT_PACK_SIZE,
            chunker: ChunkerParams::default(),
            compression: Compression::Auto,
        }
    }
}

fn invalid(why: impl std::fmt::Display) -> Error {
    Error::Integrity(format!("the repository config is not valid: {why}"))
}

impl Config {
    /// A first-generation config with a fresh repository ID.
    pub fn new(keys: Vec<KeyRef>, opts: &InitOptions) -> Result<Config> {
        let c = Config {
            format: FORMAT_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            generation: 1,
            keys,
            retired: Vec::new(),
            suite: opts.suite.cli_name().to_string(),
            frame_length: opts.frame_length,
            pack_size: opts.pack_size,
            chunker: opts.chunker,
            compression: opts.compression,
        };
        c.check().map_err(|e| Error::Usage(e.to_string()))?;
        Ok(c)
    }

    /// Holds the settings to what `init` can write, so that even an
    /// authentic config cannot make readers allocate without bound.
    pub fn check(&self) -> Result<()> {
        if self.format != FORMAT_VERSION {
            return Err(invalid(format!(
                "format {} is not {FORMAT_VERSION}",
                self.format
            )));
        }
        if uuid::Uuid::parse_str(&self.id).is_err() {
            return Err(invalid(format!("id '{}' is not a UUID", self.id)));
        }
        if self.generation == 0 {
            return Err(invalid("generation 0"));
        }
        if self.keys.is_empty() {
            return Err(invalid("it names no key"));
        }
        self.suite()?;
        if !(1..=MAX_FRAME_LENGTH).contains(&self.frame_length) {
            return Err(invalid(format!(
                "frame_length {} is outside 1..={MAX_FRAME_LENGTH}",
                self.frame_length
            )));
        }
        if !(1..=MAX_PACK_SIZE).contains(&self.pack_size) {
            return Err(invalid(format!(
                "pack_size {} is outside 1..={MAX_PACK_SIZE}",
                self.pack_size
            )));
        }
        self.chunker.check().map_err(invalid)
    }

    pub fn suite(&self) -> Result<Suite> {
        Suite::from_cli_name(&self.suite)
            .ok_or_else(|| invalid(format!("it names an unknown suite '{}'", self.suite)))
    }

    /// The keys for messages: "keyring key ID and aws-kms key ARN".
    pub fn describe_keys(&self) -> String {
        self.keys
            .iter()
            .map(describe_key)
            .collect::<Vec<_>>()
            .join(" and ")
    }

    pub fn policy(&self) -> KeyPolicy {
        KeyPolicy::new(&self.keys, &self.retired)
    }

    /// The fingerprint of the key set that clients pin.
    pub fn fingerprint(&self) -> String {
        key_fingerprint(&self.keys)
    }
}

/// `sha256:<hex>` of the key set (order does not matter).
pub fn key_fingerprint(keys: &[KeyRef]) -> String {
    let mut sorted = keys.to_vec();
    sorted.sort();
    let json = serde_json::to_vec(&sorted).expect("key refs serialize");
    format!("sha256:{}", hex::encode(Sha256::digest(json)))
}

/// A key of a provider this envarc does not know is not a damaged config
/// (a newer envarc may have written it): a usage error that names it.
fn refuse_unknown_providers(fields: &Map<String, Value>) -> Result<()> {
    let Some(Value::Array(keys)) = fields.get("keys") else {
        return Ok(());
    };
    let names = keys
        .iter()
        .filter_map(|k| k.get("provider").and_then(Value::as_str));
    for name in names {
        if ProviderKind::of(name).is_none() {
            return Err(Error::Usage(format!(
                "the repository's key is of provider '{name}', which this envarc does not support \
                 (it knows {}); open it with an envarc release that knows '{name}'",
                ProviderKind::known()
            )));
        }
    }
    Ok(())
}

/// The config object as read, before any key was used: the clear fields
/// (untrusted) and the sealed message.
pub struct OuterConfig {
    fields: Map<String, Value>,
    /// The clear fields as settings, for choosing providers and the pin check.
    pub claimed: Config,
    sealed: Vec<u8>,
}

impl OuterConfig {
    /// Parses the bytes of a config object. Pure (no I/O, no key).
    pub fn parse(bytes: &[u8]) -> Result<OuterConfig> {
        if bytes.len() > MAX_CONFIG_SIZE {
            return Err(invalid(format!(
                "it is {} bytes, more than a config can be",
                bytes.len()
            )));
        }
        let mut fields: Map<String, Value> = match serde_json::from_slice(bytes) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Err(invalid("it is not a JSON object")),
            Err(e) => return Err(invalid(e)),
        };
        if !fields.contains_key("format") {
            return Err(match fields.get("version").and_then(Value::as_u64) {
                Some(1) => Error::Other(
                    "this repository is in format 1, whose config is not authenticated; this envarc \
                     reads format 2 only. Restore its snapshots with the envarc release that wrote it, \
                     then back them up into a new repository (`envarc init`)"
                        .into(),
                ),
                _ => invalid("it has no `format` field"),
            });
        }
        match fields.get("format").and_then(Value::as_u64) {
            Some(v) if v == u64::from(FORMAT_VERSION) => {}
            Some(v) => {
                return Err(Error::Other(format!(
                    "repository format {v} is not supported by this envarc (it reads format {FORMAT_VERSION}); use a matching envarc release"
                )))
            }
            None => return Err(invalid("`format` is not a number")),
        }
        let sealed = match fields.remove("sealed") {
            Some(Value::String(s)) => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| invalid("`sealed` is not base64"))?,
            _ => return Err(invalid("it has no `sealed` message")),
        };
        refuse_unknown_providers(&fields)?;
        let claimed: Config =
            serde_json::from_value(Value::Object(fields.clone())).map_err(invalid)?;
        claimed.check()?;
        Ok(OuterConfig {
            fields,
            claimed,
            sealed,
        })
    }

    /// The sealed message's header (not authenticated). Pure.
    pub fn sealed_header(&self) -> Result<crate::envelope::Header> {
        Ok(crate::envelope::open_header(
            &mut &self.sealed[..],
            CommitmentPolicy::RequireCommitment,
            &ReadLimits::default(),
        )
        .map_err(|e| invalid(format!("the sealed config: {e}")))?
        .header)
    }

    /// Opens the sealed copy with `provider` (which must apply the claimed
    /// key policy), then checks that every clear field equals it.
    pub fn open(&self, provider: &dyn KeyProvider) -> Result<(Config, Secrets)> {
        let header = self.sealed_header()?;
        self.claimed
            .policy()
            .check(&header.edks)
            .map_err(|why| {
                invalid(format!(
                    "the sealed config is refused ({why}): the clear `keys` or `retired` field was altered"
                ))
            })?;
        let opts = DecryptOptions {
            expected_context: encryption_context(&self.claimed.id, Kind::Config),
            ..Default::default()
        };
        let plain = match decrypt_to_vec(provider, &opts, &self.sealed) {
            Ok((_, p)) => Zeroizing::new(p),
            Err(e @ crate::envelope::Error::Provider(ProviderError::Unavailable(_))) => {
                return Err(e.into())
            }
            Err(crate::envelope::Error::Provider(e)) => {
                return Err(Error::Key {
                    message: format!(
                        "the key given does not open this repository ({}): {e}",
                        self.claimed.describe_keys()
                    ),
                })
            }
            Err(e) if e.is_integrity() => {
                return Err(invalid(format!(
                    "the sealed config does not authenticate: {e}"
                )))
            }
            Err(e) => return Err(e.into()),
        };
        let (config, secrets) = decode_sealed(&plain)?;
        compare(&self.fields, &config)?;
        Ok((config, secrets))
    }
}

/// Decodes a sealed plaintext. Pure.
pub fn decode_sealed(plain: &[u8]) -> Result<(Config, Secrets)> {
    let sealed: Sealed = serde_json::from_slice(plain).map_err(|e| {
        invalid(format!(
            "the sealed config decrypted but does not decode: {e}"
        ))
    })?;
    sealed.config.check()?;
    let Sealed { config, secrets } = sealed;
    Ok((config, secrets))
}

/// Checks that the clear fields equal the authenticated config, naming the
/// first field that differs (including fields added or removed). Pure.
pub fn compare(clear: &Map<String, Value>, sealed: &Config) -> Result<()> {
    let Value::Object(want) = serde_json::to_value(sealed).expect("config serializes") else {
        unreachable!("a struct serializes to an object")
    };
    let mut names: Vec<&String> = want.keys().chain(clear.keys()).collect();
    names.sort();
    names.dedup();
    for name in names {
        if clear.get(name) != want.get(name) {
            return Err(invalid(format!(
                "field `{name}` differs from the authenticated copy: the config was altered \
                 (restore the config object from a backup copy, or ask whoever changed it)"
            )));
        }
    }
    Ok(())
}

/// Seals `config` with `secrets` into the bytes of a config object: a new
/// message (fresh data key, new message ID) every time.
pub fn seal(config: &Config, secrets: &Secrets, provider: &dyn KeyProvider) -> Result<Vec<u8>> {
    config.check()?;
    let plain = Zeroizing::new(
        serde_json::to_vec(&Sealed {
            config: config.clone(),
            secrets: secrets.clone(),
        })
        .map_err(|e| Error::Other(format!("encoding the config: {e}")))?,
    );
    let opts = EncryptOptions {
        suite: config.suite()?,
        frame_length: crate::envelope::DEFAULT_FRAME_LENGTH,
        context: encryption_context(&config.id, Kind::Config),
    };
    let msg = encrypt_to_vec(provider, &opts, &plain)?;
    let Value::Object(mut fields) = serde_json::to_value(config).expect("config serializes") else {
        unreachable!("a struct serializes to an object")
    };
    fields.insert(
        "sealed".into(),
        Value::String(base64::engine::general_purpose::STANDARD.encode(msg)),
    );
    let mut out = serde_json::to_vec_pretty(&fields).expect("JSON serializes");
    out.push(b'\n');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::RawAesKey;
    use crate::providers::ProviderKind;

    fn setup() -> (RawAesKey, Config, Vec<u8>) {
        let key = RawAesKey::new("envarc", "k", &[7u8; 32]).unwrap();
        let kref = KeyRef {
            provider: ProviderKind::RawAes,
            key: "k".into(),
            params: [("namespace".to_string(), "envarc".to_string())].into(),
        };
        let c = Config::new(vec![kref], &InitOptions::default()).unwrap();
        let bytes = seal(&c, &Secrets::generate(), &key).unwrap();
        (key, c, bytes)
    }

    #[test]
    fn a_sealed_config_opens_and_every_edit_is_named() {
        let (key, c, bytes) = setup();
        let (opened, _) = OuterConfig::parse(&bytes).unwrap().open(&key).unwrap();
        assert_eq!(opened, c);
        let doc: Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
        let edits: Vec<(&str, Value)> = vec![
            ("generation", 7.into()),
            ("suite", "chacha20-poly1305".into()),
            ("frame_length", 1.into()),
            ("pack_size", 1.into()),
            ("compression", "off".into()),
            (
                "chunker",
                serde_json::json!({"min": 64, "avg": 256, "max": 1024}),
            ),
            (
                "retired",
                serde_json::json!([{"provider": "raw-aes", "key": "k", "version": null}]),
            ),
            ("extra", true.into()),
        ];
        for (field, value) in edits {
            let mut d = doc.clone();
            d.insert(field.into(), value);
            let e = OuterConfig::parse(&serde_json::to_vec(&d).unwrap())
                .and_then(|o| o.open(&key).map(|_| ()))
                .unwrap_err();
            assert_eq!(e.exit_code(), crate::error::exit::INTEGRITY, "{field}: {e}");
            if field != "extra" {
                assert!(
                    e.to_string().contains(&format!("`{field}`")),
                    "{field}: {e}"
                );
            }
        }
    }

    #[test]
    fn format_one_is_refused_by_name() {
        let e = OuterConfig::parse(br#"{"version": 1, "id": "x"}"#)
            .err()
            .unwrap();
        assert!(e.to_string().contains("format 1"), "{e}");
    }

    #[test]
    fn a_key_of_an_unknown_provider_is_a_usage_error_naming_it() {
        let (_, _, bytes) = setup();
        // The outer JSON keeps the provider's name as configs always did.
        assert!(String::from_utf8_lossy(&bytes).contains(r#""provider": "raw-aes""#));
        let mut doc: Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
        doc.insert(
            "keys".into(),
            serde_json::json!([{"provider": "pkcs11", "key": "k"}]),
        );
        let e = OuterConfig::parse(&serde_json::to_vec(&doc).unwrap())
            .err()
            .unwrap();
        assert_eq!(e.exit_code(), crate::error::exit::USAGE, "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("'pkcs11'") && msg.contains("envarc release"),
            "{msg}"
        );
    }
}
