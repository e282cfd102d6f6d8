//! `envarc copy`: snapshots from one repository into another (a local
//! repository into a bucket every night, say), moving only the chunks the
//! destination lacks.
//!
//! # What "without decrypting content" can mean here
//!
//! The destination must name chunks as the source does: created with
//! `envarc init --from-repo SRC`, it shares the source's chunk-ID MAC key
//! and chunker ([`Repository::init_like`]), and has its own repository ID,
//! keys and settings. A chunk therefore has the same ID in both, so what the
//! destination already holds (from an earlier copy, or a backup of the same
//! data straight into it) is recognised by ID and never read.
//!
//! A missing chunk cannot travel as the bytes it is stored as: its message
//! is bound to the source by its encryption context (`envarc-repo`), which
//! the destination requires to name itself, and a message with another
//! context is another message: a new message ID, since a header is never
//! tagged twice under one (data key, message ID). So each missing chunk is
//! authenticated and decrypted in memory, checked against its chunk ID, and
//! sealed into a new message of the destination, its body as stored (a
//! compressed chunk is not decompressed and compressed again). No plaintext
//! is ever written anywhere. Data keys stay one per file: every file with
//! missing chunks gets a fresh data key from the destination's keys, used
//! for all of its chunks copied in this run (two when its chunks were stored
//! with and without compression, whose contexts differ).
//!
//! # Order, interruption, reruns
//!
//! Snapshots go one at a time, oldest first: the chunks into packs, the
//! packs' index, and last the snapshot, under the source's snapshot ID. A
//! snapshot the destination has (and can open) is skipped, so an interrupted copy is run
//! again and goes on; what an interrupted run stored without an index is
//! removed by prune. Both repositories are locked (shared) for the run, and
//! the destination's lock is checked before each pack, the index and the
//! snapshot.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};

use rayon::prelude::*;

use crate::pool::Pool;
use crate::progress::Progress;
use crate::repo::{
    pack_name, ChunkId, Entry, EntryKind, FileKey, FullPack, Id, Index, IndexData, KeySetTable,
    LockKind, PackRecord, PackWriter, RepoLock, Repository,
};
use crate::{Error, Result};

/// What to copy.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Snapshots of the source (`latest`, IDs, unique prefixes); all when
    /// empty.
    pub snapshots: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct CopyReport {
    /// Snapshots written to the destination.
    pub copied: Vec<Id>,
    /// Snapshots the destination already had.
    pub present: Vec<Id>,
    /// Chunks stored in the destination, and their bytes as stored there.
    pub chunks: u64,
    pub bytes_stored: u64,
    /// Data keys generated (one per file with missing chunks).
    pub data_keys: u64,
}

/// Bytes of packs being committed at once: the bound a backup has too.
const COMMIT_MEMORY: u64 = crate::repo::UPLOAD_MEMORY;

/// Copies snapshots from `src` to `dst`; see the module documentation.
pub fn copy(
    src: &Repository,
    dst: &Repository,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    if src.config().id == dst.config().id {
        return Err(Error::Usage(format!(
            "{} and {} are the same repository ({}): nothing to copy",
            src.storage().location(),
            dst.storage().location(),
            src.config().id
        )));
    }
    if !dst.shares_chunk_ids_with(src) {
        return Err(Error::Usage(format!(
            "{} does not name chunks as {} does, so a copy would store everything again and \
             never deduplicate: create the destination with `envarc init --repo DST --from-repo \
             {}` (a new, empty repository sharing the source's chunk secrets)",
            dst.storage().location(),
            src.storage().location(),
            src.storage().location()
        )));
    }
    let src_lock = src.lock(LockKind::Shared, progress)?;
    let dst_lock = dst.lock(LockKind::Shared, progress)?;
    let wanted = select(src, &opts.snapshots)?;
    let have: HashSet<Id> = dst.list_snapshots()?.into_iter().collect();
    let src_index = src.load_index()?;
    let dst_index = dst.load_index()?;
    let mut claimed = HashSet::new();
    let mut report = CopyReport::default();
    let pool = pool_for(src, dst)?;
    for id in wanted {
        if have.contains(&id) {
            // Only a snapshot that opens counts: a name planted in the
            // destination does not make a copy skip a snapshot.
            dst.load_snapshot_meta(&id).map_err(|e| {
                Error::Integrity(format!(
                    "{} holds snapshot {} but it does not open ({e}): it was damaged or \
                     planted there; delete its object {} from that store and copy again",
                    dst.storage().location(),
                    id.short(),
                    crate::repo::snapshot_name(&id)
                ))
            })?;
            report.present.push(id);
            continue;
        }
        src_lock.check()?;
        dst_lock.check()?;
        let (meta, entries) = src.load_snapshot(&id)?;
        let jobs = missing(&entries, &dst_index, &mut claimed);
        let run = Run::new(src, dst, &src_index, &dst_lock, progress);
        progress.start(
            &format!("copying snapshot {}", id.short()),
            Some(jobs.iter().map(|(_, c)| c.len() as u64).sum()),
            None,
        );
        let stored = pool.install(|| {
            jobs.par_iter()
                .try_for_each(|(file, chunks)| run.copy_file(file, chunks))
        });
        progress.finish();
        let data = run.finish(stored)?;
        report.chunks += data.1;
        report.bytes_stored += data.2;
        report.data_keys += data.3;
        dst_lock.check()?;
        if !data.0.packs.is_empty() {
            dst.save_index(data.0)?;
        }
        save_snapshot(dst, &dst_lock, &id, &meta, &entries)?;
        report.copied.push(id);
    }
    Ok(report)
}

/// The snapshots to copy, oldest first.
fn select(src: &Repository, specs: &[String]) -> Result<Vec<Id>> {
    let all = src.snapshots()?;
    if specs.is_empty() {
        return Ok(all.into_iter().map(|(id, _)| id).collect());
    }
    let mut ids = HashSet::new();
    for s in specs {
        ids.insert(src.resolve_snapshot(s)?);
    }
    Ok(all
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| ids.contains(id))
        .collect())
}

/// Reads from one store and writes to another: threads for the cores, the
/// destination's key service, and both stores' requests in flight.
fn pool_for(src: &Repository, dst: &Repository) -> Result<Pool> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = cores
        .max(src.storage().max_in_flight())
        .max(dst.storage().max_in_flight())
        .max(dst.provider().max_in_flight())
        .min(64);
    Pool::with_threads(threads)
}

/// The chunks each file needs in the destination, each chunk claimed by
/// the first file that names it (in this run, across snapshots).
fn missing<'e>(
    entries: &'e [Entry],
    dst_index: &Index,
    claimed: &mut HashSet<ChunkId>,
) -> Vec<(&'e Entry, Vec<ChunkId>)> {
    entries
        .iter()
        .filter(|e| e.kind == EntryKind::File)
        .filter_map(|e| {
            let need: Vec<ChunkId> = e
                .chunks
                .iter()
                .filter(|c| !dst_index.contains(c) && claimed.insert(**c))
                .copied()
                .collect();
            (!need.is_empty()).then_some((e, need))
        })
        .collect()
}

fn save_snapshot(
    dst: &Repository,
    lock: &RepoLock,
    id: &Id,
    meta: &crate::repo::SnapshotMeta,
    entries: &[Entry],
) -> Result<()> {
    lock.check()?;
    match dst.save_snapshot_as(id, meta, entries) {
        // A copy running beside this one wrote it: the same snapshot.
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok(())
        }
        r => r,
    }
}

/// A counting semaphore: commits of full packs at once.
struct Permits {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Permits {
    fn run<T>(&self, f: impl FnOnce() -> T) -> T {
        let mut free = self.free.lock().expect("no panics holding it");
        while *free == 0 {
            free = self.freed.wait(free).expect("no panics holding it");
        }
        *free -= 1;
        drop(free);
        let r = f();
        *self.free.lock().expect("no panics holding it") += 1;
        self.freed.notify_one();
        r
    }
}

/// One snapshot's chunks on their way.
struct Run<'a> {
    src: &'a Repository,
    dst: &'a Repository,
    src_index: &'a Index,
    /// Checked before each pack goes up: never a pack beside a prune.
    lock: &'a RepoLock,
    progress: &'a dyn Progress,
    writers: Mutex<Vec<PackWriter<'a>>>,
    committed: Mutex<Vec<PackRecord>>,
    commits: Permits,
    key_sets: Mutex<KeySetTable>,
    chunks: AtomicU64,
    bytes: AtomicU64,
    keys: AtomicU64,
}

impl<'a> Run<'a> {
    fn new(
        src: &'a Repository,
        dst: &'a Repository,
        src_index: &'a Index,
        lock: &'a RepoLock,
        progress: &'a dyn Progress,
    ) -> Run<'a> {
        let pack = dst.config().pack_size + u64::from(dst.chunker().params().max);
        let by_memory = usize::try_from(COMMIT_MEMORY / pack.max(1)).unwrap_or(usize::MAX);
        Run {
            src,
            dst,
            src_index,
            lock,
            progress,
            writers: Mutex::new(Vec::new()),
            committed: Mutex::new(Vec::new()),
            commits: Permits {
                free: Mutex::new(dst.storage().max_in_flight().min(by_memory).max(1)),
                freed: Condvar::new(),
            },
            key_sets: Mutex::new(KeySetTable::default()),
            chunks: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            keys: AtomicU64::new(0),
        }
    }

    /// Copies the `chunks` of `file` that the destination lacks, under one
    /// data key of the destination per compression.
    fn copy_file(&self, file: &Entry, chunks: &[ChunkId]) -> Result<()> {
        let mut keys: Vec<(FileKey, u32)> = Vec::new();
        for id in chunks {
            let loc = self.src_index.get(id).ok_or_else(|| {
                Error::Integrity(format!(
                    "{} in {} refers to chunk {} that its index does not list: run `envarc \
                     verify` on the source",
                    String::from_utf8_lossy(&file.path),
                    self.src.storage().location(),
                    id.short()
                ))
            })?;
            let name = pack_name(&loc.pack);
            let storage = self.src.storage();
            let message = storage
                .read_range(&name, loc.offset, loc.length)
                .map_err(|e| Error::io(format!("reading {name} in {}", storage.location()), e))?;
            let opened = self.src.open_chunk_body(&message, &loc, id)?;
            drop(message);
            let at = match keys
                .iter()
                .position(|(k, _)| k.compression() == opened.compression)
            {
                Some(i) => i,
                None => {
                    let key = self.dst.file_key(opened.compression)?;
                    self.keys.fetch_add(1, Ordering::Relaxed);
                    let no = self
                        .key_sets
                        .lock()
                        .expect("no panics holding it")
                        .number(&key.key_set);
                    keys.push((key, no));
                    keys.len() - 1
                }
            };
            let (key, key_set) = &keys[at];
            let sealed = self.dst.reseal_chunk(key, &opened.body)?;
            self.add(*id, &sealed, loc.raw_length, *key_set)?;
            self.progress.advance(1, loc.raw_length);
        }
        Ok(())
    }

    fn add(&self, id: ChunkId, message: &[u8], raw_length: u64, key_set: u32) -> Result<()> {
        let taken = self.writers.lock().expect("no panics holding it").pop();
        let mut w = taken.unwrap_or_else(|| PackWriter::new(self.dst));
        let full = w.add_detached(id, message, raw_length as u32, key_set);
        self.writers.lock().expect("no panics holding it").push(w);
        if let Some(p) = full? {
            self.commit(p)?;
        }
        self.chunks.fetch_add(1, Ordering::Relaxed);
        self.bytes
            .fetch_add(message.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    fn commit(&self, pack: FullPack) -> Result<()> {
        self.lock.check()?;
        let record = self.commits.run(|| pack.commit())?;
        self.committed
            .lock()
            .expect("no panics holding it")
            .push(record);
        Ok(())
    }

    /// After the chunks (`stored`: how that went): the open packs
    /// committed, the index data and counts.
    fn finish(self, stored: Result<()>) -> Result<(IndexData, u64, u64, u64)> {
        stored?;
        let writers = self.writers.into_inner().expect("no panics holding it");
        let mut packs = self.committed.into_inner().expect("no panics holding it");
        let open: Vec<FullPack> = writers
            .into_iter()
            .filter_map(|w| {
                let (done, open) = w.detach();
                packs.extend(done);
                open
            })
            .collect();
        let commits = &self.commits;
        self.lock.check()?;
        let last: Vec<PackRecord> = std::thread::scope(|s| {
            let handles: Vec<_> = open
                .into_iter()
                .map(|p| s.spawn(move || commits.run(|| p.commit())))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a pack commit does not panic"))
                .collect::<Result<_>>()
        })?;
        packs.extend(last);
        let sets = self
            .key_sets
            .into_inner()
            .expect("no panics holding it")
            .into_sets();
        Ok((
            IndexData::new(sets, packs),
            self.chunks.into_inner(),
            self.bytes.into_inner(),
            self.keys.into_inner(),
        ))
    }
}
