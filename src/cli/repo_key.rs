//! Which key a repository uses: the only place that maps a config's
//! [`KeyRef`] plus a command's key arguments to a [`KeyProvider`]. Adding a
//! provider kind means one arm in each of the two functions below
//! (`init_spec` and `key_provider`). A repository may record several keys
//! (`envarc init --key A --key B`); its provider then wraps under all.

use crate::envelope::{
    DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, ProviderError, RawAesKey,
};
use crate::keyring::Keyring;
use crate::providers::{MultiKeyProvider, ProviderKind};
use crate::repo::{describe_key, Config, KeyRef};
use crate::{Error, Result};

use super::crypt::{provider, KeyArgs};
use super::keyring_args::load_keyring;
use super::keys::{check_specs, transit_provider};
use super::kms_key::{init_kms_key, is_kms_spec, repo_kms_provider};
use super::GlobalArgs;

/// The keyring, opened at most once per command for all the keys in it
/// (and kept for the maintenance commands, which name keys by alias).
pub type KeyringCache = Option<Keyring>;

fn keyring<'a>(cache: &'a mut KeyringCache, g: &GlobalArgs) -> Result<&'a Keyring> {
    if cache.is_none() {
        *cache = Some(load_keyring(g)?);
    }
    Ok(cache.as_ref().expect("just loaded"))
}

/// At `envarc init`: the keys to record in the config (one per `--key`, in
/// order), and the provider that wraps each data key under all of them.
pub fn init_keys(args: &KeyArgs, g: &GlobalArgs) -> Result<(Vec<KeyRef>, Box<dyn KeyProvider>)> {
    if args.raw_key_file.is_some() {
        let p = provider(args, g)?;
        let name = args
            .key_name
            .clone()
            .expect("provider() requires --key-name with --raw-key-file");
        let key = KeyRef {
            provider: ProviderKind::RawAes.into(),
            key: name,
            params: [("namespace".to_string(), args.key_namespace.clone())].into(),
        };
        return Ok((vec![key], p));
    }
    if args.key.is_empty() {
        return Err(Error::Usage(
            "a repository needs a key: pass --key KEY (a keyring key id or alias/NAME, created with `envarc key create`), \
             --key transit:KEYNAME, --key arn:aws:kms:… (AWS KMS), or --raw-key-file FILE --key-name NAME; \
             repeat --key to wrap under several keys"
                .into(),
        ));
    }
    check_specs(&args.key)?;
    let mut cache = None;
    let mut refs = Vec::with_capacity(args.key.len());
    let mut members = Vec::with_capacity(args.key.len());
    for spec in &args.key {
        let (r, p) = init_spec(spec, args, g, &mut cache)?;
        refs.push(r);
        members.push(p);
    }
    let p = MultiKeyProvider::boxed(members).expect("at least one key");
    Ok((refs, p))
}

/// The record and provider for one `--key` spec at init.
fn init_spec(
    spec: &str,
    args: &KeyArgs,
    g: &GlobalArgs,
    cache: &mut KeyringCache,
) -> Result<(KeyRef, Box<dyn KeyProvider>)> {
    if is_kms_spec(spec) {
        return init_kms_key(spec, &args.kms);
    }
    if let Some(name) = spec.strip_prefix("transit:") {
        let p = transit_provider(&args.transit, Some(name))?;
        let mount = args
            .transit
            .transit_mount
            .clone()
            .unwrap_or_else(|| crate::providers::DEFAULT_TRANSIT_MOUNT.into());
        let key = KeyRef {
            provider: ProviderKind::Transit.into(),
            key: name.to_string(),
            params: [("mount".to_string(), mount)].into(),
        };
        return Ok((key, Box::new(p)));
    }
    // Record the key id, not the alias: an alias may later move to another key,
    // and a repository must keep naming the CMK that wraps its data keys.
    let p = keyring(cache, g)?.provider(spec)?;
    let (id, _version) = p
        .key()
        .ok_or_else(|| Error::Usage(format!("'{spec}' names no key that can encrypt")))?;
    let key = KeyRef {
        provider: ProviderKind::Keyring.into(),
        key: id.to_string(),
        params: Default::default(),
    };
    Ok((key, Box::new(p)))
}

/// For every command on an existing repository: the provider for the keys
/// its config records, built from the command's key arguments. With several
/// keys, one that cannot be opened here (no keyring on this host, say) does
/// not stop commands that only read: any one key decrypts, and a write fails
/// with the reason.
pub fn repo_provider(
    args: &KeyArgs,
    g: &GlobalArgs,
    config: &Config,
    cache: &mut KeyringCache,
) -> Result<Box<dyn KeyProvider>> {
    if let [only] = config.keys.as_slice() {
        return key_provider(only, args, g, cache);
    }
    let mut members: Vec<Box<dyn KeyProvider>> = Vec::new();
    let mut first_err = None;
    let mut opened = 0;
    for k in &config.keys {
        match key_provider(k, args, g, cache) {
            Ok(p) => {
                opened += 1;
                members.push(p)
            }
            Err(e) => {
                members.push(Box::new(Unopened {
                    key: describe_key(k),
                    why: e.to_string(),
                }));
                first_err.get_or_insert(e);
            }
        }
    }
    match first_err {
        Some(e) if opened == 0 => Err(e),
        _ => Ok(MultiKeyProvider::boxed(members).expect("at least one key")),
    }
}

/// The provider for one key a repository config records.
fn key_provider(
    k: &KeyRef,
    args: &KeyArgs,
    g: &GlobalArgs,
    cache: &mut KeyringCache,
) -> Result<Box<dyn KeyProvider>> {
    let Some(kind) = k.kind() else {
        return Err(Error::Usage(format!(
            "the repository's key is of provider '{}', which this envarc does not support",
            k.provider
        )));
    };
    match kind {
        ProviderKind::RawAes => {
            let Some(path) = &args.raw_key_file else {
                return Err(Error::Usage(format!(
                    "this repository's data keys are wrapped by {}; pass its key with --raw-key-file FILE",
                    describe_key(k)
                )));
            };
            if let Some(name) = &args.key_name {
                if name != &k.key {
                    return Err(Error::Usage(format!(
                        "--key-name {name} does not match the repository's key ({}); leave --key-name out",
                        describe_key(k)
                    )));
                }
            }
            let namespace = k.params.get("namespace").map_or("envarc", String::as_str);
            let material = zeroize::Zeroizing::new(
                std::fs::read(path)
                    .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?,
            );
            Ok(Box::new(RawAesKey::new(namespace, &k.key, &material)?))
        }
        ProviderKind::Keyring => Ok(Box::new(keyring(cache, g)?.provider(&k.key)?)),
        ProviderKind::AwsKms => repo_kms_provider(&k.key, &args.kms),
        ProviderKind::Transit => {
            let mut transit = args.transit.clone();
            if transit.transit_mount.is_none() {
                transit.transit_mount = k.params.get("mount").cloned();
            }
            Ok(Box::new(transit_provider(&transit, Some(&k.key))?))
        }
    }
}

/// A repository key that could not be opened by this command: it wraps
/// nothing, and decrypt reports why it was not tried.
struct Unopened {
    key: String,
    why: String,
}

impl KeyProvider for Unopened {
    fn generate_data_key(
        &self,
        _: &EncryptionContext,
    ) -> std::result::Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        Err(self.unusable())
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        _: &EncryptionContext,
    ) -> std::result::Result<DataKey, ProviderError> {
        Err(ProviderError::NoMatchingKey {
            found: crate::envelope::provider::describe_edks(edks),
            tried: format!("{} (could not be opened: {})", self.key, self.why),
        })
    }

    fn wrap_data_key(
        &self,
        _: &DataKey,
        _: &EncryptionContext,
    ) -> std::result::Result<Vec<EncryptedDataKey>, ProviderError> {
        Err(self.unusable())
    }
}

impl Unopened {
    fn unusable(&self) -> ProviderError {
        ProviderError::KeyUnusable(format!(
            "the repository's data keys are also wrapped under {}, which could not be opened: {}",
            self.key, self.why
        ))
    }
}
