//! Repository locks over any [`Storage`]: one object per holder under
//! `locks/<random hex>`, holding JSON (kind, pid, host, time). Backups,
//! restores and verifies take shared locks, which coexist; prune and the
//! other rewriters take an exclusive one, which excludes every other.
//!
//! Acquiring: create our lock object, then list the others; on a conflict we
//! remove ours and fail. Two processes racing both see each other, so at worst
//! both fail, never both succeed. (On an object store this needs a listing
//! that shows an object once its PUT returned: S3 and SeaweedFS give that.)
//!
//! Liveness is the store's business ([`Storage::create_lock`],
//! [`Storage::lock_is_stale`]): a stale lock is removed with a warning; a
//! live one or one that cannot be judged blocks, with the way out in the
//! error.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::{HeldLock, ObjectInfo, Storage};
use crate::progress::Progress;
use crate::{Error, Result};

/// Folder of the lock objects.
pub const LOCKS: &str = "locks/";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    Shared,
    Exclusive,
}

/// What a lock object holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    pub kind: LockKind,
    pub pid: u32,
    pub host: String,
    /// RFC 3339, UTC: when the lock was taken (or last refreshed, on stores
    /// whose locks are refreshed).
    pub time: String,
    /// The holder's boot and pid namespace ([`process_scope`]): a pid can
    /// be judged only by a process that shares both (two containers may
    /// share a host name, never a pid namespace). Absent in older locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl LockInfo {
    /// "an exclusive lock of pid P on HOST since TIME".
    pub fn describe(&self) -> String {
        format!(
            "{} lock of pid {} on {} since {}",
            match self.kind {
                LockKind::Shared => "a shared",
                LockKind::Exclusive => "an exclusive",
            },
            self.pid,
            self.host,
            self.time
        )
    }
}

/// A held lock; dropping it removes the lock object. A shared lock on a
/// repository that cannot be written holds no object (see [`acquire`]).
pub struct RepoLock {
    held: Option<Box<dyn HeldLock>>,
}

impl RepoLock {
    /// Fails once the lock can no longer be trusted (on a remote store: its
    /// refresh failed for too long, or another process removed it). Long
    /// operations call it between steps, and before they write what makes
    /// their work visible (a snapshot, a prune's deletions), and stop.
    pub fn check(&self) -> Result<()> {
        match &self.held {
            Some(h) => h.check().map_err(|e| {
                Error::Locked(format!(
                    "{e}; stopped, so as not to work without the repository lock: run the \
                     command again"
                ))
            }),
            None => Ok(()),
        }
    }
}

/// The holder's boot id and pid namespace, `BOOT_ID/pid:[INODE]`, when
/// the system tells them (Linux); `None` elsewhere.
pub fn process_scope() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    Some(format!("{}/{}", boot.trim(), ns.display()))
}

/// This machine's host name (for locks and snapshots).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Whether a lock object could not be created because this process may not
/// write the repository at all (a read-only mount, no write permission).
fn cannot_write(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied
    )
}

/// Takes a lock of `kind`, removing stale locks (each reported through
/// `progress.warn`). Fails with [`Error::Locked`] when a live conflicting
/// lock exists, after retrying for up to `wait`. With `read_only_ok`, a
/// shared lock on a store this process cannot write goes on without a lock
/// object, with a warning: nobody writes through such a mount, and locks
/// others hold are still honoured.
pub fn acquire(
    storage: &dyn Storage,
    kind: LockKind,
    wait: Duration,
    read_only_ok: bool,
    progress: &dyn Progress,
) -> Result<RepoLock> {
    let deadline = Instant::now() + wait;
    let mut pause = Duration::from_millis(50);
    let mut told = false;
    loop {
        match try_acquire(storage, kind, read_only_ok, progress) {
            Err(Error::Locked(why)) if Instant::now() < deadline => {
                if !told {
                    progress.warn(&format!("{why}; waiting up to {} s", wait.as_secs()));
                    told = true;
                }
                let left = deadline.saturating_duration_since(Instant::now());
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            r => return r,
        }
    }
}

fn try_acquire(
    storage: &dyn Storage,
    kind: LockKind,
    read_only_ok: bool,
    progress: &dyn Progress,
) -> Result<RepoLock> {
    let own = format!("{LOCKS}{}", crate::repo::Id::random().to_hex());
    let info = LockInfo {
        kind,
        pid: std::process::id(),
        host: hostname(),
        time: now_rfc3339(),
        scope: process_scope(),
    };
    let json = serde_json::to_vec(&info).map_err(|e| Error::Other(e.to_string()))?;
    let held = match storage.create_lock(&own, &json) {
        Ok(h) => Some(h),
        Err(e) if read_only_ok && kind == LockKind::Shared && cannot_write(&e) => {
            progress.warn(&format!(
                "cannot write a lock in {} ({e}); reading the repository without one",
                storage.location()
            ));
            None
        }
        Err(e) => {
            return Err(Error::io(
                format!("writing the lock {own} in {}", storage.location()),
                e,
            ))
        }
    };
    let can_remove = held.is_some();
    let lock = RepoLock { held };
    check_others(storage, kind, &own, can_remove, progress)?;
    Ok(lock)
}

/// Reads the lock objects other than `own`; unreadable or foreign ones are
/// skipped with a warning (they are not envarc's to judge).
pub fn list_locks(
    storage: &dyn Storage,
    own: Option<&str>,
    progress: &dyn Progress,
) -> Result<Vec<(ObjectInfo, LockInfo)>> {
    let listed = storage
        .list(LOCKS)
        .map_err(|e| Error::io(format!("listing the locks of {}", storage.location()), e))?;
    let mut out = Vec::new();
    for object in listed {
        if Some(object.name.as_str()) == own {
            continue;
        }
        let bytes = match storage.read(&object.name) {
            Ok(b) => b,
            // Released between the listing and the read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(format!("reading the lock {}", object.name), e)),
        };
        match serde_json::from_slice::<LockInfo>(&bytes) {
            Ok(info) => out.push((object, info)),
            Err(_) => progress.warn(&format!(
                "ignoring {} in {}: not an envarc lock",
                object.name,
                storage.location()
            )),
        }
    }
    Ok(out)
}

/// `envarc unlock`: removes the stale locks (as [`acquire`] would), or with
/// `all` every lock, live or not (for holders the user knows are gone).
/// Returns the removed locks and those left (live, so kept).
pub fn remove_locks(
    storage: &dyn Storage,
    all: bool,
    progress: &dyn Progress,
) -> Result<(Vec<LockInfo>, Vec<LockInfo>)> {
    let (mut removed, mut kept) = (Vec::new(), Vec::new());
    for (object, info) in list_locks(storage, None, progress)? {
        if !all && !storage.lock_is_stale(&object, &info) {
            kept.push(info);
            continue;
        }
        match storage.delete(&object.name) {
            Ok(()) => removed.push(info),
            // Its holder released it meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(Error::io(
                    format!(
                        "removing the lock {} in {}",
                        object.name,
                        storage.location()
                    ),
                    e,
                ))
            }
        }
    }
    Ok((removed, kept))
}

/// Removes stale locks (when `can_remove`), fails on a conflicting live one.
fn check_others(
    storage: &dyn Storage,
    kind: LockKind,
    own: &str,
    can_remove: bool,
    progress: &dyn Progress,
) -> Result<()> {
    for (object, other) in list_locks(storage, Some(own), progress)? {
        if storage.lock_is_stale(&object, &other) {
            if !can_remove {
                continue; // a read-only reader cannot remove it, nor needs to
            }
            storage
                .delete(&object.name)
                .map_err(|e| Error::io(format!("removing the stale lock {}", object.name), e))?;
            progress.warn(&format!(
                "removed a stale lock: {} (that process no longer runs)",
                other.describe()
            ));
            continue;
        }
        if kind == LockKind::Exclusive || other.kind == LockKind::Exclusive {
            let remedy = if other.host == hostname() {
                "wait for it to finish".to_string()
            } else {
                format!(
                    "wait for it to finish; if that process is gone, remove the lock with \
                     `envarc unlock` (it is {} in {})",
                    object.name,
                    storage.location()
                )
            };
            return Err(Error::Locked(format!(
                "the repository is locked: {}; {remedy}",
                other.describe()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::storage::LocalStorage;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Warnings(Mutex<Vec<String>>);
    impl Progress for Warnings {
        fn warn(&self, m: &str) {
            self.0.lock().unwrap().push(m.into());
        }
    }

    fn fake_lock(s: &LocalStorage, kind: LockKind, pid: u32, host: &str) -> String {
        let name = format!("{LOCKS}{}", crate::repo::Id::random().to_hex());
        let info = LockInfo {
            kind,
            pid,
            host: host.into(),
            time: "2020-01-01T00:00:00Z".into(),
            scope: None,
        };
        s.create(&name, &serde_json::to_vec(&info).unwrap())
            .unwrap();
        name
    }

    fn take(s: &LocalStorage, kind: LockKind, w: &Warnings) -> Result<RepoLock> {
        acquire(s, kind, Duration::ZERO, false, w)
    }

    #[test]
    fn shared_locks_coexist_and_exclude_an_exclusive_one() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(d.path());
        let w = Warnings::default();
        let a = take(&s, LockKind::Shared, &w).unwrap();
        let b = take(&s, LockKind::Shared, &w).unwrap();
        let e = take(&s, LockKind::Exclusive, &w);
        assert!(matches!(e, Err(Error::Locked(m)) if m.contains("shared lock of pid")));
        drop((a, b));
        let e = take(&s, LockKind::Exclusive, &w).unwrap();
        assert!(matches!(
            take(&s, LockKind::Shared, &w),
            Err(Error::Locked(m)) if m.contains("exclusive")
        ));
        drop(e);
        assert!(s.list(LOCKS).unwrap().is_empty());
    }

    #[test]
    fn a_dead_holder_on_this_host_is_stale_another_host_is_not() {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(d.path());
        // Nobody holds this file's flock: its holder is gone.
        let stale = fake_lock(&s, LockKind::Exclusive, std::process::id(), &hostname());
        let w = Warnings::default();
        let l = take(&s, LockKind::Exclusive, &w).unwrap();
        assert!(s.stat(&stale).is_err());
        assert!(w.0.lock().unwrap()[0].contains("removed a stale lock"));
        drop(l);
        // Another host's lock cannot be judged: it blocks, with a way out.
        let remote = fake_lock(&s, LockKind::Shared, 1, "elsewhere");
        match take(&s, LockKind::Exclusive, &Warnings::default()) {
            Err(Error::Locked(m)) => assert!(m.contains("elsewhere") && m.contains("unlock")),
            other => panic!("expected a lock conflict, got {:?}", other.map(|_| ())),
        }
        assert!(s.stat(&remote).is_ok());
    }
}
