//! Keys on the command line and in repository configs, one module per key
//! provider, and the registry that picks the module ([`source`],
//! [`source_for_spec`]):
//!
//! - [`keyring`]: CMKs of the local keyring (`--key alias/NAME`, a key id);
//!   opening and unlocking the keyring file is [`keyring_open`];
//! - [`transit`]: OpenBao / Vault transit keys (`--key transit:NAME`);
//! - [`aws_kms`]: AWS KMS keys (`--key arn:aws:kms:…`, `aws-kms:alias/NAME`);
//! - [`raw_aes`]: raw AES key files (`--raw-key-file FILE --key-name NAME`).
//!
//! Each module implements [`KeySource`]: how its `--key` specs read, what
//! `init` records, how a recorded key becomes a provider, how it unwraps
//! without being named, and (for keys with versions) how it rewraps. Adding
//! a provider is one module here plus one line in [`SOURCES`] (and its
//! [`ProviderKind`]). [`repo_keys`] builds a repository's provider from
//! its config, [`opened`] opens a repository for the maintenance commands.

pub mod aws_kms;
pub mod keyring;
pub mod keyring_open;
mod lazy;
pub mod opened;
pub mod raw_aes;
pub mod repo_keys;
pub mod transit;

use std::path::PathBuf;

use envarc::envelope::{KeyProvider, ReadLimits};
use envarc::keyring::Keyring;
use envarc::maintain::rewrap::Rewrapper;
use envarc::providers::{MultiKeyProvider, ProviderKind};
use envarc::repo::{KeyRef, KeyVersion};
use envarc::{Error, Result};

use super::GlobalArgs;
pub use lazy::{AnyKey, LazyProvider};
pub use repo_keys::KeyringCache;

/// Where the wrapping key comes from: the keyring (the default), a key
/// service, or a raw key file.
#[derive(clap::Args, Clone, Debug)]
pub struct KeyArgs {
    /// The CMK that wraps the data key: a keyring key id or alias/NAME,
    /// transit:KEYNAME for an OpenBao/Vault transit key, or an AWS KMS key
    /// (arn:aws:kms:…, aws-kms:alias/NAME). Repeat it to wrap each data key
    /// under every key given, so that any one of them decrypts. To decrypt,
    /// none is needed (the message names its keys); given, only those are used.
    #[arg(
        help_heading = "Key provider",
        long,
        value_name = "KEY",
        conflicts_with = "raw_key_file"
    )]
    pub key: Vec<String>,
    /// A file holding a raw AES wrapping key (16, 24 or 32 bytes, as they are).
    #[arg(help_heading = "Key provider", long, value_name = "FILE")]
    pub raw_key_file: Option<PathBuf>,
    /// Namespace (ESDK provider ID) of the raw wrapping key.
    #[arg(
        help_heading = "Key provider",
        long,
        default_value = "envarc",
        value_name = "NS",
        requires = "raw_key_file"
    )]
    pub key_namespace: String,
    /// Name of the raw wrapping key, as stored in each message.
    #[arg(
        help_heading = "Key provider",
        long,
        value_name = "NAME",
        requires = "raw_key_file"
    )]
    pub key_name: Option<String>,
    /// Where the server of transit: keys is.
    #[command(flatten)]
    pub transit: transit::TransitArgs,
    /// How to reach AWS KMS.
    #[command(flatten)]
    pub kms: aws_kms::KmsArgs,
}

/// What a provider module needs to build providers for one command: its
/// key arguments, the global flags, and the keyring, opened at most once.
pub struct KeyEnv<'a> {
    pub args: &'a KeyArgs,
    pub global: &'a GlobalArgs,
    pub keyring: &'a mut KeyringCache,
}

impl KeyEnv<'_> {
    /// The keyring, opened (and unlocked) on first use.
    pub fn keyring(&mut self) -> Result<&Keyring> {
        if self.keyring.is_none() {
            *self.keyring = Some(keyring_open::load_keyring(self.global)?);
        }
        Ok(self.keyring.as_ref().expect("just loaded"))
    }
}

/// One key provider as the CLI sees it. The methods with a default are
/// what providers without versions, or without a `--key` form, do not have.
pub trait KeySource: Sync {
    fn kind(&self) -> ProviderKind;

    /// Whether a `--key` spec names a key of this provider. The keyring
    /// takes the specs no other provider claims (key ids and aliases).
    fn claims(&self, spec: &str) -> bool;

    /// The provider for a `--key` spec this source claims; `only_key`:
    /// decrypt accepts only that key's EDKs.
    fn for_spec(
        &self,
        spec: &str,
        env: &mut KeyEnv<'_>,
        only_key: bool,
    ) -> Result<Box<dyn KeyProvider>>;

    /// At `envarc init`: the key to record for `spec`, and its provider.
    fn init(&self, spec: &str, env: &mut KeyEnv<'_>) -> Result<(KeyRef, Box<dyn KeyProvider>)>;

    /// The provider for a key of this kind that a repository config records.
    fn for_repo(&self, key: &KeyRef, env: &mut KeyEnv<'_>) -> Result<Box<dyn KeyProvider>>;

    /// For decrypting with no key named: a provider of any key of this
    /// kind, built only when a message holds such an EDK. `None`: this kind
    /// must be named to unwrap (raw AES keys).
    fn any_key(&self, _args: &KeyArgs, _g: &GlobalArgs) -> Option<LazyProvider> {
        None
    }

    /// Whether `spec` (one this source claims) names one of `keys`.
    fn is_one_of(&self, spec: &str, keys: &[KeyRef], keyring: Option<&Keyring>) -> bool;

    /// For `rewrap`: how to wrap data keys under the current version of
    /// `key`; `None` for keys without versions.
    fn rewrapper(
        &self,
        _key: &KeyRef,
        _args: &KeyArgs,
        _keyring: Option<&Keyring>,
    ) -> Option<Result<Box<dyn Rewrapper>>> {
        None
    }

    /// The version new data keys of `key` get; `Ok(None)` when this kind
    /// has no versions, or this host cannot tell.
    fn current(
        &self,
        _key: &KeyRef,
        _args: &KeyArgs,
        _keyring: Option<&Keyring>,
    ) -> Result<Option<KeyVersion>> {
        Ok(None)
    }

    /// Versions of `key` this host knows are retired (the keyring's).
    fn retired(&self, _key: &KeyRef, _keyring: Option<&Keyring>) -> Vec<KeyVersion> {
        Vec::new()
    }

    /// The KEY of `--key-version KEY/vN`, when this source claims it.
    fn version_key(
        &self,
        _key: &str,
        _keys: &[KeyRef],
        _keyring: Option<&Keyring>,
    ) -> Option<Result<KeyVersion>> {
        None
    }
}

/// Every provider, in [`ProviderKind::ALL`]'s order (the order keyless
/// decrypt tries them in: local first).
pub static SOURCES: [&dyn KeySource; 4] = [
    &keyring::KeyringSource,
    &transit::TransitSource,
    &aws_kms::AwsKmsSource,
    &raw_aes::RawAesSource,
];

/// The module of a provider kind.
pub fn source(kind: ProviderKind) -> &'static dyn KeySource {
    *SOURCES
        .iter()
        .find(|s| s.kind() == kind)
        .expect("every ProviderKind has a source in SOURCES")
}

/// The module whose `--key` specs look like `spec`: the keyring's unless
/// another claims it.
pub fn source_for_spec(spec: &str) -> &'static dyn KeySource {
    SOURCES
        .iter()
        .copied()
        .find(|s| s.claims(spec))
        .unwrap_or(&keyring::KeyringSource)
}

/// Builds the key provider the arguments name: a raw key file, else the
/// `--key`s (keyring, transit or KMS; several wrap under each); without any,
/// a provider that only unwraps, with whichever key the message names.
pub fn provider(args: &KeyArgs, g: &GlobalArgs) -> Result<Box<dyn KeyProvider>> {
    open_provider(args, g, false)
}

/// `only_key`: decrypt accepts only EDKs of the `--key`s (KMS Decrypt with KeyId).
pub fn open_provider(
    args: &KeyArgs,
    g: &GlobalArgs,
    only_key: bool,
) -> Result<Box<dyn KeyProvider>> {
    if let Some(path) = &args.raw_key_file {
        return raw_aes::from_args(path, args);
    }
    if args.key.is_empty() {
        // No key named: unwrap with whichever provider the message's EDKs
        // name, opening the keyring or reaching a key service only then.
        return Ok(Box::new(AnyKey::new(args, g)));
    }
    spec_provider(args, g, only_key)
}

/// The provider for the command's `--key` specs (at least one): one member
/// per spec, in the order given, the keyring opened once for all of its
/// keys; several make a [`MultiKeyProvider`].
fn spec_provider(args: &KeyArgs, g: &GlobalArgs, only_key: bool) -> Result<Box<dyn KeyProvider>> {
    check_specs(&args.key)?;
    let mut keyring = None;
    let mut env = KeyEnv {
        args,
        global: g,
        keyring: &mut keyring,
    };
    let mut members = Vec::with_capacity(args.key.len());
    for spec in &args.key {
        members.push(source_for_spec(spec).for_spec(spec, &mut env, only_key)?);
    }
    MultiKeyProvider::boxed(members)
        .ok_or_else(|| Error::Usage("no key given: pass --key KEY".into()))
}

/// Several `--key`s: each once, and no more than a reader accepts by default.
pub fn check_specs(specs: &[String]) -> Result<()> {
    let max = ReadLimits::default().max_edks;
    if specs.len() > max {
        return Err(Error::Usage(format!(
            "{} keys given; a message holds at most {max} wrapped data keys (the readers' default limit)",
            specs.len()
        )));
    }
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].contains(s) {
            return Err(Error::Usage(format!("--key {s} is given twice")));
        }
    }
    Ok(())
}
