//! Opening a repository for the maintenance commands (stats, rewrap,
//! reencrypt): besides the provider, they need the keyring (to name keys by
//! alias, to know its current and retired versions), the transit server's
//! latest versions, and a [`Rewrapper`] per rotating key.

use super::keys::transit_provider;
use super::repo::RepoArgs;
use super::{GlobalArgs, Output};
use crate::keyring::Keyring;
use crate::maintain::rewrap::{KeyringRewrapper, Rewrapper, TransitRewrapper};
use crate::providers::ProviderKind;
use crate::repo::{describe_key, KeyRef, KeyVersion, Pins, Repository};
use crate::{Error, Result};

/// A repository and what is known about its keys.
pub struct Opened {
    pub repo: Repository,
    /// The keyring, when a key of the repository is in it.
    pub keyring: Option<Keyring>,
}

fn mount_of(k: &KeyRef) -> &str {
    k.params
        .get("mount")
        .map_or(crate::providers::DEFAULT_TRANSIT_MOUNT, String::as_str)
}

impl Opened {
    pub fn open(args: &RepoArgs, g: &GlobalArgs, out: &Output) -> Result<Opened> {
        let (repo, keyring) = args.open_with_keyring(g, out)?;
        Ok(Opened { repo, keyring })
    }

    fn keys_of(&self, kind: ProviderKind) -> impl Iterator<Item = &KeyRef> + '_ {
        self.repo
            .config()
            .keys
            .iter()
            .filter(move |k| k.kind() == Some(kind))
    }

    fn keyring(&self) -> Result<&Keyring> {
        self.keyring
            .as_ref()
            .ok_or_else(|| Error::Other("the keyring was not opened".into()))
    }

    fn transit_rewrapper(&self, args: &RepoArgs, k: &KeyRef) -> Result<TransitRewrapper> {
        let mut t = args.key.transit.clone();
        if t.transit_mount.is_none() {
            t.transit_mount = k.params.get("mount").cloned();
        }
        TransitRewrapper::new(transit_provider(&t, Some(&k.key))?, mount_of(k), &k.key)
    }

    /// One rewrapper per rotating key (keyring CMKs, transit keys) of the
    /// repository; other keys need none.
    pub fn rewrappers(&self, args: &RepoArgs) -> Result<Vec<Box<dyn Rewrapper>>> {
        let mut out: Vec<Box<dyn Rewrapper>> = Vec::new();
        for k in self.keys_of(ProviderKind::Keyring) {
            let p = self.keyring()?.provider(&k.key)?;
            out.push(Box::new(KeyringRewrapper::new(p)?));
        }
        for k in self.keys_of(ProviderKind::Transit) {
            out.push(Box::new(self.transit_rewrapper(args, k)?));
        }
        Ok(out)
    }

    /// The versions new data keys are wrapped by: the keyring's current
    /// version of each CMK, the transit server's latest version of each key
    /// (left out, with a warning, when the server cannot tell), and every
    /// key without versions.
    pub fn current(&self, args: &RepoArgs, out: &Output) -> Vec<KeyVersion> {
        let mut cur = Vec::new();
        for k in &self.repo.config().keys {
            let kv = match k.kind() {
                Some(ProviderKind::Keyring) => self
                    .keyring()
                    .and_then(|kr| kr.provider(&k.key))
                    .ok()
                    .and_then(|p| p.key())
                    .map(|(id, v)| KeyVersion {
                        provider: ProviderKind::Keyring.into(),
                        key: id.to_string(),
                        version: Some(v),
                    }),
                Some(ProviderKind::Transit) => match self.transit_rewrapper(args, k) {
                    Ok(r) => Some(r.current().clone()),
                    Err(e) => {
                        out.warn(format!(
                            "the current version of {} is unknown: {e}",
                            describe_key(k)
                        ));
                        None
                    }
                },
                _ => None,
            };
            cur.extend(kv);
        }
        cur
    }

    /// Versions the keyring no longer unwraps with (retired, pending
    /// deletion, destroyed), of the repository's keyring keys.
    pub fn keyring_retired(&self) -> Vec<KeyVersion> {
        let Some(kr) = &self.keyring else {
            return Vec::new();
        };
        self.keys_of(ProviderKind::Keyring)
            .flat_map(|k| {
                kr.retired_versions(&k.key)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| KeyVersion {
                        provider: ProviderKind::Keyring.into(),
                        key: k.key.clone(),
                        version: Some(v),
                    })
            })
            .collect()
    }

    /// Resolves the KEY of `--key-version KEY/vN`: `transit:NAME` (mount
    /// from the repository's config), else a keyring alias or key id.
    pub fn resolve_key(&self, key: &str) -> Result<KeyVersion> {
        if let Some(name) = key.strip_prefix("transit:") {
            let full = match name.contains('/') {
                true => name.to_string(),
                false => {
                    let mount = self
                        .keys_of(ProviderKind::Transit)
                        .find(|k| k.key == name)
                        .map_or(crate::providers::DEFAULT_TRANSIT_MOUNT, mount_of);
                    format!("{mount}/{name}")
                }
            };
            return Ok(KeyVersion {
                provider: ProviderKind::Transit.into(),
                key: full,
                version: None,
            });
        }
        match &self.keyring {
            Some(kr) => Ok(KeyVersion {
                provider: ProviderKind::Keyring.into(),
                key: kr.resolve(key)?.to_string(),
                version: None,
            }),
            None => Err(Error::Usage(format!(
                "'{key}' names a keyring key, but this repository's data keys are wrapped by {}; \
                 name a transit key as transit:NAME (raw and AWS KMS keys have no versions here)",
                self.repo.config().describe_keys()
            ))),
        }
    }

    /// A key for people: keyring keys with their aliases.
    pub fn label(&self, kv: &KeyVersion) -> String {
        let aliases = self.keyring.as_ref().and_then(|kr| {
            let id = uuid::Uuid::try_parse(&kv.key).ok()?;
            let a = kr.aliases_of(&id);
            (!a.is_empty()).then(|| a.join(", "))
        });
        match (kv.kind(), aliases) {
            (Some(ProviderKind::Keyring), Some(a)) => format!("keyring key {} ({a})", kv.key),
            (Some(ProviderKind::Keyring), None) => format!("keyring key {}", kv.key),
            (Some(ProviderKind::Transit), _) => format!("transit key {}", kv.key),
            (_, _) => format!("{} key {}", kv.provider, kv.key),
        }
    }

    /// Records the config as it is now in this machine's pins (after a
    /// change envarc made: a new generation).
    pub fn record_pin(&self) -> Result<()> {
        Pins::default_location()?.record(&self.repo.storage().location(), self.repo.config(), false)
    }
}
