//! The storage seam: the only way the repository touches its bytes.
//!
//! A repository is a set of named objects (`config`, `data/ab/<hex>`,
//! `index/<hex>`, `snapshots/<hex>`, `locks/<hex>`); names are relative,
//! `/`-separated, ASCII. Every store offers the same small set of operations,
//! with the guarantees object stores can give:
//!
//! - an object appears only complete, and is durable when `commit`/`create`
//!   returns (a local folder: temporary file, fsync, rename, fsync of the
//!   folder; S3: a single PUT or a completed multipart upload);
//! - objects are created, never overwritten: [`Storage::create`] fails with
//!   [`io::ErrorKind::AlreadyExists`] where the store can tell (a local folder
//!   always; S3 with `If-None-Match: *`). Only the config is ever replaced,
//!   and only by [`Storage::replace`], under an exclusive lock;
//! - deleting an object that is already gone succeeds (deletes are retried);
//! - errors are `io::Error`s whose kind says what happened (`NotFound`,
//!   `AlreadyExists`, `PermissionDenied`, `TimedOut`, …) and whose text names
//!   the object and the store, never a credential.
//!
//! Locks are part of the seam because liveness is a property of the store: a
//! local folder proves a holder alive with `flock`, an object store with a
//! lock object that its holder refreshes (see [`lock`]).
//!
//! Implementations: [`local::LocalStorage`] (a folder), [`s3::S3Storage`]
//! and [`sftp::SftpStorage`] (feature `remote`, on by default), chosen from
//! the repository location by [`open`] (see [`url`]).

pub mod local;
pub mod lock;
// Used by the remote stores only; its timing type is public either way.
#[cfg_attr(not(feature = "remote"), allow(dead_code))]
pub(crate) mod refresh_lock;
pub mod retry;
#[cfg(feature = "remote")]
mod runtime;
#[cfg(feature = "remote")]
pub mod s3;
#[cfg(feature = "remote")]
mod s3_error;
#[cfg(feature = "remote")]
pub mod sftp;
#[cfg(feature = "remote")]
mod sftp_conn;
#[cfg(feature = "remote")]
mod spool;
pub mod url;

use std::io::{self, Write};
use std::time::SystemTime;

pub use local::LocalStorage;
pub use lock::{LockInfo, LockKind, RepoLock};
pub use refresh_lock::LockTiming;
pub use url::{open, open_with, Location, RemoteOptions};

/// One object as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's name, relative to the repository root (`data/ab/ab12…`).
    pub name: String,
    pub size: u64,
    /// Last modification, where the store reports one (prune's grace period
    /// uses it; a store without it keeps everything for the grace period).
    pub modified: Option<SystemTime>,
}

/// A new object being written. The bytes go to a temporary place (a temporary
/// file beside the target, a spool file, a multipart upload) and the object
/// appears, complete and durable, only in [`ObjectWriter::commit`]. Dropping
/// the writer without committing leaves no object behind.
pub trait ObjectWriter: Write + Send {
    /// Bytes written so far.
    fn written(&self) -> u64;
    /// Makes the object visible and durable. Fails with
    /// `io::ErrorKind::AlreadyExists` if the name was taken meanwhile.
    fn commit(self: Box<Self>) -> io::Result<()>;
}

/// A held lock object. Dropping it removes the lock (and stops its refresh).
/// `Sync`, so that the threads of a pipeline can [`HeldLock::check`] it.
pub trait HeldLock: Send + Sync {
    /// `Err` once the lock can no longer be trusted: its refresh failed for
    /// too long, or another process removed it (remote stores). A flock'd
    /// local lock cannot be lost while its holder lives.
    fn check(&self) -> io::Result<()> {
        Ok(())
    }
}

/// The operations a repository needs from wherever it lives.
pub trait Storage: Send + Sync {
    /// Where the repository lives, for messages: a path or a URL without
    /// credentials.
    fn location(&self) -> String;

    /// Every object whose name starts with `prefix` (for example `data/`,
    /// `snapshots/`), recursively, in no particular order. Temporary objects
    /// of writers are not listed.
    fn list(&self, prefix: &str) -> io::Result<Vec<ObjectInfo>>;

    /// The object's size and time, or `NotFound`.
    fn stat(&self, name: &str) -> io::Result<ObjectInfo>;

    /// The whole object.
    fn read(&self, name: &str) -> io::Result<Vec<u8>>;

    /// Exactly `length` bytes from `offset`; `UnexpectedEof` if the object
    /// is shorter.
    fn read_range(&self, name: &str, offset: u64, length: u64) -> io::Result<Vec<u8>>;

    /// [`Storage::read_range`] into `buf`, replacing its contents: a caller
    /// that reads many ranges in turn (verify's pack windows) keeps one
    /// allocation instead of a fresh one per read, which the allocator
    /// would hold on to per thread.
    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        *buf = self.read_range(name, offset, length)?;
        Ok(())
    }

    /// Starts writing a new object `name`; see [`ObjectWriter`].
    fn create_writer(&self, name: &str) -> io::Result<Box<dyn ObjectWriter>>;

    /// Creates `name` holding exactly `data`, durably; `AlreadyExists` if
    /// it exists.
    fn create(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut w = self.create_writer(name)?;
        w.write_all(data)?;
        w.commit()
    }

    /// Replaces `name` (which may or may not exist) atomically: readers see
    /// the old bytes or the new, never a mix. Only the config uses this.
    fn replace(&self, name: &str, data: &[u8]) -> io::Result<()>;

    /// Deletes `name`, durably; succeeds if it is already gone.
    fn delete(&self, name: &str) -> io::Result<()>;

    /// How many requests this store serves well at once: 1 for a local disk,
    /// more for a remote store, where pipelines overlap round trips.
    fn max_in_flight(&self) -> usize {
        1
    }

    /// Creates lock object `name` holding `data` and keeps proving its holder
    /// alive (flock, or refreshing the object) until the handle is dropped,
    /// which removes it.
    fn create_lock(&self, name: &str, data: &[u8]) -> io::Result<Box<dyn HeldLock>>;

    /// Whether the holder of the lock object `object` (holding `info`) is
    /// known to be gone, so that its lock may be removed. Never guesses: a
    /// lock whose holder cannot be judged is live.
    fn lock_is_stale(&self, object: &ObjectInfo, info: &LockInfo) -> bool;

    /// Temporary objects left by interrupted writers (names as `delete`
    /// takes them). Remove them only under an exclusive lock: a running
    /// writer's temporaries look the same.
    fn leftovers(&self) -> io::Result<Vec<ObjectInfo>> {
        Ok(Vec::new())
    }

    /// Removes one temporary object [`Storage::leftovers`] listed (their
    /// names are not object names, so [`Storage::delete`] refuses them).
    /// Only under an exclusive lock, like `leftovers`.
    fn remove_leftover(&self, leftover: &ObjectInfo) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("{} cannot remove {}", self.location(), leftover.name),
        ))
    }
}

/// Checks that an object name is one the repository writes: relative,
/// `/`-separated, made of `[A-Za-z0-9._-]` parts, none of them `.`, `..` or
/// empty. Every store calls it, so no name can reach outside the repository.
pub fn check_name(name: &str) -> io::Result<()> {
    let ok = !name.is_empty()
        && name.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && !part.starts_with('.')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("'{name}' is not a repository object name"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::check_name;

    #[test]
    fn object_names_stay_inside_the_repository() {
        for good in ["config", "data/ab/ab12", "locks/0f", "index/a-b_c.d"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/config",
            "data//x",
            "../x",
            "data/../x",
            "./x",
            "x/",
            ".tmp",
            "a b",
            "data/\u{e9}",
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }
}
