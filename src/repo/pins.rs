//! Pins: what this client has seen of each repository, like SSH's
//! known_hosts. An attacker who holds the storage can replace the whole
//! config (new sealed message under a key of theirs, same repository ID);
//! no key check inside the repository can tell, so the client remembers,
//! per repository ID, the fingerprint of the key set, the highest config
//! generation seen, and the locations it was opened at.
//!
//! File: `$ENVARC_PINS`, else `$XDG_CONFIG_HOME/envarc/repositories.json`,
//! else `~/.config/envarc/repositories.json` (JSON, mode 0600, written
//! atomically under a lock). First use records the repository (trust on
//! first use, with a notice). A different key set, a lower generation (a
//! replayed older config, which would undo a retirement), or a location that
//! held another repository ID is refused (exit 4) unless the user accepts it
//! (`--trust-repository-keys`, or `envarc trust`). `init` and envarc's own
//! config changes update the pin. A second machine gets the pins by copying
//! the file, or with `envarc trust --repo R --fingerprint F`, comparing F
//! with what `envarc trust` printed on the first machine.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

use super::config::Config;

/// What a client remembers of one repository.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pin {
    pub fingerprint: String,
    pub generation: u64,
    pub locations: Vec<String>,
}

#[derive(Default, Serialize, Deserialize)]
struct PinFile {
    version: u32,
    #[serde(default)]
    repositories: BTreeMap<String, Pin>,
}

/// How a config compares with the pins.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinStatus {
    /// Never seen: recorded now (trust on first use).
    New,
    /// As pinned (perhaps a newer generation, or a new location).
    Known,
    /// Differed, and the user accepted the change.
    Accepted,
}

/// The pin file.
pub struct Pins {
    path: PathBuf,
}

impl Pins {
    pub fn at(path: impl Into<PathBuf>) -> Pins {
        Pins { path: path.into() }
    }

    /// The default pin file (see the module docs).
    pub fn default_location() -> Result<Pins> {
        if let Some(p) = std::env::var_os("ENVARC_PINS").filter(|p| !p.is_empty()) {
            return Ok(Pins::at(p));
        }
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".config")))
            .ok_or_else(|| {
                Error::Usage(
                    "cannot tell where to keep repository pins: set ENVARC_PINS, XDG_CONFIG_HOME or HOME".into(),
                )
            })?;
        Ok(Pins::at(base.join("envarc").join("repositories.json")))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn load(&self) -> Result<PinFile> {
        match std::fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                Error::Other(format!(
                    "the pin file {} is not valid ({e}); repair or remove it (removing forgets every pinned repository)",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(PinFile {
                version: 1,
                ..Default::default()
            }),
            Err(e) => Err(Error::io(format!("reading {}", self.path.display()), e)),
        }
    }

    /// The pin of repository `id`, if any.
    pub fn get(&self, id: &str) -> Result<Option<Pin>> {
        Ok(self.load()?.repositories.get(id).cloned())
    }

    /// Checks a config as claimed (before any key is used) against the pins.
    /// `accept` lets a differing config through (the user confirmed it).
    pub fn check(&self, location: &str, claimed: &Config, accept: bool) -> Result<PinStatus> {
        let file = self.load()?;
        let refuse = |why: String| {
            Err(Error::Integrity(format!(
                "{why}. If you made this change (or trust whoever did), accept it with \
                 --trust-repository-keys or `envarc trust --repo {location}`; otherwise the \
                 repository's storage was tampered with: do not use it (pins: {})",
                self.path.display()
            )))
        };
        let other = file
            .repositories
            .iter()
            .find(|(id, p)| **id != claimed.id && p.locations.iter().any(|l| l == location));
        let mut status = PinStatus::Known;
        if let Some((old, _)) = other {
            if !accept {
                return refuse(format!(
                    "{location} held repository {old} before and now holds another one, {}",
                    claimed.id
                ));
            }
            status = PinStatus::Accepted;
        }
        let Some(pin) = file.repositories.get(&claimed.id) else {
            return Ok(if status == PinStatus::Accepted {
                status
            } else {
                PinStatus::New
            });
        };
        let fp = claimed.fingerprint();
        if pin.fingerprint != fp {
            if !accept {
                return refuse(format!(
                    "the key set of repository {} changed: pinned {}, now {fp} ({})",
                    claimed.id,
                    pin.fingerprint,
                    claimed.describe_keys()
                ));
            }
            status = PinStatus::Accepted;
        }
        if claimed.generation < pin.generation {
            if !accept {
                return refuse(format!(
                    "the config of repository {} is generation {}, older than generation {} seen \
                     before: an old config was put back (it may undo retired key versions)",
                    claimed.id, claimed.generation, pin.generation
                ));
            }
            status = PinStatus::Accepted;
        }
        Ok(status)
    }

    /// Records an authenticated config: its fingerprint and generation
    /// (raised, or set exactly when `accepted`) and this location, which no
    /// other repository keeps.
    pub fn record(&self, location: &str, config: &Config, accepted: bool) -> Result<()> {
        self.update(|file| {
            for (id, p) in file.repositories.iter_mut() {
                if *id != config.id {
                    p.locations.retain(|l| l != location);
                }
            }
            let pin = file
                .repositories
                .entry(config.id.clone())
                .or_insert_with(|| Pin {
                    fingerprint: config.fingerprint(),
                    generation: config.generation,
                    locations: Vec::new(),
                });
            pin.fingerprint = config.fingerprint();
            pin.generation = if accepted {
                config.generation
            } else {
                pin.generation.max(config.generation)
            };
            if !pin.locations.iter().any(|l| l == location) {
                pin.locations.push(location.to_string());
            }
        })
    }

    /// Pins repository `id` to `fingerprint` before it was ever opened here
    /// (a second machine, told the fingerprint by the first).
    pub fn pin_fingerprint(&self, id: &str, fingerprint: &str) -> Result<()> {
        self.update(|file| {
            let pin = file
                .repositories
                .entry(id.to_string())
                .or_insert_with(|| Pin {
                    fingerprint: String::new(),
                    generation: 0,
                    locations: Vec::new(),
                });
            pin.fingerprint = fingerprint.to_string();
        })
    }

    /// Read-modify-write under an exclusive lock on a sidecar file, so two
    /// envarc processes never lose each other's pins.
    fn update(&self, change: impl FnOnce(&mut PinFile)) -> Result<()> {
        use fs4::fs_std::FileExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating {}", dir.display()), e))?;
        let lock_path = self.path.with_extension("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(format!("opening {}", lock_path.display()), e))?;
        FileExt::lock_exclusive(&lock)
            .map_err(|e| Error::io(format!("locking {}", lock_path.display()), e))?;
        let mut file = self.load()?;
        file.version = 1;
        change(&mut file);
        let mut json = serde_json::to_vec_pretty(&file).expect("pins serialize");
        json.push(b'\n');
        crate::fsutil::atomic_write(&self.path, &json, Some(0o600))
            .map_err(|e| Error::io(format!("writing {}", self.path.display()), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{InitOptions, KeyRef};

    fn config(key: &str) -> Config {
        let k = KeyRef {
            provider: crate::providers::ProviderKind::Keyring,
            key: key.into(),
            params: Default::default(),
        };
        Config::new(vec![k], &InitOptions::default()).unwrap()
    }

    #[test]
    fn first_use_then_refusals_and_acceptance() {
        let dir = tempfile::tempdir().unwrap();
        let pins = Pins::at(dir.path().join("p.json"));
        let mut c = config("a");
        assert_eq!(pins.check("/r", &c, false).unwrap(), PinStatus::New);
        c.generation = 3;
        pins.record("/r", &c, false).unwrap();
        assert_eq!(pins.check("/r", &c, false).unwrap(), PinStatus::Known);
        let mut old = c.clone();
        old.generation = 2;
        assert!(pins
            .check("/r", &old, false)
            .unwrap_err()
            .to_string()
            .contains("older"));
        let mut swapped = c.clone();
        swapped.keys = config("b").keys;
        assert!(pins
            .check("/r", &swapped, false)
            .unwrap_err()
            .to_string()
            .contains("key set"));
        assert_eq!(
            pins.check("/r", &swapped, true).unwrap(),
            PinStatus::Accepted
        );
        let other = config("a");
        assert!(pins
            .check("/r", &other, false)
            .unwrap_err()
            .to_string()
            .contains("held repository"));
        assert_eq!(
            pins.check("/elsewhere", &other, false).unwrap(),
            PinStatus::New
        );
    }
}
