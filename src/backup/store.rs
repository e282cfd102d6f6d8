//! The execute step of a backup: read files, cut them into chunks, and store
//! the chunks the repository does not have, on every thread of the pool.
//!
//! Small files (up to [`SMALL`]) are read whole, many at once, one per task.
//! A large file is read in batches of [`batch_len`] bytes by one thread while
//! the pool hashes, compresses, encrypts and packs the previous batch's chunks
//! (`rayon::join`, double buffering), so one large file keeps every core busy.
//! Memory: the small files being read plus two batches, plus one chunk
//! message per thread.
//!
//! A chunk is stored at most once per run (the `seen` set) and never when the
//! index has it. The data key of a file is generated at its first new chunk
//! and shared by the file's other chunks (one GenerateDataKey per file with
//! new content), each chunk a message with its own message ID.

use std::collections::HashSet;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use rayon::prelude::*;

use crate::progress::Progress;
use crate::repo::{
    ChunkId, Compression, Entry, FileKey, FullPack, Index, IndexData, KeyVersion, PackRecord,
    PackWriter, Repository, Summary,
};
use crate::{Error, Result};

use super::plan::Job;

/// Files up to this size are read whole by one task.
pub const SMALL: u64 = 8 * 1024 * 1024;

/// Bytes a large file is read in per batch: enough chunks for every thread.
fn batch_len(repo: &Repository, threads: usize) -> usize {
    let p = repo.chunker().params();
    (8 << 20).max(2 * threads * p.avg as usize) + p.max as usize
}

/// What became of one file.
pub enum Outcome {
    Stored {
        idx: usize,
        entry: Entry,
        bytes_read: u64,
    },
    Failed {
        idx: usize,
        message: String,
    },
}

/// Everything the tasks share.
pub struct Ctx<'a> {
    pub repo: &'a Repository,
    pub index: &'a Index,
    pub compression: Compression,
    pub progress: &'a dyn Progress,
    pub threads: usize,
    seen: Mutex<HashSet<ChunkId>>,
    writers: Mutex<Vec<PackWriter<'a>>>,
    /// Full packs go to threads of their own to be committed (fsync, or
    /// the upload to a remote store); a bounded queue.
    committer: std::sync::mpsc::SyncSender<FullPack>,
    /// Raised when a pack could not be committed: the run is lost, the
    /// workers stop at their next chunk.
    pub stop: &'a AtomicBool,
    key_sets: Mutex<Vec<Vec<KeyVersion>>>,
    chunks_added: AtomicU64,
    bytes_added: AtomicU64,
    bytes_stored: AtomicU64,
    deduplicated: AtomicU64,
    data_keys: AtomicU64,
}

impl<'a> Ctx<'a> {
    pub fn new(
        repo: &'a Repository,
        index: &'a Index,
        compression: Compression,
        threads: usize,
        progress: &'a dyn Progress,
        committer: std::sync::mpsc::SyncSender<FullPack>,
        stop: &'a AtomicBool,
    ) -> Ctx<'a> {
        Ctx {
            repo,
            index,
            compression,
            progress,
            threads,
            seen: Mutex::new(HashSet::new()),
            writers: Mutex::new(Vec::new()),
            committer,
            stop,
            key_sets: Mutex::new(Vec::new()),
            chunks_added: AtomicU64::new(0),
            bytes_added: AtomicU64::new(0),
            bytes_stored: AtomicU64::new(0),
            deduplicated: AtomicU64::new(0),
            data_keys: AtomicU64::new(0),
        }
    }

    fn key_set_no(&self, set: &[KeyVersion]) -> u32 {
        let mut sets = self.key_sets.lock().expect("no panics holding it");
        match sets.iter().position(|s| s == set) {
            Some(n) => n as u32,
            None => {
                sets.push(set.to_vec());
                (sets.len() - 1) as u32
            }
        }
    }

    /// Drops the open packs (their temporary objects remove themselves) after
    /// an interrupt; returns the key sets, for the index of the packs the
    /// committer thread already made durable.
    pub fn abandon(self) -> IndexData {
        drop(self.writers);
        IndexData::new(
            self.key_sets.into_inner().expect("no panics holding it"),
            Vec::new(),
        )
    }

    /// Hands every open pack to the committers and closes their queue;
    /// returns the index data so far (the packs themselves come back from
    /// the committers).
    pub fn finish(self, summary: &mut Summary) -> Result<IndexData> {
        let mut packs: Vec<PackRecord> = Vec::new();
        for w in self.writers.into_inner().expect("no panics holding it") {
            let (done, open) = w.detach();
            packs.extend(done);
            if let Some(p) = open.filter(|_| !self.stop.load(Ordering::SeqCst)) {
                // A closed queue means every committer returned: its error
                // is the one reported.
                let _ = self.committer.send(p);
            }
        }
        drop(self.committer);
        summary.chunks_added = self.chunks_added.into_inner();
        summary.bytes_added = self.bytes_added.into_inner();
        summary.bytes_stored = self.bytes_stored.into_inner();
        summary.chunks_deduplicated = self.deduplicated.into_inner();
        summary.data_keys = self.data_keys.into_inner();
        Ok(IndexData::new(
            self.key_sets.into_inner().expect("no panics holding it"),
            packs,
        ))
    }
}

/// A file's data key, made at its first new chunk.
#[derive(Default)]
struct LazyKey {
    key: OnceLock<(FileKey, u32)>,
    init: Mutex<()>,
}

impl LazyKey {
    fn get(&self, ctx: &Ctx) -> Result<&(FileKey, u32)> {
        if let Some(k) = self.key.get() {
            return Ok(k);
        }
        let _one = self.init.lock().expect("no panics holding it");
        if let Some(k) = self.key.get() {
            return Ok(k);
        }
        let key = ctx.repo.file_key(ctx.compression)?;
        let no = ctx.key_set_no(&key.key_set);
        ctx.data_keys.fetch_add(1, Ordering::Relaxed);
        Ok(self.key.get_or_init(|| (key, no)))
    }
}

/// Names a chunk and stores it unless the repository has it.
fn store_chunk(ctx: &Ctx, key: &LazyKey, data: &[u8]) -> Result<ChunkId> {
    crate::interrupt::check()?;
    let id = ctx.repo.chunker().id(data);
    let known =
        ctx.index.contains(&id) || !ctx.seen.lock().expect("no panics holding it").insert(id);
    if known {
        ctx.deduplicated.fetch_add(1, Ordering::Relaxed);
        return Ok(id);
    }
    if ctx.stop.load(Ordering::SeqCst) {
        return Err(stopped());
    }
    let (file_key, key_set) = key.get(ctx)?;
    let message = ctx.repo.seal_chunk(file_key, data)?;
    let taken = ctx.writers.lock().expect("no panics holding it").pop();
    let mut w = taken.unwrap_or_else(|| PackWriter::new(ctx.repo));
    let added = w.add_detached(id, &message, data.len() as u32, *key_set);
    ctx.writers.lock().expect("no panics holding it").push(w);
    if let Some(full) = added? {
        ctx.committer.send(full).map_err(|_| stopped())?;
    }
    ctx.chunks_added.fetch_add(1, Ordering::Relaxed);
    ctx.bytes_added
        .fetch_add(data.len() as u64, Ordering::Relaxed);
    ctx.bytes_stored
        .fetch_add(message.len() as u64, Ordering::Relaxed);
    Ok(id)
}

/// The workers' error once a pack failed (the committer reports the cause).
fn stopped() -> Error {
    Error::Other("writing packs stopped (see the error of the pack that failed)".into())
}

/// Chunks of `data` (whole when `eof`), as offsets; the rest is left over.
fn cut_all(ctx: &Ctx, data: &[u8], eof: bool) -> (Vec<(usize, usize)>, usize) {
    let mut cuts = Vec::new();
    let mut at = 0;
    while let Some(n) = ctx.repo.chunker().cut(&data[at..], eof) {
        cuts.push((at, n));
        at += n;
    }
    (cuts, at)
}

fn store_cuts(
    ctx: &Ctx,
    key: &LazyKey,
    data: &[u8],
    cuts: &[(usize, usize)],
) -> Result<Vec<ChunkId>> {
    if cuts.len() == 1 {
        let (a, n) = cuts[0];
        return Ok(vec![store_chunk(ctx, key, &data[a..a + n])?]);
    }
    cuts.par_iter()
        .map(|&(a, n)| store_chunk(ctx, key, &data[a..a + n]))
        .collect()
}

/// Why a file is left out (its problem, not the repository's).
enum FileError {
    Source(String),
    Repo(Error),
}

impl From<Error> for FileError {
    fn from(e: Error) -> Self {
        FileError::Repo(e)
    }
}

/// Appends up to `want` bytes of `file` to `buf` (fewer only at its end),
/// into the spare capacity without zeroing it first.
fn read_full(
    file: &mut File,
    buf: &mut Vec<u8>,
    want: usize,
) -> std::result::Result<usize, FileError> {
    buf.reserve_exact(want);
    file.take(want as u64)
        .read_to_end(buf)
        .map_err(|e| FileError::Source(format!("read failed: {e}")))
}

/// A batch of a large file: its bytes and the chunks cut in them; the
/// uncut rest (`data[used..]`) starts the next batch.
struct Batch {
    data: Vec<u8>,
    cuts: Vec<(usize, usize)>,
    used: usize,
    eof: bool,
}

/// Reads the next batch into `data` (a buffer of an earlier batch, reused
/// so that a large file is read through two buffers, not a fresh one per
/// batch that the allocator would keep per thread), after `carry`.
fn next_batch(
    ctx: &Ctx,
    file: &mut File,
    mut data: Vec<u8>,
    carry: &[u8],
    len: usize,
    left: &mut u64,
) -> std::result::Result<Batch, FileError> {
    data.clear();
    data.reserve_exact(len.max(carry.len()));
    data.extend_from_slice(carry);
    let want = (len - data.len().min(len)).min(*left as usize);
    let got = read_full(file, &mut data, want)?;
    *left -= got as u64;
    ctx.progress.advance(0, got as u64);
    let eof = *left == 0 || got < want;
    let (cuts, used) = cut_all(ctx, &data, eof);
    Ok(Batch {
        data,
        cuts,
        used,
        eof,
    })
}

/// Reads and stores a file of `size` bytes; returns its chunks and the
/// bytes read.
fn read_chunks(
    ctx: &Ctx,
    file: &mut File,
    size: u64,
) -> std::result::Result<(Vec<ChunkId>, u64), FileError> {
    let key = LazyKey::default();
    if size <= SMALL {
        let mut data = Vec::with_capacity(size as usize);
        let got = read_full(file, &mut data, size as usize)?;
        ctx.progress.advance(0, got as u64);
        let (cuts, _) = cut_all(ctx, &data, true);
        return Ok((store_cuts(ctx, &key, &data, &cuts)?, got as u64));
    }
    let len = batch_len(ctx.repo, ctx.threads);
    let mut left = size;
    let mut batch = next_batch(ctx, file, Vec::new(), &[], len, &mut left)?;
    let mut spare = Vec::new();
    let mut chunks = Vec::new();
    loop {
        // The next batch is read while this one is stored.
        let eof = batch.eof;
        let buf = std::mem::take(&mut spare);
        let carry = &batch.data[batch.used..];
        let (stored, next) = rayon::join(
            || store_cuts(ctx, &key, &batch.data, &batch.cuts),
            || (!eof).then(|| next_batch(ctx, file, buf, carry, len, &mut left)),
        );
        chunks.extend(stored?);
        match next {
            None => break,
            Some(n) => spare = std::mem::replace(&mut batch, n?).data,
        }
    }
    Ok((chunks, size - left))
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

fn store_file(ctx: &Ctx, job: &Job, base: &Entry) -> std::result::Result<(Entry, u64), FileError> {
    // O_NOFOLLOW: never read through a symlink swapped in since the walk;
    // O_NONBLOCK: never hang on a FIFO swapped in since the walk.
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(&job.path)
        .map_err(|e| FileError::Source(open_error(&e)))?;
    let meta = |f: &File| {
        f.metadata()
            .map_err(|e| FileError::Source(format!("cannot read metadata: {e}")))
    };
    let before = meta(&file)?;
    if !before.is_file() {
        return Err(FileError::Source("is no longer a regular file".into()));
    }
    // The file the scan saw, not one that took its name since (a parent
    // folder swapped for a symlink would lead elsewhere despite O_NOFOLLOW).
    if before.dev() != base.device || before.ino() != base.inode {
        return Err(FileError::Source(
            "was replaced since the scan; it is left out of this snapshot and will be read again next time".into(),
        ));
    }
    let (chunks, read) = read_chunks(ctx, &mut file, before.size())?;
    let after = meta(&file)?;
    if changed(&before, &after) || read != before.size() {
        return Err(FileError::Source(
            "changed while being read; it is left out of this snapshot and will be read again next time".into(),
        ));
    }
    let mut entry = super::walk::entry_of(&job.path, &before).unwrap_or_else(|| base.clone());
    entry.chunks = chunks;
    Ok((entry, read))
}

fn outcome(ctx: &Ctx, job: &Job, base: &Entry) -> Result<Outcome> {
    let r = store_file(ctx, job, base);
    ctx.progress.advance(1, 0);
    match r {
        Ok((entry, bytes_read)) => Ok(Outcome::Stored {
            idx: job.idx,
            entry,
            bytes_read,
        }),
        Err(FileError::Source(why)) => {
            let message = format!("{}: {why}", job.path.display());
            ctx.progress.warn(&message);
            Ok(Outcome::Failed {
                idx: job.idx,
                message,
            })
        }
        Err(FileError::Repo(e)) => Err(e),
    }
}

/// Stores every job's file: small ones in parallel, then large ones one at a
/// time, each over every thread. Stops at the first repository error.
pub fn store_all(ctx: &Ctx, jobs: &[Job], entries: &[Entry]) -> Result<Vec<Outcome>> {
    let (small, large): (Vec<&Job>, Vec<&Job>) = jobs.iter().partition(|j| j.size <= SMALL);
    let mut out: Vec<Outcome> = small
        .par_iter()
        .map(|j| outcome(ctx, j, &entries[j.idx]))
        .collect::<Result<_>>()?;
    for j in large {
        out.push(outcome(ctx, j, &entries[j.idx])?);
    }
    Ok(out)
}
