//! Key specs that name remote key services: `--key transit:KEYNAME` (OpenBao /
//! Vault transit) and the flags that say where that service is. Kept apart
//! from `crypt.rs` so that other commands (backup, rewrap, stats) resolve keys
//! the same way with one call.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use super::keyring_args::load_keyring;
use super::GlobalArgs;
use crate::envelope::provider::describe_edks;
use crate::envelope::{DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, ProviderError};
use crate::providers::{TransitConfig, TransitProvider, TRANSIT_PROVIDER_ID};
use crate::{Error, Result};

/// Where the OpenBao / Vault server of `transit:` keys is.
#[derive(clap::Args, Clone, Debug)]
pub struct TransitArgs {
    /// OpenBao/Vault address for transit keys [default: $BAO_ADDR, then $VAULT_ADDR].
    #[arg(long, value_name = "URL")]
    pub transit_addr: Option<String>,
    /// Mount path of the transit engine [default: transit; on decrypt, the
    /// mount stored in the message].
    #[arg(long, value_name = "PATH")]
    pub transit_mount: Option<String>,
    /// PEM file of CA certificates that sign the server's TLS certificate
    /// [default: $BAO_CACERT, then $VAULT_CACERT, else the Mozilla roots].
    #[arg(long, value_name = "FILE")]
    pub transit_ca_file: Option<PathBuf>,
    /// Seconds one request to the transit server may take.
    #[arg(long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
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
/// keyring CMK or any transit key, and opens the keyring (which may prompt for
/// a passphrase) or reads the transit server settings only once a message
/// turns out to hold such an EDK.
pub fn keyless_decrypt(g: &GlobalArgs, args: &TransitArgs) -> Box<dyn KeyProvider> {
    Box::new(Keyless {
        global: g.clone(),
        keyring: OnceLock::new(),
        transit: LazyTransit {
            args: args.clone(),
            inner: OnceLock::new(),
        },
    })
}

struct Keyless {
    global: GlobalArgs,
    keyring: OnceLock<std::result::Result<Box<dyn KeyProvider>, String>>,
    transit: LazyTransit,
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
            "no key given to encrypt with: pass --key KEY (alias/NAME, key id, or transit:KEYNAME) or --raw-key-file FILE --key-name NAME".into(),
        ))
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> std::result::Result<DataKey, ProviderError> {
        let mut last = None;
        if edks
            .iter()
            .any(|e| e.provider_id == crate::keyring::provider::PROVIDER_ID)
        {
            match self.keyring() {
                Ok(k) => match k.decrypt_data_key(edks, ctx) {
                    Ok(k) => return Ok(k),
                    Err(e) => last = Some(e),
                },
                // The namespace `envarc` is also the default of raw key files,
                // so a keyring that cannot be opened may simply not be the key.
                Err(e) => {
                    last = Some(ProviderError::NoMatchingKey {
                        found: describe_edks(edks),
                        tried: format!(
                            "the keyring, which could not be opened ({e}); for a raw AES key pass --raw-key-file FILE --key-name NAME"
                        ),
                    })
                }
            }
        }
        if edks.iter().any(|e| e.provider_id == TRANSIT_PROVIDER_ID) {
            match self.transit.decrypt_data_key(edks, ctx) {
                Ok(k) => return Ok(k),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| ProviderError::NoMatchingKey {
            found: describe_edks(edks),
            tried: "the keyring and transit (for a raw AES key pass --raw-key-file FILE --key-name NAME)".into(),
        }))
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
