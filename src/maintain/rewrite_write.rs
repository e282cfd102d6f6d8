//! Step 1 of a rewrite (see `rewrite.rs`): one batch's chunk messages into
//! new packs, on the worker pool. Each pack to retire is one task that reads
//! its messages in a few large ranges (adjacent messages in one request, so
//! a remote store is not asked once per chunk) and hands each to a pack
//! writer taken from a shared set (one per thread at most).
//!
//! A message that cannot be read or opened is the item's failure: nothing
//! is written for it, and its pack is kept. A failure to write, or of the key
//! service, stops the batch: nothing of it is indexed, and what it wrote is
//! unindexed data that prune removes.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::rewrite::{ChunkAction, Engine, Item, PackJob};
use crate::envelope::Header;
use crate::pool::Pool;
use crate::repo::{
    pack_name, Compression, FileKey, Id, KeySetTable, KeyVersion, PackRecord, PackWriter,
};
use crate::{Error, Result};

/// Most bytes read with one request.
const RUN_BYTES: u64 = 8 * 1024 * 1024;
/// Bytes of dropped messages between two kept ones that are read along
/// rather than split into two requests.
const RUN_GAP: u64 = 256 * 1024;

/// What one batch wrote.
pub(super) struct Written {
    /// The new packs, committed (durable, not yet indexed).
    pub packs: Vec<PackRecord>,
    /// The key sets their chunk records point into.
    pub key_sets: Vec<Vec<KeyVersion>>,
    /// Packs with a chunk that could not be rewritten: they stay.
    pub failed_packs: HashSet<Id>,
    pub failed: Vec<String>,
    pub copied: u64,
    pub resealed: u64,
    pub data_keys: u64,
}

/// One old data key's new one, made by the first thread that needs it
/// while the others wait on the slot.
type KeySlot = Arc<Mutex<Option<Arc<FileKey>>>>;

/// The data keys of new messages, one per old data key: a provider call
/// per file's data key, not per chunk, whatever the thread count.
#[derive(Default)]
struct KeyCache {
    slots: Mutex<HashMap<[u8; 32], KeySlot>>,
    made: AtomicU64,
}

/// Names an old data key by its EDKs and the context they are bound to.
fn key_name(header: &Header, compression: Compression) -> [u8; 32] {
    let mut h = Sha256::new();
    for e in &header.edks {
        for part in [e.provider_id.as_bytes(), &e.provider_info, &e.ciphertext] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part);
        }
    }
    h.update(compression.context_value());
    h.finalize().into()
}

impl KeyCache {
    fn get(&self, e: &Engine, header: &Header, compression: Compression) -> Result<Arc<FileKey>> {
        let slot = self
            .slots
            .lock()
            .expect("no panics holding it")
            .entry(key_name(header, compression))
            .or_default()
            .clone();
        // Held while the provider is asked, so that no other thread asks
        // for the same data key meanwhile.
        let mut slot = slot.lock().expect("no panics holding it");
        if let Some(k) = slot.as_ref() {
            return Ok(k.clone());
        }
        let rekey = e
            .rekey
            .expect("a plan with Reseal items comes with a Rekey");
        let k = Arc::new(rekey.key_for(e.repo, header, compression)?);
        self.made.fetch_add(1, Ordering::Relaxed);
        *slot = Some(k.clone());
        Ok(k)
    }
}

struct Shared<'r> {
    writers: Mutex<Vec<PackWriter<'r>>>,
    key_sets: Mutex<KeySetTable>,
    keys: KeyCache,
    copied: AtomicU64,
    resealed: AtomicU64,
}

impl Shared<'_> {
    fn key_set(&self, set: &[KeyVersion]) -> u32 {
        self.key_sets
            .lock()
            .expect("no panics holding it")
            .number(set)
    }
}

/// A failure of the item (its old message) or of the whole batch.
enum Fail {
    Item(String),
    Batch(Error),
}

/// Damaged messages and keys that do not open them are the item's problem;
/// anything else (writing, a key service that cannot be reached) stops.
fn classify(e: Error) -> Fail {
    if e.is_integrity() || e.is_key_problem() {
        Fail::Item(e.to_string())
    } else {
        Fail::Batch(e)
    }
}

/// Groups items (sorted by offset) into ranges read with one request each.
/// Pure.
pub(super) fn runs(items: &[Item], max: u64, gap: u64) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let loc = &item.chunk.location;
        if let Some(r) = out.last_mut() {
            let first = &items[r.start].chunk.location;
            let prev = &items[r.end - 1].chunk.location;
            let prev_end = prev.offset + prev.length;
            if loc.offset >= prev_end
                && loc.offset - prev_end <= gap
                && loc.offset + loc.length - first.offset <= max
            {
                r.end = i + 1;
                continue;
            }
        }
        out.push(i..i + 1);
    }
    out
}

/// Writes one batch (see the module docs).
pub(super) fn write_batch<'r>(e: &Engine<'r>, pool: &Pool, jobs: &[PackJob]) -> Result<Written> {
    let shared = Shared {
        writers: Mutex::new(Vec::new()),
        key_sets: Mutex::new(KeySetTable::default()),
        keys: KeyCache::default(),
        copied: AtomicU64::new(0),
        resealed: AtomicU64::new(0),
    };
    let failures: Vec<Vec<String>> = pool.install(|| {
        jobs.par_iter()
            .map(|job| write_job(e, &shared, job))
            .collect::<Result<_>>()
    })?;
    let mut out = Written {
        packs: Vec::new(),
        key_sets: Vec::new(),
        failed_packs: HashSet::new(),
        failed: Vec::new(),
        copied: shared.copied.into_inner(),
        resealed: shared.resealed.into_inner(),
        data_keys: shared.keys.made.into_inner(),
    };
    for (job, f) in jobs.iter().zip(failures) {
        if !f.is_empty() {
            out.failed_packs.insert(job.pack);
            out.failed.extend(f);
        }
    }
    for w in shared.writers.into_inner().expect("no panics holding it") {
        out.packs.extend(w.finish()?);
    }
    out.key_sets = shared
        .key_sets
        .into_inner()
        .expect("no panics holding it")
        .into_sets();
    Ok(out)
}

fn describe(item: &Item, why: &str) -> String {
    let c = &item.chunk;
    format!(
        "chunk {} in pack {} at {}: {why}",
        c.id.short(),
        c.location.pack.short(),
        c.location.offset
    )
}

/// Writes what stays of one pack; returns the failed items' reasons.
fn write_job<'r>(e: &Engine<'r>, sh: &Shared<'r>, job: &PackJob) -> Result<Vec<String>> {
    let mut failed = Vec::new();
    let name = pack_name(&job.pack);
    for run in runs(&job.items, RUN_BYTES, RUN_GAP) {
        let items = &job.items[run];
        let start = items[0].chunk.location.offset;
        let last = &items[items.len() - 1].chunk.location;
        let bytes =
            match e
                .repo
                .storage()
                .read_range(&name, start, last.offset + last.length - start)
            {
                Ok(b) => b,
                Err(err)
                    if matches!(
                        err.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::UnexpectedEof
                    ) =>
                {
                    let why = format!("its pack cannot be read ({err})");
                    failed.extend(items.iter().map(|i| describe(i, &why)));
                    advance(e, items);
                    continue;
                }
                Err(err) => return Err(Error::io(format!("reading {name}"), err)),
            };
        for item in items {
            let loc = &item.chunk.location;
            let at = (loc.offset - start) as usize;
            match write_item(e, sh, item, &bytes[at..at + loc.length as usize]) {
                Ok(()) => {}
                Err(Fail::Item(why)) => failed.push(describe(item, &why)),
                Err(Fail::Batch(err)) => return Err(err),
            }
            advance(e, std::slice::from_ref(item));
        }
    }
    Ok(failed)
}

fn advance(e: &Engine, items: &[Item]) {
    let bytes = items.iter().map(|i| i.chunk.location.length).sum();
    e.progress.advance(items.len() as u64, bytes);
}

fn write_item<'r>(
    e: &Engine<'r>,
    sh: &Shared<'r>,
    item: &Item,
    message: &[u8],
) -> std::result::Result<(), Fail> {
    let repo = e.repo;
    let c = &item.chunk;
    let (message, key_set): (Cow<[u8]>, u32) = match item.action {
        ChunkAction::Copy => {
            sh.copied.fetch_add(1, Ordering::Relaxed);
            (Cow::Borrowed(message), sh.key_set(c.key_set))
        }
        ChunkAction::Reseal => {
            let opened = repo
                .open_chunk_body(message, &c.location, &c.id)
                .map_err(classify)?;
            let key = sh
                .keys
                .get(e, &opened.header, opened.compression)
                .map_err(classify)?;
            let new = repo.reseal_chunk(&key, &opened.body).map_err(Fail::Batch)?;
            sh.resealed.fetch_add(1, Ordering::Relaxed);
            (Cow::Owned(new), sh.key_set(&key.key_set))
        }
    };
    let taken = sh.writers.lock().expect("no panics holding it").pop();
    let mut w = taken.unwrap_or_else(|| PackWriter::new(repo));
    let r = w.add(c.id, &message, c.location.raw_length as u32, key_set);
    sh.writers.lock().expect("no panics holding it").push(w);
    r.map_err(Fail::Batch)
}

#[cfg(test)]
mod tests {
    use super::super::rewrite::test_item;
    use super::*;

    fn item(offset: u64, length: u64) -> Item<'static> {
        test_item(0, offset, length)
    }

    #[test]
    fn adjacent_messages_are_read_together_within_bounds() {
        let items = [
            item(0, 10),
            item(10, 10),
            item(25, 5), // a gap of 5
            item(100, 10),
            item(110, 50),
        ];
        assert_eq!(runs(&items, 1000, 5), vec![0..3, 3..5]);
        assert_eq!(runs(&items, 1000, 0), vec![0..2, 2..3, 3..5]);
        assert_eq!(runs(&items, 40, 100), vec![0..3, 3..4, 4..5]);
        assert!(runs(&[], 10, 10).is_empty());
    }
}
