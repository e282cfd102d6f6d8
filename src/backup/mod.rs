//! The backup pipeline: walk the trees and compare with the parent snapshot
//! (plan.rs, pure), then store the chunks of new and changed files on every
//! core (store.rs), then commit: packs (durable as each is completed), then
//! the index files listing them, then the snapshot. A crash at any point
//! leaves at most data no snapshot refers to, which prune removes.
//!
//! Per-file problems (permission denied, vanished, changed while being read)
//! are warned about and counted, and the snapshot is saved without those
//! files; a repository or key problem stops the run before any snapshot.

mod plan;
mod store;
pub mod walk;

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::pathmatch::PathMatcher;
use crate::pool::Pool;
use crate::progress::Progress;
use crate::repo::{
    Compression, Entry, EntryKind, FullPack, Id, LockKind, RepoLock, Repository, SnapshotMeta,
    Summary, Time, SNAPSHOT_VERSION,
};
use crate::{Error, Result};

pub use plan::{plan, unchanged, Job, Plan};
use store::{Ctx, Outcome};
use walk::WalkOptions;

#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    /// `--exclude` patterns (see [`PathMatcher`]), exclude-file lines included.
    pub excludes: Vec<String>,
    pub one_file_system: bool,
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot; this machine's when `None`.
    pub host: Option<String>,
    /// `latest`, an ID or a prefix; when `None`, the latest snapshot of the
    /// same host and paths.
    pub parent: Option<String>,
    /// Compression of new chunks; the repository's default when `None`.
    pub compression: Option<Compression>,
    /// Walk and compare only: read no content, write nothing.
    pub dry_run: bool,
    /// A folder to leave out because it holds the repository itself
    /// (device, inode).
    pub skip_dir: Option<(u64, u64)>,
}

#[derive(Clone, Debug)]
pub struct BackupReport {
    /// The saved snapshot (`None` for a dry run).
    pub snapshot: Option<Id>,
    pub parent: Option<Id>,
    pub summary: Summary,
    /// One line per entry that could not be backed up.
    pub errors: Vec<String>,
    /// Plaintext bytes of new and changed files (read, or to be read in a dry run).
    pub bytes_new_or_changed: u64,
}

struct Parent {
    id: Id,
    meta: SnapshotMeta,
    entries: Vec<Entry>,
}

/// The parent: the one asked for, else the latest of the same host and paths.
/// A snapshot that cannot be read is passed over with a warning, so one bad
/// snapshot does not stop nightly backups (verify reports it).
fn choose_parent(
    repo: &Repository,
    spec: Option<&str>,
    host: &str,
    paths: &[Vec<u8>],
    progress: &dyn Progress,
) -> Result<Option<Parent>> {
    let id = match spec {
        Some(s) => Some(repo.resolve_snapshot(s)?),
        None => {
            let (all, failed) = repo.snapshots_lenient()?;
            for (id, e) in failed {
                progress.warn(&format!(
                    "snapshot {} cannot be read and is not considered as parent: {e}",
                    id.short()
                ));
            }
            all.into_iter()
                .rev()
                .find(|(_, m)| m.host == host && m.paths == paths)
                .map(|(id, _)| id)
        }
    };
    let Some(id) = id else { return Ok(None) };
    let (meta, entries) = repo.load_snapshot(&id)?;
    Ok(Some(Parent { id, meta, entries }))
}

/// Runs one backup. See the module documentation for what is fatal.
pub fn backup(
    repo: &Repository,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let started = Instant::now();
    let time = Time::now();
    let roots = walk::roots(&opts.paths)?;
    let root_bytes: Vec<Vec<u8>> = roots
        .iter()
        .map(|p| p.as_os_str().as_bytes().to_vec())
        .collect();
    let host = opts.host.clone().unwrap_or_else(crate::repo::hostname);
    let excludes = PathMatcher::new("--exclude", &opts.excludes)?;
    let lock = (!opts.dry_run)
        .then(|| repo.lock_to_write(LockKind::Shared, progress))
        .transpose()?;
    let index = repo.load_index()?;
    let parent = choose_parent(repo, opts.parent.as_deref(), &host, &root_bytes, progress)?;
    check_lock(lock.as_ref())?;

    let mut scan = scan_trees(&roots, opts, &excludes, progress)?;
    let mut summary = Summary {
        skipped: scan.skipped,
        ..Summary::default()
    };
    let (parent_entries, parent_time) = parent.as_ref().map_or((&[][..], Time::default()), |p| {
        (&p.entries[..], p.meta.time)
    });
    let plan = plan(
        &mut scan.entries,
        parent_entries,
        parent_time,
        &|id| index.contains(id),
        &mut summary,
    );
    let parent_id = parent.as_ref().map(|p| p.id);
    drop(parent);
    let mut errors = std::mem::take(&mut scan.errors);
    let report = |summary, snapshot, errors| BackupReport {
        snapshot,
        parent: parent_id,
        summary,
        errors,
        bytes_new_or_changed: plan.bytes_to_read,
    };
    if opts.dry_run {
        finish_summary(&mut summary, &scan.entries, &errors, started);
        return Ok(report(summary, None, errors));
    }

    check_lock(lock.as_ref())?;
    let stage = Stage {
        repo,
        index: &index,
        lock: lock.as_ref(),
        progress,
    };
    let (outcomes, index_data) = stage.store(opts, &plan, &scan.entries, &mut summary)?;
    let keep = apply(
        outcomes,
        &plan.jobs,
        &mut scan.entries,
        &mut summary,
        &mut errors,
    );
    stage.save_index(index_data)?;
    let entries: Vec<Entry> = scan
        .entries
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect();
    finish_summary(&mut summary, &entries, &errors, started);
    let meta = SnapshotMeta {
        version: SNAPSHOT_VERSION,
        time,
        host,
        paths: root_bytes,
        tags: opts.tags.clone(),
        parent: parent_id,
        summary: summary.clone(),
        entries: entries.len() as u64,
    };
    let id = stage.save_snapshot(&meta, &entries)?;
    Ok(report(summary, Some(id), errors))
}

/// Walks the trees to back up (metadata only).
fn scan_trees(
    roots: &[PathBuf],
    opts: &BackupOptions,
    excludes: &PathMatcher,
    progress: &dyn Progress,
) -> Result<walk::Scan> {
    progress.start("scanning", None, None);
    let walk_opts = WalkOptions {
        excludes,
        one_file_system: opts.one_file_system,
        skip_dir: opts.skip_dir,
    };
    let scan = walk::scan(roots, &walk_opts, progress);
    progress.finish();
    crate::interrupt::check()?;
    Ok(scan)
}

/// What the storing and committing steps of one backup share.
struct Stage<'a> {
    repo: &'a Repository,
    index: &'a crate::repo::Index,
    lock: Option<&'a RepoLock>,
    progress: &'a dyn Progress,
}

impl Stage<'_> {
    /// Stores the chunks of the planned files on the worker pool while
    /// committer threads make full packs durable. Returns each file's
    /// outcome and the index data of every durable pack; interrupted, it
    /// indexes the durable packs and returns the interruption.
    fn store(
        &self,
        opts: &BackupOptions,
        plan: &Plan,
        entries: &[Entry],
        summary: &mut Summary,
    ) -> Result<(Vec<Outcome>, crate::repo::IndexData)> {
        let repo = self.repo;
        // The workers do no network round trips (packs are spooled, and sent
        // by the committers), so they are as many as the cores and the key
        // service need.
        let pool = Pool::for_cpu_and_keys(repo)?;
        let compression = opts.compression.unwrap_or(repo.config().compression);
        self.progress.start(
            "backing up",
            Some(plan.jobs.len() as u64),
            Some(plan.bytes_to_read),
        );
        let committers = committers(repo);
        // Full packs are committed (fsync and rename, or uploaded) by threads
        // of their own meanwhile, so the workers do not wait for the disk or
        // the network; the queue holds one pack per committer, so a slow store
        // slows the workers down instead of filling memory.
        let (tx, rx) = std::sync::mpsc::sync_channel::<FullPack>(committers);
        let rx = std::sync::Mutex::new(rx);
        let stop = AtomicBool::new(false);
        let (stored, committed, index_data) = std::thread::scope(|s| {
            let ctx = Ctx::new(
                repo,
                self.index,
                compression,
                pool.threads(),
                self.progress,
                tx,
                &stop,
            );
            let threads: Vec<_> = (0..committers)
                .map(|_| s.spawn(|| commit_packs(&rx, &stop, self.lock)))
                .collect();
            let outcomes = pool.install(|| store::store_all(&ctx, &plan.jobs, entries));
            if outcomes.is_err() {
                stop.store(true, Ordering::SeqCst); // no use sending the rest
            }
            // The open packs go to the committers too; then the queue closes.
            // Interrupted, they are dropped instead (their temporary objects
            // remove themselves) and the durable ones are indexed below.
            let data = match &outcomes {
                Err(Error::Interrupted(_)) => Ok(ctx.abandon()),
                _ => ctx.finish(summary),
            };
            let committed: Result<Vec<_>> = threads
                .into_iter()
                .map(|c| c.join().expect("the pack committers do not panic"))
                .collect();
            (outcomes, committed, data)
        });
        // A failed pack is the cause of the workers' "stopped" error: first.
        let committed = committed?;
        let mut index_data = index_data?;
        index_data.packs.extend(committed.into_iter().flatten());
        self.progress.finish();
        match stored {
            Err(Error::Interrupted(_)) => Err(interrupted(repo, index_data)),
            o => Ok((o?, index_data)),
        }
    }

    /// Indexes the new packs (checking the lock first).
    fn save_index(&self, index_data: crate::repo::IndexData) -> Result<()> {
        check_lock(self.lock)?;
        if !index_data.packs.is_empty() {
            self.repo.save_index(index_data)?;
        }
        Ok(())
    }

    fn save_snapshot(&self, meta: &SnapshotMeta, entries: &[Entry]) -> Result<Id> {
        // The last chance to stop: a snapshot written without the lock could
        // refer to packs a prune elsewhere is deleting.
        check_lock(self.lock)?;
        self.repo.save_snapshot(meta, entries)
    }
}

/// The error of a backup stopped by a signal, after indexing the packs it
/// had made durable: the next backup then reuses their chunks instead of
/// writing them again (and prune need not collect them).
fn interrupted(repo: &Repository, data: crate::repo::IndexData) -> Error {
    let packs = data.packs.len();
    let bytes: u64 = data.packs.iter().map(|p| p.size).sum();
    if packs == 0 {
        return Error::Interrupted("nothing saved (no snapshot written)".into());
    }
    match repo.save_index(data) {
        Ok(_) => Error::Interrupted(format!(
            "no snapshot saved; the {packs} data pack(s) already written ({bytes} bytes) are indexed, so the next backup reuses them"
        )),
        Err(e) => Error::Interrupted(format!(
            "no snapshot saved; indexing the {packs} data pack(s) already written failed ({e}): `envarc prune` removes them"
        )),
    }
}

/// Threads that commit full packs: as many as the store serves at once
/// (`max_in_flight`: one on a local disk, where more measured no faster),
/// within [`crate::repo::UPLOAD_MEMORY`].
fn committers(repo: &Repository) -> usize {
    let pack = repo.config().pack_size + u64::from(repo.chunker().params().max);
    let by_memory = usize::try_from(crate::repo::UPLOAD_MEMORY / pack.max(1)).unwrap_or(usize::MAX);
    repo.storage().max_in_flight().min(by_memory).max(1)
}

fn check_lock(lock: Option<&RepoLock>) -> Result<()> {
    lock.map_or(Ok(()), RepoLock::check)
}

/// Commits the packs that come through `rx` until every sender is gone,
/// checking the lock before each. After a failure it raises `stop` (the
/// workers give up) and drains the queue without committing, so that no
/// worker waits on a full queue; the first error is returned.
fn commit_packs(
    rx: &std::sync::Mutex<std::sync::mpsc::Receiver<FullPack>>,
    stop: &AtomicBool,
    lock: Option<&RepoLock>,
) -> Result<Vec<crate::repo::PackRecord>> {
    let mut done = Vec::new();
    let mut failed = None;
    loop {
        let next = rx.lock().expect("no panics holding it").recv();
        let Ok(pack) = next else {
            return failed.map_or(Ok(done), Err);
        };
        if failed.is_some() || stop.load(Ordering::SeqCst) {
            continue; // dropped: no object appears, its spool goes away
        }
        match check_lock(lock).and_then(|()| pack.commit()) {
            Ok(p) => done.push(p),
            Err(e) => {
                stop.store(true, Ordering::SeqCst);
                failed = Some(e);
            }
        }
    }
}

/// Puts stored files into the scan and drops failed ones (which were
/// counted as new or changed, and are neither). Returns which entries stay.
fn apply(
    outcomes: Vec<Outcome>,
    jobs: &[Job],
    entries: &mut [Entry],
    summary: &mut Summary,
    errors: &mut Vec<String>,
) -> Vec<bool> {
    let mut keep = vec![true; entries.len()];
    for o in outcomes {
        match o {
            Outcome::Stored {
                idx,
                entry,
                bytes_read,
            } => {
                entries[idx] = entry;
                summary.bytes_read += bytes_read;
            }
            Outcome::Failed { idx, message } => {
                keep[idx] = false;
                errors.push(message);
                match jobs
                    .binary_search_by_key(&idx, |j| j.idx)
                    .map(|j| jobs[j].new)
                {
                    Ok(true) => summary.files_new -= 1,
                    Ok(false) => summary.files_changed -= 1,
                    Err(_) => {}
                }
            }
        }
    }
    keep
}

fn finish_summary(s: &mut Summary, entries: &[Entry], errors: &[String], started: Instant) {
    for e in entries {
        match e.kind {
            EntryKind::File => {
                s.files += 1;
                s.total_bytes += e.size;
            }
            EntryKind::Dir => s.dirs += 1,
            EntryKind::Symlink => s.symlinks += 1,
        }
    }
    s.errors = errors.len() as u64;
    s.duration_ms = started.elapsed().as_millis() as u64;
}
