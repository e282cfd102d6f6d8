//! `envarc stats`: the blast radius of every key version. For each key
//! (CMK, transit key, raw key, KMS key) and version that wraps anything in
//! the repository: the chunks whose data keys it wraps (unique chunks,
//! their bytes, the bytes of their messages), the files and snapshots that
//! need one of those chunks, and the snapshot manifests, index files and the
//! config it wraps; which version is current and which are retired (by the
//! repository's config, or by the keyring).
//!
//! Chunk sharing widens the radius: a chunk first stored under file A's data
//! key and later needed by file B is referenced, not stored again, so B's
//! content partly sits under A's key, and B counts for the version that
//! wraps A's key. A chunk stored twice (an interrupted rewrap) counts for
//! the versions of both copies.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;

use serde::Serialize;

use super::messages::{scan, Others, Wrapped};
use super::refs::{references, Visitor};
use crate::pool::Pool;
use crate::progress::Progress;
use crate::repo::{Entry, EntryKind, Index, KeyVersion, Repository};
use crate::{Error, Result};

/// What one key version protects.
#[derive(Clone, Debug, Serialize)]
pub struct VersionStats {
    pub key: KeyVersion,
    /// Whether new data keys are wrapped by this version now.
    pub current: bool,
    /// Who refuses it: `repository` (its config retired it), `keyring`
    /// (retired, pending deletion or destroyed there).
    pub retired: Vec<String>,
    /// Unique chunks with a copy whose data key it wraps.
    pub chunks: u64,
    /// Their bytes (uncompressed).
    pub chunk_bytes: u64,
    /// Bytes of those copies' messages in the repository.
    pub stored_bytes: u64,
    /// Files (distinct paths over all snapshots) that need one of them.
    pub files: u64,
    /// Snapshots with such a file (hex IDs, oldest first).
    pub snapshots: Vec<String>,
    /// Snapshot manifests, index files and whether the config it wraps.
    pub manifests: u64,
    pub index_files: u64,
    pub config: bool,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    /// Sorted by key, then version.
    pub versions: Vec<VersionStats>,
    /// Unique chunks, and chunks stored at more than one place.
    pub chunks: u64,
    pub duplicated: u64,
    pub snapshots: u64,
    /// Snapshots and headers that could not be read, with the reason.
    pub problems: Vec<String>,
}

impl VersionStats {
    fn new(key: KeyVersion) -> VersionStats {
        VersionStats {
            key,
            current: false,
            retired: Vec::new(),
            chunks: 0,
            chunk_bytes: 0,
            stored_bytes: 0,
            files: 0,
            snapshots: Vec::new(),
            manifests: 0,
            index_files: 0,
            config: false,
        }
    }
}

/// What the repository alone cannot tell: which versions are current and
/// which the keyring refuses.
pub struct KeyFacts<'a> {
    pub is_current: &'a dyn Fn(&KeyVersion) -> bool,
    pub keyring_retired: &'a [KeyVersion],
}

/// Numbers key versions so that a set of them is a bit mask.
#[derive(Default)]
struct Versions {
    list: Vec<KeyVersion>,
    no: HashMap<KeyVersion, u32>,
}

type Mask = u128;

impl Versions {
    fn add(&mut self, kv: &KeyVersion) -> Result<Mask> {
        if let Some(n) = self.no.get(kv) {
            return Ok(1 << n);
        }
        let n = self.list.len() as u32;
        if n >= Mask::BITS {
            return Err(Error::Other(format!(
                "the repository uses more than {} key versions; stats cannot count them",
                Mask::BITS
            )));
        }
        self.list.push(kv.clone());
        self.no.insert(kv.clone(), n);
        Ok(1 << n)
    }

    fn mask(&mut self, set: &[KeyVersion]) -> Result<Mask> {
        set.iter().try_fold(0, |m, kv| Ok(m | self.add(kv)?))
    }
}

fn bits(mask: Mask) -> impl Iterator<Item = usize> {
    (0..Mask::BITS as usize).filter(move |b| mask & (1 << b) != 0)
}

/// The per-snapshot half: which versions each snapshot and path needs.
struct Needs<'a> {
    index: &'a Index,
    set_masks: &'a [Mask],
    hasher: std::collections::hash_map::RandomState,
    state: Mutex<(Vec<Mask>, HashMap<u64, Mask>)>,
}

impl Needs<'_> {
    fn of(&self, e: &Entry) -> Mask {
        e.chunks
            .iter()
            .flat_map(|c| self.index.copies(c))
            .fold(0, |m, c| m | self.set_masks[c.key_set_no as usize])
    }
}

#[derive(Default)]
struct Needed {
    snapshot: Mask,
    files: Vec<(u64, Mask)>,
}

impl Visitor for Needs<'_> {
    type Local = Needed;

    fn entry(&self, local: &mut Needed, e: &Entry) {
        if e.kind != EntryKind::File {
            return;
        }
        let m = self.of(e);
        if m != 0 {
            local.snapshot |= m;
            local.files.push((self.hasher.hash_one(&e.path), m));
        }
    }

    fn snapshot_done(&self, pos: usize, local: Needed) {
        let mut s = self.state.lock().expect("no panics holding it");
        if s.0.len() <= pos {
            s.0.resize(pos + 1, 0);
        }
        s.0[pos] = local.snapshot;
        for (h, m) in local.files {
            *s.1.entry(h).or_default() |= m;
        }
    }
}

/// Adds the chunk counts of the index to `rows`; returns (unique chunks,
/// duplicated chunks).
fn count_chunks(index: &Index, set_masks: &[Mask], rows: &mut [VersionStats]) -> (u64, u64) {
    let (mut unique, mut duplicated) = (0, 0);
    let mut chunks = index.chunks().peekable();
    while let Some(first) = chunks.next() {
        let mut mask = 0;
        let mut copies = 0;
        let mut c = first;
        loop {
            let m = set_masks[c.key_set_no as usize];
            mask |= m;
            copies += 1;
            for b in bits(m) {
                rows[b].stored_bytes += c.location.length;
            }
            match chunks.next_if(|n| n.id == first.id) {
                Some(n) => c = n,
                None => break,
            }
        }
        unique += 1;
        duplicated += u64::from(copies > 1);
        for b in bits(mask) {
            rows[b].chunks += 1;
            rows[b].chunk_bytes += first.location.raw_length;
        }
    }
    (unique, duplicated)
}

/// Adds what wraps the snapshots, index files and config (their versions
/// are numbered already).
fn count_others(others: &Others, v: &mut Versions, rows: &mut [VersionStats]) -> Result<()> {
    let mut each = |w: &Wrapped, what: fn(&mut VersionStats)| -> Result<()> {
        if let Ok(ks) = w {
            for b in bits(v.mask(ks)?) {
                what(&mut rows[b]);
            }
        }
        Ok(())
    };
    for (_, w) in &others.snapshots {
        each(w, |r| r.manifests += 1)?;
    }
    for (_, w) in &others.index_files {
        each(w, |r| r.index_files += 1)?;
    }
    each(&others.config, |r| r.config = true)
}

/// Computes the blast radius of every key version.
pub fn stats(repo: &Repository, facts: &KeyFacts, progress: &dyn Progress) -> Result<Stats> {
    let pool = Pool::for_repo(repo)?;
    let index = repo.load_index()?;
    let mut v = Versions::default();
    let set_masks: Vec<Mask> = index
        .key_sets()
        .iter()
        .map(|s| v.mask(s))
        .collect::<Result<_>>()?;
    let others = scan(repo, &pool, progress)?;
    let wrapped = others
        .snapshots
        .iter()
        .chain(&others.index_files)
        .map(|(_, w)| w);
    for ks in wrapped.chain([&others.config]).flatten() {
        v.mask(ks)?;
    }
    for kv in repo.config().retired.iter().chain(facts.keyring_retired) {
        v.add(kv)?;
    }
    let mut rows: Vec<VersionStats> = v.list.iter().cloned().map(VersionStats::new).collect();
    count_others(&others, &mut v, &mut rows)?;
    let (chunks, duplicated) = count_chunks(&index, &set_masks, &mut rows);
    let needs = Needs {
        index: &index,
        set_masks: &set_masks,
        hasher: Default::default(),
        state: Mutex::new((Vec::new(), HashMap::new())),
    };
    let snaps = references(repo, &pool, &needs, progress)?;
    let (snap_masks, paths) = needs.state.into_inner().expect("no panics holding it");
    for m in paths.values() {
        bits(*m).for_each(|b| rows[b].files += 1);
    }
    for (pos, (id, _)) in snaps.all.iter().enumerate() {
        let m = snap_masks.get(pos).copied().unwrap_or(0);
        bits(m).for_each(|b| rows[b].snapshots.push(id.to_hex()));
    }
    let retired = |kv: &KeyVersion| {
        let mut by = Vec::new();
        if repo.config().retired.contains(kv) {
            by.push("repository".to_string());
        }
        if facts.keyring_retired.contains(kv) {
            by.push("keyring".to_string());
        }
        by
    };
    for (row, kv) in rows.iter_mut().zip(&v.list) {
        row.key = kv.clone();
        row.current = (facts.is_current)(kv);
        row.retired = retired(kv);
    }
    rows.sort_by(|a, b| a.key.cmp(&b.key));
    let mut problems = others.problems();
    problems.extend(
        snaps
            .failed
            .iter()
            .map(|(id, e)| format!("snapshot {id} cannot be read: {e}")),
    );
    Ok(Stats {
        versions: rows,
        chunks,
        duplicated,
        snapshots: snaps.all.len() as u64,
        problems,
    })
}
