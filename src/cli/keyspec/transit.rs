//! OpenBao / Vault transit keys: `--key transit:KEYNAME`, the flags that
//! say where the server is, and the key as a repository records it
//! (`{"provider": "transit", "key": NAME, "mount": M}`). Rotating keys: the
//! server's `rewrap` moves data keys to a key's latest version.

use std::path::PathBuf;
use std::time::Duration;

use envarc::envelope::KeyProvider;
use envarc::keyring::Keyring;
use envarc::maintain::rewrap::{Rewrapper, TransitRewrapper};
use envarc::providers::{ProviderKind, TransitConfig, TransitProvider, TRANSIT_PROVIDER_ID};
use envarc::repo::{KeyRef, KeyVersion};
use envarc::{Error, Result};

use super::{GlobalArgs, KeyArgs, KeyEnv, KeySource, LazyProvider};

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

pub struct TransitSource;

const PREFIX: &str = "transit:";

impl KeySource for TransitSource {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Transit
    }

    fn claims(&self, spec: &str) -> bool {
        spec.starts_with(PREFIX)
    }

    fn for_spec(
        &self,
        spec: &str,
        env: &mut KeyEnv<'_>,
        _only_key: bool,
    ) -> Result<Box<dyn KeyProvider>> {
        let name = name_of(spec);
        Ok(Box::new(transit_provider(&env.args.transit, Some(name))?))
    }

    fn init(&self, spec: &str, env: &mut KeyEnv<'_>) -> Result<(KeyRef, Box<dyn KeyProvider>)> {
        let name = name_of(spec);
        let p = transit_provider(&env.args.transit, Some(name))?;
        let mount = env
            .args
            .transit
            .transit_mount
            .clone()
            .unwrap_or_else(|| envarc::providers::DEFAULT_TRANSIT_MOUNT.into());
        let key = KeyRef {
            provider: ProviderKind::Transit,
            key: name.to_string(),
            params: [("mount".to_string(), mount)].into(),
        };
        Ok((key, Box::new(p)))
    }

    fn for_repo(&self, key: &KeyRef, env: &mut KeyEnv<'_>) -> Result<Box<dyn KeyProvider>> {
        Ok(Box::new(repo_provider(key, env.args)?))
    }

    fn any_key(&self, args: &KeyArgs, _g: &GlobalArgs) -> Option<LazyProvider> {
        let args = args.transit.clone();
        Some(LazyProvider::new(
            |e| e.provider_id == TRANSIT_PROVIDER_ID,
            move || Ok(Box::new(transit_provider(&args, None)?) as Box<dyn KeyProvider>),
        ))
    }

    fn is_one_of(&self, spec: &str, keys: &[KeyRef], _keyring: Option<&Keyring>) -> bool {
        let name = name_of(spec);
        keys.iter()
            .any(|k| k.provider == ProviderKind::Transit && k.key == name)
    }

    fn rewrapper(
        &self,
        key: &KeyRef,
        args: &KeyArgs,
        _keyring: Option<&Keyring>,
    ) -> Option<Result<Box<dyn Rewrapper>>> {
        Some(rewrapper(key, args).map(|r| Box::new(r) as Box<dyn Rewrapper>))
    }

    /// The server's latest version of the key (one request).
    fn current(
        &self,
        key: &KeyRef,
        args: &KeyArgs,
        _keyring: Option<&Keyring>,
    ) -> Result<Option<KeyVersion>> {
        rewrapper(key, args).map(|r| Some(r.current().clone()))
    }

    /// `transit:NAME` or `transit:MOUNT/NAME`; the mount of a bare NAME is
    /// the one the repository records for it.
    fn version_key(
        &self,
        key: &str,
        keys: &[KeyRef],
        _keyring: Option<&Keyring>,
    ) -> Option<Result<KeyVersion>> {
        let name = key.strip_prefix(PREFIX)?;
        let full = match name.contains('/') {
            true => name.to_string(),
            false => {
                let mount = keys
                    .iter()
                    .find(|k| k.provider == ProviderKind::Transit && k.key == name)
                    .map_or(
                        envarc::providers::DEFAULT_TRANSIT_MOUNT,
                        KeyRef::transit_mount,
                    );
                format!("{mount}/{name}")
            }
        };
        Some(Ok(KeyVersion {
            provider: ProviderKind::Transit.into(),
            key: full,
            version: None,
        }))
    }
}

fn name_of(spec: &str) -> &str {
    spec.strip_prefix(PREFIX).unwrap_or(spec)
}

/// The provider of a key a repository records: the command's transit
/// flags, with the recorded mount unless `--transit-mount` overrides it.
fn repo_provider(key: &KeyRef, args: &KeyArgs) -> Result<TransitProvider> {
    let mut transit = args.transit.clone();
    if transit.transit_mount.is_none() {
        transit.transit_mount = key.params.get("mount").cloned();
    }
    transit_provider(&transit, Some(&key.key))
}

fn rewrapper(key: &KeyRef, args: &KeyArgs) -> Result<TransitRewrapper> {
    TransitRewrapper::new(repo_provider(key, args)?, key.transit_mount(), &key.key)
}
