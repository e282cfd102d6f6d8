//! What rewrap and reencrypt share: every message wrapped by a set of key
//! versions is written anew (new message ID) under another key, chunks
//! through the rewrite engine, then the index files, the snapshots and the
//! sealed config. They differ only in the [`Rekey`] (rewrap keeps each data
//! key and wraps it anew; reencrypt makes fresh ones) and in which versions
//! they move away from.
//!
//! Order: chunks batch by batch (each batch's new packs and index files
//! durable before its old ones go), then the index files still under an old
//! version, then the snapshots (each replaced atomically, same ID), then the
//! config. Killed at any point, a rerun finds what is still under an old
//! version and goes on; a chunk left with an old and a new copy keeps the new
//! one and drops the old. Unused chunks are rewritten like used ones: only
//! prune removes data, after its grace period.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::messages::{config_wrapped_by, renew_snapshots, scan, wrapped_by};
use super::refs::{references, Touching};
use super::rewrite::{rewrite_packs, ChunkAction, Engine, Item, PackJob, Rekey, RewritePlan};
use crate::pool::Pool;
use crate::progress::Progress;
use crate::repo::{ChunkId, Id, Index, IndexedChunk, KeyVersion, RepoLock, Repository};
use crate::Result;

/// Counts of a chunk plan.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChunkCounts {
    /// Chunk copies under a picked version, to be written anew.
    pub resealed: u64,
    pub resealed_bytes: u64,
    /// Copies under no picked version.
    pub current: u64,
    /// Current copies that move because they share a pack with rewritten ones.
    pub copied: u64,
    /// Copies under a picked version of chunks that also have a current
    /// copy (left by an interrupted run): dropped.
    pub dropped: u64,
    /// Copies under a picked version in packs that are missing.
    pub missing: u64,
}

/// Which chunk copies move. A chunk with a copy under no picked version (in
/// a pack that exists) keeps that copy and drops the others; otherwise every
/// copy under a picked version is resealed. Every other copy in a pack that
/// changes is copied. Pure.
pub fn plan_chunks<'a>(
    index: &'a Index,
    by_pack: &[Vec<IndexedChunk<'a>>],
    stored: &HashSet<Id>,
    pick: &dyn Fn(&KeyVersion) -> bool,
) -> (RewritePlan<'a>, ChunkCounts, HashSet<ChunkId>) {
    let old: Vec<bool> = index
        .key_sets()
        .iter()
        .map(|s| s.iter().any(pick))
        .collect();
    let is_old = |c: &IndexedChunk| old[c.key_set_no as usize];
    let exists = |c: &IndexedChunk| stored.contains(&c.location.pack);
    // Chunks with an old copy and a current one: the old copies go.
    let mut seen: HashMap<ChunkId, (bool, bool)> = HashMap::new();
    for c in index.chunks().filter(|c| exists(c)) {
        let e = seen.entry(c.id).or_default();
        if is_old(&c) {
            e.0 = true;
        } else {
            e.1 = true;
        }
    }
    let droppable: HashSet<ChunkId> = seen
        .into_iter()
        .filter(|(_, (o, c))| *o && *c)
        .map(|(id, _)| id)
        .collect();
    let mut counts = ChunkCounts::default();
    let mut resealed = HashSet::new();
    let mut plan = RewritePlan::default();
    for chunks in by_pack {
        let Some(first) = chunks.first() else {
            continue;
        };
        if !exists(first) {
            counts.missing += chunks.iter().filter(|c| is_old(c)).count() as u64;
            continue;
        }
        counts.current += chunks.iter().filter(|c| !is_old(c)).count() as u64;
        if !chunks.iter().any(is_old) {
            continue;
        }
        let mut items = Vec::new();
        for c in chunks {
            let action = match (is_old(c), droppable.contains(&c.id)) {
                (false, _) => ChunkAction::Copy,
                (true, true) => {
                    counts.dropped += 1;
                    continue;
                }
                (true, false) => ChunkAction::Reseal,
            };
            if action == ChunkAction::Copy {
                counts.copied += 1;
            } else {
                counts.resealed += 1;
                counts.resealed_bytes += c.location.length;
                resealed.insert(c.id);
            }
            items.push(Item { chunk: *c, action });
        }
        plan.packs.push(PackJob {
            pack: first.location.pack,
            items,
        });
    }
    (plan, counts, resealed)
}

/// What to move away from, and how.
pub struct RekeyRun<'a> {
    /// The key versions whose messages are written anew.
    pub pick: &'a (dyn Fn(&KeyVersion) -> bool + Sync),
    pub rekey: &'a dyn Rekey,
    /// Progress phase of the chunk rewrite.
    pub phase: &'a str,
    /// Write the config anew when a picked version wraps it.
    pub reseal_config: bool,
    /// Bytes of chunk messages per batch; 0: 16 packs' worth.
    pub batch_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RekeyReport {
    pub dry_run: bool,
    /// Chunk messages written anew (or, dry, to be), and their bytes.
    pub chunks: u64,
    pub bytes: u64,
    /// Chunk copies under no picked version.
    pub chunks_current: u64,
    /// Of those, copied unchanged because they shared a pack with others.
    pub chunks_copied: u64,
    /// Old extra copies dropped (left by an interrupted run).
    pub copies_dropped: u64,
    /// Data keys asked from the key provider (one per old data key).
    pub data_keys: u64,
    pub packs_written: u64,
    pub packs_deleted: u64,
    /// Snapshots and files that need a rewritten chunk.
    pub snapshots_affected: u64,
    pub files_affected: u64,
    /// Snapshot messages and index files written anew (same snapshot IDs).
    pub snapshots_rewritten: u64,
    pub index_files_rewritten: u64,
    pub config_renewed: bool,
    /// What could not be rewritten (it keeps its old message), with the reason.
    pub failed: Vec<String>,
}

/// Runs a rewrap or reencrypt (see the module docs). `lock`: the exclusive
/// lock; `None` for a dry run, which only counts.
pub fn run(
    repo: &mut Repository,
    lock: Option<&RepoLock>,
    job: &RekeyRun,
    progress: &dyn Progress,
) -> Result<RekeyReport> {
    let pool = Pool::for_repo(repo)?;
    let index = repo.load_index()?;
    let by_pack = index.by_pack();
    let stored: HashSet<Id> = repo.list_packs()?.into_iter().map(|p| p.id).collect();
    let (mut plan, counts, resealed) = plan_chunks(&index, &by_pack, &stored, job.pick);
    let others = scan(repo, &pool, progress)?;
    let touching = Touching::new(&resealed);
    references(repo, &pool, &touching, progress)?;
    let (snapshots_affected, files_affected) = touching.counts();
    let snapshots = wrapped_by(&others.snapshots, job.pick);
    plan.renew_index_files = wrapped_by(&others.index_files, job.pick);
    let config = job.reseal_config && config_wrapped_by(&others, job.pick);
    let mut report = RekeyReport {
        dry_run: lock.is_none(),
        chunks: counts.resealed,
        bytes: counts.resealed_bytes,
        chunks_current: counts.current,
        chunks_copied: counts.copied,
        copies_dropped: counts.dropped,
        snapshots_affected,
        files_affected,
        snapshots_rewritten: snapshots.len() as u64,
        index_files_rewritten: plan.renew_index_files.len() as u64,
        config_renewed: config,
        failed: others.problems(),
        ..Default::default()
    };
    if counts.missing > 0 {
        report.failed.push(format!(
            "chunk copies in packs that are missing: {}; they cannot be rewritten (`envarc verify` \
             tells which files they cost)",
            counts.missing
        ));
    }
    let Some(lock) = lock else {
        return Ok(report);
    };
    let guard = || -> Result<()> {
        crate::interrupt::check()?;
        lock.check()
    };
    let engine = Engine {
        repo,
        index: &index,
        by_pack: &by_pack,
        rekey: Some(job.rekey),
        phase: job.phase,
        progress,
        batch_bytes: job.batch_bytes,
    };
    let done = rewrite_packs(&engine, plan, &guard)?;
    report.chunks = done.chunks_resealed;
    report.data_keys = done.data_keys;
    report.packs_written = done.packs_written;
    report.packs_deleted = done.packs_deleted;
    report.failed.extend(done.failed);
    let (n, failed) = renew_snapshots(repo, &snapshots, lock, progress)?;
    report.snapshots_rewritten = n;
    report.failed.extend(failed);
    if config {
        lock.check()?;
        repo.reseal_config()?;
    }
    Ok(report)
}
