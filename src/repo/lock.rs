//! Repository locks: one file per holder under `locks/<id>`, holding JSON
//! (kind, pid, host, time). Backups, restores and verifies take shared locks,
//! which coexist; prune takes an exclusive one, which excludes every other.
//!
//! Acquiring: write our lock file, then look at the others; on a conflict we
//! remove ours and fail. Two processes racing both see each other, so at worst
//! both fail, never both succeed.
//!
//! Liveness: a holder keeps an `flock` on its lock file for as long as it
//! runs; the kernel drops it when the process dies, SIGKILL included. A lock
//! from this host whose flock can be taken is stale and is removed with a
//! warning (where the file system has no flock, the holder's pid is checked
//! instead). Locks from other hosts are never judged stale automatically.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use serde::{Deserialize, Serialize};

use crate::fsutil::AtomicFile;
use crate::progress::Progress;
use crate::{Error, Result};

use super::{Id, Repository, Time};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockKind {
    Shared,
    Exclusive,
}

#[derive(Serialize, Deserialize)]
struct LockInfo {
    kind: LockKind,
    pid: u32,
    host: String,
    time: String,
}

/// A held lock; dropping it removes the lock file.
pub struct RepoLock {
    path: PathBuf,
    /// Holds the flock that tells others we are alive.
    _file: File,
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// This machine's host name (for locks and snapshots).
pub fn hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "localhost".into())
}

/// Whether the holder of a lock from this host is gone.
fn holder_is_dead(path: &Path, info: &LockInfo) -> bool {
    match File::open(path).map(|f| FileExt::try_lock_exclusive(&f)) {
        // We got the flock: nobody holds it. (Dropping `f` releases it.)
        Ok(Ok(true)) => true,
        Ok(Ok(false)) => false,
        // No flock here (or the file vanished): fall back to the pid.
        _ => !Path::new(&format!("/proc/{}", info.pid)).exists(),
    }
}

fn describe(info: &LockInfo) -> String {
    format!(
        "{} lock of pid {} on {} since {}",
        match info.kind {
            LockKind::Shared => "a shared",
            LockKind::Exclusive => "an exclusive",
        },
        info.pid,
        info.host,
        info.time
    )
}

impl Repository {
    /// Takes a lock of `kind`, removing stale locks of dead processes on this
    /// host (each reported through `progress.warn`). Fails with
    /// [`Error::Locked`] when a live conflicting lock exists, after retrying
    /// for as long as [`Repository::set_lock_wait`] allows (not at all by
    /// default).
    pub fn lock(&self, kind: LockKind, progress: &dyn Progress) -> Result<RepoLock> {
        let deadline = std::time::Instant::now() + self.lock_wait;
        let mut pause = std::time::Duration::from_millis(50);
        let mut told = false;
        loop {
            match self.try_lock(kind, progress) {
                Err(Error::Locked(why)) if std::time::Instant::now() < deadline => {
                    if !told {
                        progress.warn(&format!(
                            "{why}; waiting up to {} s",
                            self.lock_wait.as_secs()
                        ));
                        told = true;
                    }
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    std::thread::sleep(pause.min(left));
                    pause = (pause * 2).min(std::time::Duration::from_secs(2));
                }
                r => return r,
            }
        }
    }

    fn try_lock(&self, kind: LockKind, progress: &dyn Progress) -> Result<RepoLock> {
        let host = hostname();
        let dir = self.dir("locks");
        let own_id = Id::random().to_hex();
        let path = dir.join(&own_id);
        let io_err = |e| Error::io(format!("writing the lock file {}", path.display()), e);
        let info = LockInfo {
            kind,
            pid: std::process::id(),
            host: host.clone(),
            time: Time::now().to_rfc3339(),
        };
        let mut f = AtomicFile::create(&path).map_err(io_err)?;
        // Lock before the file gets its name, so no one ever sees it unlocked.
        let held = f.file().try_clone().map_err(io_err)?;
        // Without flock support this fails, and others judge us by our pid.
        let _ = FileExt::try_lock_exclusive(&held);
        let json = serde_json::to_vec(&info).map_err(|e| Error::Other(e.to_string()))?;
        f.write_all(&json).map_err(io_err)?;
        f.commit().map_err(io_err)?;
        let lock = RepoLock {
            path: path.clone(),
            _file: held,
        };

        for name in super::read_dir_names(&dir)? {
            if name == own_id || name.starts_with('.') {
                continue;
            }
            let other = dir.join(&name);
            let other_info: LockInfo = match fs::read(&other) {
                Ok(b) => match serde_json::from_slice(&b) {
                    Ok(i) => i,
                    Err(_) => {
                        progress.warn(&format!(
                            "ignoring {}: not an envarc lock file",
                            other.display()
                        ));
                        continue;
                    }
                },
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(format!("reading {}", other.display()), e)),
            };
            if other_info.host == host && holder_is_dead(&other, &other_info) {
                match fs::remove_file(&other) {
                    Ok(()) => progress.warn(&format!(
                        "removed a stale lock: {} (that process no longer runs)",
                        describe(&other_info)
                    )),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(Error::io(
                            format!("removing the stale lock {}", other.display()),
                            e,
                        ))
                    }
                }
                continue;
            }
            if kind == LockKind::Exclusive || other_info.kind == LockKind::Exclusive {
                drop(lock);
                let remedy = if other_info.host == host {
                    "wait for it to finish".to_string()
                } else {
                    format!(
                        "wait for it to finish; if that process is gone, delete {}",
                        other.display()
                    )
                };
                return Err(Error::Locked(format!(
                    "the repository is locked: {}; {remedy}",
                    describe(&other_info)
                )));
            }
        }
        Ok(lock)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::RawAesKey;
    use crate::repo::{InitOptions, KeyRef};
    use std::sync::Mutex;

    fn repo(dir: &Path) -> Repository {
        let p = RawAesKey::new("envarc", "k", &[3u8; 32]).unwrap();
        let key = KeyRef {
            provider: "raw-aes".into(),
            key: "k".into(),
            params: Default::default(),
        };
        Repository::init(&dir.join("r"), key, Box::new(p), &InitOptions::default()).unwrap()
    }

    #[derive(Default)]
    struct Warnings(Mutex<Vec<String>>);
    impl Progress for Warnings {
        fn warn(&self, m: &str) {
            self.0.lock().unwrap().push(m.into());
        }
    }

    fn fake_lock(repo: &Repository, kind: LockKind, pid: u32, host: &str) -> PathBuf {
        let path = repo.dir("locks").join(Id::random().to_hex());
        let info = LockInfo {
            kind,
            pid,
            host: host.into(),
            time: "2020-01-01T00:00:00Z".into(),
        };
        fs::write(&path, serde_json::to_vec(&info).unwrap()).unwrap();
        path
    }

    #[test]
    fn shared_locks_coexist_and_exclude_an_exclusive_one() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        let a = r.lock(LockKind::Shared, &Warnings::default()).unwrap();
        let b = r.lock(LockKind::Shared, &Warnings::default()).unwrap();
        let e = r.lock(LockKind::Exclusive, &Warnings::default());
        assert!(matches!(e, Err(Error::Locked(m)) if m.contains("shared lock of pid")));
        drop((a, b));
        let e = r.lock(LockKind::Exclusive, &Warnings::default()).unwrap();
        assert!(matches!(
            r.lock(LockKind::Shared, &Warnings::default()),
            Err(Error::Locked(m)) if m.contains("exclusive")
        ));
        drop(e);
        assert!(fs::read_dir(r.dir("locks")).unwrap().next().is_none());
    }

    #[test]
    fn a_dead_holder_on_this_host_is_stale_another_host_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let r = repo(dir.path());
        // Nobody holds this file's flock: its holder is gone.
        let stale = fake_lock(&r, LockKind::Exclusive, std::process::id(), &hostname());
        let w = Warnings::default();
        let l = r.lock(LockKind::Exclusive, &w).unwrap();
        assert!(!stale.exists());
        assert!(w.0.lock().unwrap()[0].contains("removed a stale lock"));
        drop(l);
        // Another host's lock cannot be judged: it blocks, with a way out.
        let remote = fake_lock(&r, LockKind::Shared, 1, "elsewhere");
        match r.lock(LockKind::Exclusive, &Warnings::default()) {
            Err(Error::Locked(m)) => assert!(m.contains("elsewhere") && m.contains("delete")),
            other => panic!("expected a lock conflict, got {:?}", other.map(|_| ())),
        }
        assert!(remote.exists());
    }
}
