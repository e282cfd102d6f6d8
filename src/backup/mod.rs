//! The backup pipeline: walk the trees, compare with the parent snapshot,
//! encrypt new and changed files in parallel (one message and one data key per
//! file), then commit: packs (fsynced as each is completed), then the index
//! file listing them, then the snapshot. A crash at any point leaves at most
//! data no snapshot refers to, which prune removes.
//!
//! Per-file problems (permission denied, vanished, changed while being read)
//! are warned about and counted, and the snapshot is saved without those
//! files; a repository or key problem stops the run before any snapshot.

mod store;
pub mod walk;

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::Mutex;
use std::time::Instant;

use crate::progress::Progress;
use crate::repo::{
    Entry, EntryKind, Id, Index, LockKind, PackRecord, Repository, SnapshotMeta, Summary, Time,
    SNAPSHOT_VERSION,
};
use crate::{Error, Result};

use store::{Job, Outcome, Shared};
use walk::{Excludes, WalkOptions};

/// A file whose ctime is this close to (or after) the start of the backup that
/// read it is read again next time even if it looks unchanged: a second change
/// within the same timestamp tick would not show in size, mtime or ctime.
const RACY_MARGIN_NS: i128 = 50_000_000;

#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    pub paths: Vec<PathBuf>,
    /// `--exclude` patterns (see [`walk::Excludes`]), exclude-file lines included.
    pub excludes: Vec<String>,
    pub one_file_system: bool,
    pub tags: Vec<String>,
    /// Host name recorded in the snapshot; this machine's when `None`.
    pub host: Option<String>,
    /// `latest`, an ID or a prefix; when `None`, the latest snapshot of the
    /// same host and paths.
    pub parent: Option<String>,
    /// Walk and compare only: read no content, write nothing.
    pub dry_run: bool,
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

/// Whether `now` may reuse the content of `old` without reading the file.
fn unchanged(old: &Entry, now: &Entry, parent_time: Time, index: &Index) -> bool {
    old.kind == EntryKind::File
        && now.kind == EntryKind::File
        && old.size == now.size
        && old.mtime == now.mtime
        && old.ctime == now.ctime
        && old.inode == now.inode
        && old.device == now.device
        && old.ctime.as_nanos() < parent_time.as_nanos() - RACY_MARGIN_NS
        && old.content.is_some_and(|id| index.contains(&id))
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
        .map(|p| std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str()).to_vec())
        .collect();
    let host = opts.host.clone().unwrap_or_else(crate::repo::hostname);
    let excludes = Excludes::new(&opts.excludes)?;
    let _lock = if opts.dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Shared, progress)?)
    };
    let index = repo.load_index()?;
    let parent = choose_parent(repo, opts.parent.as_deref(), &host, &root_bytes, progress)?;

    let repo_dir = std::fs::metadata(repo.root())
        .map_err(|e| Error::io(format!("reading {}", repo.root().display()), e))?;
    progress.start("scanning", None, None);
    let mut scan = walk::scan(
        &roots,
        &WalkOptions {
            excludes: &excludes,
            one_file_system: opts.one_file_system,
            skip_dir: Some((repo_dir.dev(), repo_dir.ino())),
        },
        progress,
    );
    progress.finish();

    let mut summary = Summary::default();
    let mut jobs = Vec::new();
    let mut bytes_to_read = 0u64;
    {
        let by_path: HashMap<&[u8], &Entry> = parent
            .iter()
            .flat_map(|p| p.entries.iter().map(|e| (e.path.as_slice(), e)))
            .collect();
        let parent_time = parent.as_ref().map(|p| p.meta.time).unwrap_or_default();
        for (idx, e) in scan.entries.iter_mut().enumerate() {
            if e.kind != EntryKind::File {
                continue;
            }
            match by_path.get(e.path.as_slice()) {
                Some(old) if unchanged(old, e, parent_time, &index) => {
                    e.content = old.content;
                    summary.files_unchanged += 1;
                }
                old => {
                    let new = !old.is_some_and(|o| o.kind == EntryKind::File);
                    if new {
                        summary.files_new += 1;
                    } else {
                        summary.files_changed += 1;
                    }
                    bytes_to_read += e.size;
                    jobs.push(Job {
                        idx,
                        path: e.path().to_path_buf(),
                        new,
                    });
                }
            }
        }
    }
    let parent_id = parent.as_ref().map(|p| p.id);
    drop(parent);
    let mut errors = std::mem::take(&mut scan.errors);
    summary.skipped = scan.skipped;

    if opts.dry_run {
        finish_summary(&mut summary, &scan.entries, &errors, started);
        return Ok(BackupReport {
            snapshot: None,
            parent: parent_id,
            summary,
            errors,
            bytes_new_or_changed: bytes_to_read,
        });
    }

    progress.start("backing up", Some(jobs.len() as u64), Some(bytes_to_read));
    let (outcomes, packs) = run_workers(repo, &jobs, &scan.entries, progress)?;
    progress.finish();

    let mut keep = vec![true; scan.entries.len()];
    for o in outcomes {
        match o {
            Outcome::Stored {
                idx,
                entry,
                bytes_read,
                bytes_stored,
            } => {
                scan.entries[idx] = entry;
                summary.bytes_read += bytes_read;
                summary.bytes_stored += bytes_stored;
                summary.messages_added += 1;
            }
            Outcome::Failed { idx, message } => {
                keep[idx] = false;
                errors.push(message);
            }
        }
    }
    // A failed file was counted as new or changed; it is in neither.
    for (idx, _) in keep.iter().enumerate().filter(|(_, k)| !**k) {
        let job = jobs.binary_search_by_key(&idx, |j| j.idx).map(|j| &jobs[j]);
        match job {
            Ok(j) if j.new => summary.files_new -= 1,
            Ok(_) => summary.files_changed -= 1,
            Err(_) => {}
        }
    }

    if !packs.is_empty() {
        repo.write_index_file(&packs)?;
    }
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
    let id = repo.save_snapshot(&meta, &entries)?;
    Ok(BackupReport {
        snapshot: Some(id),
        parent: parent_id,
        summary,
        errors,
        bytes_new_or_changed: bytes_to_read,
    })
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

/// Runs the workers (one per thread of rayon's pool, or more; see below) over `jobs`. Returns every
/// outcome and every committed pack, or the first repository error.
fn run_workers(
    repo: &Repository,
    jobs: &[Job],
    entries: &[Entry],
    progress: &dyn Progress,
) -> Result<(Vec<Outcome>, Vec<PackRecord>)> {
    if jobs.is_empty() {
        return Ok((Vec::new(), Vec::new()));
    }
    let shared = Shared {
        repo,
        jobs,
        entries,
        next: AtomicUsize::new(0),
        abort: AtomicBool::new(false),
        progress,
    };
    // One worker per core, or more for a remote key service: each worker
    // blocks on its own GenerateDataKey round trip, so the service's
    // concurrency (not the core count) bounds small-file throughput.
    let workers = rayon::current_num_threads()
        .max(repo.provider().max_in_flight())
        .clamp(1, jobs.len());
    let results = Mutex::new(Vec::with_capacity(workers));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                let r = store::work(&shared);
                results.lock().expect("no worker panics holding it").push(r);
            });
        }
    });
    let mut outcomes = Vec::with_capacity(jobs.len());
    let mut packs = Vec::new();
    for r in results.into_inner().expect("workers done") {
        let (o, p) = r?;
        outcomes.extend(o);
        packs.extend(p);
    }
    Ok((outcomes, packs))
}
