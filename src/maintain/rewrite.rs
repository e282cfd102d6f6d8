//! The rewrite engine of prune, rewrap and reencrypt: retire packs, after
//! writing what of them stays into new packs, in an order that never loses a
//! chunk:
//!
//! 1. the chunks that stay go into new packs ([`ChunkAction::Copy`]: the message
//!    byte for byte, same message ID and header; [`ChunkAction::Reseal`]: a *new*
//!    message, new message ID, under the data key a [`Rekey`] gives), each
//!    pack committed (durable) by the storage;
//! 2. index files for the new packs (durable);
//! 3. for every index file that lists a retired pack: one replacement
//!    listing its other packs (durable), then the old file is deleted;
//! 4. the retired packs are deleted: no index file lists them any more.
//!
//! The caller's guard (the lock check, and for prune that no snapshot
//! appeared) runs before anything is deleted. Killed after 1, the new packs
//! are unindexed (prune removes them after its grace period); after 2 or
//! during 3, chunks are listed at two places, each a complete copy (readers
//! try either, the next run keeps one). Work goes in batches of about 16
//! packs' worth, each committed on its own, so a killed run keeps the batches
//! before. The writers run on the shared worker pool ([`crate::pool`]),
//! which is as wide as the provider's and the storage's `max_in_flight`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Range;

use crate::envelope::Header;
use crate::pool::Pool;
use crate::progress::Progress;
use crate::repo::{
    ChunkRecord, Compression, FileKey, Id, Index, IndexData, IndexedChunk, KeySetTable, PackRecord,
    Repository,
};
use crate::Result;

/// What becomes of one chunk message that stays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChunkAction {
    /// Its bytes, unchanged.
    Copy,
    /// A new message (new message ID) for its body, under the key the
    /// engine's [`Rekey`] makes.
    Reseal,
}

#[derive(Clone, Copy, Debug)]
pub struct Item<'a> {
    pub chunk: IndexedChunk<'a>,
    pub action: ChunkAction,
}

/// A pack to retire and the chunk messages of it that stay (the others are
/// dropped with it).
#[derive(Clone, Debug)]
pub struct PackJob<'a> {
    pub pack: Id,
    pub items: Vec<Item<'a>>,
}

/// What [`rewrite_packs`] does.
#[derive(Clone, Debug, Default)]
pub struct RewritePlan<'a> {
    pub packs: Vec<PackJob<'a>>,
    /// Index files to write anew although none of their packs is retired
    /// (rewrap, reencrypt: their message is under an old key version).
    pub renew_index_files: Vec<Id>,
}

impl RewritePlan<'_> {
    pub fn items(&self) -> u64 {
        self.packs.iter().map(|p| p.items.len() as u64).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.packs
            .iter()
            .flat_map(|p| &p.items)
            .map(|i| i.chunk.location.length)
            .sum()
    }
}

/// Makes the data key (and its EDKs) of the new message for a chunk whose
/// old message has `header`; the engine asks once per old data key.
pub trait Rekey: Sync {
    fn key_for(
        &self,
        repo: &Repository,
        header: &Header,
        compression: Compression,
    ) -> Result<FileKey>;
}

/// Everything a rewrite needs besides the plan.
pub struct Engine<'a> {
    pub repo: &'a Repository,
    pub index: &'a Index,
    /// `index.by_pack()`, computed once by the caller.
    pub by_pack: &'a [Vec<IndexedChunk<'a>>],
    /// For [`ChunkAction::Reseal`] items.
    pub rekey: Option<&'a dyn Rekey>,
    pub phase: &'a str,
    pub progress: &'a dyn Progress,
    /// Bytes of chunk messages per batch; 0: 16 packs' worth.
    pub batch_bytes: u64,
}

/// What [`rewrite_packs`] did.
#[derive(Clone, Debug, Default)]
pub struct RewriteOutcome {
    pub packs_written: u64,
    pub packs_deleted: u64,
    pub chunks_copied: u64,
    pub chunks_resealed: u64,
    /// Provider calls made for new data keys (one per old data key and batch).
    pub data_keys: u64,
    pub bytes_written: u64,
    pub index_files_written: u64,
    pub index_files_deleted: u64,
    /// Chunk messages that could not be read (their packs were kept), with the reason.
    pub failed: Vec<String>,
}

/// Splits packs into batches of about `bytes` of chunk messages each (at
/// least one pack per batch). Pure.
pub fn batches(packs: &[PackJob], bytes: u64) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut sum = 0u64;
    for (i, p) in packs.iter().enumerate() {
        sum += p.items.iter().map(|i| i.chunk.location.length).sum::<u64>();
        if sum >= bytes {
            out.push(start..i + 1);
            start = i + 1;
            sum = 0;
        }
    }
    if start < packs.len() {
        out.push(start..packs.len());
    }
    out
}

/// Which index files list which packs (by number in the loaded index), as
/// the rewrite changes them.
struct IndexFiles {
    files: BTreeMap<Id, Vec<u32>>,
    pack_no: HashMap<Id, u32>,
}

impl IndexFiles {
    fn of(index: &Index) -> IndexFiles {
        let mut files: BTreeMap<Id, Vec<u32>> = BTreeMap::new();
        let mut pack_no = HashMap::new();
        for (no, p) in index.packs().iter().enumerate() {
            pack_no.insert(p.id, no as u32);
            for f in &p.files {
                files.entry(*f).or_default().push(no as u32);
            }
        }
        IndexFiles { files, pack_no }
    }
}

/// Retires the plan's packs after writing what stays of them (see the
/// module docs); then renews the plan's index files that are still there.
/// `guard` runs before anything is deleted; its error stops the rewrite
/// there.
pub fn rewrite_packs(
    e: &Engine,
    mut plan: RewritePlan,
    guard: &dyn Fn() -> Result<()>,
) -> Result<RewriteOutcome> {
    plan.packs.sort_by_key(|p| p.pack);
    for p in &mut plan.packs {
        p.items.sort_by_key(|i| i.chunk.location.offset);
    }
    let pool = Pool::for_repo(e.repo)?;
    let mut files = IndexFiles::of(e.index);
    let mut out = RewriteOutcome::default();
    let batch_bytes = match e.batch_bytes {
        0 => e.repo.config().pack_size.saturating_mul(16),
        n => n,
    };
    e.progress
        .start(e.phase, Some(plan.items()), Some(plan.bytes()));
    for range in batches(&plan.packs, batch_bytes) {
        crate::interrupt::check()?;
        let jobs = &plan.packs[range];
        let written = super::rewrite_write::write_batch(e, &pool, jobs)?;
        out.packs_written += written.packs.len() as u64;
        out.chunks_copied += written.copied;
        out.chunks_resealed += written.resealed;
        out.data_keys += written.data_keys;
        out.bytes_written += written.packs.iter().map(|p| p.size).sum::<u64>();
        out.failed.extend(written.failed);
        let retired: HashSet<Id> = jobs
            .iter()
            .map(|j| j.pack)
            .filter(|p| !written.failed_packs.contains(p))
            .collect();
        let new = IndexData::new(written.key_sets, written.packs);
        commit(e, guard, &mut files, new, &retired, &[], &mut out)?;
    }
    e.progress.finish();
    let renew = plan.renew_index_files;
    commit(
        e,
        guard,
        &mut files,
        IndexData::default(),
        &HashSet::new(),
        &renew,
        &mut out,
    )?;
    Ok(out)
}

/// Steps 2 to 4 of the module docs for one batch.
fn commit(
    e: &Engine,
    guard: &dyn Fn() -> Result<()>,
    files: &mut IndexFiles,
    new: IndexData,
    retired: &HashSet<Id>,
    renew: &[Id],
    out: &mut RewriteOutcome,
) -> Result<()> {
    if !new.packs.is_empty() {
        out.index_files_written += e.repo.save_index(new)?.len() as u64;
    }
    let retired_nos: HashSet<u32> = retired
        .iter()
        .filter_map(|id| files.pack_no.get(id).copied())
        .collect();
    let affected: Vec<Id> = files
        .files
        .iter()
        .filter(|(f, packs)| renew.contains(f) || packs.iter().any(|p| retired_nos.contains(p)))
        .map(|(f, _)| *f)
        .collect();
    let survivors: BTreeSet<u32> = affected
        .iter()
        .flat_map(|f| files.files[f].iter().copied())
        .filter(|p| !retired_nos.contains(p))
        .collect();
    for part in listing(e, &survivors).split() {
        let id = e.repo.save_index_file(&part)?;
        let nos = part.packs.iter().map(|p| files.pack_no[&p.id]).collect();
        files.files.insert(id, nos);
        out.index_files_written += 1;
    }
    if affected.is_empty() && retired.is_empty() {
        return Ok(());
    }
    guard()?;
    for f in affected {
        e.repo.delete_index_file(&f)?;
        files.files.remove(&f);
        out.index_files_deleted += 1;
    }
    let mut retired: Vec<&Id> = retired.iter().collect();
    retired.sort();
    for id in retired {
        e.repo.delete_pack(id)?;
        out.packs_deleted += 1;
    }
    Ok(())
}

/// The index data of packs that stay listed, rebuilt from the loaded index.
fn listing(e: &Engine, packs: &BTreeSet<u32>) -> IndexData {
    let mut sets = KeySetTable::default();
    let records = packs
        .iter()
        .map(|&no| {
            let p = &e.index.packs()[no as usize];
            PackRecord {
                id: p.id,
                size: p.size,
                chunks: e.by_pack[no as usize]
                    .iter()
                    .map(|c| ChunkRecord {
                        id: c.id,
                        offset: c.location.offset as u32,
                        length: c.location.length as u32,
                        raw_length: c.location.raw_length as u32,
                        key_set: sets.number(c.key_set),
                    })
                    .collect(),
            }
        })
        .collect();
    IndexData::new(sets.into_sets(), records)
}

/// A chunk of `length` bytes at `offset` in pack `[pack; 32]`, to copy (the
/// tests of the planning and of the writer both build jobs from these).
#[cfg(test)]
pub(super) fn test_item(pack: u8, offset: u64, length: u64) -> Item<'static> {
    use crate::repo::ChunkId;
    Item {
        chunk: IndexedChunk::at(ChunkId([pack; 32]), Id([pack; 32]), offset, length),
        action: ChunkAction::Copy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(pack: u8, lengths: &[u64]) -> PackJob<'static> {
        PackJob {
            pack: Id([pack; 32]),
            items: lengths
                .iter()
                .map(|&length| test_item(pack, 0, length))
                .collect(),
        }
    }

    #[test]
    fn batches_hold_about_the_bytes_asked_and_every_pack_once() {
        let packs = vec![
            job(1, &[60, 50]),
            job(2, &[]),
            job(3, &[200]),
            job(4, &[10]),
            job(5, &[10]),
        ];
        assert_eq!(batches(&packs, 100), vec![0..1, 1..3, 3..5]);
        assert_eq!(batches(&packs, 1000), vec![0..5]);
        // An empty pack (only dropped chunks) rides with the next.
        assert_eq!(batches(&packs, 1), vec![0..1, 1..3, 3..4, 4..5]);
        assert!(batches(&[], 100).is_empty());
    }
}
