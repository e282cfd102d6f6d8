//! `envarc prune`: removes chunks no snapshot needs, under the exclusive
//! lock. A chunk is in use when a file of some snapshot lists it
//! ([`super::refs`]); of a chunk stored twice, one copy is kept (the one in
//! the newest pack). A pack with nothing in use is deleted; a pack more than
//! `repack_threshold` unused is repacked: the chunk messages in use are copied
//! byte for byte (same message, same header) into new packs, then it is
//! deleted ([`super::rewrite`] gives the order that never loses a chunk).
//! Packs no index lists (left by killed backups) and temporary objects of
//! interrupted writers are deleted too.
//!
//! Beside a running backup: a backup holds a shared lock, so prune cannot
//! start while one runs (exit 6, or `--retry-lock` waits) and no backup
//! starts while prune runs; on remote stores a backup stops before writing
//! its index or snapshot once its lock could have been judged stale
//! ([`crate::repo::RepoLock::check`]). Beyond the locks:
//!
//! - nothing younger than the grace period (default one hour, by the
//!   store's modification time) is touched: the packs, unindexed packs and
//!   temporary objects of a backup whose lock prune could not see (another
//!   host whose lock was removed by hand, a clock set wrong) stay;
//! - before each deletion, prune checks its own lock and lists the snapshots
//!   again: a snapshot it did not read (written by a backup it could not
//!   see) stops it before anything more is deleted.
//!
//! Prune refuses to run while any snapshot cannot be read: it could not know
//! what that snapshot needs.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::refs::used_chunks;
use super::rewrite::{rewrite_packs, ChunkAction, Engine, Item, PackJob, RewritePlan};
use crate::pool::Pool;
use crate::progress::Progress;
use crate::repo::storage::ObjectInfo;
use crate::repo::{ChunkId, Id, Index, IndexedChunk, LockKind, PackFile, RepoLock, Repository};
use crate::{Error, Result};

/// Default grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Default share of unused bytes above which a pack is repacked.
pub const DEFAULT_REPACK_THRESHOLD: f64 = 0.5;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Decide and count; change nothing (and take no lock).
    pub dry_run: bool,
    /// Objects modified less than this long ago are left alone.
    pub grace: Duration,
    /// Repack a pack when more than this share of its bytes is unused.
    pub repack_threshold: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            grace: DEFAULT_GRACE,
            repack_threshold: DEFAULT_REPACK_THRESHOLD,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: u64,
    /// Chunk copies in use, and the bytes of their messages.
    pub chunks_used: u64,
    pub bytes_used: u64,
    /// Chunk copies no snapshot needs (unused chunks, extra copies).
    pub chunks_unused: u64,
    pub bytes_unused: u64,
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    /// Bytes of chunk messages copied into new packs.
    pub bytes_repacked: u64,
    /// Bytes of the packs and other objects removed, minus those written anew.
    pub bytes_freed: u64,
    /// Packs with unused data left alone: younger than the grace period.
    pub packs_kept_recent: u64,
    /// Packs no index lists and temporary objects left alone: younger than
    /// the grace period (a running backup may still be writing them).
    pub unindexed_packs_kept_recent: u64,
    pub temporary_files_kept_recent: u64,
    /// Bytes all of those would free once old enough.
    pub bytes_kept_recent: u64,
    /// Seconds until the last of them is older than the grace period (a
    /// prune then frees them); 0 when nothing was kept for its age.
    pub kept_recent_freeable_in_s: u64,
    /// Packs with some unused data left alone because most of it is in use
    /// (repacking them would copy more than it frees).
    pub packs_kept_mostly_used: u64,
    pub bytes_kept_mostly_used: u64,
    /// Packs no index lists, deleted.
    pub unindexed_packs_deleted: u64,
    /// Temporary objects of interrupted writers, deleted.
    pub temporary_files_deleted: u64,
    /// Packs the index lists that are missing (a chunk in use among them
    /// cannot be restored; `envarc verify` tells which files it costs).
    pub missing_packs: Vec<String>,
    /// Chunks that could not be copied (their packs were kept).
    pub failed: Vec<String>,
}

/// Records an object kept because it is younger than the grace period.
fn kept_recent(
    r: &mut PruneReport,
    modified: Option<SystemTime>,
    bytes: u64,
    grace: Duration,
    now: SystemTime,
) {
    r.bytes_kept_recent += bytes;
    let left = match modified {
        Some(m) => (m + grace).duration_since(now).unwrap_or_default(),
        None => grace,
    };
    // Round up: "freeable in 0 s" would read as "now".
    let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
    r.kept_recent_freeable_in_s = r.kept_recent_freeable_in_s.max(secs);
}

fn older_than(modified: Option<SystemTime>, grace: Duration, now: SystemTime) -> bool {
    match modified {
        Some(m) => m + grace <= now,
        // A store that tells no times keeps everything for the grace period.
        None => grace.is_zero(),
    }
}

/// Per used chunk, the copy to keep: among packs that exist, the newest
/// (after an interrupted rewrap, the rewritten copy). Keyed by (pack
/// number, offset). Pure.
fn keepers(
    index: &Index,
    used: &HashSet<ChunkId>,
    stored: &HashMap<Id, PackFile>,
) -> HashSet<(u32, u64)> {
    let mut out = HashSet::new();
    let mut best: Option<(IndexedChunk, Option<SystemTime>)> = None;
    let mut flush = |b: &mut Option<(IndexedChunk, Option<SystemTime>)>| {
        if let Some((c, _)) = b.take() {
            out.insert((c.pack_no, c.location.offset));
        }
    };
    for c in index.chunks().filter(|c| used.contains(&c.id)) {
        if best.as_ref().is_some_and(|(b, _)| b.id != c.id) {
            flush(&mut best);
        }
        let Some(p) = stored.get(&c.location.pack) else {
            continue;
        };
        let better = best.as_ref().is_none_or(|(b, t)| {
            (p.modified, c.location.pack, c.location.offset)
                > (*t, b.location.pack, b.location.offset)
        });
        if better {
            best = Some((c, p.modified));
        }
    }
    flush(&mut best);
    out
}

/// What prune does, decided from the index, the references and the stored
/// packs alone.
pub struct PrunePlan<'a> {
    pub rewrite: RewritePlan<'a>,
    /// Packs no index lists, older than the grace period.
    pub unindexed: Vec<PackFile>,
    pub report: PruneReport,
}

/// Decides what to delete and repack. Pure.
pub fn plan<'a>(
    index: &'a Index,
    by_pack: &[Vec<IndexedChunk<'a>>],
    used: &HashSet<ChunkId>,
    stored: &HashMap<Id, PackFile>,
    now: SystemTime,
    opts: &PruneOptions,
) -> PrunePlan<'a> {
    let keep = keepers(index, used, stored);
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut rewrite = RewritePlan::default();
    for (no, chunks) in by_pack.iter().enumerate() {
        let pack = &index.packs()[no];
        let (live, dead): (Vec<&IndexedChunk>, Vec<&IndexedChunk>) = chunks
            .iter()
            .partition(|c| keep.contains(&(c.pack_no, c.location.offset)));
        let live_bytes: u64 = live.iter().map(|c| c.location.length).sum();
        let dead_bytes: u64 = dead.iter().map(|c| c.location.length).sum();
        report.chunks_used += live.len() as u64;
        report.bytes_used += live_bytes;
        report.chunks_unused += dead.len() as u64;
        report.bytes_unused += dead_bytes;
        let Some(file) = stored.get(&pack.id) else {
            report.missing_packs.push(pack.id.to_hex());
            continue;
        };
        if dead.is_empty() {
            continue;
        }
        if !older_than(file.modified, opts.grace, now) {
            report.packs_kept_recent += 1;
            kept_recent(&mut report, file.modified, dead_bytes, opts.grace, now);
            continue;
        }
        if !live.is_empty() {
            let total = (live_bytes + dead_bytes) as f64;
            if dead_bytes as f64 <= opts.repack_threshold * total {
                report.packs_kept_mostly_used += 1;
                report.bytes_kept_mostly_used += dead_bytes;
                continue;
            }
            report.packs_repacked += 1;
            report.bytes_repacked += live_bytes;
        } else {
            report.packs_deleted += 1;
        }
        report.bytes_freed += file.size;
        rewrite.packs.push(PackJob {
            pack: pack.id,
            items: live
                .into_iter()
                .map(|c| Item {
                    chunk: *c,
                    action: ChunkAction::Copy,
                })
                .collect(),
        });
    }
    let unindexed = unindexed_packs(index, stored, now, opts, &mut report);
    report.bytes_freed = report.bytes_freed.saturating_sub(report.bytes_repacked);
    PrunePlan {
        rewrite,
        unindexed,
        report,
    }
}

/// Packs no index lists: those older than the grace period go (their
/// bytes counted as freed), the others are counted as kept. Pure.
fn unindexed_packs(
    index: &Index,
    stored: &HashMap<Id, PackFile>,
    now: SystemTime,
    opts: &PruneOptions,
    report: &mut PruneReport,
) -> Vec<PackFile> {
    let indexed: HashSet<Id> = index.packs().iter().map(|p| p.id).collect();
    for p in stored.values() {
        if !indexed.contains(&p.id) && !older_than(p.modified, opts.grace, now) {
            report.unindexed_packs_kept_recent += 1;
            kept_recent(report, p.modified, p.size, opts.grace, now);
        }
    }
    let mut unindexed: Vec<PackFile> = stored
        .values()
        .filter(|p| !indexed.contains(&p.id) && older_than(p.modified, opts.grace, now))
        .cloned()
        .collect();
    unindexed.sort_by_key(|p| p.id);
    report.unindexed_packs_deleted = unindexed.len() as u64;
    report.bytes_freed += unindexed.iter().map(|p| p.size).sum::<u64>();
    unindexed
}

/// Fails if a snapshot appeared that prune did not read: a backup wrote it
/// without a lock prune could see, and it may need what prune would delete.
fn no_new_snapshots(repo: &Repository, known: &HashSet<Id>) -> Result<()> {
    match repo
        .list_snapshots()?
        .into_iter()
        .find(|id| !known.contains(id))
    {
        None => Ok(()),
        Some(id) => Err(Error::Locked(format!(
            "snapshot {} appeared while prune ran: a backup wrote it without a lock prune could \
             see. Prune stopped before deleting anything more; nothing the snapshots need was \
             removed. Run prune again once no backup runs",
            id.short()
        ))),
    }
}

/// Removes unreferenced data (see the module documentation).
pub fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let lock = if opts.dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, progress)?)
    };
    prune_locked(repo, lock.as_ref(), opts, progress)
}

/// [`prune`] for a caller that holds the exclusive lock (`None`: a dry run).
pub fn prune_locked(
    repo: &Repository,
    lock: Option<&RepoLock>,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let pool = Pool::for_repo(repo)?;
    let (snaps, used) = used_chunks(repo, &pool, progress)?;
    snaps.require_complete("prune")?;
    let index = repo.load_index()?;
    let by_pack = index.by_pack();
    let stored: HashMap<Id, PackFile> = repo.list_packs()?.into_iter().map(|p| (p.id, p)).collect();
    let now = SystemTime::now();
    let p = plan(&index, &by_pack, &used, &stored, now, opts);
    let (leftovers, young) = leftovers(repo, opts.grace, now)?;
    let mut report = p.report;
    report.temporary_files_kept_recent = young.len() as u64;
    for o in &young {
        kept_recent(&mut report, o.modified, o.size, opts.grace, now);
    }
    report.snapshots = snaps.all.len() as u64;
    report.temporary_files_deleted = leftovers.len() as u64;
    report.bytes_freed += leftovers.iter().map(|o| o.size).sum::<u64>();
    let Some(lock) = lock else {
        return Ok(report);
    };
    let known: HashSet<Id> = snaps.all.iter().map(|(id, _)| *id).collect();
    let guard = || -> Result<()> {
        crate::interrupt::check()?;
        lock.check()?;
        no_new_snapshots(repo, &known)
    };
    let engine = Engine {
        repo,
        index: &index,
        by_pack: &by_pack,
        rekey: None,
        phase: "repacking",
        progress,
        batch_bytes: 0,
    };
    let done = rewrite_packs(&engine, p.rewrite, &guard)?;
    report.failed = done.failed;
    guard()?;
    for pack in &p.unindexed {
        repo.delete_pack(&pack.id)?;
    }
    for o in &leftovers {
        repo.storage().remove_leftover(o).map_err(|e| {
            Error::io(
                format!("removing {} in {}", o.name, repo.storage().location()),
                e,
            )
        })?;
    }
    Ok(report)
}

/// Temporary objects of interrupted writers: those older than the grace
/// period, and the younger ones (kept: their writer may still be running).
fn leftovers(
    repo: &Repository,
    grace: Duration,
    now: SystemTime,
) -> Result<(Vec<ObjectInfo>, Vec<ObjectInfo>)> {
    let all = repo.storage().leftovers().map_err(|e| {
        Error::io(
            format!("listing temporary objects in {}", repo.storage().location()),
            e,
        )
    })?;
    Ok(all
        .into_iter()
        .partition(|o| older_than(o.modified, grace, now)))
}
