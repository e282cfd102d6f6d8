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

/// A held lock; dropping it removes the lock file. A shared lock on a
/// repository that cannot be written has no file (see [`Repository::lock`]).
pub struct RepoLock {
    path: Option<PathBuf>,
    /// Holds the flock that tells others we are alive.
    _file: Option<File>,
}

impl Drop for RepoLock {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            let _ = fs::remove_file(p);
        }
    }
}

/// Whether a lock file could not be created because this process may not
/// write the repository at all (a read-only mount, no write permission).
fn cannot_write(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ReadOnlyFilesystem | io::ErrorKind::PermissionDenied
    )
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
        self.lock_with(kind, false, progress)
    }

    /// A shared lock for a command that only reads (verify, restore). Where
    /// the repository cannot be written at all (a read-only mount, no write
    /// permission), it goes on without a lock file, with a warning: nobody
    /// writes through such a mount, and locks others hold are still honoured.
    pub fn lock_for_reading(&self, progress: &dyn Progress) -> Result<RepoLock> {
        self.lock_with(LockKind::Shared, true, progress)
    }

    fn lock_with(
        &self,
        kind: LockKind,
        read_only_ok: bool,
        progress: &dyn Progress,
    ) -> Result<RepoLock> {
        let deadline = std::time::Instant::now() + self.lock_wait;
        let mut pause = std::time::Duration::from_millis(50);
        let mut told = false;
        loop {
            match self.try_lock(kind, read_only_ok, progress) {
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

    fn try_lock(
        &self,
        kind: LockKind,
        read_only_ok: bool,
        progress: &dyn Progress,
    ) -> Result<RepoLock> {
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
        let mut f = match AtomicFile::create(&path) {
            Ok(f) => f,
            // See `lock_for_reading`: conflicting locks are still honoured.
            Err(e) if read_only_ok && kind == LockKind::Shared && cannot_write(&e) => {
                progress.warn(&format!(
                    "cannot write a lock file in {} ({e}); reading the repository without one",
                    dir.display()
                ));
                return self.check_others(
                    kind,
                    &host,
                    None,
                    RepoLock {
                        path: None,
                        _file: None,
                    },
                    progress,
                );
            }
            Err(e) => return Err(io_err(e)),
        };
        // Lock before the file gets its name, so no one ever sees it unlocked.
        let held = f.file().try_clone().map_err(io_err)?;
        // Without flock support this fails, and others judge us by our pid.
        let _ = FileExt::try_lock_exclusive(&held);
        let json = serde_json::to_vec(&info).map_err(|e| Error::Other(e.to_string()))?;
        f.write_all(&json).map_err(io_err)?;
        f.commit().map_err(io_err)?;
        let lock = RepoLock {
            path: Some(path.clone()),
            _file: Some(held),
        };
        self.check_others(kind, &host, Some(&own_id), lock, progress)
    }

    /// Looks at every other lock: removes those of dead processes on this
    /// host (when `own` shows we can write), fails on a conflicting live one.
    fn check_others(
        &self,
        kind: LockKind,
        host: &str,
        own: Option<&str>,
        lock: RepoLock,
        progress: &dyn Progress,
    ) -> Result<RepoLock> {
        let dir = self.dir("locks");

        for name in super::read_dir_names(&dir)? {
            if Some(name.as_str()) == own || name.starts_with('.') {
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
                if own.is_none() {
                    continue; // a read-only reader cannot remove it, nor needs to
                }
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
