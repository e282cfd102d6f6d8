//! Locks on stores without flock (S3, SFTP): restic's model. The holder
//! creates its lock object and rewrites it every `refresh` (the `time` in it
//! moves on, and so does the object's modification time); a lock neither of
//! whose times moved for `stale_after` is stale, and another process may
//! remove it. A holder whose refreshes keep failing for `lost_after` (half of
//! `stale_after`, so that it notices well before anyone may judge it stale)
//! or whose lock object was removed by someone else has *lost* its lock:
//! [`super::HeldLock::check`] says so, and the operation must stop.
//!
//! What this asks of users: clocks of the hosts (and of the store, whose
//! modification times are compared) within a few minutes of each other, and
//! no process paused (suspended laptop, stopped container) for longer than
//! `stale_after` while it holds a lock.

use std::io;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::lock::{hostname, now_rfc3339, process_scope};
use super::{HeldLock, LockInfo, ObjectInfo, Storage};

/// How often locks are refreshed and when they count as stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockTiming {
    pub refresh: Duration,
    pub stale_after: Duration,
}

impl Default for LockTiming {
    /// restic's figures: refreshed every 5 minutes, stale after 30.
    fn default() -> Self {
        LockTiming {
            refresh: Duration::from_secs(5 * 60),
            stale_after: Duration::from_secs(30 * 60),
        }
    }
}

impl LockTiming {
    /// `stale_after` with a refresh six times as often (the default ratio).
    pub fn stale_after(stale_after: Duration) -> LockTiming {
        LockTiming {
            refresh: stale_after / 6,
            stale_after,
        }
    }

    /// After this long without a successful refresh the holder gives up.
    pub fn lost_after(&self) -> Duration {
        self.stale_after / 2
    }
}

/// What a refreshing lock needs from its store.
pub(crate) trait LockObjects: Send + Sync + 'static {
    /// Moves the modification time of lock object `name` on (rewriting it
    /// with `data` where the store cannot touch a time); fails with
    /// `NotFound` if it is gone, and does not bring a removed lock back
    /// where the store allows (SFTP sets the time of the existing file; S3
    /// rewrites it on condition of the ETag it just read).
    fn refresh(&self, name: &str, data: &[u8]) -> io::Result<()>;
    fn remove(&self, name: &str) -> io::Result<()>;
}

/// Whether the lock `info` in `object` is stale at `now`: its holder is a
/// process of this very host (same host name, boot and pid namespace) that
/// no longer runs, or neither its own time nor the object's modification
/// time moved for `stale_after`. A lock whose times cannot be read is live.
pub(crate) fn is_stale(
    object: &ObjectInfo,
    info: &LockInfo,
    timing: &LockTiming,
    now: SystemTime,
) -> bool {
    let here = info.host == hostname()
        && info.scope.is_some()
        && info.scope.as_deref() == process_scope().as_deref();
    if here && !std::path::Path::new(&format!("/proc/{}", info.pid)).exists() {
        return true;
    }
    let written =
        time::OffsetDateTime::parse(&info.time, &time::format_description::well_known::Rfc3339)
            .ok()
            .map(SystemTime::from);
    let last = match (written, object.modified) {
        (Some(a), Some(b)) => a.max(b),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => return false,
    };
    now.duration_since(last)
        .is_ok_and(|age| age > timing.stale_after)
}

/// A lock object kept alive by a refresh thread; dropping it stops the
/// thread and removes the object.
pub(crate) struct RefreshedLock {
    objects: Arc<dyn LockObjects>,
    name: String,
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    lost: Arc<Mutex<Option<String>>>,
}

impl RefreshedLock {
    /// Creates lock object `name` in `store` and starts refreshing it. If
    /// the refresher cannot start, the object is removed again: a lock that
    /// nobody refreshes would hold others off until it turns stale.
    pub(crate) fn create(
        store: &dyn Storage,
        objects: Arc<dyn LockObjects>,
        name: &str,
        data: &[u8],
        timing: &LockTiming,
    ) -> io::Result<Box<dyn HeldLock>> {
        store.create(name, data)?;
        let location = store.location();
        match RefreshedLock::start(objects.clone(), name, data, timing.clone(), location) {
            Ok(l) => Ok(Box::new(l)),
            Err(e) => {
                let _ = objects.remove(name);
                Err(e)
            }
        }
    }

    /// Starts refreshing `name` (already created, holding `data`).
    pub(crate) fn start(
        objects: Arc<dyn LockObjects>,
        name: &str,
        data: &[u8],
        timing: LockTiming,
        location: String,
    ) -> io::Result<RefreshedLock> {
        let mut info: LockInfo = serde_json::from_slice(data)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, format!("lock data: {e}")))?;
        let (stop, stopped) = mpsc::channel::<()>();
        let lost = Arc::new(Mutex::new(None));
        let (o, n, l) = (objects.clone(), name.to_string(), lost.clone());
        let thread = std::thread::Builder::new()
            .name("envarc-lock-refresh".into())
            .spawn(move || {
                let mut last_ok = Instant::now();
                let mut pause = timing.refresh;
                loop {
                    match stopped.recv_timeout(pause) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => return, // dropped: stop refreshing
                    }
                    info.time = now_rfc3339();
                    let result = serde_json::to_vec(&info)
                        .map_err(io::Error::other)
                        .and_then(|json| o.refresh(&n, &json));
                    match result {
                        Ok(()) => {
                            last_ok = Instant::now();
                            pause = timing.refresh;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {
                            *l.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                                "the lock {n} in {location} is gone: another process removed it \
                                 (`envarc unlock`, or a host that judged it stale)"
                            ));
                            return;
                        }
                        Err(e) if last_ok.elapsed() >= timing.lost_after() => {
                            *l.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                                "the lock {n} in {location} could not be refreshed for {} s \
                                 (last error: {e}); other hosts may soon judge it stale",
                                last_ok.elapsed().as_secs()
                            ));
                            return;
                        }
                        // Try again sooner than a regular refresh.
                        Err(_) => pause = (timing.refresh / 5).max(Duration::from_millis(100)),
                    }
                }
            })?;
        Ok(RefreshedLock {
            objects,
            name: name.to_string(),
            stop: Some(stop),
            thread: Some(thread),
            lost,
        })
    }
}

impl HeldLock for RefreshedLock {
    fn check(&self) -> io::Result<()> {
        match &*self.lost.lock().unwrap_or_else(|p| p.into_inner()) {
            None => Ok(()),
            Some(why) => Err(io::Error::other(why.clone())),
        }
    }
}

impl Drop for RefreshedLock {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        // A lock we lost may belong to nobody now, or still be ours: it
        // is named by us alone, so removing it is right either way.
        let _ = self.objects.remove(&self.name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::storage::LockKind;

    fn info(time: &str, host: &str, scope: Option<String>, pid: u32) -> LockInfo {
        LockInfo {
            kind: LockKind::Shared,
            pid,
            host: host.into(),
            time: time.into(),
            scope,
        }
    }

    fn at(s: &str) -> SystemTime {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
            .unwrap()
            .into()
    }

    #[test]
    fn staleness_follows_the_later_of_both_times() {
        let t = LockTiming::default();
        let obj = |m: Option<&str>| ObjectInfo {
            name: "locks/aa".into(),
            size: 1,
            modified: m.map(at),
        };
        let i = info("2024-01-01T10:00:00Z", "elsewhere", None, 1);
        let now = at("2024-01-01T10:29:00Z");
        assert!(!is_stale(&obj(None), &i, &t, now));
        assert!(is_stale(&obj(None), &i, &t, at("2024-01-01T10:31:00Z")));
        // The store saw a refresh later than the time inside: live.
        let later = obj(Some("2024-01-01T10:20:00Z"));
        assert!(!is_stale(&later, &i, &t, at("2024-01-01T10:31:00Z")));
        assert!(is_stale(&later, &i, &t, at("2024-01-01T10:51:00Z")));
        // A clock behind ours (times in the future) is never stale.
        assert!(!is_stale(&obj(None), &i, &t, at("2023-12-31T00:00:00Z")));
        // Unreadable times: cannot judge, so live.
        let bad = info("yesterday", "elsewhere", None, 1);
        assert!(!is_stale(&obj(None), &bad, &t, at("2030-01-01T00:00:00Z")));
    }

    #[test]
    fn a_dead_pid_counts_only_in_our_own_pid_namespace() {
        let t = LockTiming::default();
        let obj = ObjectInfo {
            name: "locks/aa".into(),
            size: 1,
            modified: None,
        };
        let fresh = now_rfc3339();
        let now = SystemTime::now();
        let dead = u32::MAX - 1; // no such pid
        let ours = info(&fresh, &hostname(), process_scope(), dead);
        assert!(is_stale(&obj, &ours, &t, now));
        // Same host name, other container (or no scope recorded): by time only.
        let other_ns = info(&fresh, &hostname(), Some("other".into()), dead);
        assert!(!is_stale(&obj, &other_ns, &t, now));
        let unscoped = info(&fresh, &hostname(), None, dead);
        assert!(!is_stale(&obj, &unscoped, &t, now));
        let alive = info(&fresh, &hostname(), process_scope(), std::process::id());
        assert!(!is_stale(&obj, &alive, &t, now));
    }
}
