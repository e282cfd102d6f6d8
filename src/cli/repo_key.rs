//! Which key a repository uses: the only place that maps a config's
//! [`KeyRef`] plus a command's key arguments to a [`KeyProvider`]. Adding a
//! provider kind means one arm in each of the two functions below.

use crate::envelope::{KeyProvider, RawAesKey};
use crate::repo::{describe_key, Config, KeyRef};
use crate::{Error, Result};

use super::crypt::{provider, KeyArgs};
use super::keyring_args::load_keyring;
use super::keys::transit_provider;
use super::GlobalArgs;

/// Provider kind recorded for a raw AES wrapping key.
pub const RAW_AES: &str = "raw-aes";
/// Provider kind recorded for a CMK of the local keyring (the default).
pub const KEYRING: &str = "keyring";
/// Provider kind recorded for an OpenBao / Vault transit key.
pub const TRANSIT: &str = "transit";

/// At `envarc init`: the key to record in the config, and its provider.
pub fn init_key(args: &KeyArgs, g: &GlobalArgs) -> Result<(KeyRef, Box<dyn KeyProvider>)> {
    if args.raw_key_file.is_some() {
        let p = provider(args, g)?;
        let name = args
            .key_name
            .clone()
            .expect("provider() requires --key-name with --raw-key-file");
        let key = KeyRef {
            provider: RAW_AES.into(),
            key: name,
            params: [("namespace".to_string(), args.key_namespace.clone())].into(),
        };
        return Ok((key, p));
    }
    let Some(spec) = &args.key else {
        return Err(Error::Usage(
            "a repository needs a key: pass --key KEY (a keyring key id or alias/NAME, created with `envarc key create`), \
             --key transit:KEYNAME, or --raw-key-file FILE --key-name NAME"
                .into(),
        ));
    };
    if let Some(name) = spec.strip_prefix("transit:") {
        let p = transit_provider(&args.transit, Some(name))?;
        let mount = args
            .transit
            .transit_mount
            .clone()
            .unwrap_or_else(|| "transit".into());
        let key = KeyRef {
            provider: TRANSIT.into(),
            key: name.to_string(),
            params: [("mount".to_string(), mount)].into(),
        };
        return Ok((key, Box::new(p)));
    }
    // Record the key id, not the alias: an alias may later move to another key,
    // and a repository must keep naming the CMK that wraps its data keys.
    let p = load_keyring(g)?.provider(spec)?;
    let (id, _version) = p
        .key()
        .ok_or_else(|| Error::Usage(format!("'{spec}' names no key that can encrypt")))?;
    let key = KeyRef {
        provider: KEYRING.into(),
        key: id.to_string(),
        params: Default::default(),
    };
    Ok((key, Box::new(p)))
}

/// For every command on an existing repository: the provider for the key its
/// config records, built from the command's key arguments.
pub fn repo_provider(
    args: &KeyArgs,
    g: &GlobalArgs,
    config: &Config,
) -> Result<Box<dyn KeyProvider>> {
    let k = &config.key;
    match k.provider.as_str() {
        RAW_AES => {
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
        KEYRING => Ok(Box::new(load_keyring(g)?.provider(&k.key)?)),
        TRANSIT => {
            let mut transit = args.transit.clone();
            if transit.transit_mount.is_none() {
                transit.transit_mount = k.params.get("mount").cloned();
            }
            Ok(Box::new(transit_provider(&transit, Some(&k.key))?))
        }
        other => Err(Error::Usage(format!(
            "the repository's key is of provider '{other}', which this envarc does not support"
        ))),
    }
}
