//! The index: encrypted files under `index/<id>` (kind `index`, context also
//! `envarc-id: <id>`, so a file copied over another's name fails to open),
//! each listing packs and the chunks in them. Loading merges them into one
//! sorted table: 52 bytes per chunk in memory (ID 32, pack number, offset,
//! length, chunk length, key set: 4 each), so ten million chunks take
//! 520 MB, and a lookup is a binary search.
//!
//! Each backup writes index files for the packs it wrote after those packs
//! are durable and before its snapshot. Rewriters (prune, rewrap, reencrypt)
//! write new index files for their new packs first, delete old index files
//! after, and delete old packs only once no index file lists them. So a
//! chunk may be listed at two places for a while (or for good, if a rewriter
//! was killed in between, or two backups stored the same new chunk at once):
//! [`Index::locations`] gives every copy, [`Index::get`] the first; readers
//! try the others when one fails.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

use super::chunker::ChunkId;
use super::keys::KeyVersion;
use super::pack::PackRecord;
use super::{Id, Kind, Repository};

const INDEX_VERSION: u32 = 2;
/// Chunks per index file written (about 5 MB of plaintext).
const CHUNKS_PER_FILE: usize = 100_000;

/// The plaintext of one index file (postcard).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexData {
    pub version: u32,
    /// The key versions wrapping each chunk's data key, as sets that chunk
    /// records point into (most files share one set).
    pub key_sets: Vec<Vec<KeyVersion>>,
    pub packs: Vec<PackRecord>,
}

impl IndexData {
    pub fn new(key_sets: Vec<Vec<KeyVersion>>, packs: Vec<PackRecord>) -> IndexData {
        IndexData {
            version: INDEX_VERSION,
            key_sets,
            packs,
        }
    }

    /// Decodes and checks an index file's plaintext. Pure.
    pub fn decode(plain: &[u8]) -> Result<IndexData> {
        let bad = |why: String| Error::Integrity(format!("an index file {why}"));
        let d: IndexData = postcard::from_bytes(plain)
            .map_err(|e| bad(format!("decrypted but does not decode: {e}")))?;
        if d.version != INDEX_VERSION {
            return Err(bad(format!(
                "has version {}, not {INDEX_VERSION}",
                d.version
            )));
        }
        for p in &d.packs {
            for c in &p.chunks {
                if c.key_set as usize >= d.key_sets.len() {
                    return Err(bad(format!(
                        "names key set {} of {}",
                        c.key_set,
                        d.key_sets.len()
                    )));
                }
                if u64::from(c.offset) + u64::from(c.length) > p.size {
                    return Err(bad(format!(
                        "places chunk {} beyond the end of pack {}",
                        c.id, p.id
                    )));
                }
            }
        }
        Ok(d)
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("index data encodes")
    }

    /// Splits into files of at most `CHUNKS_PER_FILE` chunks (a pack is
    /// never split), each with the key sets it uses.
    pub fn split(self) -> Vec<IndexData> {
        let mut out: Vec<IndexData> = Vec::new();
        let mut count = 0;
        for p in self.packs {
            if out.is_empty() || count + p.chunks.len() > CHUNKS_PER_FILE {
                out.push(IndexData::new(self.key_sets.clone(), Vec::new()));
                count = 0;
            }
            count += p.chunks.len();
            out.last_mut().expect("just pushed").packs.push(p);
        }
        out
    }
}

/// A table of key sets that chunk records point into, built as records are
/// added (the [`IndexData::key_sets`] of an index file being written).
#[derive(Default)]
pub struct KeySetTable {
    sets: Vec<Vec<KeyVersion>>,
    numbers: HashMap<Vec<KeyVersion>, u32>,
}

impl KeySetTable {
    /// The number of `set` in the table, added if new.
    pub fn number(&mut self, set: &[KeyVersion]) -> u32 {
        if let Some(n) = self.numbers.get(set) {
            return *n;
        }
        let n = self.sets.len() as u32;
        self.sets.push(set.to_vec());
        self.numbers.insert(set.to_vec(), n);
        n
    }

    pub fn into_sets(self) -> Vec<Vec<KeyVersion>> {
        self.sets
    }
}

/// Where a chunk message lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: Id,
    pub offset: u64,
    pub length: u64,
    /// Bytes of the chunk itself.
    pub raw_length: u64,
}

/// One chunk of the index as iterated.
#[derive(Clone, Copy, Debug)]
pub struct IndexedChunk<'a> {
    pub id: ChunkId,
    pub location: Location,
    /// The key versions that wrap its data key.
    pub key_set: &'a [KeyVersion],
    /// Its number in [`Index::key_sets`].
    pub key_set_no: u32,
    /// Position of its pack in [`Index::packs`].
    pub pack_no: u32,
}

#[cfg(test)]
impl IndexedChunk<'static> {
    /// A chunk `id` of `length` bytes (stored as they are) at `offset` in
    /// `pack`, under no key set: what the unit tests of the pipelines that
    /// plan reads and copies by location build their input from.
    pub(crate) fn at(id: ChunkId, pack: Id, offset: u64, length: u64) -> Self {
        IndexedChunk {
            id,
            location: Location {
                pack,
                offset,
                length,
                raw_length: length,
            },
            key_set: &[],
            key_set_no: 0,
            pack_no: 0,
        }
    }
}

/// A pack as the index knows it.
#[derive(Clone, Debug)]
pub struct IndexedPack {
    pub id: Id,
    pub size: u64,
    /// The index files that list it.
    pub files: Vec<Id>,
}

#[derive(Clone, Copy)]
struct Slot {
    id: [u8; 32],
    pack: u32,
    offset: u32,
    length: u32,
    raw: u32,
    key_set: u32,
}

/// Builds an [`Index`] one index file at a time, so that loading holds the
/// table plus one batch of decoded files, never every file's records.
#[derive(Default)]
pub struct IndexBuilder {
    ix: Index,
    set_no: HashMap<Vec<KeyVersion>, u32>,
    pack_no: HashMap<Id, u32>,
}

impl IndexBuilder {
    pub fn add(&mut self, file: Id, data: IndexData) {
        let ix = &mut self.ix;
        ix.files.push(file);
        let sets: Vec<u32> = data
            .key_sets
            .into_iter()
            .map(|s| {
                let n = self.set_no.len() as u32;
                *self.set_no.entry(s.clone()).or_insert_with(|| {
                    ix.key_sets.push(s);
                    n
                })
            })
            .collect();
        for p in data.packs {
            let next = ix.packs.len() as u32;
            let no = *self.pack_no.entry(p.id).or_insert(next);
            if no == next {
                ix.packs.push(IndexedPack {
                    id: p.id,
                    size: p.size,
                    files: Vec::new(),
                });
            }
            ix.packs[no as usize].files.push(file);
            // Growth leaves untouched capacity, which is not resident.
            ix.slots.extend(p.chunks.iter().map(|c| Slot {
                id: c.id.0,
                pack: no,
                offset: c.offset,
                length: c.length,
                raw: c.raw_length,
                key_set: sets[c.key_set as usize],
            }));
        }
    }

    pub fn finish(self) -> Index {
        let mut ix = self.ix;
        ix.slots.sort_unstable_by_key(|s| (s.id, s.pack, s.offset));
        // A pack listed by two index files lists its chunks twice: one copy.
        ix.slots
            .dedup_by(|a, b| (a.id, a.pack, a.offset) == (b.id, b.pack, b.offset));
        ix.slots.shrink_to_fit();
        ix
    }
}

/// All index files merged.
#[derive(Default)]
pub struct Index {
    slots: Vec<Slot>,
    packs: Vec<IndexedPack>,
    key_sets: Vec<Vec<KeyVersion>>,
    files: Vec<Id>,
}

impl Index {
    /// Merges loaded index files (e.g. only those that opened, as verify does).
    pub fn from_files(files: Vec<(Id, IndexData)>) -> Index {
        let mut b = IndexBuilder::default();
        for (id, data) in files {
            b.add(id, data);
        }
        b.finish()
    }

    fn range(&self, id: &ChunkId) -> &[Slot] {
        let start = self.slots.partition_point(|s| s.id < id.0);
        let end = start + self.slots[start..].partition_point(|s| s.id == id.0);
        &self.slots[start..end]
    }

    fn location(&self, s: &Slot) -> Location {
        Location {
            pack: self.packs[s.pack as usize].id,
            offset: u64::from(s.offset),
            length: u64::from(s.length),
            raw_length: u64::from(s.raw),
        }
    }

    fn chunk(&self, s: &Slot) -> IndexedChunk<'_> {
        IndexedChunk {
            id: ChunkId(s.id),
            location: self.location(s),
            key_set: &self.key_sets[s.key_set as usize],
            key_set_no: s.key_set,
            pack_no: s.pack,
        }
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        !self.range(id).is_empty()
    }

    /// Where chunk `id` lives (its first copy).
    pub fn get(&self, id: &ChunkId) -> Option<Location> {
        self.range(id).first().map(|s| self.location(s))
    }

    /// Every copy of chunk `id`.
    pub fn locations(&self, id: &ChunkId) -> Vec<Location> {
        self.range(id).iter().map(|s| self.location(s)).collect()
    }

    /// Every copy of chunk `id`, with its key set.
    pub fn copies(&self, id: &ChunkId) -> impl Iterator<Item = IndexedChunk<'_>> {
        self.range(id).iter().map(|s| self.chunk(s))
    }

    /// The distinct key sets chunks point into.
    pub fn key_sets(&self) -> &[Vec<KeyVersion>] {
        &self.key_sets
    }

    /// Every copy of every chunk, by chunk ID.
    pub fn chunks(&self) -> impl Iterator<Item = IndexedChunk<'_>> {
        self.slots.iter().map(|s| self.chunk(s))
    }

    /// Every chunk copy of each pack, in pack order and by offset within a
    /// pack (for reading packs front to back).
    pub fn by_pack(&self) -> Vec<Vec<IndexedChunk<'_>>> {
        let mut out: Vec<Vec<IndexedChunk>> = vec![Vec::new(); self.packs.len()];
        for s in &self.slots {
            out[s.pack as usize].push(self.chunk(s));
        }
        for v in &mut out {
            v.sort_by_key(|c| c.location.offset);
        }
        out
    }

    pub fn packs(&self) -> &[IndexedPack] {
        &self.packs
    }

    /// The index files merged.
    pub fn files(&self) -> &[Id] {
        &self.files
    }

    /// Chunk copies listed.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes this index holds in memory (for the measurements in the docs).
    pub fn memory_bytes(&self) -> usize {
        self.slots.capacity() * std::mem::size_of::<Slot>()
            + self.packs.capacity() * std::mem::size_of::<IndexedPack>()
    }
}

/// The object name of index file `id`.
pub fn index_name(id: &Id) -> String {
    format!("index/{}", id.to_hex())
}

impl Repository {
    /// Writes index files for `data` (split into files of bounded size);
    /// durable when this returns. Call after the packs are durable.
    pub fn save_index(&self, data: IndexData) -> Result<Vec<Id>> {
        data.split()
            .iter()
            .map(|part| self.save_index_file(part))
            .collect()
    }

    /// Writes one index file holding `data` as it is (the caller keeps it
    /// within [`IndexData::split`]'s bounds); durable when this returns.
    pub fn save_index_file(&self, data: &IndexData) -> Result<Id> {
        let id = Id::random();
        self.write_message(&index_name(&id), Kind::Index, Some(&id), &data.encode())?;
        Ok(id)
    }

    /// Reads and opens one index file.
    pub fn load_index_file(&self, id: &Id) -> Result<IndexData> {
        let plain = self.read_message(&index_name(id), Kind::Index, Some(id))?;
        IndexData::decode(&plain).map_err(|e| Error::Integrity(format!("index/{id}: {e}")))
    }

    /// IDs of every index file.
    pub fn list_index_files(&self) -> Result<Vec<Id>> {
        self.list_ids("index/")
    }

    /// Loads every index file; fails on the first that cannot be read.
    pub fn load_index(&self) -> Result<Index> {
        let (index, mut bad) = self.load_index_lenient()?;
        match bad.pop() {
            Some((_, e)) => Err(e),
            None => Ok(index),
        }
    }

    /// Loads the index files that open (in parallel, a batch at a time);
    /// reports the others.
    pub fn load_index_lenient(&self) -> Result<(Index, Vec<(Id, Error)>)> {
        use rayon::prelude::*;
        let ids = self.list_index_files()?;
        let mut b = IndexBuilder::default();
        let mut bad = Vec::new();
        for batch in ids.chunks(2 * rayon::current_num_threads().max(1)) {
            let loaded: Vec<(Id, Result<IndexData>)> = batch
                .par_iter()
                .map(|id| (*id, self.load_index_file(id)))
                .collect();
            for (id, r) in loaded {
                match r {
                    Ok(d) => b.add(id, d),
                    Err(e) => bad.push((id, e)),
                }
            }
        }
        Ok((b.finish(), bad))
    }

    /// Deletes an index file (rewriters: only after what replaces it is durable).
    pub fn delete_index_file(&self, id: &Id) -> Result<()> {
        self.delete_object(&index_name(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::pack::ChunkRecord;

    fn rec(id: u8, offset: u32) -> ChunkRecord {
        ChunkRecord {
            id: ChunkId([id; 32]),
            offset,
            length: 10,
            raw_length: 20,
            key_set: 0,
        }
    }

    #[test]
    fn copies_are_kept_and_a_pack_listed_twice_counts_once() {
        let kv = vec![KeyVersion {
            provider: crate::providers::ProviderKind::Keyring.into(),
            key: "k".into(),
            version: Some(1),
        }];
        let p1 = PackRecord {
            id: Id([1; 32]),
            size: 100,
            chunks: vec![rec(5, 0), rec(6, 10)],
        };
        let p2 = PackRecord {
            id: Id([2; 32]),
            size: 100,
            chunks: vec![rec(5, 50)],
        };
        let a = IndexData::new(vec![kv.clone()], vec![p1.clone(), p2]);
        let b = IndexData::new(vec![kv], vec![p1]);
        let decoded = IndexData::decode(&a.encode()).unwrap();
        assert_eq!(decoded, a);
        let ix = Index::from_files(vec![(Id([9; 32]), a), (Id([8; 32]), b)]);
        assert_eq!(ix.len(), 3);
        assert_eq!(ix.locations(&ChunkId([5; 32])).len(), 2);
        assert_eq!(ix.get(&ChunkId([6; 32])).unwrap().offset, 10);
        assert!(!ix.contains(&ChunkId([7; 32])));
        assert_eq!(ix.packs()[0].files.len(), 2);
        assert_eq!(std::mem::size_of::<Slot>(), 52);
        let mut bad = IndexData::new(vec![], vec![]);
        bad.packs.push(PackRecord {
            id: Id([3; 32]),
            size: 5,
            chunks: vec![rec(1, 0)],
        });
        assert!(IndexData::decode(&bad.encode()).is_err());
    }
}
