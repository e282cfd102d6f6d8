//! Writing packs: complete messages appended one after another into
//! `data/<2 hex>/<pack id>`, and large messages each in a data file of their own.
//!
//! A pack is written under a temporary name and renamed into place only once
//! it is complete and fsynced; its messages become findable when the caller
//! lists the returned [`PackRecord`]s in an index file. Packs are plain
//! concatenations of ESDK messages: no pack header, so a message cut out at
//! its offset and length is a complete message any ESDK reads.
//!
//! One writer is not shared between threads: the backup gives each worker its
//! own, so encryption never waits for a lock.

use std::io::{self, BufWriter, Seek, SeekFrom, Write};

use serde::{Deserialize, Serialize};

use crate::envelope::MessageId;
use crate::fsutil::AtomicFile;
use crate::{Error, Result};

use super::{Id, Repository};

/// Where one message lives inside its pack.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub id: MessageId,
    pub offset: u64,
    pub length: u64,
    /// Plaintext bytes the message holds (for stats and restore sizing).
    pub plaintext_len: u64,
}

/// A committed pack and the messages in it: what an index file lists.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackRecord {
    pub id: Id,
    /// Size of the pack file in bytes.
    pub size: u64,
    pub messages: Vec<IndexEntry>,
}

const WRITE_BUFFER: usize = 512 * 1024;

struct OpenPack {
    id: Id,
    out: BufWriter<AtomicFile>,
    len: u64,
    messages: Vec<IndexEntry>,
}

impl OpenPack {
    fn create(repo: &Repository) -> Result<OpenPack> {
        let id = Id::random();
        let path = repo.pack_path(&id);
        let f = AtomicFile::create(&path)
            .map_err(|e| Error::io(format!("creating a pack file beside {}", path.display()), e))?;
        Ok(OpenPack {
            id,
            out: BufWriter::with_capacity(WRITE_BUFFER, f),
            len: 0,
            messages: Vec::new(),
        })
    }

    /// Flushes, fsyncs and renames the pack into place (and fsyncs its folder).
    fn commit(self) -> Result<PackRecord> {
        let what = || format!("writing pack {}", self.id);
        let f = self
            .out
            .into_inner()
            .map_err(|e| Error::io(what(), e.into_error()))?;
        f.commit().map_err(|e| Error::io(what(), e))?;
        Ok(PackRecord {
            id: self.id,
            size: self.len,
            messages: self.messages,
        })
    }

    /// Cuts the pack back to `len` bytes, dropping a partly written message.
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.out.flush()?;
        let f = self.out.get_mut().file();
        f.set_len(len)?;
        f.seek(SeekFrom::Start(len))?;
        self.len = len;
        Ok(())
    }
}

/// Counts the bytes written through it. Its `flush` does nothing: an
/// encryptor flushes at the end of every message, and passing that on would
/// cost a write call per message; the pack is flushed when committed.
struct Counting<'a> {
    inner: &'a mut dyn Write,
    n: u64,
}

impl Write for Counting<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.n += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a message writer callback returns: the message's ID, its plaintext
/// length, and anything else the caller wants back.
pub type Written<T> = (MessageId, u64, T);

/// Appends messages to packs of the repository's target size.
pub struct PackWriter<'r> {
    repo: &'r Repository,
    target: u64,
    open: Option<OpenPack>,
    done: Vec<PackRecord>,
    stored: u64,
    /// Set when a failed message could not be cut off again: the open pack was
    /// discarded with messages the caller believes stored, so nothing may go on.
    poisoned: bool,
}

impl<'r> PackWriter<'r> {
    pub fn new(repo: &'r Repository) -> PackWriter<'r> {
        PackWriter {
            repo,
            target: repo.config().pack_size,
            open: None,
            done: Vec::new(),
            stored: 0,
            poisoned: false,
        }
    }

    fn check(&self) -> Result<()> {
        if self.poisoned {
            return Err(Error::Other(
                "an earlier write to this pack failed and could not be undone; the run must stop"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Appends one message to the current pack. `write` streams the complete
    /// message into the writer it gets. If `write` fails, the partial message
    /// is cut off and the pack stays usable. The pack is committed once it
    /// reaches the target size.
    pub fn append<T, E: From<Error>>(
        &mut self,
        write: impl FnOnce(&mut dyn Write) -> std::result::Result<Written<T>, E>,
    ) -> std::result::Result<(IndexEntry, T), E> {
        self.check()?;
        if self.open.is_none() {
            self.open = Some(OpenPack::create(self.repo)?);
        }
        let pack = self.open.as_mut().expect("just opened");
        let start = pack.len;
        let mut out = Counting {
            inner: &mut pack.out,
            n: 0,
        };
        match write(&mut out) {
            Ok((id, plaintext_len, t)) => {
                let entry = IndexEntry {
                    id,
                    offset: start,
                    length: out.n,
                    plaintext_len,
                };
                pack.len += out.n;
                self.stored += out.n;
                pack.messages.push(entry.clone());
                if pack.len >= self.target {
                    let full = self.open.take().expect("open");
                    self.done.push(full.commit()?);
                }
                Ok((entry, t))
            }
            Err(e) => {
                if let Err(io) = pack.truncate(start) {
                    self.open = None;
                    self.poisoned = true;
                    return Err(Error::io("cutting a failed message off a pack", io).into());
                }
                Err(e)
            }
        }
    }

    /// Stores one message in a data file of its own (for large files), committed
    /// before this returns. If `write` fails, nothing is left behind.
    pub fn store_alone<T, E: From<Error>>(
        &mut self,
        write: impl FnOnce(&mut dyn Write) -> std::result::Result<Written<T>, E>,
    ) -> std::result::Result<(IndexEntry, T), E> {
        self.check()?;
        let mut pack = OpenPack::create(self.repo)?;
        let mut out = Counting {
            inner: &mut pack.out,
            n: 0,
        };
        let (id, plaintext_len, t) = write(&mut out)?;
        let entry = IndexEntry {
            id,
            offset: 0,
            length: out.n,
            plaintext_len,
        };
        pack.len = out.n;
        pack.messages.push(entry.clone());
        self.done.push(pack.commit()?);
        self.stored += entry.length;
        Ok((entry, t))
    }

    /// Bytes of messages written so far (committed or not).
    pub fn stored_bytes(&self) -> u64 {
        self.stored
    }

    /// Commits the open pack, if it holds anything, and returns every pack
    /// committed by this writer. Only after this (and after an index file lists
    /// the records) are the messages part of the repository. Dropping a writer
    /// without calling this discards its open pack.
    pub fn finish(mut self) -> Result<Vec<PackRecord>> {
        self.check()?;
        if let Some(p) = self.open.take() {
            if !p.messages.is_empty() {
                self.done.push(p.commit()?);
            }
        }
        Ok(std::mem::take(&mut self.done))
    }
}
