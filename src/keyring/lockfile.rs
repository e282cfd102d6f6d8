//! The keyring's sidecar lock `PATH.lock` (flock: shared for readers,
//! exclusive for writers), and the clean-up of a first write that failed.
//!
//! A lock file may be removed while others wait on it (a failed `key create`
//! takes back what it made). A waiter that then gets the lock holds it on an
//! unlinked file, which a newcomer no longer sees; so after locking, the
//! holder checks that the path still names the file it locked, and starts
//! over when it does not.

use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Holds a lock on the sidecar `PATH.lock`; closing the file releases it.
pub(crate) struct LockGuard(#[allow(dead_code)] Option<File>);

/// `PATH.lock`.
pub(crate) fn lock_path(keyring: &Path) -> PathBuf {
    let mut p = keyring.to_path_buf().into_os_string();
    p.push(".lock");
    PathBuf::from(p)
}

/// Opens the lock file. Writers create it. Readers do not, unless the
/// keyring exists without one (a copied keyring): with neither, there is
/// nothing to read and nobody writing, and a reader must leave no file behind.
/// `None`: a reader that cannot open it (read-only folder) goes without.
fn open(lp: &Path, keyring: &Path, exclusive: bool) -> Result<Option<File>> {
    let rw = |create: bool| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .mode(0o600)
            .open(lp)
    };
    if exclusive {
        return rw(true)
            .map(Some)
            .map_err(|e| Error::io(format!("opening the lock file {}", lp.display()), e));
    }
    let file = rw(false).or_else(|e| match e.kind() {
        ErrorKind::NotFound if keyring.exists() => rw(true),
        ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem => File::open(lp),
        _ => Err(e),
    });
    Ok(file.ok())
}

/// Whether `lp` still names the file `f` has open.
fn still_named(f: &File, lp: &Path) -> bool {
    match (f.metadata(), fs::metadata(lp)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Takes the lock on `keyring`'s lock file, waiting up to `timeout`.
pub(crate) fn acquire(keyring: &Path, exclusive: bool, timeout: Duration) -> Result<LockGuard> {
    use fs4::fs_std::FileExt;
    let lp = lock_path(keyring);
    let start = Instant::now();
    'reopen: loop {
        let Some(file) = open(&lp, keyring, exclusive)? else {
            return Ok(LockGuard(None));
        };
        loop {
            let got = if exclusive {
                FileExt::try_lock_exclusive(&file)
            } else {
                FileExt::try_lock_shared(&file)
            }
            .map_err(|e| Error::io(format!("locking {}", lp.display()), e))?;
            if got {
                if still_named(&file, &lp) {
                    return Ok(LockGuard(Some(file)));
                }
                continue 'reopen;
            }
            if start.elapsed() >= timeout {
                return Err(Error::Locked(format!(
                    "the keyring {} is locked by another envarc process (waited {} s); try again \
                     when it has finished",
                    keyring.display(),
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The folders a first write of `keyring` is about to create (deepest first),
/// so that a failed `key create` can take them back.
pub(crate) struct FirstWrite {
    keyring: PathBuf,
    new_dirs: Vec<PathBuf>,
}

impl FirstWrite {
    pub fn before(keyring: &Path) -> FirstWrite {
        let new_dirs = keyring
            .ancestors()
            .skip(1)
            .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
            .map(Path::to_path_buf)
            .collect();
        FirstWrite {
            keyring: keyring.to_path_buf(),
            new_dirs,
        }
    }

    /// After a failure, while the exclusive lock is still held: if no keyring
    /// was written, removes the lock file and the folders made for it (only
    /// empty ones: anything else put there meanwhile stays).
    pub fn undo(&self, _held: &LockGuard) {
        if self.keyring.exists() {
            return;
        }
        let _ = fs::remove_file(lock_path(&self.keyring));
        for d in &self.new_dirs {
            if fs::remove_dir(d).is_err() {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiter_on_a_removed_lock_file_locks_the_file_that_replaced_it() {
        let d = tempfile::tempdir().unwrap();
        let kr = d.path().join("kr");
        let held = acquire(&kr, true, Duration::from_secs(5)).unwrap();
        let waiter = {
            let kr = kr.clone();
            std::thread::spawn(move || acquire(&kr, true, Duration::from_secs(5)).unwrap())
        };
        std::thread::sleep(Duration::from_millis(100));
        // What a failed first write does: remove the lock file, then unlock.
        FirstWrite::before(&kr).undo(&held);
        drop(held);
        let got = waiter.join().unwrap();
        let file = got.0.as_ref().expect("a lock file");
        assert!(still_named(file, &lock_path(&kr)), "it locked the new file");
        let e = acquire(&kr, true, Duration::from_millis(50))
            .err()
            .expect("held");
        assert_eq!(e.exit_code(), crate::error::exit::LOCKED);
        drop(got);
        assert!(acquire(&kr, false, Duration::from_millis(50)).is_ok());
    }
}
