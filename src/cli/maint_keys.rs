//! Opening a repository for the maintenance commands (stats, rewrap,
//! reencrypt): besides the provider, they need to know which key version is
//! current, to name keys (aliases), and to make a [`Rewrapper`].

use std::time::Duration;

use super::keyring_args::load_keyring;
use super::keys::transit_provider;
use super::repo::RepoArgs;
use super::repo_key::{repo_provider, KEYRING, TRANSIT};
use super::GlobalArgs;
use crate::keyring::Keyring;
use crate::maintain::keys::{KeyVersion, RAW_AES};
use crate::maintain::rewrap::{KeyringRewrapper, Rewrapper, TransitRewrapper};
use crate::repo::{Config, Repository};
use crate::{Error, Result};

/// A repository and what is known about its key.
pub struct Opened {
    pub repo: Repository,
    /// The keyring, for keyring repositories.
    pub keyring: Option<Keyring>,
    /// The version new data keys are wrapped by, when it can be known
    /// without asking a server (transit's is looked up by [`Opened::current`]).
    current: Option<KeyVersion>,
}

impl Opened {
    /// Opens `args.repo` with the key its config names.
    pub fn open(args: &RepoArgs, g: &GlobalArgs) -> Result<Opened> {
        let config = Config::load(&args.repo)?;
        let k = config.key.clone();
        let (mut repo, keyring, current) = if k.provider == KEYRING {
            let kr = load_keyring(g)?;
            let p = kr.provider(&k.key)?;
            let current = p.key().map(|(id, v)| KeyVersion {
                provider: KEYRING.into(),
                key: id.to_string(),
                version: Some(v),
            });
            let repo = Repository::open(&args.repo, config, Box::new(p))?;
            (repo, Some(kr), current)
        } else {
            let p = repo_provider(&args.key, g, &config)?;
            let current = (k.provider == RAW_AES).then(|| KeyVersion {
                provider: RAW_AES.into(),
                key: match k.params.get("namespace").map(String::as_str) {
                    None | Some("envarc") => k.key.clone(),
                    Some(ns) => format!("{ns}:{}", k.key),
                },
                version: None,
            });
            (Repository::open(&args.repo, config, p)?, None, current)
        };
        if let Some(w) = g.retry_lock {
            repo.set_lock_wait(w);
        }
        Ok(Opened {
            repo,
            keyring,
            current,
        })
    }

    /// The transit provider of a transit repository (a second client, for
    /// rewrap and key information).
    fn transit(&self, args: &RepoArgs) -> Result<crate::providers::TransitProvider> {
        let k = &self.repo.config().key;
        let mut t = args.key.transit.clone();
        if t.transit_mount.is_none() {
            t.transit_mount = k.params.get("mount").cloned();
        }
        transit_provider(&t, Some(&k.key))
    }

    fn transit_key(&self) -> String {
        let k = &self.repo.config().key;
        let mount = k.params.get("mount").map_or("transit", String::as_str);
        format!("{mount}/{}", k.key)
    }

    /// The version new data keys are wrapped by (for transit, asked from the
    /// server; `None` when that fails).
    pub fn current(&self, args: &RepoArgs) -> Option<KeyVersion> {
        if self.repo.config().key.provider != TRANSIT {
            return self.current.clone();
        }
        let rw = TransitRewrapper::new(self.transit(args).ok()?);
        let key = self.transit_key();
        let v = rw.latest(&key).ok()?;
        Some(KeyVersion {
            provider: TRANSIT.into(),
            key,
            version: Some(v),
        })
    }

    /// What moves old data keys to the current version.
    pub fn rewrapper(&self, args: &RepoArgs) -> Result<Box<dyn Rewrapper>> {
        let k = &self.repo.config().key;
        match k.provider.as_str() {
            KEYRING => {
                let kr = self.keyring.as_ref().expect("opened with the keyring");
                Ok(Box::new(KeyringRewrapper::new(kr.provider(&k.key)?)?))
            }
            TRANSIT => Ok(Box::new(TransitRewrapper::new(self.transit(args)?))),
            _ => Err(Error::Usage(format!(
                "this repository's data keys are wrapped by {}: a raw key has no versions, so there is \
                 nothing to rewrap. To move to a rotating key, create one (`envarc key create --enable-rotation`) \
                 and back up into a new repository",
                crate::repo::describe_key(k)
            ))),
        }
    }

    /// Resolves the KEY of `--key-version KEY/vN`.
    pub fn resolve_key(&self, key: &str) -> Result<KeyVersion> {
        let cfg = &self.repo.config().key;
        if let Some(name) = key.strip_prefix("transit:") {
            let full = if name.contains('/') {
                name.to_string()
            } else {
                let mount = cfg.params.get("mount").map_or("transit", String::as_str);
                format!("{mount}/{name}")
            };
            return Ok(KeyVersion {
                provider: TRANSIT.into(),
                key: full,
                version: None,
            });
        }
        match &self.keyring {
            Some(kr) => Ok(KeyVersion {
                provider: KEYRING.into(),
                key: kr.resolve(key)?.to_string(),
                version: None,
            }),
            None => Err(Error::Usage(format!(
                "'{key}' names a keyring key, but this repository's data keys are wrapped by {}; \
                 name a transit key as transit:NAME (raw keys have no versions)",
                crate::repo::describe_key(cfg)
            ))),
        }
    }

    /// A key version for people: keyring keys with their aliases.
    pub fn label(&self, kv: &KeyVersion) -> String {
        let aliases = self.keyring.as_ref().and_then(|kr| {
            let id = uuid::Uuid::try_parse(&kv.key).ok()?;
            let a = kr.aliases_of(&id);
            (!a.is_empty()).then(|| a.join(", "))
        });
        match (kv.provider.as_str(), aliases) {
            (KEYRING, Some(a)) => format!("keyring key {} ({a})", kv.key),
            (KEYRING, None) => format!("keyring key {}", kv.key),
            (TRANSIT, _) => format!("transit key {}", kv.key),
            (RAW_AES, _) => format!("raw AES key {}", kv.key),
            (p, _) => format!("{p} key {}", kv.key),
        }
    }
}

/// Parses `90`, `30s`, `5m`, `2h`, `1d` (seconds when no unit is given).
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration; write e.g. 30s, 5m, 2h or 1d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("unknown unit in '{s}'; use s, m, h or d")),
    };
    n.checked_mul(mult)
        .map(Duration::from_secs)
        .ok_or_else(|| format!("duration '{s}' is out of range"))
}

/// `1h`, `90s`: a duration as [`parse_duration`] reads it.
pub fn fmt_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86400 == 0 => format!("{}d", s / 86400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86400)));
        assert!(parse_duration("1w").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!(fmt_duration(Duration::from_secs(3600)), "1h");
        assert_eq!(fmt_duration(Duration::from_secs(0)), "0s");
    }
}
