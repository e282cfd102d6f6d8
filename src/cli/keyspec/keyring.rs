//! Keyring CMKs as keys: `--key alias/NAME` or `--key <key id>` (every spec
//! no other provider claims). Rotating keys: their backing-key versions are
//! what `rewrap` moves data keys between.

use envarc::envelope::{EncryptedDataKey, KeyProvider, ProviderError};
use envarc::keyring::Keyring;
use envarc::maintain::rewrap::{KeyringRewrapper, Rewrapper};
use envarc::providers::ProviderKind;
use envarc::repo::{KeyRef, KeyVersion};
use envarc::{Error, Result};

use super::keyring_open::load_keyring;
use super::{GlobalArgs, KeyArgs, KeyEnv, KeySource, LazyProvider};

pub struct KeyringSource;

impl KeySource for KeyringSource {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Keyring
    }

    /// None: the registry gives the keyring what no other provider claims.
    fn claims(&self, _spec: &str) -> bool {
        false
    }

    fn for_spec(
        &self,
        spec: &str,
        env: &mut KeyEnv<'_>,
        only_key: bool,
    ) -> Result<Box<dyn KeyProvider>> {
        let p = env.keyring()?.provider(spec)?;
        Ok(if only_key {
            Box::new(p.only_this_key())
        } else {
            Box::new(p)
        })
    }

    fn init(&self, spec: &str, env: &mut KeyEnv<'_>) -> Result<(KeyRef, Box<dyn KeyProvider>)> {
        // Record the key id, not the alias: an alias may later move to another key,
        // and a repository must keep naming the CMK that wraps its data keys.
        let p = env.keyring()?.provider(spec)?;
        let (id, _version) = p
            .key()
            .ok_or_else(|| Error::Usage(format!("'{spec}' names no key that can encrypt")))?;
        Ok((
            KeyRef::new(ProviderKind::Keyring, id.to_string()),
            Box::new(p),
        ))
    }

    fn for_repo(&self, key: &KeyRef, env: &mut KeyEnv<'_>) -> Result<Box<dyn KeyProvider>> {
        Ok(Box::new(env.keyring()?.provider(&key.key)?))
    }

    fn any_key(&self, _args: &KeyArgs, g: &GlobalArgs) -> Option<LazyProvider> {
        let g = g.clone();
        let lazy = LazyProvider::new(
            |e| e.provider_id == envarc::keyring::PROVIDER_ID,
            move || {
                load_keyring(&g).map(|kr| Box::new(kr.decrypt_provider()) as Box<dyn KeyProvider>)
            },
        );
        Some(lazy.on_failure(unopened))
    }

    fn is_one_of(&self, spec: &str, keys: &[KeyRef], keyring: Option<&Keyring>) -> bool {
        let id = keyring
            .and_then(|r| r.provider(spec).ok())
            .and_then(|p| p.key().map(|(id, _)| id.to_string()));
        id.is_some_and(|id| {
            keys.iter()
                .any(|k| k.provider == ProviderKind::Keyring && k.key == id)
        })
    }

    fn rewrapper(
        &self,
        key: &KeyRef,
        _args: &KeyArgs,
        keyring: Option<&Keyring>,
    ) -> Option<Result<Box<dyn Rewrapper>>> {
        let made = opened(keyring)
            .and_then(|kr| kr.provider(&key.key))
            .and_then(KeyringRewrapper::new);
        Some(made.map(|r| Box::new(r) as Box<dyn Rewrapper>))
    }

    /// The keyring's current version of the CMK; unknown (no warning) when
    /// the keyring is not open here.
    fn current(
        &self,
        key: &KeyRef,
        _args: &KeyArgs,
        keyring: Option<&Keyring>,
    ) -> Result<Option<KeyVersion>> {
        Ok(opened(keyring)
            .and_then(|kr| kr.provider(&key.key))
            .ok()
            .and_then(|p| p.key())
            .map(|(id, v)| version(id.to_string(), Some(v))))
    }

    /// Versions the keyring no longer unwraps with (retired, pending
    /// deletion, destroyed).
    fn retired(&self, key: &KeyRef, keyring: Option<&Keyring>) -> Vec<KeyVersion> {
        let Some(kr) = keyring else {
            return Vec::new();
        };
        kr.retired_versions(&key.key)
            .unwrap_or_default()
            .into_iter()
            .map(|v| version(key.key.clone(), Some(v)))
            .collect()
    }

    /// Any KEY not claimed by another provider: an alias or key id.
    fn version_key(
        &self,
        key: &str,
        _keys: &[KeyRef],
        keyring: Option<&Keyring>,
    ) -> Option<Result<KeyVersion>> {
        let kr = keyring?;
        Some(kr.resolve(key).map(|id| version(id.to_string(), None)))
    }
}

fn opened(keyring: Option<&Keyring>) -> Result<&Keyring> {
    keyring.ok_or_else(|| Error::Other("the keyring was not opened".into()))
}

fn version(key: String, version: Option<u32>) -> KeyVersion {
    KeyVersion {
        provider: ProviderKind::Keyring.into(),
        key,
        version,
    }
}

/// The namespace `envarc` is also the default of raw key files, so a
/// keyring that cannot be opened may simply not be the key.
fn unopened(edks: &[EncryptedDataKey], why: &str) -> ProviderError {
    ProviderError::NoMatchingKey {
        found: envarc::envelope::provider::describe_edks(edks),
        tried: format!(
            "the keyring, which could not be opened ({why}); for a raw AES key pass --raw-key-file FILE --key-name NAME"
        ),
    }
}
