//! `envarc verify`: is every snapshot restorable?
//!
//! Structural checks (always): every index file opens (bound to its name)
//! and decodes; every checked snapshot opens (bound to its name), parses,
//! and holds only entries a restore accepts (the snapshot format's rules,
//! [`crate::repo::manifest`]); every chunk a snapshot refers to is indexed,
//! its pack exists and is long enough, its header passes the key policy
//! (only the repository's keys, no retired version), authenticates under a
//! data key the provider unwraps (so a disabled key shows here), and names
//! this repository; and each file's chunks add up to its size. (The config
//! was checked when the repository was opened.)
//!
//! With `--read-data` (or a subset), packs are read front to back and every
//! chosen chunk is authenticated, decompressed and checked against its MAC,
//! in parallel, plaintext discarded: nothing is written anywhere.
//!
//! Damaged chunks are reported with every file that needs them, found in a
//! second pass over the snapshots (only when something is damaged, so a
//! sound repository is read once).

mod chunks;
mod report;
mod subset;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rayon::prelude::*;

use crate::pool::Pool;
use crate::progress::Progress;
use crate::repo::{manifest, ChunkId, EntryKind, Id, Index, LockKind, Repository};
use crate::text::lossy;
use crate::Result;

pub use report::{Class, ObjectKind, Problem, Reference, VerifyReport, MAX_REFERENCES};
pub use subset::ReadData;

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    pub read_data: ReadData,
    /// Snapshots to check (`latest`, IDs, prefixes); all when empty.
    pub snapshots: Vec<String>,
}

fn problem(
    kind: ObjectKind,
    id: String,
    class: Class,
    error: String,
    consequence: String,
) -> Problem {
    Problem {
        kind,
        id,
        class,
        error,
        references: Vec::new(),
        references_total: 0,
        consequence,
    }
}

/// Runs every check; fails outright only when the repository cannot be
/// listed at all. Everything else is a [`Problem`] in the report.
pub fn verify(
    repo: &Repository,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let _lock = repo.lock(LockKind::Shared, progress)?;
    let mut report = VerifyReport {
        read_data: opts.read_data.describe(),
        ..Default::default()
    };
    let (index, failed) = repo.load_index_lenient()?;
    let index_broken = !failed.is_empty();
    for (id, e) in failed {
        report.problems.push(problem(ObjectKind::Index, id.to_hex(), Class::of(&e), e.to_string(),
            "the chunks it lists cannot be found through the index; files that need them are reported below as not indexed".into()));
    }
    report.index_files = index.files().len() as u64;
    let packs: HashMap<Id, u64> = repo
        .list_packs()?
        .into_iter()
        .map(|p| (p.id, p.size))
        .collect();
    report.packs = packs.len() as u64;

    let (snap_ids, all_snapshots) = chosen_snapshots(repo, opts)?;
    let (wanted, readable) = scan_snapshots(repo, &index, &snap_ids, &mut report, progress);
    report.chunks = wanted.len() as u64;

    let pool = Pool::for_repo(repo)?;
    let mut damaged = pool.install(|| {
        chunks::check(
            repo,
            &index,
            &packs,
            &wanted,
            &opts.read_data,
            &mut report,
            progress,
        )
    });
    // Chunks skipped after a signal are unchecked, not sound.
    crate::interrupt::check()?;
    if !damaged.is_empty() {
        find_references(repo, &readable, &mut damaged);
    }
    let mut damaged: Vec<Problem> = damaged.into_values().collect();
    damaged.sort_by(|a, b| a.id.cmp(&b.id));
    for mut p in damaged {
        p.chunk_consequence();
        report.problems.push(p);
    }
    let every = all_snapshots && report.snapshots == snap_ids.len() as u64;
    unreferenced(
        repo,
        &index,
        &packs,
        &wanted,
        every,
        index_broken,
        &mut report,
    )?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// The snapshots to check, and whether they are all of them.
fn chosen_snapshots(repo: &Repository, opts: &VerifyOptions) -> Result<(Vec<Id>, bool)> {
    if opts.snapshots.is_empty() {
        return Ok((repo.list_snapshots()?, true));
    }
    let mut v = opts
        .snapshots
        .iter()
        .map(|s| repo.resolve_snapshot(s))
        .collect::<Result<Vec<_>>>()?;
    v.sort();
    v.dedup();
    Ok((v, false))
}

/// Reads every chosen snapshot: the chunks they need, and problems with
/// their entries. Returns the needed chunks and the readable snapshots.
fn scan_snapshots(
    repo: &Repository,
    index: &Index,
    ids: &[Id],
    report: &mut VerifyReport,
    progress: &dyn Progress,
) -> (HashSet<ChunkId>, Vec<Id>) {
    progress.start("reading snapshots", Some(ids.len() as u64), None);
    let scanned: Vec<_> = ids
        .par_iter()
        .map(|id| {
            let r = scan_snapshot(repo, index, id);
            progress.advance(1, 0);
            (*id, r)
        })
        .collect();
    progress.finish();
    let mut wanted = HashSet::new();
    let mut readable = Vec::new();
    for (id, r) in scanned {
        match r {
            Ok((refs, problems)) => {
                report.snapshots += 1;
                report.problems.extend(problems);
                wanted.extend(refs);
                readable.push(id);
            }
            Err(e) => report.problems.push(problem(
                ObjectKind::Snapshot,
                id.to_hex(),
                Class::of(&e),
                e.to_string(),
                format!("snapshot {} cannot be listed or restored", id.short()),
            )),
        }
    }
    (wanted, readable)
}

type Scan = (HashSet<ChunkId>, Vec<Problem>);

/// Reads one snapshot whole: the chunks it needs, and problems with its
/// entries (entries a restore refuses, files whose chunks do not add up).
fn scan_snapshot(repo: &Repository, index: &Index, id: &Id) -> Result<Scan> {
    let (meta, entries) = repo.load_snapshot(id)?;
    let mut problems = Vec::new();
    let mut entry_problem = |path: &[u8], error: String| {
        problems.push(Problem {
            references: vec![Reference {
                snapshot: id.to_hex(),
                path: lossy(path),
            }],
            references_total: 1,
            ..problem(
                ObjectKind::Snapshot,
                id.to_hex(),
                Class::Corrupt,
                error,
                format!(
                    "entry {} of snapshot {} will not be restored",
                    lossy(path),
                    id.short()
                ),
            )
        })
    };
    for r in manifest::check_entries(&meta, &entries) {
        entry_problem(
            &entries[r.idx].path,
            format!("restore refuses the entry: {}", r.reason),
        );
    }
    let mut refs = HashSet::new();
    for e in entries.iter().filter(|e| e.kind == EntryKind::File) {
        refs.extend(e.chunks.iter().copied());
        let sizes: Option<u64> = e
            .chunks
            .iter()
            .map(|c| index.get(c).map(|l| l.raw_length))
            .sum();
        match sizes {
            Some(n) if n != e.size => entry_problem(
                &e.path,
                format!(
                    "its chunks hold {n} bytes by the index, the manifest says {}",
                    e.size
                ),
            ),
            _ => {} // a chunk not indexed is reported as a chunk problem
        }
    }
    Ok((refs, problems))
}

/// Second pass: every snapshot entry that needs a damaged chunk.
fn find_references(repo: &Repository, snaps: &[Id], damaged: &mut HashMap<ChunkId, Problem>) {
    for id in snaps {
        let hex_id = id.to_hex();
        let _ = repo.load_snapshot_with(id, |e| {
            let mut seen = HashSet::new();
            for c in &e.chunks {
                let Some(p) = damaged.get_mut(c) else {
                    continue;
                };
                if !seen.insert(*c) {
                    continue;
                }
                p.references_total += 1;
                if p.references.len() < MAX_REFERENCES {
                    p.references.push(Reference {
                        snapshot: hex_id.clone(),
                        path: lossy(&e.path),
                    });
                }
            }
            Ok(())
        });
    }
}

/// Notes (not errors) about data no checked snapshot needs.
fn unreferenced(
    repo: &Repository,
    index: &Index,
    packs: &HashMap<Id, u64>,
    wanted: &HashSet<ChunkId>,
    every_snapshot: bool,
    index_broken: bool,
    report: &mut VerifyReport,
) -> Result<()> {
    let listed: HashSet<Id> = index.packs().iter().map(|p| p.id).collect();
    for p in index.packs() {
        match packs.get(&p.id).copied() {
            None => report.info.push(format!("pack {} is listed in the index but missing", p.id)),
            Some(len) if len > p.size => report.info.push(format!(
                "pack {} is {len} bytes, longer than the {} the index lists; the extra bytes are not used",
                p.id, p.size
            )),
            _ => {}
        }
    }
    if every_snapshot {
        for c in index.chunks().filter(|c| !wanted.contains(&c.id)) {
            report.unreferenced_chunks += 1;
            report.unreferenced_bytes += c.location.length;
        }
    }
    let mut extra: Vec<String> = packs
        .keys()
        .filter(|id| !listed.contains(id))
        .map(Id::to_hex)
        .collect();
    extra.sort();
    if index_broken && !extra.is_empty() {
        report.info.push(
            "some packs look unreferenced only because an index file that lists them is damaged"
                .into(),
        );
    }
    report.unreferenced_packs = extra;
    let leftovers = repo.storage().leftovers().unwrap_or_default();
    if let Some(first) = leftovers.first() {
        report.info.push(format!(
            "{} temporary objects of interrupted writers are in the repository (e.g. {})",
            leftovers.len(),
            first.name
        ));
    }
    Ok(())
}
