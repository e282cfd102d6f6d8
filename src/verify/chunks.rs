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

/// The most verify reads from a pack at once, per worker: neighbouring
/// chunks to be read are read together up to this much (a chunk longer
/// than this alone), which bounds memory to a window per worker rather
/// than a pack per worker.
const READ_WINDOW: u64 = 4 * 1024 * 1024;

/// A gap between two chunks to be read (chunks not wanted, or only their
/// headers) that is read through rather than ended with a new read.
const READ_THROUGH: u64 = 256 * 1024;

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
    let mut out = Vec::with_capacity(copies.len());
    let mut rest = copies;
    while let Some(&(c, read)) = rest.first() {
        let loc = c.location;
        let end = loc.offset.saturating_add(loc.length);
        let n = if end > pack_len {
            out.push((c.id, Err((Class::Corrupt, format!(
                "its pack {pack} is {pack_len} bytes, too short for the chunk at bytes {}..{end} (the pack was truncated)",
                loc.offset
            )))));
            1
        } else if !read {
            let r = repo.check_chunk_header(&loc, &c.id).map(|_| None);
            out.push((c.id, r.map_err(|e| class_of(&e))));
            1
        } else {
            let n = window_len(rest, pack_len);
            out.extend(read_window(repo, &rest[..n], buf));
            n
        };
        rest = &rest[n..];
    }
    out
}

/// How many of `copies` (sorted by offset; the first is to be read and
/// inside the pack) are read in one go: those that follow it in the pack,
/// are to be read, start at or after the end of the one before (a copy
/// that overlaps it, or a second index entry for the same place, is read
/// on its own, since decrypting in place overwrites the bytes), and end
/// within [`READ_WINDOW`] of the first's start.
fn window_len(copies: &[(IndexedChunk, bool)], pack_len: u64) -> usize {
    let start = copies[0].0.location.offset;
    let mut end = start + copies[0].0.location.length;
    let mut n = 1;
    for (c, read) in &copies[1..] {
        let loc = c.location;
        let next_end = loc.offset.saturating_add(loc.length);
        if !read
            || loc.offset < end
            || loc.offset - end > READ_THROUGH
            || next_end - start > READ_WINDOW
            || next_end > pack_len
        {
            break;
        }
        end = next_end;
        n += 1;
    }
    n
}

/// Reads the window of `copies` (see [`window_len`]) into `buf` with one
/// read and checks each copy where it lies. If the read fails (the pack
/// shrank or went away since it was listed), each copy is read on its own,
/// where the failure is reported against that chunk.
fn read_window(
    repo: &Repository,
    copies: &[(IndexedChunk, bool)],
    buf: &mut Vec<u8>,
) -> Vec<(ChunkId, Checked)> {
    let first = copies[0].0.location;
    let last = copies[copies.len() - 1].0.location;
    let start = first.offset;
    let len = last.offset + last.length - start;
    let read = repo
        .storage()
        .read_range_into(&pack_name(&first.pack), start, len, buf)
        .is_ok();
    copies
        .iter()
        .map(|(c, _)| {
            let loc = c.location;
            let r = if read {
                let at = (loc.offset - start) as usize;
                let message = &mut buf[at..at + loc.length as usize];
                repo.open_chunk_in_place(message, &loc, &c.id)
                    .map(|_| Some(loc.raw_length))
            } else {
                repo.read_chunk_data_at(&loc, &c.id)
                    .map(|d| Some(d.len() as u64))
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
        // One read buffer per worker, reused from window to window.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Id;

    const MIB: u64 = 1024 * 1024;

    /// Copies of one pack at (offset, length, to be read).
    fn copies(pack: Id, at: &[(u64, u64, bool)]) -> Vec<(IndexedChunk<'static>, bool)> {
        at.iter()
            .enumerate()
            .map(|(i, &(offset, length, read))| {
                let id = ChunkId([i as u8; 32]);
                (IndexedChunk::at(id, pack, offset, length), read)
            })
            .collect()
    }

    /// The windows `check_pack` reads, as counts of copies.
    fn windows(at: &[(u64, u64, bool)], pack_len: u64) -> Vec<usize> {
        let c = copies(Id::random(), at);
        let mut rest = &c[..];
        let mut out = Vec::new();
        while !rest.is_empty() {
            let n = if rest[0].1 {
                window_len(rest, pack_len)
            } else {
                1
            };
            out.push(n);
            rest = &rest[n..];
        }
        out
    }

    #[test]
    fn neighbouring_chunks_are_read_together_up_to_the_window() {
        // Sixteen 1 MiB chunks back to back: four windows of four.
        let at: Vec<_> = (0..16).map(|i| (i * MIB, MIB, true)).collect();
        assert_eq!(windows(&at, 16 * MIB), [4, 4, 4, 4]);
        // A chunk longer than the window is read alone, and so is the next
        // one if the two would not fit together.
        let at = [
            (0, 6 * MIB, true),
            (6 * MIB, MIB, true),
            (7 * MIB, MIB, true),
        ];
        assert_eq!(windows(&at, 8 * MIB), [1, 2]);
    }

    #[test]
    fn a_window_ends_where_reading_through_would_be_wrong_or_wasteful() {
        let k = 1024;
        // A copy whose header only is checked.
        assert_eq!(
            windows(&[(0, k, true), (k, k, false), (2 * k, k, true)], MIB),
            [1, 1, 1]
        );
        // A gap larger than READ_THROUGH; a smaller one is read through.
        let far = k + READ_THROUGH + 1;
        assert_eq!(windows(&[(0, k, true), (far, k, true)], MIB), [1, 1]);
        assert_eq!(windows(&[(0, k, true), (far - 1, k, true)], MIB), [2]);
        // A second entry for the same place, or an overlapping one: the
        // first is decrypted in place, so the second needs its own read.
        assert_eq!(windows(&[(0, 2 * k, true), (0, 2 * k, true)], MIB), [1, 1]);
        assert_eq!(windows(&[(0, 2 * k, true), (k, 2 * k, true)], MIB), [1, 1]);
        // A copy past the end of the pack (reported on its own).
        assert_eq!(windows(&[(0, k, true), (k, k, true)], 3 * k / 2), [1, 1]);
    }
}
