//! The repository's plaintext configuration (`REPO/config`, JSON): what a
//! reader needs before it has any key. Nothing secret: the key check inside is
//! an ESDK message whose data key is wrapped by the repository's key.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::envelope::{
    decrypt_to_vec, encrypt_to_vec, DecryptOptions, EncryptOptions, KeyProvider, ProviderError,
    Suite,
};
use crate::{Error, Result};

use super::{encryption_context, Kind};

/// The repository format version this build writes and reads.
pub const FORMAT_VERSION: u32 = 1;
/// Largest frame length a repository may use (what `init` accepts).
pub const MAX_FRAME_LENGTH: u32 = 16 * 1024 * 1024;
/// Default target size of a pack file.
pub const DEFAULT_PACK_SIZE: u64 = 16 * 1024 * 1024;
/// Default size from which a file's message is stored in a data file of its own.
pub const DEFAULT_LARGE_FILE_SIZE: u64 = 8 * 1024 * 1024;

/// Which key provider and key the repository's messages are wrapped with, as
/// recorded in the config: `{"provider": "raw-aes", "key": NAME, "namespace": NS}`
/// or `{"provider": "keyring", "key": "<cmk-uuid>"}` or `{"provider": "aws-kms",
/// "key": "<key ARN>"}`. The CLI turns this (plus
/// the key arguments of the command) into a [`KeyProvider`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRef {
    pub provider: String,
    pub key: String,
    /// Provider-specific, non-secret parameters (e.g. the raw-AES namespace).
    #[serde(flatten)]
    pub params: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Config {
    pub version: u32,
    /// Random UUID; bound into every message's encryption context.
    pub id: String,
    pub key: KeyRef,
    /// Further keys that every data key is also wrapped under (`envarc init
    /// --key A --key B`): any one of the keys opens the repository.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_keys: Vec<KeyRef>,
    /// Suite of new messages, by CLI name (`aes-256-gcm`, `chacha20-poly1305`).
    pub suite: String,
    /// Plaintext bytes per frame of new messages.
    pub frame_length: u32,
    /// Target size of a pack file.
    pub pack_size: u64,
    /// Files at least this large get a data file of their own instead of a
    /// place in a pack.
    pub large_file_size: u64,
    /// Base64 of a small message (kind `key-check`) wrapped by the repository's
    /// key: opening the repository decrypts it, so a wrong key is reported
    /// before anything is written with it.
    pub key_check: String,
}

/// Choices made at `envarc init`.
#[derive(Clone, Debug)]
pub struct InitOptions {
    pub suite: Suite,
    pub frame_length: u32,
    pub pack_size: u64,
    pub large_file_size: u64,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            suite: Suite::Aes256GcmHkdfSha512Commit,
            frame_length: crate::envelope::DEFAULT_FRAME_LENGTH,
            pack_size: DEFAULT_PACK_SIZE,
            large_file_size: DEFAULT_LARGE_FILE_SIZE,
        }
    }
}

impl Config {
    /// A new config with a fresh repository id and a key check made with `provider`.
    pub fn new(key: KeyRef, provider: &dyn KeyProvider, opts: &InitOptions) -> Result<Config> {
        Config::with_keys(vec![key], provider, opts)
    }

    /// Like [`Config::new`] for data keys wrapped under each of `keys` (at
    /// least one) by `provider`.
    pub fn with_keys(
        keys: Vec<KeyRef>,
        provider: &dyn KeyProvider,
        opts: &InitOptions,
    ) -> Result<Config> {
        let first = keys
            .first()
            .cloned()
            .ok_or_else(|| Error::Usage("a repository needs a key".into()))?;
        if opts.frame_length == 0 || opts.pack_size == 0 {
            return Err(Error::Usage(
                "frame length and pack size must be at least 1 byte".into(),
            ));
        }
        let mut cfg = Config {
            version: FORMAT_VERSION,
            id: uuid::Uuid::new_v4().to_string(),
            key: first,
            more_keys: Vec::new(),
            suite: opts.suite.cli_name().to_string(),
            frame_length: opts.frame_length,
            pack_size: opts.pack_size,
            large_file_size: opts.large_file_size,
            key_check: String::new(),
        };
        cfg.set_keys(keys, provider)?;
        Ok(cfg)
    }

    /// Reads `REPO/config`.
    pub fn load(root: &Path) -> Result<Config> {
        let path = root.join("config");
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::Usage(format!(
                    "{} is not an envarc repository (it has no config file); create one with `envarc init --repo {}`",
                    root.display(),
                    root.display()
                )))
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        Config::parse(&bytes, &path)
    }

    /// Parses and checks the bytes of a config file; `path` names it in errors.
    /// Pure (no I/O), so it can be fuzzed.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Config> {
        let invalid = |why: String| {
            Error::Integrity(format!(
                "the repository config {} is not valid: {why}",
                path.display()
            ))
        };
        let cfg: Config = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
        if cfg.version != FORMAT_VERSION {
            return Err(Error::Other(format!(
                "repository format version {} is not supported by this envarc (it reads version {FORMAT_VERSION}); use a matching envarc release",
                cfg.version
            )));
        }
        cfg.suite()?;
        // The plaintext fields are not authenticated (the key check covers only
        // the id): hold them to what `init` can write, so an altered config
        // cannot make readers accept huge frames or writers allocate them.
        if !(1..=MAX_FRAME_LENGTH).contains(&cfg.frame_length) {
            return Err(invalid(format!(
                "frame_length {} is outside 1..={MAX_FRAME_LENGTH}",
                cfg.frame_length
            )));
        }
        if cfg.pack_size == 0 {
            return Err(invalid("pack_size is 0".into()));
        }
        Ok(cfg)
    }

    pub fn suite(&self) -> Result<Suite> {
        Suite::from_cli_name(&self.suite).ok_or_else(|| {
            Error::Other(format!(
                "the repository config names an unknown suite '{}'",
                self.suite
            ))
        })
    }

    /// Records a new key and re-creates the key check with it (for rewrap).
    /// The caller saves the config with [`super::Repository::save_config`].
    pub fn set_key(&mut self, key: KeyRef, provider: &dyn KeyProvider) -> Result<()> {
        self.set_keys(vec![key], provider)
    }

    /// Records new keys (at least one; `provider` wraps under all of them)
    /// and re-creates the key check with them.
    pub fn set_keys(&mut self, mut keys: Vec<KeyRef>, provider: &dyn KeyProvider) -> Result<()> {
        if keys.is_empty() {
            return Err(Error::Usage("a repository needs a key".into()));
        }
        let opts = EncryptOptions {
            suite: self.suite()?,
            frame_length: self.frame_length,
            context: encryption_context(&self.id, Kind::KeyCheck),
        };
        let msg = encrypt_to_vec(provider, &opts, self.id.as_bytes())?;
        self.key = keys.remove(0);
        self.more_keys = keys;
        self.key_check = base64::engine::general_purpose::STANDARD.encode(msg);
        Ok(())
    }

    /// Checks that `provider` opens this repository's key check.
    pub fn check_key(&self, provider: &dyn KeyProvider) -> Result<()> {
        let msg = base64::engine::general_purpose::STANDARD
            .decode(&self.key_check)
            .map_err(|_| Error::Integrity("the config's key_check is not base64".into()))?;
        let opts = DecryptOptions {
            expected_context: encryption_context(&self.id, Kind::KeyCheck),
            ..Default::default()
        };
        match decrypt_to_vec(provider, &opts, &msg) {
            Ok((_, plain)) if plain == self.id.as_bytes() => Ok(()),
            Ok(_) => Err(Error::Integrity(
                "the config's key check does not hold the repository id: the config was altered"
                    .into(),
            )),
            // An unreachable key service is not a wrong key (exit 1, not 5).
            Err(e @ crate::envelope::Error::Provider(ProviderError::Unavailable(_))) => {
                Err(e.into())
            }
            Err(crate::envelope::Error::Provider(e)) => Err(Error::Key {
                message: format!(
                    "the key given does not open this repository ({}): {e}",
                    self.describe_keys()
                ),
            }),
            Err(e) => Err(e.into()),
        }
    }
}

impl Config {
    /// Every key the repository's data keys are wrapped under, first the main one.
    pub fn keys(&self) -> impl Iterator<Item = &KeyRef> {
        std::iter::once(&self.key).chain(&self.more_keys)
    }

    /// The keys for messages: "keyring key ID and aws-kms key ARN".
    pub fn describe_keys(&self) -> String {
        self.keys()
            .map(describe_key)
            .collect::<Vec<_>>()
            .join(" and ")
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
