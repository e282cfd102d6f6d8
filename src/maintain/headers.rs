//! Reads the headers of every message in a repository, in parallel and
//! without any key: objects (through the index, one open per pack), snapshot
//! files, index files and the config's key check. A header names the keys
//! that wrapped the message's data key, which is all stats, rewrap and
//! reencrypt need to decide what to do.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use base64::Engine;
use rayon::prelude::*;

use super::keys::KeyVersion;
use crate::envelope::{open_header, CommitmentPolicy, Header, MessageId, ReadLimits};
use crate::progress::Progress;
use crate::repo::{Id, Index, Location, Repository};
use crate::Result;

/// Keys that wrapped one message: positions in [`Scan::keys`].
pub type KeySet = Vec<u32>;

/// One stored copy of an object message.
#[derive(Clone, Debug)]
pub struct ObjectCopy {
    pub id: MessageId,
    pub loc: Location,
    /// What wrapped its data key, or why its header could not be read.
    pub keys: std::result::Result<KeySet, String>,
}

/// A message in a file of its own (snapshot or index file).
#[derive(Clone, Debug)]
pub struct FileMessage {
    pub id: Id,
    pub keys: std::result::Result<KeySet, String>,
}

/// Every message's wrapping keys.
pub struct Scan {
    /// Every key version seen, each once.
    pub keys: Vec<KeyVersion>,
    pub objects: Vec<ObjectCopy>,
    pub snapshots: Vec<FileMessage>,
    pub index_files: Vec<FileMessage>,
    /// The config's key check.
    pub key_check: std::result::Result<KeySet, String>,
}

impl Scan {
    /// Whether any key of `set` satisfies `pred`.
    pub fn any(&self, set: &KeySet, pred: impl Fn(&KeyVersion) -> bool) -> bool {
        set.iter().any(|&k| pred(&self.keys[k as usize]))
    }
}

fn limits(repo: &Repository) -> ReadLimits {
    repo.decrypt_options(crate::repo::Kind::Object).limits
}

/// Reads the header at the current position of `r`.
fn header_of(r: &mut impl Read, limits: &ReadLimits) -> std::result::Result<Header, String> {
    open_header(r, CommitmentPolicy::RequireCommitment, limits)
        .map(|p| p.header)
        .map_err(|e| e.to_string())
}

fn key_versions(h: &Header) -> Vec<KeyVersion> {
    let mut v: Vec<KeyVersion> = h.edks.iter().map(KeyVersion::of).collect();
    v.sort();
    v.dedup();
    v
}

/// Interns key versions found by parallel workers.
#[derive(Default)]
struct Interner {
    table: Vec<KeyVersion>,
    pos: HashMap<KeyVersion, u32>,
}

impl Interner {
    fn set(&mut self, kvs: Vec<KeyVersion>) -> KeySet {
        kvs.into_iter()
            .map(|kv| {
                if let Some(&i) = self.pos.get(&kv) {
                    return i;
                }
                let i = self.table.len() as u32;
                self.table.push(kv.clone());
                self.pos.insert(kv, i);
                i
            })
            .collect()
    }
}

type Found = std::result::Result<Vec<KeyVersion>, String>;

/// Headers of the messages in one pack, in the order given.
fn pack_headers(
    repo: &Repository,
    pack: &Id,
    msgs: &[(MessageId, Location)],
    limits: &ReadLimits,
) -> Vec<Found> {
    let path = repo.pack_path(pack);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            let why = format!("pack {pack} cannot be opened: {e}");
            return msgs.iter().map(|_| Err(why.clone())).collect();
        }
    };
    msgs.iter()
        .map(|(id, loc)| {
            let mut f = &file;
            f.seek(SeekFrom::Start(loc.offset))
                .map_err(|e| format!("seeking in pack {pack}: {e}"))?;
            let h = header_of(&mut f.take(loc.length), limits)?;
            if h.message_id.as_slice() != id.as_slice() {
                return Err(format!(
                    "the message at offset {} of pack {pack} carries ID {}, not {}",
                    loc.offset,
                    hex::encode(&h.message_id),
                    hex::encode(id)
                ));
            }
            Ok(key_versions(&h))
        })
        .collect()
}

fn file_header(path: &std::path::Path, limits: &ReadLimits) -> Found {
    let f = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let h = header_of(&mut std::io::BufReader::with_capacity(8192, f), limits)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(key_versions(&h))
}

/// Reads every header: each object copy the index lists (a pack listed by two
/// index files counts once), every snapshot and index file, the key check.
pub fn scan(repo: &Repository, index: &Index, progress: &dyn Progress) -> Result<Scan> {
    let limits = limits(repo);
    let mut by_pack: HashMap<Id, Vec<(MessageId, Location)>> = HashMap::new();
    for (id, loc) in index.copies() {
        by_pack.entry(loc.pack).or_default().push((id, loc));
    }
    let mut packs: Vec<(Id, Vec<(MessageId, Location)>)> = by_pack.into_iter().collect();
    for (_, v) in packs.iter_mut() {
        v.sort_by_key(|(_, l)| l.offset);
    }
    packs.sort_by_key(|(id, _)| *id);
    let total: usize = packs.iter().map(|(_, v)| v.len()).sum();
    progress.start("reading headers", Some(total as u64), None);
    let found: Vec<Vec<Found>> = packs
        .par_iter()
        .map(|(pack, msgs)| {
            let r = pack_headers(repo, pack, msgs, &limits);
            progress.advance(msgs.len() as u64, 0);
            r
        })
        .collect();
    progress.finish();

    let mut interner = Interner::default();
    let mut scan = Scan {
        keys: Vec::new(),
        objects: Vec::new(),
        snapshots: Vec::new(),
        index_files: Vec::new(),
        key_check: Ok(Vec::new()),
    };
    for ((_, msgs), results) in packs.iter().zip(found) {
        for ((id, loc), r) in msgs.iter().zip(results) {
            scan.objects.push(ObjectCopy {
                id: *id,
                loc: *loc,
                keys: r.map(|kvs| interner.set(kvs)),
            });
        }
    }
    let files =
        |ids: Vec<Id>, path: &(dyn Fn(&Id) -> std::path::PathBuf + Sync)| -> Vec<(Id, Found)> {
            ids.par_iter()
                .map(|id| (*id, file_header(&path(id), &limits)))
                .collect()
        };
    for (id, r) in files(repo.list_snapshots()?, &|id| repo.snapshot_path(id)) {
        let keys = r.map(|kvs| interner.set(kvs));
        scan.snapshots.push(FileMessage { id, keys });
    }
    for (id, r) in files(repo.list_index_files()?, &|id| repo.index_path(id)) {
        let keys = r.map(|kvs| interner.set(kvs));
        scan.index_files.push(FileMessage { id, keys });
    }
    scan.key_check = key_check_keys(repo).map(|kvs| interner.set(kvs));
    scan.keys = interner.table;
    Ok(scan)
}

/// What wrapped the data key of the config's key check.
pub fn key_check_keys(repo: &Repository) -> Found {
    let msg = base64::engine::general_purpose::STANDARD
        .decode(&repo.config().key_check)
        .map_err(|_| "the config's key_check is not base64".to_string())?;
    let h = header_of(&mut msg.as_slice(), &limits(repo))?;
    Ok(key_versions(&h))
}
