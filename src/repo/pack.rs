//! Writing packs: chunk messages appended one after another into
//! `data/<2 hex>/<pack id>` through [`Storage::create_writer`].
//!
//! No pack header: a message cut out at its offset and length is a complete
//! ESDK message any ESDK reads. A pack appears only complete and durable
//! (the storage's commit); its chunks become findable once an index file
//! lists the returned [`PackRecord`]s. One writer is not shared between
//! threads: a backup keeps a few and hands one to each worker that needs it.

use std::io::{BufWriter, Write};

use serde::{Deserialize, Serialize};

use crate::repo::storage::ObjectWriter;
use crate::{Error, Result};

use super::chunker::ChunkId;
use super::{Id, Repository};

/// Where one chunk message lives inside its pack, and what stats needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub id: ChunkId,
    pub offset: u32,
    /// Bytes of the message.
    pub length: u32,
    /// Bytes of the chunk (after decompression).
    pub raw_length: u32,
    /// Which key versions wrap its data key: a number into the index file's
    /// table of key sets.
    pub key_set: u32,
}

/// A committed pack and the chunks in it: what an index file lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRecord {
    pub id: Id,
    /// Size of the pack in bytes.
    pub size: u64,
    pub chunks: Vec<ChunkRecord>,
}

/// The object name of pack `id`.
pub fn pack_name(id: &Id) -> String {
    let hex = id.to_hex();
    format!("data/{}/{hex}", &hex[..2])
}

const WRITE_BUFFER: usize = 1024 * 1024;

struct OpenPack {
    id: Id,
    out: BufWriter<Box<dyn ObjectWriter>>,
    len: u64,
    chunks: Vec<ChunkRecord>,
}

/// A pack that reached its target size, written but not yet committed:
/// [`FullPack::commit`] makes it durable (fsync and rename, or the upload
/// to a remote store). Pipelines hand it to threads of their own so that
/// the fsync or upload overlaps the next chunks' work.
pub struct FullPack(OpenPack);

impl FullPack {
    pub fn commit(self) -> Result<PackRecord> {
        let p = self.0;
        let what = || format!("writing pack {}", pack_name(&p.id));
        let w = p
            .out
            .into_inner()
            .map_err(|e| Error::io(what(), e.into_error()))?;
        w.commit().map_err(|e| Error::io(what(), e))?;
        Ok(PackRecord {
            id: p.id,
            size: p.len,
            chunks: p.chunks,
        })
    }
}

/// Appends chunk messages to packs of about the repository's pack size.
pub struct PackWriter<'r> {
    repo: &'r Repository,
    open: Option<OpenPack>,
    done: Vec<PackRecord>,
}

impl<'r> PackWriter<'r> {
    pub fn new(repo: &'r Repository) -> PackWriter<'r> {
        PackWriter {
            repo,
            open: None,
            done: Vec::new(),
        }
    }

    /// Appends one complete chunk message; commits the pack once it reached
    /// the target size.
    pub fn add(
        &mut self,
        id: ChunkId,
        message: &[u8],
        raw_length: u32,
        key_set: u32,
    ) -> Result<()> {
        if let Some(full) = self.add_detached(id, message, raw_length, key_set)? {
            self.done.push(full.commit()?);
        }
        Ok(())
    }

    /// Like [`PackWriter::add`], but a pack that reached the target size is
    /// returned for the caller to commit.
    pub fn add_detached(
        &mut self,
        id: ChunkId,
        message: &[u8],
        raw_length: u32,
        key_set: u32,
    ) -> Result<Option<FullPack>> {
        let storage = self.repo.storage();
        let pack = match self.open.as_mut() {
            Some(p) => p,
            None => {
                let id = Id::random();
                let name = pack_name(&id);
                let w = storage.create_writer(&name).map_err(|e| {
                    Error::io(format!("creating pack {name} in {}", storage.location()), e)
                })?;
                self.open.insert(OpenPack {
                    id,
                    out: BufWriter::with_capacity(WRITE_BUFFER, w),
                    len: 0,
                    chunks: Vec::new(),
                })
            }
        };
        pack.out
            .write_all(message)
            .map_err(|e| Error::io(format!("writing pack {}", pack_name(&pack.id)), e))?;
        pack.chunks.push(ChunkRecord {
            id,
            offset: u32::try_from(pack.len).expect("packs stay under 4 GiB"),
            length: message.len() as u32,
            raw_length,
            key_set,
        });
        pack.len += message.len() as u64;
        if pack.len >= self.repo.config().pack_size {
            return Ok(self.open.take().map(FullPack));
        }
        Ok(None)
    }

    fn commit(&mut self) -> Result<()> {
        if let Some(p) = self.open.take() {
            self.done.push(FullPack(p).commit()?);
        }
        Ok(())
    }

    /// Bytes in packs written so far (committed or open).
    pub fn bytes(&self) -> u64 {
        self.done.iter().map(|p| p.size).sum::<u64>() + self.open.as_ref().map_or(0, |p| p.len)
    }

    /// The packs this writer committed, and its open pack (if any) for the
    /// caller to commit: a pipeline hands it to the threads that commit its
    /// full packs, so that the last packs are sent side by side too.
    pub fn detach(self) -> (Vec<PackRecord>, Option<FullPack>) {
        (self.done, self.open.map(FullPack))
    }

    /// Commits the open pack; returns every pack this writer committed, all
    /// durable.
    pub fn finish(mut self) -> Result<Vec<PackRecord>> {
        self.commit()?;
        Ok(self.done)
    }
}
