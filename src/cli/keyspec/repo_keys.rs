//! Which keys a repository uses: `init` turns the command's key arguments
//! into the keys to record, every other command turns the recorded keys
//! (plus its key arguments) into a provider, each through the key's own
//! [`KeySource`](super::KeySource). A repository may record several keys
//! (`envarc init --key A --key B`); its provider then wraps under all.

use envarc::envelope::KeyProvider;
use envarc::keyring::Keyring;
use envarc::providers::MultiKeyProvider;
use envarc::repo::{describe_key, Config, KeyRef};
use envarc::{Error, Result};

use super::lazy::UnopenedKey;
use super::{check_specs, raw_aes, source, source_for_spec, GlobalArgs, KeyArgs, KeyEnv};

/// The keyring, opened at most once per command for all the keys in it
/// (and kept for the maintenance commands, which name keys by alias).
pub type KeyringCache = Option<Keyring>;

/// At `envarc init`: the keys to record in the config (one per `--key`, in
/// order), and the provider that wraps each data key under all of them.
pub fn init_keys(args: &KeyArgs, g: &GlobalArgs) -> Result<(Vec<KeyRef>, Box<dyn KeyProvider>)> {
    if let Some(path) = &args.raw_key_file {
        let (key, p) = raw_aes::init(path, args)?;
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
    let mut env = KeyEnv {
        args,
        global: g,
        keyring: &mut cache,
    };
    let mut refs = Vec::with_capacity(args.key.len());
    let mut members = Vec::with_capacity(args.key.len());
    for spec in &args.key {
        let (r, p) = source_for_spec(spec).init(spec, &mut env)?;
        refs.push(r);
        members.push(p);
    }
    let p = MultiKeyProvider::boxed(members).expect("at least one key");
    Ok((refs, p))
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
    let mut env = KeyEnv {
        args,
        global: g,
        keyring: cache,
    };
    if let [only] = config.keys.as_slice() {
        return source(only.provider).for_repo(only, &mut env);
    }
    let mut members: Vec<Box<dyn KeyProvider>> = Vec::new();
    let mut first_err = None;
    let mut opened = 0;
    for k in &config.keys {
        match source(k.provider).for_repo(k, &mut env) {
            Ok(p) => {
                opened += 1;
                members.push(p)
            }
            Err(e) => {
                members.push(Box::new(UnopenedKey {
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
