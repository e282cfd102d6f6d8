//! The chunk checks of verify, pack by pack: every copy of every needed
//! chunk is checked structurally (header, key policy, data key, context),
//! and the chosen ones are read in full (authenticated, decompressed, MAC).
//! A chunk listed at several places is sound when any copy is.

use std::collections::{HashMap, HashSet};

use rayon::prelude::*;

use crate::progress::Progress;
use crate::repo::{pack_name, ChunkId, Index, IndexedChunk, Repository};
use crate::Error;

use super::{problem, Class, ObjectKind, Problem, ReadData, VerifyReport};

/// A copy's check: `Some(bytes)` when it was read in full.
type Checked = std::result::Result<Option<u64>, (Class, String)>;

fn class_of(e: &Error) -> (Class, String) {
    (Class::of(e), e.to_string())
}

/// Checks the copies of wanted chunks in one pack.
fn check_pack(
    repo: &Repository,
    copies: &[(IndexedChunk, bool)],
    pack_len: Option<u64>,
    buf: &mut Vec<u8>,
) -> Vec<(ChunkId, Checked)> {
    let Some(&(first, _)) = copies.first() else {
        return Vec::new();
    };
    let pack = first.location.pack;
    let Some(pack_len) = pack_len else {
        let why = format!("its pack {pack} is missing from data/");
        return copies
            .iter()
            .map(|(c, _)| (c.id, Err((Class::Missing, why.clone()))))
            .collect();
    };
    let read_bytes: u64 = copies
        .iter()
        .filter(|c| c.1)
        .map(|c| c.0.location.length)
        .sum();
    // Read the pack whole when most of it is to be read anyway.
    let mut whole = if read_bytes * 2 > pack_len {
        // A pack that is not the listed size (changed since the listing)
        // is read chunk by chunk instead, where a short read is an error.
        let read = repo.storage().read_into(&pack_name(&pack), buf);
        read.ok()
            .filter(|()| buf.len() as u64 == pack_len)
            .map(|()| &mut buf[..])
    } else {
        None
    };
    let mut clean_from = 0u64;
    copies
        .iter()
        .map(|(c, read)| {
            let loc = c.location;
            let end = loc.offset.saturating_add(loc.length);
            if end > pack_len {
                return (c.id, Err((Class::Corrupt, format!(
                    "its pack {pack} is {pack_len} bytes, too short for the chunk at bytes {}..{end} (the pack was truncated)",
                    loc.offset
                ))));
            }
            // A copy is decrypted where it lies in the pack read whole,
            // unless an earlier one was decrypted over some of its bytes
            // (two index entries for one place, or overlapping ones): that
            // one is read again.
            let in_place = whole.as_mut().filter(|_| loc.offset >= clean_from);
            let r = match (in_place, *read) {
                (Some(bytes), true) => {
                    clean_from = end;
                    repo.open_chunk_in_place(&mut bytes[loc.offset as usize..end as usize], &loc, &c.id)
                        .map(|_| Some(loc.raw_length))
                }
                (None, true) => repo.read_chunk_data_at(&loc, &c.id).map(|d| Some(d.len() as u64)),
                (_, false) => repo.check_chunk_header(&loc, &c.id).map(|_| None),
            };
            (c.id, r.map_err(|e| class_of(&e)))
        })
        .collect()
}

/// Runs the chunk checks; returns the damaged chunks as problems (without
/// references yet) and counts what was read into `report`.
pub(super) fn check(
    repo: &Repository,
    index: &Index,
    packs: &HashMap<crate::repo::Id, u64>,
    wanted: &HashSet<ChunkId>,
    read_data: &ReadData,
    report: &mut VerifyReport,
    progress: &dyn Progress,
) -> HashMap<ChunkId, Problem> {
    let by_pack = plan_reads(index, wanted, read_data);
    let total: u64 = by_pack
        .iter()
        .flatten()
        .filter(|c| c.1)
        .map(|c| c.0.location.raw_length)
        .sum();
    let phase = if *read_data == ReadData::None {
        "checking chunks"
    } else {
        "reading data"
    };
    progress.start(phase, Some(by_pack.len() as u64), Some(total));
    let results: Vec<(ChunkId, Checked)> = by_pack
        .par_iter()
        // One pack buffer per worker, reused from pack to pack.
        .map_init(Vec::new, |buf, copies| {
            if crate::interrupt::requested() {
                return Vec::new();
            }
            let pack_len = packs.get(&copies[0].0.location.pack).copied();
            let r = check_pack(repo, copies, pack_len, buf);
            let bytes = r
                .iter()
                .filter_map(|(_, c)| c.as_ref().ok().copied().flatten())
                .sum();
            progress.advance(1, bytes);
            r
        })
        .flatten_iter()
        .collect();
    progress.finish();
    let damaged = tally(results, wanted, index, report);
    // No warning per damaged chunk here: each becomes a problem of the
    // report, which names it once (on stdout, or on stderr under -q).
    damaged
}

/// The wanted chunks grouped by pack (each copy of a chunk under its own
/// pack), each marked with whether its data is to be read.
fn plan_reads<'a>(
    index: &'a Index,
    wanted: &HashSet<ChunkId>,
    read_data: &ReadData,
) -> Vec<Vec<(IndexedChunk<'a>, bool)>> {
    let read = read_data.select(wanted, &mut rand::thread_rng());
    let selected: HashMap<ChunkId, bool> =
        wanted.iter().map(|id| (*id, read.contains(id))).collect();
    index
        .by_pack()
        .into_iter()
        .map(|v| {
            v.into_iter()
                .filter_map(|c| selected.get(&c.id).map(|r| (c, *r)))
                .collect::<Vec<_>>()
        })
        .filter(|v: &Vec<_>| !v.is_empty())
        .collect()
}

/// A chunk is damaged when no copy of it checked out; one that no index
/// lists is missing. Counts what was read into `report`.
fn tally(
    results: Vec<(ChunkId, Checked)>,
    wanted: &HashSet<ChunkId>,
    index: &Index,
    report: &mut VerifyReport,
) -> HashMap<ChunkId, Problem> {
    let mut sound: HashMap<ChunkId, Option<u64>> = HashMap::new();
    let mut damaged: HashMap<ChunkId, Problem> = HashMap::new();
    for (id, r) in results {
        match r {
            Ok(n) => {
                let e = sound.entry(id).or_insert(None);
                *e = e.or(n);
            }
            Err((class, error)) => {
                damaged.entry(id).or_insert_with(|| {
                    problem(ObjectKind::Chunk, id.to_hex(), class, error, String::new())
                });
            }
        }
    }
    damaged.retain(|id, _| !sound.contains_key(id));
    for id in wanted.iter().filter(|id| !index.contains(id)) {
        damaged.insert(
            *id,
            problem(
                ObjectKind::Chunk,
                id.to_hex(),
                Class::Missing,
                "is not in the index: no readable index file lists it".into(),
                String::new(),
            ),
        );
    }
    for n in sound.values().flatten() {
        report.chunks_read += 1;
        report.bytes_read += n;
    }
    damaged
}
