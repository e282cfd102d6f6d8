//! The workers: each reads files and streams them, frame by frame, through
//! an [`Encryptor`] (a fresh data key per file) into its own [`PackWriter`],
//! so encryption never waits on another worker. Memory per worker is a read
//! buffer, one frame and a pack write buffer, whatever the file sizes.

use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::envelope::{EncryptOptions, Encryptor};
use crate::progress::Progress;
use crate::repo::{Entry, Kind, PackRecord, PackWriter, Repository, Written};
use crate::{Error, Result};

const READ_BUFFER: usize = 256 * 1024;

/// One file to read and store.
pub struct Job {
    /// Position of the file's entry in the scan.
    pub idx: usize,
    pub path: PathBuf,
    /// Not in the parent snapshot (else changed since).
    pub new: bool,
}

/// What happened to one job.
pub enum Outcome {
    Stored {
        idx: usize,
        /// The entry's metadata as of the read, with its content message.
        entry: Entry,
        bytes_read: u64,
        bytes_stored: u64,
    },
    /// The file could not be stored; the message names path and cause.
    Failed { idx: usize, message: String },
}

/// A failure while storing one file: of the source (that file is skipped) or
/// of the repository (the run stops).
enum FileError {
    Source(String),
    Repo(Error),
}

impl From<Error> for FileError {
    fn from(e: Error) -> Self {
        FileError::Repo(e)
    }
}

pub struct Shared<'a> {
    pub repo: &'a Repository,
    pub jobs: &'a [Job],
    pub entries: &'a [Entry],
    pub next: AtomicUsize,
    pub abort: AtomicBool,
    pub progress: &'a dyn Progress,
}

/// A worker: takes jobs until none is left or another worker failed.
/// Returns its outcomes and the packs it committed.
pub fn work(shared: &Shared) -> Result<(Vec<Outcome>, Vec<PackRecord>)> {
    let mut packs = PackWriter::new(shared.repo);
    let mut outcomes = Vec::new();
    let mut buf = vec![0u8; READ_BUFFER];
    let opts = shared.repo.encrypt_options(Kind::Object);
    loop {
        if shared.abort.load(Ordering::Relaxed) {
            break;
        }
        let i = shared.next.fetch_add(1, Ordering::Relaxed);
        let Some(job) = shared.jobs.get(i) else { break };
        shared.progress.item(&job.path.display().to_string());
        let base = &shared.entries[job.idx];
        match store_file(shared, &mut packs, &opts, job, base, &mut buf) {
            Ok(o) => {
                if let Outcome::Failed { message, .. } = &o {
                    shared.progress.warn(message);
                }
                outcomes.push(o)
            }
            Err(e) => {
                shared.abort.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        shared.progress.advance(1, 0);
    }
    if shared.abort.load(Ordering::Relaxed) {
        // Another worker failed: no snapshot will be written, so the open
        // pack is dropped (its temporary file removed) rather than committed.
        return Ok((outcomes, Vec::new()));
    }
    let records = packs.finish()?;
    Ok((outcomes, records))
}

fn open_error(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) => "vanished before it could be read".into(),
        Some(libc::ELOOP) => "was replaced by a symlink before it could be read".into(),
        _ => format!("cannot open: {e}"),
    }
}

/// Whether the file changed between the two `fstat`s around its read.
fn changed(a: &Metadata, b: &Metadata) -> bool {
    a.size() != b.size()
        || a.mtime() != b.mtime()
        || a.mtime_nsec() != b.mtime_nsec()
        || a.ctime() != b.ctime()
        || a.ctime_nsec() != b.ctime_nsec()
        || a.ino() != b.ino()
}

fn store_file(
    shared: &Shared,
    packs: &mut PackWriter,
    opts: &EncryptOptions,
    job: &Job,
    base: &Entry,
    buf: &mut [u8],
) -> Result<Outcome> {
    let failed = |why: String| Outcome::Failed {
        idx: job.idx,
        message: format!("{}: {why}", job.path.display()),
    };
    // O_NOFOLLOW: never read through a symlink swapped in since the walk;
    // O_NONBLOCK: never hang on a FIFO swapped in since the walk.
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&job.path)
    {
        Ok(f) => f,
        Err(e) => return Ok(failed(open_error(&e))),
    };
    let before = match file.metadata() {
        Ok(m) => m,
        Err(e) => return Ok(failed(format!("cannot read metadata: {e}"))),
    };
    if !before.is_file() {
        return Ok(failed("is no longer a regular file".into()));
    }
    // The file the scan saw, not one that took its name since (a parent
    // folder swapped for a symlink would lead elsewhere despite O_NOFOLLOW).
    if before.dev() != base.device || before.ino() != base.inode {
        return Ok(failed(
            "was replaced since the scan; it is left out of this snapshot and will be read again next time"
                .into(),
        ));
    }
    let large = before.size() >= shared.repo.config().large_file_size;
    let progress = shared.progress;
    let provider = shared.repo.provider();
    let write = |w: &mut dyn Write| -> std::result::Result<_, FileError> {
        read_into(provider, opts, &mut file, &before, w, buf, progress)
    };
    let stored = if large {
        packs.store_alone(write)
    } else {
        packs.append(write)
    };
    match stored {
        Ok((index_entry, bytes_read)) => {
            let mut entry =
                super::walk::entry_of(&job.path, &before).unwrap_or_else(|| base.clone());
            entry.content = Some(index_entry.id);
            Ok(Outcome::Stored {
                idx: job.idx,
                entry,
                bytes_read,
                bytes_stored: index_entry.length,
            })
        }
        Err(FileError::Source(why)) => Ok(failed(why)),
        Err(FileError::Repo(e)) => Err(e),
    }
}

/// Streams `file` into one new message written to `w`. Returns the message
/// ID, the plaintext length and the bytes read.
fn read_into(
    provider: &dyn crate::envelope::KeyProvider,
    opts: &EncryptOptions,
    file: &mut File,
    before: &Metadata,
    w: &mut dyn Write,
    buf: &mut [u8],
    progress: &dyn Progress,
) -> std::result::Result<Written<u64>, FileError> {
    let mut enc = Encryptor::new(provider, opts, w).map_err(|e| FileError::Repo(e.into()))?;
    let mut read = 0u64;
    let expected = before.size();
    loop {
        // Stop at the size fstat gave (no extra read for EOF): a file that grew
        // or changed meanwhile shows in the fstat after the read. A file that
        // claims 0 bytes is read to its end (some pseudo files do that).
        let want = if expected == 0 {
            buf.len()
        } else {
            (expected - read).min(buf.len() as u64) as usize
        };
        if want == 0 {
            break;
        }
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(FileError::Source(format!("read failed: {e}"))),
        };
        enc.write_all(&buf[..n])
            .map_err(|e| FileError::Repo(Error::io("writing to the repository", e)))?;
        read += n as u64;
        progress.advance(0, n as u64);
    }
    let (_, info) = enc.finish().map_err(|e| {
        FileError::Repo(match e {
            crate::envelope::Error::Io(io) => Error::io("writing to the repository", io),
            e => e.into(),
        })
    })?;
    let after = file
        .metadata()
        .map_err(|e| FileError::Source(format!("cannot read metadata: {e}")))?;
    if changed(before, &after) || read != before.size() {
        return Err(FileError::Source(
            "changed while being read; it is left out of this snapshot and will be read again next time"
                .into(),
        ));
    }
    Ok((info.message_id, info.plaintext_len, read))
}
