//! `envarc stats`: the blast radius of every key version. For each key (CMK,
//! transit key or raw key) and version that wrapped any data key in the
//! repository: how many object messages (file contents) and bytes it
//! protects, which snapshots refer to them, and how many snapshot manifests
//! and index files it wraps. Reads headers only (no key is used).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use rayon::prelude::*;
use serde::Serialize;

use super::headers::{scan, Scan};
use super::keys::KeyVersion;
use crate::envelope::MessageId;
use crate::progress::Progress;
use crate::repo::{EntryKind, Id, Repository};
use crate::Result;

/// What one key version protects.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VersionStats {
    pub key: Option<KeyVersion>,
    /// Whether new data keys are wrapped by this version now.
    pub current: bool,
    /// Object messages (stored file contents) whose data key it wraps; a
    /// message stored twice (an interrupted rewrap) counts once per copy.
    pub objects: u64,
    /// Plaintext bytes of those messages.
    pub plaintext_bytes: u64,
    /// Bytes they take in the repository.
    pub stored_bytes: u64,
    /// Snapshots with at least one file whose content it protects (hex IDs,
    /// oldest first).
    pub snapshots: Vec<String>,
    /// Snapshot manifests (file names and metadata) it wraps.
    pub manifests: u64,
    pub index_files: u64,
    /// Whether it wraps the config's key check.
    pub key_check: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Sorted by key, then version.
    pub versions: Vec<VersionStats>,
    /// Distinct object messages.
    pub objects: u64,
    /// Object messages listed at more than one place.
    pub duplicated: u64,
    pub snapshots: u64,
    /// Messages whose header could not be read, snapshots that could not be
    /// listed (each with the reason).
    pub problems: Vec<String>,
}

/// Snapshots (oldest first), what refers to each message (positions in the
/// snapshot list), and the snapshots that could not be read.
type References = (Vec<Id>, HashMap<MessageId, Vec<u32>>, Vec<String>);

/// Snapshots' references: message ID -> snapshot positions (in `order`).
pub(crate) fn references(repo: &Repository, progress: &dyn Progress) -> Result<References> {
    let (metas, failed) = repo.snapshots_lenient()?;
    let order: Vec<Id> = metas.iter().map(|(id, _)| *id).collect();
    let mut problems: Vec<String> = failed
        .iter()
        .map(|(id, e)| format!("snapshot {id} cannot be read: {e}"))
        .collect();
    progress.start("reading snapshots", Some(order.len() as u64), None);
    let loaded: Vec<Result<Vec<MessageId>>> = order
        .par_iter()
        .map(|id| {
            let mut ids = Vec::new();
            let r = repo.load_snapshot_with(id, |e| {
                if e.kind == EntryKind::File {
                    ids.extend(e.content);
                }
                Ok(())
            });
            progress.advance(1, 0);
            r.map(|_| ids)
        })
        .collect();
    progress.finish();
    let mut refs: HashMap<MessageId, Vec<u32>> = HashMap::new();
    for (pos, r) in loaded.into_iter().enumerate() {
        match r {
            Ok(ids) => {
                for m in ids {
                    let v = refs.entry(m).or_default();
                    if v.last() != Some(&(pos as u32)) {
                        v.push(pos as u32);
                    }
                }
            }
            Err(e) => problems.push(format!("snapshot {} cannot be read: {e}", order[pos])),
        }
    }
    Ok((order, refs, problems))
}

/// Computes the blast radius of every key version. `is_current` says which
/// versions wrap new data keys.
pub fn stats(
    repo: &Repository,
    is_current: &dyn Fn(&KeyVersion) -> bool,
    progress: &dyn Progress,
) -> Result<Stats> {
    let index = repo.load_index()?;
    let scan = scan(repo, &index, progress)?;
    let (order, refs, mut problems) = references(repo, progress)?;
    let mut by: BTreeMap<u32, (VersionStats, BTreeSet<u32>)> = BTreeMap::new();
    fn entry<'a>(
        by: &'a mut BTreeMap<u32, (VersionStats, BTreeSet<u32>)>,
        scan: &Scan,
        is_current: &dyn Fn(&KeyVersion) -> bool,
        k: u32,
    ) -> &'a mut (VersionStats, BTreeSet<u32>) {
        by.entry(k).or_insert_with(|| {
            let kv = scan.keys[k as usize].clone();
            (
                VersionStats {
                    current: is_current(&kv),
                    key: Some(kv),
                    ..Default::default()
                },
                BTreeSet::new(),
            )
        })
    }
    for o in &scan.objects {
        let keys = match &o.keys {
            Ok(k) => k,
            Err(e) => {
                problems.push(format!("message {}: {e}", hex::encode(o.id)));
                continue;
            }
        };
        for &k in keys {
            let (v, snaps) = entry(&mut by, &scan, is_current, k);
            v.objects += 1;
            v.plaintext_bytes += o.loc.plaintext_len;
            v.stored_bytes += o.loc.length;
            if let Some(s) = refs.get(&o.id) {
                snaps.extend(s.iter().copied());
            }
        }
    }
    count_files(&scan, &mut problems, &mut |k, what| {
        let (v, _) = entry(&mut by, &scan, is_current, k);
        match what {
            FileKind::Manifest => v.manifests += 1,
            FileKind::Index => v.index_files += 1,
            FileKind::KeyCheck => v.key_check = true,
        }
    });
    let mut versions: Vec<VersionStats> = by
        .into_values()
        .map(|(mut v, snaps)| {
            v.snapshots = snaps
                .into_iter()
                .map(|p| order[p as usize].to_hex())
                .collect();
            v
        })
        .collect();
    versions.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(Stats {
        versions,
        objects: index.len() as u64,
        duplicated: index.duplicated() as u64,
        snapshots: order.len() as u64,
        problems,
    })
}

enum FileKind {
    Manifest,
    Index,
    KeyCheck,
}

fn count_files(scan: &Scan, problems: &mut Vec<String>, each: &mut dyn FnMut(u32, FileKind)) {
    for (list, what) in [
        (&scan.snapshots, "snapshot"),
        (&scan.index_files, "index file"),
    ] {
        for f in list {
            match &f.keys {
                Ok(ks) => {
                    for &k in ks {
                        each(
                            k,
                            if what == "snapshot" {
                                FileKind::Manifest
                            } else {
                                FileKind::Index
                            },
                        );
                    }
                }
                Err(e) => problems.push(format!("{what} {}: {e}", f.id)),
            }
        }
    }
    match &scan.key_check {
        Ok(ks) => ks.iter().for_each(|&k| each(k, FileKind::KeyCheck)),
        Err(e) => problems.push(format!("key check: {e}")),
    }
}
