//! Which key a repository uses: the only place that maps a config's
//! [`KeyRef`] plus a command's key arguments to a [`KeyProvider`]. Adding a
//! provider kind means one arm in each of the two functions below.

use crate::envelope::{KeyProvider, RawAesKey};
use crate::repo::{describe_key, Config, KeyRef};
use crate::{Error, Result};

use super::crypt::{provider, KeyArgs};

/// Provider kind recorded for a raw AES wrapping key.
pub const RAW_AES: &str = "raw-aes";

/// At `envarc init`: the key to record in the config, and its provider.
pub fn init_key(args: &KeyArgs) -> Result<(KeyRef, Box<dyn KeyProvider>)> {
    let p = provider(args)?;
    let name = args
        .key_name
        .clone()
        .expect("provider() requires --key-name with --raw-key-file");
    let key = KeyRef {
        provider: RAW_AES.into(),
        key: name,
        params: [("namespace".to_string(), args.key_namespace.clone())].into(),
    };
    Ok((key, p))
}

/// For every command on an existing repository: the provider for the key its
/// config records, built from the command's key arguments.
pub fn repo_provider(args: &KeyArgs, config: &Config) -> Result<Box<dyn KeyProvider>> {
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
        other => Err(Error::Usage(format!(
            "the repository's key is of provider '{other}', which this envarc does not support"
        ))),
    }
}
