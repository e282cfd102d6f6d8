//! The engine shared by rewrap, reencrypt and prune: copy, rewrap or
//! re-encrypt messages into new packs, then swap the index over and delete
//! the old packs, in an order that never loses a message:
//!
//! 1. [`write_items`]: new packs, each fsynced and renamed into place;
//! 2. [`commit`]: one new index file listing the new packs and every pack the
//!    replaced index files list that stays (durable); then the replaced index
//!    files are deleted; then the retired packs.
//!
//! Killed after 1, the new packs are unindexed garbage (prune removes them
//! once older than its grace period). Killed during 2, a message may be
//! listed at two places, each a complete copy; readers use either (see
//! `repo/index.rs`), and the next rewrap or prune keeps one. A pack is
//! deleted only once no index file lists it. Callers hold the exclusive lock.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use super::rewrap::Rewrapper;
use crate::envelope::{rewrap_header_with, Encryptor, MessageId};
use crate::progress::Progress;
use crate::repo::{Id, IndexEntry, IndexFile, Kind, Location, PackRecord, PackWriter, Repository};
use crate::{Error, Result};

/// What to do with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Copy its bytes unchanged.
    Copy,
    /// New EDKs and header tag, body bytes unchanged, same message ID.
    Rewrap,
    /// Decrypt and encrypt again under a fresh data key: a new message ID.
    Reencrypt,
}

#[derive(Clone, Copy, Debug)]
pub struct Item {
    pub id: MessageId,
    pub loc: Location,
    pub action: Action,
}

/// What [`write_items`] did.
#[derive(Default)]
pub struct Written {
    /// The new packs, committed (not yet indexed).
    pub packs: Vec<PackRecord>,
    /// For each re-encrypted message: old ID, new ID.
    pub renamed: Vec<(MessageId, MessageId)>,
    /// Items that could not be read (the old message is damaged, or its key
    /// cannot be used), with the reason; nothing was written for them.
    pub failed: Vec<(Item, String)>,
    /// Bytes of the new messages.
    pub bytes: u64,
}

impl Written {
    /// Packs that held a failed item: they must not be retired.
    pub fn packs_with_failures(&self) -> HashSet<Id> {
        self.failed.iter().map(|(i, _)| i.loc.pack).collect()
    }
}

/// A failure of one item (the old message) or of the repository (writing).
enum Fail {
    Item(String),
    Repo(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Fail {
        Fail::Repo(e)
    }
}

fn write_err(e: io::Error) -> Fail {
    Fail::Repo(Error::io("writing a new pack", e))
}

/// The old message's file, positioned at `offset`.
fn open_at(repo: &Repository, loc: &Location, offset: u64) -> std::result::Result<File, Fail> {
    let path = repo.pack_path(&loc.pack);
    let mut f = File::open(&path)
        .map_err(|e| Fail::Item(format!("pack {} cannot be opened: {e}", loc.pack)))?;
    f.seek(SeekFrom::Start(offset))
        .map_err(|e| Fail::Item(format!("seeking in pack {}: {e}", loc.pack)))?;
    Ok(f)
}

/// Copies exactly `n` bytes from `r` to `w`; a short source is the item's failure.
fn copy_exact(
    r: &mut impl Read,
    w: &mut dyn Write,
    n: u64,
    pack: &Id,
) -> std::result::Result<(), Fail> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut left = n;
    while left > 0 {
        let want = left.min(buf.len() as u64) as usize;
        let got = match r.read(&mut buf[..want]) {
            Ok(0) => {
                return Err(Fail::Item(format!(
                    "pack {pack} ends {left} bytes before the message does (truncated)"
                )))
            }
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Fail::Item(format!("reading pack {pack}: {e}"))),
        };
        w.write_all(&buf[..got]).map_err(write_err)?;
        left -= got as u64;
    }
    Ok(())
}

/// Writes one item's new message into `w`: its ID and plaintext length.
fn transform(
    repo: &Repository,
    rewrapper: Option<&dyn Rewrapper>,
    item: &Item,
    w: &mut dyn Write,
) -> std::result::Result<(MessageId, u64, ()), Fail> {
    let loc = &item.loc;
    match item.action {
        Action::Copy => {
            let f = open_at(repo, loc, loc.offset)?;
            copy_exact(&mut io::BufReader::new(f), w, loc.length, &loc.pack)?;
            Ok((item.id, loc.plaintext_len, ()))
        }
        Action::Rewrap => {
            let rw = rewrapper.expect("a rewrap item comes with a rewrapper");
            let mut f = open_at(repo, loc, loc.offset)?.take(loc.length);
            let (header, old_len, h) = rewrap_header_with(
                &mut f,
                repo.provider(),
                &repo.decrypt_options(Kind::Object),
                |edks, key, ctx| rw.new_edks(edks, key, ctx),
            )
            .map_err(|e| Fail::Item(e.to_string()))?;
            if h.message_id.as_slice() != item.id.as_slice() {
                return Err(Fail::Item(format!(
                    "the message carries ID {}, not the one the index lists",
                    hex::encode(&h.message_id)
                )));
            }
            w.write_all(&header).map_err(write_err)?;
            let body = open_at(repo, loc, loc.offset + old_len)?;
            copy_exact(
                &mut io::BufReader::new(body),
                w,
                loc.length - old_len,
                &loc.pack,
            )?;
            Ok((item.id, loc.plaintext_len, ()))
        }
        Action::Reencrypt => {
            let mut dec = repo
                .decrypt_object_at(loc, &item.id)
                .map_err(|e| Fail::Item(e.to_string()))?;
            let mut enc = Encryptor::new(repo.provider(), &repo.encrypt_options(Kind::Object), w)
                .map_err(|e| Fail::Repo(e.into()))?;
            // Plaintext goes only into the new message; a frame that fails to
            // authenticate ends the item before its final frame is written, and
            // the pack writer cuts the partial message off.
            let mut n = 0u64;
            while let Some(frame) = dec.next_frame().map_err(|e| Fail::Item(e.to_string()))? {
                enc.write_all(frame).map_err(write_err)?;
                n += frame.len() as u64;
            }
            if n != loc.plaintext_len {
                return Err(Fail::Item(format!(
                    "decrypts to {n} bytes, the index says {}",
                    loc.plaintext_len
                )));
            }
            let (_, info) = enc.finish().map_err(|e| Fail::Repo(e.into()))?;
            Ok((info.message_id, n, ()))
        }
    }
}

/// Writes every item into new packs, in parallel (one pack writer per
/// worker). Stops at the first repository (write) error; items whose old
/// message cannot be read are reported in [`Written::failed`].
pub fn write_items(
    repo: &Repository,
    items: &[Item],
    rewrapper: Option<&dyn Rewrapper>,
    phase: &str,
    progress: &dyn Progress,
) -> Result<Written> {
    if items.is_empty() {
        return Ok(Written::default());
    }
    // One job per old pack, read front to back.
    let mut jobs: Vec<Vec<Item>> = Vec::new();
    let mut sorted = items.to_vec();
    sorted.sort_by_key(|i| (i.loc.pack, i.loc.offset));
    for it in sorted {
        match jobs.last_mut() {
            Some(j) if j[0].loc.pack == it.loc.pack => j.push(it),
            _ => jobs.push(vec![it]),
        }
    }
    let bytes: u64 = items.iter().map(|i| i.loc.length).sum();
    progress.start(phase, Some(items.len() as u64), Some(bytes));
    let next = AtomicUsize::new(0);
    let abort = AtomicBool::new(false);
    let large = repo.config().large_file_size;
    let results: Mutex<Vec<Result<Written>>> = Mutex::new(Vec::new());
    let worker = || -> Result<Written> {
        let mut packs = PackWriter::new(repo);
        let mut out = Written::default();
        while !abort.load(Ordering::Relaxed) {
            let Some(job) = jobs.get(next.fetch_add(1, Ordering::Relaxed)) else {
                break;
            };
            for item in job {
                let write = |w: &mut dyn Write| transform(repo, rewrapper, item, w);
                let r = if item.loc.length >= large {
                    packs.store_alone(write)
                } else {
                    packs.append(write)
                };
                match r {
                    Ok((IndexEntry { id, length, .. }, ())) => {
                        out.bytes += length;
                        if id != item.id {
                            out.renamed.push((item.id, id));
                        }
                    }
                    Err(Fail::Item(why)) => {
                        progress.warn(&format!("message {}: {why}", hex::encode(item.id)));
                        out.failed.push((*item, why));
                    }
                    Err(Fail::Repo(e)) => {
                        abort.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                }
                progress.advance(1, item.loc.length);
            }
        }
        if abort.load(Ordering::Relaxed) {
            return Ok(out);
        }
        out.packs = packs.finish()?;
        Ok(out)
    };
    let workers = rayon::current_num_threads().clamp(1, jobs.len());
    rayon::scope(|s| {
        for _ in 0..workers {
            s.spawn(|_| {
                let r = worker();
                results.lock().expect("no worker panics holding it").push(r);
            });
        }
    });
    progress.finish();
    let mut all = Written::default();
    for r in results.into_inner().expect("workers done") {
        let w = r?;
        all.packs.extend(w.packs);
        all.renamed.extend(w.renamed);
        all.failed.extend(w.failed);
        all.bytes += w.bytes;
    }
    Ok(all)
}

/// What [`commit`] did.
#[derive(Clone, Debug, Default)]
pub struct Committed {
    /// The index file written, if any.
    pub written: Option<IndexFile>,
    /// The index files deleted.
    pub deleted: Vec<Id>,
    pub packs_deleted: u64,
}

impl Committed {
    /// `files` (the index files as they were) as they are now.
    pub fn apply(&self, files: &mut Vec<IndexFile>) {
        files.retain(|f| !self.deleted.contains(&f.id));
        files.extend(self.written.clone());
    }
}

/// Makes `new_packs` part of the repository and removes `retired` packs:
/// writes one index file listing the new packs and the surviving packs of
/// every index file (of `files`, the current ones) that lists a retired pack,
/// deletes those index files, then deletes the retired packs. Each step is
/// durable before the next.
pub fn commit(
    repo: &Repository,
    files: &[IndexFile],
    new_packs: Vec<PackRecord>,
    retired: &HashSet<Id>,
) -> Result<Committed> {
    let mut done = Committed::default();
    let affected: Vec<&IndexFile> = files
        .iter()
        .filter(|f| f.packs.iter().any(|p| retired.contains(&p.id)))
        .collect();
    let mut listed: HashMap<Id, PackRecord> = HashMap::new();
    for f in &affected {
        for p in f.packs.iter().filter(|p| !retired.contains(&p.id)) {
            listed.entry(p.id).or_insert_with(|| p.clone());
        }
    }
    let mut packs = new_packs;
    let mut survivors: Vec<PackRecord> = listed.into_values().collect();
    survivors.sort_by_key(|p| p.id);
    packs.extend(survivors);
    if !packs.is_empty() {
        let id = repo.write_index_file(&packs)?;
        done.written = Some(IndexFile { id, packs });
    }
    for f in &affected {
        repo.delete_index_file(&f.id)?;
        done.deleted.push(f.id);
    }
    let mut retired: Vec<&Id> = retired.iter().collect();
    retired.sort();
    for id in retired {
        match repo.delete_pack(id) {
            Ok(()) => done.packs_deleted += 1,
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// What [`rewrite_packs`] did.
#[derive(Clone, Debug, Default)]
pub struct Outcome {
    pub packs_written: u64,
    pub packs_deleted: u64,
    pub bytes_written: u64,
    /// Messages that could not be read (their packs were kept), with the reason.
    pub failed: Vec<String>,
}

/// Packs to retire and what of them stays, for [`rewrite_packs`].
pub struct Plan<'a> {
    /// The packs to retire.
    pub packs: Vec<Id>,
    /// The messages of those packs that stay: copied, rewrapped or re-encrypted.
    pub items: Vec<Item>,
    /// For [`Action::Rewrap`] items.
    pub rewrapper: Option<&'a dyn Rewrapper>,
    /// Bytes of messages per batch; 0: 16 packs' worth.
    pub batch_bytes: u64,
    /// Progress phase name.
    pub phase: &'a str,
}

/// Retires the plan's packs, after writing its items into new packs. Works in
/// batches, each committed on its own (so a killed run keeps the batches
/// before). A pack with a message that could not be read is kept. `files`
/// (the current index files) is kept up to date.
pub fn rewrite_packs(
    repo: &Repository,
    files: &mut Vec<IndexFile>,
    plan: Plan<'_>,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let batch_bytes = if plan.batch_bytes > 0 {
        plan.batch_bytes
    } else {
        repo.config().pack_size.saturating_mul(16)
    };
    let mut packs = plan.packs;
    packs.sort();
    packs.dedup();
    let mut items = plan.items;
    items.sort_by_key(|i| (i.loc.pack, i.loc.offset));
    let of = |pack: &Id| {
        let start = items.partition_point(|i| i.loc.pack < *pack);
        let end = items.partition_point(|i| i.loc.pack <= *pack);
        start..end
    };
    let mut out = Outcome::default();
    let mut start = 0;
    while start < packs.len() {
        let mut end = start;
        let mut bytes = 0u64;
        while end < packs.len() && (end == start || bytes < batch_bytes) {
            bytes += items[of(&packs[end])]
                .iter()
                .map(|i| i.loc.length)
                .sum::<u64>();
            end += 1;
        }
        let batch_items: Vec<Item> = packs[start..end]
            .iter()
            .flat_map(|p| items[of(p)].iter().copied())
            .collect();
        let written = write_items(repo, &batch_items, plan.rewrapper, plan.phase, progress)?;
        let mut retire: HashSet<Id> = packs[start..end].iter().copied().collect();
        for p in written.packs_with_failures() {
            retire.remove(&p);
        }
        out.failed.extend(
            written
                .failed
                .iter()
                .map(|(i, why)| format!("message {}: {why}", hex::encode(i.id))),
        );
        out.packs_written += written.packs.len() as u64;
        out.bytes_written += written.bytes;
        let done = commit(repo, files, written.packs, &retire)?;
        out.packs_deleted += done.packs_deleted;
        done.apply(files);
        start = end;
    }
    Ok(out)
}
