//! Retiring and destroying one backing-key version, once nothing needs it.
//!
//! AWS KMS has no operation on one version of generated key material; its
//! words for the nearest things are reused here:
//!
//! | command | state after | what it does | undone by |
//! |---|---|---|---|
//! | `retire-version KEY --version N` | `RETIRED` | vN unwraps nothing more | `reinstate-version` |
//! | `schedule-version-deletion KEY --version N [--pending-window-in-days 7..30]` | `PENDING_DELETION` | unwraps nothing; its material is destroyed after the window (default 30 days), as `ScheduleKeyDeletion` does for a whole key | `cancel-version-deletion` (back to `RETIRED`, as `CancelKeyDeletion` brings a key back Disabled) |
//! | (the window ends) | `DESTROYED` | the material is gone: whatever vN still wraps is unrecoverable | nothing |
//!
//! The current version wraps every new data key and can never be retired;
//! rotate first. Retiring is how a user learns, safely, whether anything
//! still needs a version: whatever does fails with an error that names the
//! key, the version and the command that undoes it.
//!
//! A repository keeps its own, authenticated list of the versions it no
//! longer accepts; [`Keyring::retired_versions`] tells it which versions the
//! keyring itself no longer unwraps.

use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::admin::check_pending_window;
use super::cmk::{BackingKey, Cmk, VersionState};
use super::{fmt_date, Keyring, DATA_FORMAT_VERSION_STATES};
use crate::{Error, Result};

/// What [`Keyring::retire_version`] and [`Keyring::reinstate_version`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    Changed,
    /// The version was already in the state asked for.
    Unchanged,
}

/// The consistency of a stored version's state (the keyring's validation).
pub(crate) fn check_state(b: &BackingKey, is_current: bool) -> std::result::Result<(), String> {
    match (b.state, b.material.is_some(), b.deletion_date.is_some()) {
        (VersionState::Enabled, true, false) | (VersionState::Retired, true, false) => {}
        (VersionState::PendingDeletion, true, true) => {}
        // Older files mark a destroyed version only by its missing material.
        (VersionState::Enabled | VersionState::Destroyed, false, _) => {}
        _ => return Err(format!("its state {} does not fit its record", b.state)),
    }
    if is_current
        && matches!(
            b.state,
            VersionState::Retired | VersionState::PendingDeletion
        )
    {
        return Err("the current version cannot be retired".into());
    }
    Ok(())
}

/// Whether a version of `k` is pending deletion with its date passed.
pub(crate) fn destruction_due(k: &Cmk, now: OffsetDateTime) -> bool {
    k.backing_keys.iter().any(|b| expired(b, now))
}

fn expired(b: &BackingKey, now: OffsetDateTime) -> bool {
    b.state == VersionState::PendingDeletion && b.deletion_date.is_some_and(|d| d <= now)
}

/// Destroys the material of `k`'s versions whose window ended; returns them
/// as (key, version, deletion date).
pub(crate) fn destroy_due(k: &mut Cmk, now: OffsetDateTime) -> Vec<(Uuid, u32, OffsetDateTime)> {
    let id = k.key_id;
    let mut done = Vec::new();
    for b in k.backing_keys.iter_mut().filter(|b| expired(b, now)) {
        b.material = None; // zeroized on drop
        b.state = VersionState::Destroyed;
        done.push((id, b.version, b.deletion_date.unwrap_or(now)));
    }
    done
}

/// `--version N` or `--version vN`.
pub fn parse_version(s: &str) -> std::result::Result<u32, String> {
    let digits = s.strip_prefix('v').unwrap_or(s);
    match digits.parse::<u32>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(format!(
            "'{s}' is not a backing-key version: write a number such as 2 (or v2)"
        )),
    }
}

impl Keyring {
    /// The non-current version `version` of `key`, for a state change.
    fn old_version(&self, key: &str, version: u32) -> Result<(Uuid, VersionState)> {
        let id = self.resolve(key)?;
        self.check_not_pending(&id)?;
        let k = self.data.find(&id).expect("resolved");
        let label = self.data.label(&id);
        let current = k.current().map_or(0, |b| b.version);
        let b = k.version(version).ok_or_else(|| {
            Error::Usage(format!(
                "{label} has no backing key v{version}: its versions are v1 to v{current} (see \
                 `envarc key rotations {id}`)"
            ))
        })?;
        if version == current {
            return Err(Error::Usage(format!(
                "v{version} is the current backing key of {label}: it wraps every new data key \
                 and cannot be retired. Rotate first (`envarc key rotate-on-demand {id}`), move \
                 what it wraps to the new version (`envarc rewrap` or `reencrypt` on each \
                 repository), then retire it"
            )));
        }
        Ok((id, b.state()))
    }

    fn set_version_state(
        &mut self,
        id: &Uuid,
        version: u32,
        state: VersionState,
        deletion_date: Option<OffsetDateTime>,
    ) {
        let data = self.data_mut();
        data.format = data.format.max(DATA_FORMAT_VERSION_STATES);
        let b = data
            .find_mut(id)
            .and_then(|k| k.backing_keys.iter_mut().find(|b| b.version == version))
            .expect("checked by old_version");
        b.state = state;
        b.deletion_date = deletion_date;
    }

    fn state_error(&self, id: &Uuid, version: u32, state: VersionState) -> Error {
        let label = self.data.label(id);
        Error::Key {
            message: match state {
                VersionState::PendingDeletion => format!(
                    "backing key v{version} of {label} is pending deletion; cancel that first \
                     with `envarc key cancel-version-deletion {id} --version {version}`"
                ),
                _ => format!(
                    "backing key v{version} of {label} was destroyed; nothing can bring it back"
                ),
            },
        }
    }

    /// Retires a backing-key version that is not the current one: from now
    /// on it unwraps nothing (the keyring refuses EDKs and blobs of it).
    pub fn retire_version(&mut self, key: &str, version: u32) -> Result<(Uuid, Change)> {
        let (id, state) = self.old_version(key, version)?;
        match state {
            VersionState::Retired => Ok((id, Change::Unchanged)),
            VersionState::Enabled => {
                self.set_version_state(&id, version, VersionState::Retired, None);
                Ok((id, Change::Changed))
            }
            s => Err(self.state_error(&id, version, s)),
        }
    }

    /// Undoes [`retire_version`](Self::retire_version): the version unwraps
    /// again.
    pub fn reinstate_version(&mut self, key: &str, version: u32) -> Result<(Uuid, Change)> {
        let (id, state) = self.old_version(key, version)?;
        match state {
            VersionState::Enabled => Ok((id, Change::Unchanged)),
            VersionState::Retired => {
                self.set_version_state(&id, version, VersionState::Enabled, None);
                Ok((id, Change::Changed))
            }
            s => Err(self.state_error(&id, version, s)),
        }
    }

    /// Schedules the destruction of a version's material after `window_days`
    /// (7..=30); until then it unwraps nothing. Returns the date.
    pub fn schedule_version_deletion(
        &mut self,
        key: &str,
        version: u32,
        window_days: u32,
    ) -> Result<(Uuid, OffsetDateTime)> {
        check_pending_window(window_days)?;
        let (id, state) = self.old_version(key, version)?;
        match state {
            VersionState::Enabled | VersionState::Retired => {}
            VersionState::PendingDeletion => {
                let date = self
                    .data
                    .find(&id)
                    .and_then(|k| k.version(version))
                    .and_then(|b| b.deletion_date);
                return Err(Error::Key {
                    message: format!(
                        "backing key v{version} of {} is already pending deletion (on {}); \
                         cancel it with `envarc key cancel-version-deletion {id} --version \
                         {version}`",
                        self.data.label(&id),
                        date.map(fmt_date).unwrap_or_default()
                    ),
                });
            }
            s => return Err(self.state_error(&id, version, s)),
        }
        let date = self.now() + Duration::days(window_days.into());
        self.set_version_state(&id, version, VersionState::PendingDeletion, Some(date));
        Ok((id, date))
    }

    /// Cancels a scheduled destruction; the version comes back Retired.
    pub fn cancel_version_deletion(&mut self, key: &str, version: u32) -> Result<Uuid> {
        let (id, state) = self.old_version(key, version)?;
        if state != VersionState::PendingDeletion {
            return Err(Error::Key {
                message: format!(
                    "backing key v{version} of {} is not pending deletion (it is {state})",
                    self.data.label(&id)
                ),
            });
        }
        self.set_version_state(&id, version, VersionState::Retired, None);
        Ok(id)
    }

    /// The versions of `key` (id, prefix or alias) that unwrap nothing any
    /// more: retired, pending deletion or destroyed, in ascending order.
    ///
    /// For repository code: a repository refuses what these versions wrapped
    /// anyway (the keyring will not unwrap it), and can show them beside the
    /// versions it retired itself (`stats`).
    pub fn retired_versions(&self, key: &str) -> Result<Vec<u32>> {
        let id = self.resolve(key)?;
        Ok(self.data.retired_versions(&id))
    }
}

impl super::KeyringData {
    pub(crate) fn retired_versions(&self, id: &Uuid) -> Vec<u32> {
        self.find(id).map_or_else(Vec::new, |k| {
            k.backing_keys
                .iter()
                .filter(|b| b.state() != VersionState::Enabled)
                .map(|b| b.version)
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keyring::{CreateKey, FixedClock};

    #[test]
    fn retire_reinstate_schedule_cancel_and_destroy() {
        let t0 = time::macros::datetime!(2030-01-01 0:00 UTC);
        let clock = Arc::new(FixedClock::new(t0));
        let mut kr = Keyring::in_memory(clock.clone());
        let id = kr.create_key(CreateKey::default()).unwrap().to_string();
        assert!(kr.retire_version(&id, 1).is_err(), "the current version");
        kr.rotate_on_demand(&id).unwrap();
        assert_eq!(kr.retire_version(&id, 1).unwrap().1, Change::Changed);
        assert_eq!(kr.retire_version(&id, 1).unwrap().1, Change::Unchanged);
        assert_eq!(kr.retired_versions(&id).unwrap(), [1]);
        assert_eq!(kr.data.format, DATA_FORMAT_VERSION_STATES);
        kr.reinstate_version(&id, 1).unwrap();
        assert!(kr.retired_versions(&id).unwrap().is_empty());
        assert!(kr.schedule_version_deletion(&id, 1, 6).is_err());
        let (_, date) = kr.schedule_version_deletion(&id, 1, 7).unwrap();
        assert!(kr.reinstate_version(&id, 1).is_err(), "cancel first");
        assert!(kr.schedule_version_deletion(&id, 1, 7).is_err());
        kr.cancel_version_deletion(&id, 1).unwrap();
        assert_eq!(kr.retired_versions(&id).unwrap(), [1], "back Retired");
        kr.schedule_version_deletion(&id, 1, 7).unwrap();
        assert!(kr.maintain(date - Duration::seconds(1)).is_empty());
        let rep = kr.maintain(date);
        assert_eq!(rep.destroyed_versions.len(), 1);
        let k = kr.get(&id).unwrap();
        assert_eq!(k.version(1).unwrap().state(), VersionState::Destroyed);
        assert!(!k.version(1).unwrap().has_material());
        assert!(kr.reinstate_version(&id, 1).is_err());
        assert!(kr.cancel_version_deletion(&id, 1).is_err());
        assert_eq!(
            kr.get(&id).unwrap().version(2).unwrap().state(),
            VersionState::Enabled
        );
        let mut bad = kr.get(&id).unwrap().version(2).unwrap().clone();
        bad.state = VersionState::Retired;
        assert!(check_state(&bad, true).is_err());
        assert_eq!(parse_version("v3"), Ok(3));
        assert!(parse_version("0").is_err() && parse_version("x").is_err());
    }
}
