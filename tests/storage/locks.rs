//! Locks on every store: shared locks coexist, an exclusive one excludes,
//! across two store handles standing for two hosts; on remote stores a
//! refreshed lock stays live past the stale timeout, an unrefreshed one of
//! another host goes stale, and a holder whose lock was removed notices.

use std::sync::Mutex;
use std::time::Duration;

use envarc::progress::Progress;
use envarc::repo::storage::lock::{acquire, list_locks, LOCKS};
use envarc::repo::storage::{LockInfo, LockKind, Storage};
use envarc::Error;

use crate::{each_target, names, test_options};

#[derive(Default)]
struct Warnings(Mutex<Vec<String>>);
impl Progress for Warnings {
    fn warn(&self, m: &str) {
        self.0.lock().unwrap().push(m.into());
    }
}

fn take(s: &dyn Storage, kind: LockKind) -> envarc::Result<envarc::repo::storage::RepoLock> {
    acquire(s, kind, Duration::ZERO, false, &Warnings::default())
}

/// A lock object as another host's envarc writes it, `age` old.
fn foreign_lock(s: &dyn Storage, kind: LockKind, age: Duration) -> String {
    let t = time::OffsetDateTime::now_utc() - age;
    let info = LockInfo {
        kind,
        pid: 4242,
        host: "other-host".into(),
        time: t
            .replace_nanosecond(0)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap(),
        scope: None,
    };
    let name = format!("{LOCKS}{:064x}", rand::random::<u128>());
    s.create(&name, &serde_json::to_vec(&info).unwrap())
        .unwrap();
    name
}

#[test]
fn shared_and_exclusive_locks_across_two_hosts() {
    each_target(|t| {
        let (a, b) = (t.open("locks"), t.open("locks"));
        let sa = take(&*a, LockKind::Shared).unwrap();
        let sb = take(&*b, LockKind::Shared).unwrap();
        match take(&*b, LockKind::Exclusive) {
            Err(Error::Locked(m)) => assert!(m.contains("shared lock"), "{}: {m}", t.label),
            r => panic!("{}: exclusive beside shared: {:?}", t.label, r.map(|_| ())),
        }
        drop((sa, sb));
        assert!(
            names(&*a, LOCKS).is_empty(),
            "{}: released locks are gone",
            t.label
        );
        let e = take(&*a, LockKind::Exclusive).unwrap();
        let r = take(&*b, LockKind::Shared);
        assert!(matches!(r, Err(Error::Locked(_))), "{}", t.label);
        e.check().unwrap();
        drop(e);
        take(&*b, LockKind::Shared).unwrap();
    });
}

#[test]
fn another_hosts_lock_blocks_until_stale() {
    each_target(|t| {
        let s = t.open("stale");
        let fresh = foreign_lock(&*s, LockKind::Exclusive, Duration::ZERO);
        match take(&*s, LockKind::Shared) {
            Err(Error::Locked(m)) => {
                assert!(m.contains("other-host") && m.contains("unlock"), "{m}")
            }
            r => panic!(
                "{}: a live foreign lock was ignored: {:?}",
                t.label,
                r.map(|_| ())
            ),
        }
        s.delete(&fresh).unwrap();
        if !t.remote {
            return; // a folder never judges another host's lock stale
        }
        // Older than stale_after (3 s in these tests), by both its own time
        // and the store's modification time once that has aged too.
        let old = foreign_lock(&*s, LockKind::Exclusive, Duration::from_secs(3600));
        assert!(
            take(&*s, LockKind::Shared).is_err(),
            "{}: the object itself is new",
            t.label
        );
        std::thread::sleep(Duration::from_millis(3500));
        let w = Warnings::default();
        let l = acquire(&*s, LockKind::Shared, Duration::ZERO, false, &w).unwrap();
        assert!(
            w.0.lock()
                .unwrap()
                .iter()
                .any(|m| m.contains("removed a stale lock")),
            "{}",
            t.label
        );
        assert!(s.stat(&old).is_err(), "{}", t.label);
        drop(l);
    });
}

#[test]
fn a_refreshed_lock_stays_live_and_a_removed_one_is_lost() {
    each_target(|t| {
        if !t.remote {
            return;
        }
        let (a, b) = (t.open("refresh"), t.open("refresh"));
        let held = take(&*a, LockKind::Exclusive).unwrap();
        // Twice the stale timeout: only refreshing keeps it live.
        std::thread::sleep(2 * test_options().lock.stale_after);
        let locks = list_locks(&*b, None, &Warnings::default()).unwrap();
        assert_eq!(locks.len(), 1, "{}", t.label);
        let (obj, info) = &locks[0];
        // Refreshed: the time inside (S3 rewrites it) or the object's own
        // modification time (SFTP touches it) is recent.
        let inside: std::time::SystemTime =
            time::OffsetDateTime::parse(&info.time, &time::format_description::well_known::Rfc3339)
                .unwrap()
                .into();
        let last = obj.modified.map_or(inside, |m| m.max(inside));
        let age = last.elapsed().unwrap_or_default();
        assert!(
            age < Duration::from_secs(3),
            "{}: lock not refreshed ({age:?})",
            t.label
        );
        assert!(!b.lock_is_stale(obj, info), "{}", t.label);
        assert!(
            matches!(take(&*b, LockKind::Shared), Err(Error::Locked(_))),
            "{}",
            t.label
        );
        held.check().unwrap();
        // Someone removes it (`envarc unlock` elsewhere): the holder notices
        // at its next refresh and must stop.
        b.delete(&obj.name).unwrap();
        // At its next refresh: a few refresh periods, or longer while the
        // server is slow to answer (moto under the other tests' load).
        // Removed once: a refresh under way when it went (its existence
        // check before, its write after) must not put it back, which on S3
        // the write's `If-Match` on the ETag just read makes sure of.
        let until = std::time::Instant::now() + Duration::from_secs(30);
        std::thread::sleep(3 * test_options().lock.refresh);
        while held.check().is_ok() && std::time::Instant::now() < until {
            std::thread::sleep(test_options().lock.refresh);
        }
        match held.check() {
            Err(Error::Locked(m)) => assert!(
                m.contains("gone") && m.contains("run the command again"),
                "{m}"
            ),
            r => panic!("{}: a removed lock was not noticed: {r:?}", t.label),
        }
        assert!(
            names(&*a, LOCKS).is_empty(),
            "{}: a lost lock is not written back",
            t.label
        );
        drop(held);
    });
}
