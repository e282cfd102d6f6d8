//! The index: encrypted files under `index/<id>` (kind `index`), each listing
//! packs and the messages in them. Loading merges them all into one map from
//! message ID to location.
//!
//! Each backup writes one index file for the packs it wrote, after those packs
//! are durable and before its snapshot. Rewriters (prune, rewrap, reencrypt)
//! write a new index file for their new packs first and delete old index
//! files after, and delete old packs only once no index file lists them.
//!
//! So a message ID may be listed at two places for a while (or for good, if
//! the rewriter was killed in between). Every copy is a complete message with
//! that ID and the same plaintext; an interrupted rewrap leaves one copy with
//! the data key wrapped by an older backing key and one by the current.
//! [`Index`] keeps every copy: [`Index::get`] answers with the first one,
//! [`Index::locations`] with all, and [`Repository::decrypt_object`] tries the
//! others when one cannot be opened (pack gone, key unusable, header damaged).
//! The next rewrap or prune keeps one copy and drops the rest.

use std::collections::HashMap;
use std::io::Write;

use serde::{Deserialize, Serialize};

use crate::envelope::{Encryptor, MessageId};
use crate::fsutil::AtomicFile;
use crate::{Error, Result};

use super::pack::PackRecord;
use super::{decrypt_file, remove_durably, writing, Id, Kind, Repository};

const INDEX_VERSION: u32 = 1;

/// The plaintext of one index file (postcard).
#[derive(Deserialize)]
struct IndexData {
    version: u32,
    packs: Vec<PackRecord>,
}

/// The same, borrowed, for writing (postcard encodes a slice like a Vec).
#[derive(Serialize)]
struct IndexDataRef<'a> {
    version: u32,
    packs: &'a [PackRecord],
}

/// One index file as loaded.
#[derive(Clone, Debug)]
pub struct IndexFile {
    pub id: Id,
    pub packs: Vec<PackRecord>,
}

/// Where a message lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Location {
    pub pack: Id,
    pub offset: u64,
    pub length: u64,
    pub plaintext_len: u64,
}

/// Position of an entry: index file, pack record, message.
type Pos = (u32, u32, u32);

/// All index files merged. Entries are kept once (in `files`); the map holds
/// positions into them, so a large index costs about 100 bytes per message.
#[derive(Default)]
pub struct Index {
    files: Vec<IndexFile>,
    map: HashMap<MessageId, Pos>,
    /// Further copies of messages listed at more than one place (see the
    /// module documentation); the same pack and offset listed twice (a pack
    /// in two index files) is one copy.
    extra: HashMap<MessageId, Vec<Pos>>,
}

impl Index {
    /// Merges loaded index files (e.g. only those that decrypted, as verify does).
    pub fn from_files(files: Vec<IndexFile>) -> Index {
        let mut map: HashMap<MessageId, Pos> = HashMap::new();
        let mut extra: HashMap<MessageId, Vec<Pos>> = HashMap::new();
        let at = |(f, p, _): Pos| &files[f as usize].packs[p as usize];
        for (fi, f) in files.iter().enumerate() {
            for (pi, p) in f.packs.iter().enumerate() {
                for (mi, m) in p.messages.iter().enumerate() {
                    let pos = (fi as u32, pi as u32, mi as u32);
                    let Some(&first) = map.get(&m.id) else {
                        map.insert(m.id, pos);
                        continue;
                    };
                    let same_place = |q: &Pos| {
                        at(*q).id == p.id && at(*q).messages[q.2 as usize].offset == m.offset
                    };
                    let others = extra.entry(m.id).or_default();
                    if !same_place(&first) && !others.iter().any(same_place) {
                        others.push(pos);
                    }
                }
            }
        }
        extra.retain(|_, v| !v.is_empty());
        Index { files, map, extra }
    }

    fn location(&self, (f, p, m): Pos) -> Location {
        let pack = &self.files[f as usize].packs[p as usize];
        let e = &pack.messages[m as usize];
        Location {
            pack: pack.id,
            offset: e.offset,
            length: e.length,
            plaintext_len: e.plaintext_len,
        }
    }

    /// Where message `id` lives (its first copy, when there are several).
    pub fn get(&self, id: &MessageId) -> Option<Location> {
        self.map.get(id).map(|&pos| self.location(pos))
    }

    /// Every copy of message `id`, the one [`get`](Self::get) gives first.
    pub fn locations(&self, id: &MessageId) -> Vec<Location> {
        let Some(&first) = self.map.get(id) else {
            return Vec::new();
        };
        let mut out = vec![self.location(first)];
        if let Some(more) = self.extra.get(id) {
            out.extend(more.iter().map(|&pos| self.location(pos)));
        }
        out
    }

    /// Every copy of every message, each once: a message listed at two
    /// places appears twice, a pack listed by two index files once.
    pub fn copies(&self) -> impl Iterator<Item = (MessageId, Location)> + '_ {
        self.map
            .iter()
            .map(|(id, &pos)| (*id, self.location(pos)))
            .chain(
                self.extra
                    .iter()
                    .flat_map(move |(id, v)| v.iter().map(move |&pos| (*id, self.location(pos)))),
            )
    }

    /// Number of messages listed at more than one place.
    pub fn duplicated(&self) -> usize {
        self.extra.len()
    }

    pub fn contains(&self, id: &MessageId) -> bool {
        self.map.contains_key(id)
    }

    /// Number of distinct messages.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The index files, each with the packs it lists.
    pub fn files(&self) -> &[IndexFile] {
        &self.files
    }

    /// Every pack record of every index file (a pack listed by two files, as
    /// during a rewrite, appears twice).
    pub fn packs(&self) -> impl Iterator<Item = &PackRecord> {
        self.files.iter().flat_map(|f| f.packs.iter())
    }

    /// Adds packs in memory (e.g. those a running backup just committed).
    pub fn add(&mut self, id: Id, packs: Vec<PackRecord>) {
        let mut files = std::mem::take(&mut self.files);
        files.push(IndexFile { id, packs });
        *self = Index::from_files(files);
    }
}

/// Decodes the plaintext of one index file into its pack records. Pure (no
/// I/O, no key), so it can be fuzzed.
pub fn decode_index(plain: &[u8]) -> Result<Vec<PackRecord>> {
    let data: IndexData = postcard::from_bytes(plain)
        .map_err(|e| Error::Integrity(format!("decrypted but does not decode: {e}")))?;
    if data.version != INDEX_VERSION {
        return Err(Error::Other(format!(
            "version {} is not the version this envarc reads ({INDEX_VERSION})",
            data.version
        )));
    }
    Ok(data.packs)
}

/// Encodes pack records as the plaintext of an index file: the inverse of
/// [`decode_index`].
pub fn encode_index(packs: &[PackRecord]) -> Result<Vec<u8>> {
    postcard::to_stdvec(&IndexDataRef {
        version: INDEX_VERSION,
        packs,
    })
    .map_err(|e| Error::Other(format!("encoding an index file: {e}")))
}

impl Repository {
    /// IDs of all index files.
    pub fn list_index_files(&self) -> Result<Vec<Id>> {
        self.list_ids("index")
    }

    /// The file of index file `id`.
    pub fn index_path(&self, id: &Id) -> std::path::PathBuf {
        self.dir("index").join(id.to_hex())
    }

    /// Reads and decrypts one index file.
    pub fn read_index_file(&self, id: &Id) -> Result<IndexFile> {
        let path = self.index_path(id);
        let plain = decrypt_file(self, &path, Kind::Index)?;
        let packs = decode_index(&plain).map_err(|e| match e {
            Error::Integrity(m) => Error::Integrity(format!("index file {id}: {m}")),
            Error::Other(m) => Error::Other(format!("index file {id}: {m}")),
            e => e,
        })?;
        Ok(IndexFile { id: *id, packs })
    }

    /// Loads and merges every index file.
    pub fn load_index(&self) -> Result<Index> {
        use rayon::prelude::*;
        let ids = self.list_index_files()?;
        let files = ids
            .par_iter()
            .map(|id| self.read_index_file(id))
            .collect::<Result<Vec<_>>>()?;
        Ok(Index::from_files(files))
    }

    /// Loads every index file that reads, and returns the others with their
    /// errors, for readers (restore, verify) that carry on without them: the
    /// messages listed only there are then simply not found.
    pub fn load_index_lenient(&self) -> Result<(Index, Vec<(Id, Error)>)> {
        use rayon::prelude::*;
        let ids = self.list_index_files()?;
        let loaded: Vec<(Id, Result<IndexFile>)> = ids
            .par_iter()
            .map(|id| (*id, self.read_index_file(id)))
            .collect();
        let mut files = Vec::with_capacity(loaded.len());
        let mut failed = Vec::new();
        for (id, r) in loaded {
            match r {
                Ok(f) => files.push(f),
                Err(e) => failed.push((id, e)),
            }
        }
        Ok((Index::from_files(files), failed))
    }

    /// Writes a new index file listing `packs`; durable when this returns.
    /// Write it only after the packs themselves are committed.
    pub fn write_index_file(&self, packs: &[PackRecord]) -> Result<Id> {
        let plain = encode_index(packs)?;
        let id = Id::random();
        let path = self.dir("index").join(id.to_hex());
        let io_err = |e| Error::io(format!("writing {}", path.display()), e);
        let mut f = AtomicFile::create(&path).map_err(io_err)?;
        let mut enc = Encryptor::new(
            self.provider(),
            &self.encrypt_options(Kind::Index),
            std::io::BufWriter::new(&mut f),
        )
        .map_err(|e| writing(e, &path))?;
        enc.write_all(&plain).map_err(io_err)?;
        let (mut w, _) = enc.finish().map_err(|e| writing(e, &path))?;
        w.flush().map_err(io_err)?;
        drop(w);
        f.commit().map_err(io_err)?;
        Ok(id)
    }

    /// Deletes an index file; durable when this returns.
    pub fn delete_index_file(&self, id: &Id) -> Result<()> {
        remove_durably(&self.dir("index").join(id.to_hex()))
    }
}
