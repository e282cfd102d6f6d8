//! Key specs that name remote key services: `--key transit:KEYNAME` (OpenBao /
//! Vault transit) and the flags that say where that service is, and how the
//! `--key` specs of a command become one provider ([`spec_provider`]; AWS KMS
//! specs are in `kms_key.rs`). Kept apart from `crypt.rs` so that other
//! commands (backup, rewrap, stats) resolve keys the same way with one call.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use super::crypt::KeyArgs;
use super::keyring_args::load_keyring;
use super::kms_key::{kms_from_spec, LazyKms};
use super::GlobalArgs;
use crate::envelope::provider::describe_edks;
use crate::envelope::{
    DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, ProviderError, ReadLimits,
};
use crate::providers::multi::combine_errors;
use crate::providers::{
    MultiKeyProvider, ProviderKind, TransitConfig, TransitProvider, TRANSIT_PROVIDER_ID,
};
use crate::{Error, Result};

/// The provider for the command's `--key` specs (at least one): one member
/// per spec, in the order given, the keyring opened once for all of its
/// keys; several make a [`MultiKeyProvider`]. `only_key`: decrypt accepts
/// only EDKs of the keys given.
pub fn spec_provider(
    args: &KeyArgs,
    g: &GlobalArgs,
    only_key: bool,
) -> Result<Box<dyn KeyProvider>> {
    check_specs(&args.key)?;
    let mut keyring = None;
    let mut members = Vec::with_capacity(args.key.len());
    for spec in &args.key {
        if let Some(p) = transit_from_spec(spec, &args.transit) {
            members.push(p?);
            continue;
        }
        if let Some(p) = kms_from_spec(spec, &args.kms, only_key) {
            members.push(p?);
            continue;
        }
        if keyring.is_none() {
            keyring = Some(load_keyring(g)?);
        }
        let p = keyring.as_ref().expect("just loaded").provider(spec)?;
        members.push(if only_key {
            Box::new(p.only_this_key())
        } else {
            Box::new(p)
        });
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

/// Where the OpenBao / Vault server of `transit:` keys is.
#[derive(clap::Args, Clone, Debug)]
pub struct TransitArgs {
    /// OpenBao/Vault address for transit keys [default: $BAO_ADDR, then $VAULT_ADDR].
    #[arg(help_heading = "OpenBao/Vault transit", long, value_name = "URL")]
    pub transit_addr: Option<String>,
    /// Mount path of the transit engine [default: transit; on decrypt, the
    /// mount stored in the message].
    #[arg(help_heading = "OpenBao/Vault transit", long, value_name = "PATH")]
    pub transit_mount: Option<String>,
    /// PEM file of CA certificates that sign the server's TLS certificate
    /// [default: $BAO_CACERT, then $VAULT_CACERT, else the Mozilla roots].
    #[arg(help_heading = "OpenBao/Vault transit", long, value_name = "FILE")]
    pub transit_ca_file: Option<PathBuf>,
    /// Seconds one request to the transit server may take.
    #[arg(help_heading = "OpenBao/Vault transit", long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub transit_timeout: u64,
}

/// The provider for a `--key` spec if it names a transit key
/// (`transit:KEYNAME`); `None` for specs of other providers.
pub fn transit_from_spec(spec: &str, args: &TransitArgs) -> Option<Result<Box<dyn KeyProvider>>> {
    let name = spec.strip_prefix("transit:")?;
    Some(transit_provider(args, Some(name)).map(|p| Box::new(p) as Box<dyn KeyProvider>))
}

/// The concrete transit provider (for rewrap and stats, which need
/// [`TransitProvider::rewrap_edk`] and [`TransitProvider::key_info`]).
/// `key`: the wrapping key, or `None` to unwrap any transit key.
pub fn transit_provider(args: &TransitArgs, key: Option<&str>) -> Result<TransitProvider> {
    let cfg = config(args).map_err(Error::Usage)?;
    TransitProvider::new(cfg, key).map_err(Error::Usage)
}

fn config(args: &TransitArgs) -> std::result::Result<TransitConfig, String> {
    let mut cfg = TransitConfig::from_env(
        args.transit_addr.as_deref(),
        args.transit_mount.as_deref(),
        args.transit_ca_file.as_deref(),
    )?;
    cfg.timeout = Duration::from_secs(args.transit_timeout);
    Ok(cfg)
}

/// The provider for decrypting when no key was given: it unwraps EDKs of any
/// keyring CMK, any transit key or any AWS KMS key, trying them in that order
/// (local first), and opens the keyring (which may prompt for a passphrase),
/// reads the transit server settings or loads the AWS configuration only
/// once a message turns out to hold such an EDK.
pub fn keyless_decrypt(g: &GlobalArgs, args: &KeyArgs) -> Box<dyn KeyProvider> {
    Box::new(Keyless {
        global: g.clone(),
        keyring: OnceLock::new(),
        transit: LazyTransit {
            args: args.transit.clone(),
            inner: OnceLock::new(),
        },
        kms: LazyKms::new(&args.kms),
    })
}

struct Keyless {
    global: GlobalArgs,
    keyring: OnceLock<std::result::Result<Box<dyn KeyProvider>, String>>,
    transit: LazyTransit,
    kms: LazyKms,
}

impl Keyless {
    fn keyring(&self) -> std::result::Result<&dyn KeyProvider, ProviderError> {
        self.keyring
            .get_or_init(|| {
                load_keyring(&self.global)
                    .map(|kr| Box::new(kr.decrypt_provider()) as Box<dyn KeyProvider>)
                    .map_err(|e| e.to_string())
            })
            .as_ref()
            .map(|b| b.as_ref())
            .map_err(|e| ProviderError::KeyUnusable(e.clone()))
    }
}

impl KeyProvider for Keyless {
    fn generate_data_key(
        &self,
        _ctx: &EncryptionContext,
    ) -> std::result::Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        Err(ProviderError::Other(
            "no key given to encrypt with: pass --key KEY (alias/NAME, key id, transit:KEYNAME or an AWS KMS key ARN) or --raw-key-file FILE --key-name NAME".into(),
        ))
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> std::result::Result<DataKey, ProviderError> {
        let has = |id: &str| edks.iter().any(|e| e.provider_id == id);
        let mut errors = Vec::new();
        if has(crate::keyring::provider::PROVIDER_ID) {
            match self.keyring() {
                Ok(k) => match k.decrypt_data_key(edks, ctx) {
                    Ok(k) => return Ok(k),
                    Err(e) => errors.push(e),
                },
                // The namespace `envarc` is also the default of raw key files,
                // so a keyring that cannot be opened may simply not be the key.
                Err(e) => errors.push(ProviderError::NoMatchingKey {
                    found: describe_edks(edks),
                    tried: format!(
                        "the keyring, which could not be opened ({e}); for a raw AES key pass --raw-key-file FILE --key-name NAME"
                    ),
                }),
            }
        }
        // AWS KMS EDKs carry the kind's name as their provider ID.
        let remote: [(&str, &dyn KeyProvider); 2] = [
            (TRANSIT_PROVIDER_ID, &self.transit),
            (ProviderKind::AwsKms.as_str(), &self.kms),
        ];
        for (id, provider) in remote {
            if has(id) {
                match provider.decrypt_data_key(edks, ctx) {
                    Ok(k) => return Ok(k),
                    Err(e) => errors.push(e),
                }
            }
        }
        if errors.is_empty() {
            return Err(ProviderError::NoMatchingKey {
                found: describe_edks(edks),
                tried: "the keyring, transit and AWS KMS (for a raw AES key pass --raw-key-file FILE --key-name NAME)".into(),
            });
        }
        Err(combine_errors(edks, errors))
    }

    /// As many workers as a key service would want: which provider the
    /// messages need is known only once they are read.
    fn max_in_flight(&self) -> usize {
        self.kms.max_in_flight()
    }
}

struct LazyTransit {
    args: TransitArgs,
    inner: OnceLock<std::result::Result<TransitProvider, String>>,
}

impl LazyTransit {
    fn get(&self) -> std::result::Result<&TransitProvider, ProviderError> {
        self.inner
            .get_or_init(|| config(&self.args).and_then(|c| TransitProvider::new(c, None)))
            .as_ref()
            .map_err(|e| ProviderError::Other(e.clone()))
    }
}

impl KeyProvider for LazyTransit {
    fn generate_data_key(
        &self,
        _ctx: &EncryptionContext,
    ) -> std::result::Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        Err(ProviderError::Other(
            "no key given to encrypt with: pass --key transit:KEYNAME or --raw-key-file FILE --key-name NAME".into(),
        ))
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> std::result::Result<DataKey, ProviderError> {
        if !edks.iter().any(|e| e.provider_id == TRANSIT_PROVIDER_ID) {
            return Err(ProviderError::NoMatchingKey {
                found: describe_edks(edks),
                tried: "no key (none was given: pass --raw-key-file FILE --key-name NAME, or --key KEY)".into(),
            });
        }
        self.get()?.decrypt_data_key(edks, ctx)
    }
}
