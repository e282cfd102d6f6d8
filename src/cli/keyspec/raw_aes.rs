//! Raw AES wrapping keys: `--raw-key-file FILE --key-name NAME` (never a
//! `--key` spec), recorded in a repository as `{"provider": "raw-aes", "key":
//! NAME, "namespace": NS}`. No versions: a raw key is replaced, not rotated.

use std::path::Path;

use envarc::envelope::{KeyProvider, RawAesKey};
use envarc::keyring::Keyring;
use envarc::providers::ProviderKind;
use envarc::repo::{describe_key, KeyRef};
use envarc::{Error, Result};

use super::{KeyArgs, KeyEnv, KeySource};

/// The raw key the arguments name (`--raw-key-file`, `--key-name`,
/// `--key-namespace`).
pub fn from_args(path: &Path, args: &KeyArgs) -> Result<Box<dyn KeyProvider>> {
    let Some(name) = &args.key_name else {
        return Err(Error::Usage(
            "--raw-key-file needs --key-name NAME (the name stored in each message)".into(),
        ));
    };
    Ok(Box::new(load(path, &args.key_namespace, name)?))
}

/// At `envarc init` with `--raw-key-file`: the key to record and its provider.
pub fn init(path: &Path, args: &KeyArgs) -> Result<(KeyRef, Box<dyn KeyProvider>)> {
    let p = from_args(path, args)?;
    let name = args
        .key_name
        .clone()
        .expect("from_args() requires --key-name with --raw-key-file");
    let key = KeyRef {
        provider: ProviderKind::RawAes,
        key: name,
        params: [("namespace".to_string(), args.key_namespace.clone())].into(),
    };
    Ok((key, p))
}

fn load(path: &Path, namespace: &str, name: &str) -> Result<RawAesKey> {
    let material = zeroize::Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?,
    );
    Ok(RawAesKey::new(namespace, name, &material)?)
}

pub struct RawAesSource;

impl KeySource for RawAesSource {
    fn kind(&self) -> ProviderKind {
        ProviderKind::RawAes
    }

    fn claims(&self, _spec: &str) -> bool {
        false
    }

    fn for_spec(&self, spec: &str, _: &mut KeyEnv<'_>, _: bool) -> Result<Box<dyn KeyProvider>> {
        Err(not_a_spec(spec))
    }

    fn init(&self, spec: &str, _: &mut KeyEnv<'_>) -> Result<(KeyRef, Box<dyn KeyProvider>)> {
        Err(not_a_spec(spec))
    }

    /// The key file comes from `--raw-key-file`; its name and namespace
    /// from the config.
    fn for_repo(&self, key: &KeyRef, env: &mut KeyEnv<'_>) -> Result<Box<dyn KeyProvider>> {
        let Some(path) = &env.args.raw_key_file else {
            return Err(Error::Usage(format!(
                "this repository's data keys are wrapped by {}; pass its key with --raw-key-file FILE",
                describe_key(key)
            )));
        };
        if let Some(name) = &env.args.key_name {
            if name != &key.key {
                return Err(Error::Usage(format!(
                    "--key-name {name} does not match the repository's key ({}); leave --key-name out",
                    describe_key(key)
                )));
            }
        }
        let namespace = key.params.get("namespace").map_or("envarc", String::as_str);
        Ok(Box::new(load(path, namespace, &key.key)?))
    }

    fn is_one_of(&self, _spec: &str, _keys: &[KeyRef], _keyring: Option<&Keyring>) -> bool {
        false
    }
}

fn not_a_spec(spec: &str) -> Error {
    Error::Usage(format!(
        "'{spec}' cannot name a raw AES key: pass --raw-key-file FILE --key-name NAME"
    ))
}
