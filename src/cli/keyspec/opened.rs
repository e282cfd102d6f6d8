//! Opening a repository for the maintenance commands (stats, rewrap,
//! reencrypt): besides the provider, they need the keyring (to name keys by
//! alias, to know its current and retired versions), the transit server's
//! latest versions, and a [`Rewrapper`] per rotating key.

use super::super::repo::RepoArgs;
use super::super::Output;
use super::{source, source_for_spec, GlobalArgs, KeySource};
use envarc::keyring::Keyring;
use envarc::maintain::rewrap::Rewrapper;
use envarc::providers::ProviderKind;
use envarc::repo::{describe_key, KeyRef, KeyVersion, Pins, Repository};
use envarc::{Error, Result};

/// A repository and what is known about its keys.
pub struct OpenedRepo {
    pub repo: Repository,
    /// The keyring, when a key of the repository is in it.
    pub keyring: Option<Keyring>,
}

impl OpenedRepo {
    pub fn open(args: &RepoArgs, g: &GlobalArgs, out: &Output) -> Result<OpenedRepo> {
        let (repo, keyring) = args.open_with_keyring(g, out)?;
        Ok(OpenedRepo { repo, keyring })
    }

    /// The repository's keys by kind, in [`ProviderKind::ALL`]'s order
    /// (keyring keys first), each with its provider module.
    fn keys(&self) -> impl Iterator<Item = (&'static dyn KeySource, &KeyRef)> + '_ {
        ProviderKind::ALL.into_iter().flat_map(move |kind| {
            let src = source(kind);
            self.repo
                .config()
                .keys
                .iter()
                .filter(move |k| k.provider == kind)
                .map(move |k| (src, k))
        })
    }

    /// One rewrapper per rotating key (keyring CMKs, transit keys) of the
    /// repository; other keys need none.
    pub fn rewrappers(&self, args: &RepoArgs) -> Result<Vec<Box<dyn Rewrapper>>> {
        self.keys()
            .filter_map(|(src, k)| src.rewrapper(k, &args.key, self.keyring.as_ref()))
            .collect()
    }

    /// The versions new data keys are wrapped by: the keyring's current
    /// version of each CMK, the transit server's latest version of each key
    /// (left out, with a warning, when the server cannot tell), and every
    /// key without versions.
    pub fn current(&self, args: &RepoArgs, out: &Output) -> Vec<KeyVersion> {
        let mut cur = Vec::new();
        for k in &self.repo.config().keys {
            match source(k.provider).current(k, &args.key, self.keyring.as_ref()) {
                Ok(kv) => cur.extend(kv),
                Err(e) => out.warn(format!(
                    "the current version of {} is unknown: {e}",
                    describe_key(k)
                )),
            }
        }
        cur
    }

    /// Versions this host knows the repository's keys no longer unwrap with
    /// (the keyring's retired, pending deletion and destroyed versions).
    pub fn keyring_retired(&self) -> Vec<KeyVersion> {
        self.keys()
            .flat_map(|(src, k)| src.retired(k, self.keyring.as_ref()))
            .collect()
    }

    /// Resolves the KEY of `--key-version KEY/vN`: `transit:NAME` (mount
    /// from the repository's config), else a keyring alias or key id.
    pub fn resolve_key(&self, key: &str) -> Result<KeyVersion> {
        let keys = &self.repo.config().keys;
        let resolved = source_for_spec(key).version_key(key, keys, self.keyring.as_ref());
        resolved.unwrap_or_else(|| {
            Err(Error::Usage(format!(
                "'{key}' names a keyring key, but this repository's data keys are wrapped by {}; \
                 name a transit key as transit:NAME (raw and AWS KMS keys have no versions here)",
                self.repo.config().describe_keys()
            )))
        })
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
