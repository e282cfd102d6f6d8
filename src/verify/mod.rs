//! `envarc verify`: is every snapshot restorable?
//!
//! Structural checks (always): every index file decrypts and decodes; every
//! checked snapshot decrypts, parses, and holds only entries a restore
//! accepts; every message a snapshot refers to is indexed, its pack exists
//! and is long enough, its header parses and authenticates under a data key
//! the key provider unwraps (so a disabled or deleted key shows here), it
//! carries the expected message ID and encryption context, and its indexed
//! length matches the manifest. (The config and its key check were checked
//! when the repository was opened.)
//!
//! With `--read-data` (or a subset), every frame of the chosen messages is
//! decrypted and authenticated in parallel, plaintext discarded: nothing is
//! written anywhere.
//!
//! Damaged messages are reported with every snapshot entry that refers to
//! them, found in a second pass over the snapshots (only when there are
//! damaged messages, so a sound repository is read once).

mod report;
mod subset;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use rayon::prelude::*;

use crate::envelope::MessageId;
use crate::progress::Progress;
use crate::repo::{EntryKind, Id, Index, Repository};
use crate::restore::plan;
use crate::Result;

pub use report::{Class, ObjectKind, Problem, Reference, VerifyReport, MAX_REFERENCES};
pub use subset::ReadData;

#[derive(Clone, Debug, Default)]
pub struct VerifyOptions {
    pub read_data: ReadData,
    /// Snapshots to check (`latest`, IDs, prefixes); all when empty.
    pub snapshots: Vec<String>,
}

/// What the snapshots say about one message.
#[derive(Clone, Copy)]
struct Wanted {
    /// Plaintext size the manifest records.
    size: u64,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs every check; fails outright only when the repository cannot be
/// listed at all. Everything else is a [`Problem`] in the report.
pub fn verify(
    repo: &Repository,
    opts: &VerifyOptions,
    progress: &dyn Progress,
) -> Result<VerifyReport> {
    let started = Instant::now();
    let _lock = repo.lock_for_reading(progress)?;
    let mut report = VerifyReport {
        read_data: opts.read_data.describe(),
        ..Default::default()
    };

    // Index files.
    let (index, failed) = repo.load_index_lenient()?;
    let index_broken = !failed.is_empty();
    for (id, e) in failed {
        report.problems.push(Problem {
            kind: ObjectKind::Index,
            id: id.to_hex(),
            class: Class::of(&e),
            error: e.to_string(),
            references: Vec::new(),
            references_total: 0,
            consequence: "the messages it lists cannot be found through the index; snapshot files stored in them are reported below as not indexed".into(),
        });
    }
    report.index_files = index.files().len() as u64;
    let packs: HashMap<Id, u64> = repo.list_packs()?.into_iter().collect();
    report.packs = packs.len() as u64;

    // Snapshots: what they refer to.
    let (snap_ids, all_snapshots) = if opts.snapshots.is_empty() {
        (repo.list_snapshots()?, true)
    } else {
        let mut v = opts
            .snapshots
            .iter()
            .map(|s| repo.resolve_snapshot(s))
            .collect::<Result<Vec<_>>>()?;
        v.sort();
        v.dedup();
        (v, false)
    };
    progress.start("reading snapshots", Some(snap_ids.len() as u64), None);
    let scanned: Vec<_> = snap_ids
        .par_iter()
        .map(|id| {
            let r = scan_snapshot(repo, id);
            progress.advance(1, 0);
            (*id, r)
        })
        .collect();
    progress.finish();
    let mut wanted: HashMap<MessageId, Wanted> = HashMap::new();
    let mut readable = Vec::new();
    for (id, r) in scanned {
        match r {
            Ok((refs, problems)) => {
                report.snapshots += 1;
                report.problems.extend(problems);
                wanted.extend(refs);
                readable.push(id);
            }
            Err(e) => report.problems.push(Problem {
                kind: ObjectKind::Snapshot,
                id: id.to_hex(),
                class: Class::of(&e),
                error: e.to_string(),
                references: Vec::new(),
                references_total: 0,
                consequence: format!("snapshot {} cannot be listed or restored", id.short()),
            }),
        }
    }
    report.messages = wanted.len() as u64;

    // Messages, in pack order so that reads go forward through each pack.
    let mut todo: Vec<(MessageId, Wanted, bool)> = {
        use rand::Rng;
        let mut rng = rand::thread_rng();
        wanted
            .iter()
            .map(|(id, w)| (*id, *w, opts.read_data.selects(id, rng.gen())))
            .collect()
    };
    todo.sort_by_key(|(id, _, _)| index.get(id).map(|l| (l.pack, l.offset)));
    let read_bytes: u64 = todo.iter().filter(|t| t.2).map(|t| t.1.size).sum();
    progress.start(
        if read_bytes > 0 || opts.read_data != ReadData::None {
            "reading data"
        } else {
            "checking messages"
        },
        Some(todo.len() as u64),
        Some(read_bytes),
    );
    let results: Vec<(MessageId, Checked)> =
        crate::providers::run_for_provider(repo.provider(), || {
            todo.par_iter()
                .map(|(id, w, read)| {
                    let r = check_message(repo, &index, &packs, id, w.size, *read);
                    if let Err((_, e)) = &r {
                        progress.warn(&format!("message {}: {e}", hex::encode(id)));
                    }
                    progress.advance(1, r.as_ref().ok().copied().flatten().unwrap_or(0));
                    (*id, r)
                })
                .collect()
        });
    progress.finish();
    let mut damaged: HashMap<MessageId, Problem> = HashMap::new();
    for (id, r) in results {
        match r {
            Ok(Some(n)) => {
                report.messages_read += 1;
                report.bytes_read += n;
            }
            Ok(None) => {}
            Err((class, error)) => {
                damaged.insert(
                    id,
                    Problem {
                        kind: ObjectKind::Message,
                        id: hex::encode(id),
                        class,
                        error,
                        references: Vec::new(),
                        references_total: 0,
                        consequence: String::new(),
                    },
                );
            }
        }
    }
    if !damaged.is_empty() {
        find_references(repo, &readable, &mut damaged);
    }
    let mut damaged: Vec<Problem> = damaged.into_values().collect();
    damaged.sort_by(|a, b| a.id.cmp(&b.id));
    for mut p in damaged {
        p.message_consequence();
        report.problems.push(p);
    }

    unreferenced(
        repo,
        &index,
        &packs,
        &wanted,
        all_snapshots && report.snapshots == snap_ids.len() as u64,
        index_broken,
        &mut report,
    )?;
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// A message's check: `Some(bytes)` when it was read in full.
type Checked = std::result::Result<Option<u64>, (Class, String)>;

type Scan = (HashMap<MessageId, Wanted>, Vec<Problem>);

/// Reads one snapshot whole: the messages it refers to, and problems with
/// its entries (entries a restore refuses, files without content).
fn scan_snapshot(repo: &Repository, id: &Id) -> Result<Scan> {
    let (meta, entries) = repo.load_snapshot(id)?;
    let mut problems = Vec::new();
    let mut entry_problem = |path: &[u8], error: String| {
        problems.push(Problem {
            kind: ObjectKind::Snapshot,
            id: id.to_hex(),
            class: Class::Corrupt,
            error,
            references: vec![Reference {
                snapshot: id.to_hex(),
                path: lossy(path),
            }],
            references_total: 1,
            consequence: format!(
                "entry {} of snapshot {} will not be restored",
                lossy(path),
                id.short()
            ),
        })
    };
    for r in plan::check_entries(&meta, &entries) {
        let e = &entries[r.idx];
        entry_problem(&e.path, format!("restore refuses the entry: {}", r.reason));
    }
    let mut refs = HashMap::new();
    for e in entries.iter().filter(|e| e.kind == EntryKind::File) {
        match e.content {
            Some(m) => {
                refs.insert(m, Wanted { size: e.size });
            }
            None => entry_problem(&e.path, "a file entry names no content message".into()),
        }
    }
    Ok((refs, problems))
}

/// Checks one message. `Ok(Some(bytes))` when it was read in full. A
/// message listed at more than one place (an interrupted rewrap or repack)
/// is sound when any copy is; otherwise the first copy's problem is given.
fn check_message(
    repo: &Repository,
    index: &Index,
    packs: &HashMap<Id, u64>,
    id: &MessageId,
    size: u64,
    read: bool,
) -> Checked {
    let locations = index.locations(id);
    if locations.is_empty() {
        return Err((
            Class::Missing,
            "is not in the index: no readable index file lists it".to_string(),
        ));
    }
    let mut first = None;
    for loc in locations {
        match check_copy(repo, loc, packs, id, size, read) {
            Ok(r) => return Ok(r),
            Err(e) => {
                first.get_or_insert(e);
            }
        }
    }
    Err(first.expect("at least one copy was checked"))
}

/// Checks the copy of message `id` at `loc`.
fn check_copy(
    repo: &Repository,
    loc: crate::repo::Location,
    packs: &HashMap<Id, u64>,
    id: &MessageId,
    size: u64,
    read: bool,
) -> Checked {
    let Some(&pack_len) = packs.get(&loc.pack) else {
        return Err((
            Class::Missing,
            format!("its pack {} is missing from data/", loc.pack),
        ));
    };
    if loc.offset.saturating_add(loc.length) > pack_len {
        return Err((
            Class::Corrupt,
            format!(
                "its pack {} is {pack_len} bytes, too short for the message at bytes {}..{} (the pack was truncated)",
                loc.pack,
                loc.offset,
                loc.offset + loc.length
            ),
        ));
    }
    if loc.plaintext_len != size {
        return Err((
            Class::Corrupt,
            format!(
                "the index says it holds {} bytes, the snapshot says {size}",
                loc.plaintext_len
            ),
        ));
    }
    // Parses and authenticates the header, unwraps the data key with the
    // provider and checks the message ID and encryption context.
    let dec = repo
        .decrypt_object_at(&loc, id)
        .map_err(|e| (Class::of(&e), format!("in pack {}: {e}", loc.pack)))?;
    if !read {
        return Ok(None);
    }
    let info = dec.finish().map_err(|e| {
        let class = match &e {
            e if e.is_integrity() => Class::Corrupt,
            crate::envelope::Error::Provider(_) => Class::Key,
            _ => Class::Io,
        };
        (class, format!("in pack {}: {e}", loc.pack))
    })?;
    if info.plaintext_len != size {
        return Err((
            Class::Corrupt,
            format!(
                "decrypts to {} bytes, the snapshot says {size}",
                info.plaintext_len
            ),
        ));
    }
    Ok(Some(info.plaintext_len))
}

/// Second pass: every snapshot entry that refers to a damaged message.
fn find_references(repo: &Repository, snaps: &[Id], damaged: &mut HashMap<MessageId, Problem>) {
    for id in snaps {
        let hex_id = id.to_hex();
        let _ = repo.load_snapshot_with(id, |e| {
            if let Some(p) = e.content.and_then(|m| damaged.get_mut(&m)) {
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
    wanted: &HashMap<MessageId, Wanted>,
    every_snapshot: bool,
    index_broken: bool,
    report: &mut VerifyReport,
) -> Result<()> {
    let mut listed: HashSet<Id> = HashSet::new();
    for p in index.packs() {
        listed.insert(p.id);
        let on_disk = packs.get(&p.id).copied();
        let needed = p.messages.iter().any(|m| wanted.contains_key(&m.id));
        match on_disk {
            None if !needed => report.info.push(format!(
                "pack {} is listed in the index but missing; no checked snapshot needs it",
                p.id
            )),
            Some(len) if len < p.size && !needed => report.info.push(format!(
                "pack {} is {len} bytes, shorter than the {} the index lists; no checked snapshot needs it",
                p.id, p.size
            )),
            Some(len) if len > p.size => report.info.push(format!(
                "pack {} is {len} bytes, longer than the {} the index lists; the extra bytes are not used",
                p.id, p.size
            )),
            _ => {}
        }
        if every_snapshot {
            for m in p.messages.iter().filter(|m| !wanted.contains_key(&m.id)) {
                report.unreferenced_messages += 1;
                report.unreferenced_bytes += m.length;
            }
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
    let leftovers = repo.list_leftovers()?;
    if !leftovers.is_empty() {
        report.info.push(format!(
            "{} temporary files of interrupted writers are in the repository (e.g. {})",
            leftovers.len(),
            leftovers[0].display()
        ));
    }
    Ok(())
}
