//! Reading and writing the repository's messages through the storage, with
//! the checks every read makes: the key policy on the header's EDKs (so a
//! foreign or retired key is an integrity problem, exit 4, not a key
//! problem), the expected context, and for chunks the MAC.

use std::io::{self, Read};
use std::ops::Range;

use crate::envelope::{
    open_header, pipeline::decrypt_in_place, CommitmentPolicy, DataKey, Decryptor,
    EncryptedDataKey, EncryptionContext, Encryptor, Header, ReadLimits,
};
use crate::{Error, Result};

use super::compress::{self, Compression, Decoded, CONTEXT_COMPRESSION};
use super::index::{Index, Location};
use super::keys::KeyVersion;
use super::pack::pack_name;
use super::storage::Storage;
use super::{ChunkId, Id, Kind, Repository};

/// Names the object in an envelope error, keeping the error's class
/// (integrity, key, I/O) for the exit code.
pub(crate) fn named(e: crate::envelope::Error, name: &str) -> Error {
    use crate::envelope::Error as E;
    match e {
        E::Provider(crate::envelope::ProviderError::Unavailable(m)) => {
            Error::Other(format!("{name}: {m}"))
        }
        E::Provider(p) => Error::Key {
            message: format!("{name}: {p}"),
        },
        E::Io(io) => Error::io(format!("reading {name}"), io),
        e @ E::Invalid(_) => Error::Other(format!("{name}: {e}")),
        // Besides failed checks, a repository object over a read limit, of an
        // unknown version or suite is not what envarc wrote there: damage
        // (exit 4, "corrupt" in verify), not a message to let through.
        e => Error::Integrity(format!("{name}: {e}")),
    }
}

/// Reads an object front to back in 1 MiB ranges (snapshots, which may be
/// large and of which listings read only the start).
pub struct ObjectReader<'a> {
    storage: &'a dyn Storage,
    name: String,
    pos: u64,
    size: u64,
    buf: Vec<u8>,
    at: usize,
}

const RANGE: u64 = 1024 * 1024;

impl<'a> ObjectReader<'a> {
    fn new(storage: &'a dyn Storage, name: &str) -> io::Result<ObjectReader<'a>> {
        let size = storage.stat(name)?.size;
        let first = storage.read_range(name, 0, size.min(RANGE))?;
        Ok(ObjectReader {
            storage,
            name: name.to_string(),
            pos: first.len() as u64,
            size,
            buf: first,
            at: 0,
        })
    }
}

impl Read for ObjectReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.at == self.buf.len() {
            if self.pos >= self.size {
                return Ok(0);
            }
            let n = (self.size - self.pos).min(RANGE);
            self.buf = self.storage.read_range(&self.name, self.pos, n)?;
            self.pos += n;
            self.at = 0;
        }
        let n = out.len().min(self.buf.len() - self.at);
        out[..n].copy_from_slice(&self.buf[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A file's data key, generated once at its first new chunk, and what each
/// of its chunk messages needs besides. No `Debug`; the key is zeroized.
pub struct FileKey {
    data_key: DataKey,
    edks: Vec<EncryptedDataKey>,
    compression: Compression,
    /// The key versions that wrap it (for the index).
    pub key_set: Vec<KeyVersion>,
}

impl FileKey {
    /// The compression its context names (every chunk under it has it).
    pub fn compression(&self) -> Compression {
        self.compression
    }

    /// A data key that is already wrapped as `edks` (rewrap keeps a chunk's
    /// data key and wraps it under the current version).
    pub fn from_parts(
        data_key: DataKey,
        edks: Vec<EncryptedDataKey>,
        compression: Compression,
    ) -> FileKey {
        let key_set = edks.iter().map(KeyVersion::of).collect();
        FileKey {
            data_key,
            edks,
            compression,
            key_set,
        }
    }
}

/// A chunk message opened by [`Repository::open_chunk_body`].
pub struct OpenedChunk {
    pub header: Header,
    /// The plaintext of the message: the chunk as stored (a zstd frame, or
    /// the chunk itself under compression `none`).
    pub body: Vec<u8>,
    /// What its context says: [`Compression::Off`] for `none`, else
    /// [`Compression::Auto`] (the level does not matter to a stored body).
    pub compression: Compression,
}

/// A chunk's plaintext as restore and verify read it: parts of the buffer
/// its message was read into and decrypted in place (frame contents, a
/// stored frame's raw blocks), or what zstd decompressed. It reaches a file
/// without another copy ([`ChunkData::parts`] for a vectored write).
pub struct ChunkData {
    buf: Vec<u8>,
    parts: Vec<Range<usize>>,
}

impl ChunkData {
    fn new(buf: Vec<u8>, d: Decoded) -> ChunkData {
        match d {
            Decoded::Parts(parts) => ChunkData { buf, parts },
            Decoded::Owned(v) => ChunkData {
                parts: std::iter::once(0..v.len()).collect(),
                buf: v,
            },
        }
    }

    /// Bytes of plaintext.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The plaintext, in order.
    pub fn parts(&self) -> impl Iterator<Item = &[u8]> {
        self.parts.iter().map(|p| &self.buf[p.clone()])
    }

    /// The plaintext in one buffer (a copy unless it is one already).
    pub fn into_vec(mut self) -> Vec<u8> {
        if let [p] = &self.parts[..] {
            if p.start == 0 {
                self.buf.truncate(p.end);
                return self.buf;
            }
        }
        let mut out = Vec::with_capacity(self.len());
        for p in self.parts() {
            out.extend_from_slice(p);
        }
        out
    }
}

struct Decrypted {
    header: Header,
    compression: String,
    body: Vec<u8>,
}

/// How errors name a chunk message.
fn chunk_name(loc: &Location, id: &ChunkId) -> String {
    format!(
        "chunk {} in {} at {}",
        id.short(),
        pack_name(&loc.pack),
        loc.offset
    )
}

fn mismatch(name: &str) -> Error {
    Error::Integrity(format!(
        "{name}: its content does not match the chunk ID that refers to it (moved, swapped or replaced)"
    ))
}

impl Repository {
    fn check_header(&self, header: &Header, name: &str) -> Result<()> {
        self.policy()
            .check(&header.edks)
            .map_err(|why| Error::Integrity(format!("{name} is refused: {why}")))
    }

    fn parse_header(&self, bytes: &[u8], name: &str) -> Result<Header> {
        let limits = self.decrypt_options(Kind::Chunk, None).limits;
        let parsed = open_header(
            &mut &bytes[..],
            CommitmentPolicy::RequireCommitment,
            &limits,
        )
        .map_err(|e| named(e, name))?;
        self.check_header(&parsed.header, name)?;
        Ok(parsed.header)
    }

    /// Encrypts `plain` as one message of `kind` bound to object `id`.
    pub(crate) fn encrypt_message(
        &self,
        kind: Kind,
        id: Option<&Id>,
        plain: &[u8],
    ) -> Result<Vec<u8>> {
        Ok(crate::envelope::encrypt_to_vec(
            self.provider(),
            &self.encrypt_options(kind, id),
            plain,
        )?)
    }

    /// Encrypts `plain` and creates object `name` with it, durably.
    pub(crate) fn write_message(
        &self,
        name: &str,
        kind: Kind,
        id: Option<&Id>,
        plain: &[u8],
    ) -> Result<()> {
        let msg = self.encrypt_message(kind, id, plain)?;
        self.storage().create(name, &msg).map_err(|e| {
            Error::io(
                format!("writing {name} in {}", self.storage().location()),
                e,
            )
        })
    }

    /// Reads and decrypts a whole small object (an index file).
    pub(crate) fn read_message(&self, name: &str, kind: Kind, id: Option<&Id>) -> Result<Vec<u8>> {
        let bytes = self.storage().read(name).map_err(|e| {
            Error::io(
                format!("reading {name} in {}", self.storage().location()),
                e,
            )
        })?;
        self.parse_header(&bytes, name)?;
        let (_, plain) = crate::envelope::decrypt_to_vec(
            self.provider(),
            &self.decrypt_options(kind, id),
            &bytes,
        )
        .map_err(|e| named(e, name))?;
        Ok(plain)
    }

    /// A decryptor over object `name`, read in ranges (snapshots).
    pub(crate) fn open_stream(
        &self,
        name: &str,
        kind: Kind,
        id: Option<&Id>,
    ) -> Result<Decryptor<ObjectReader<'_>>> {
        let storage = self.storage();
        let reader = ObjectReader::new(storage, name)
            .map_err(|e| Error::io(format!("reading {name} in {}", storage.location()), e))?;
        self.parse_header(&reader.buf, name)?;
        Decryptor::new(self.provider(), &self.decrypt_options(kind, id), reader)
            .map_err(|e| named(e, name))
    }

    /// Generates the data key for a file's new chunks (one provider call).
    pub fn file_key(&self, compression: Compression) -> Result<FileKey> {
        let ctx = self.chunk_context(compression);
        let (data_key, edks) = self.provider().generate_data_key(&ctx)?;
        let key_set = edks.iter().map(KeyVersion::of).collect();
        Ok(FileKey {
            data_key,
            edks,
            compression,
            key_set,
        })
    }

    fn chunk_context(&self, compression: Compression) -> crate::envelope::EncryptionContext {
        let mut c = self.context(Kind::Chunk, None);
        c.insert(
            CONTEXT_COMPRESSION.into(),
            compression.context_value().into(),
        );
        c
    }

    /// The complete message for one chunk under a file's data key (a new
    /// message ID every time).
    pub fn seal_chunk(&self, key: &FileKey, chunk: &[u8]) -> Result<Vec<u8>> {
        let mut opts = self.encrypt_options(Kind::Chunk, None);
        opts.context = self.chunk_context(key.compression);
        let out = Vec::with_capacity(chunk.len() + chunk.len() / 1024 + 1024);
        let mut enc = Encryptor::with_data_key(&key.data_key, key.edks.clone(), &opts, out)?;
        compress::encode_into(key.compression, chunk, &mut enc)
            .map_err(crate::envelope::from_io)?;
        Ok(enc.finish()?.0)
    }

    /// Opens one chunk message (its exact bytes) that the index lists for
    /// `id`, checking everything listed in the module docs.
    pub fn open_chunk(&self, message: &[u8], loc: &Location, id: &ChunkId) -> Result<Vec<u8>> {
        let mut m = message.to_vec();
        let d = self.open_chunk_in_place(&mut m, loc, id)?;
        Ok(ChunkData::new(m, d).into_vec())
    }

    /// [`Repository::open_chunk`] on a message that may be decrypted where it
    /// lies (the same checks, in the same order): the plaintext as ranges of
    /// `message`, or decompressed bytes.
    /// Its frames are opened on the calling thread: the caller's tasks are
    /// the parallel unit (verify's packs).
    pub fn open_chunk_in_place(
        &self,
        message: &mut [u8],
        loc: &Location,
        id: &ChunkId,
    ) -> Result<Decoded> {
        self.open_in_place(message, loc, id, false)
    }

    fn open_in_place(
        &self,
        message: &mut [u8],
        loc: &Location,
        id: &ChunkId,
        parallel: bool,
    ) -> Result<Decoded> {
        let name = chunk_name(loc, id);
        let compression = self.chunk_compression(message, &name)?;
        let opts = self.decrypt_options(Kind::Chunk, None);
        let (_, ranges) = decrypt_in_place(self.provider(), &opts, message, parallel)
            .map_err(|e| named(e, &name))?;
        let decoded =
            compress::decode_parts(&compression, message, &ranges, loc.raw_length as usize)
                .map_err(|why| Error::Integrity(format!("{name}: {why}")))?;
        let mac = match &decoded {
            Decoded::Parts(ps) => self
                .chunker()
                .id_of_parts(ps.iter().map(|p| &message[p.clone()])),
            Decoded::Owned(v) => self.chunker().id(v),
        };
        if mac != *id {
            return Err(mismatch(&name));
        }
        Ok(decoded)
    }

    /// The key policy on a chunk message's header, and the compression its
    /// context names.
    fn chunk_compression(&self, message: &[u8], name: &str) -> Result<String> {
        let header = self.parse_header(message, name)?;
        header
            .context
            .get(CONTEXT_COMPRESSION)
            .cloned()
            .ok_or_else(|| {
                Error::Integrity(format!(
                    "{name}: its context does not say how it is compressed"
                ))
            })
    }

    /// Opens a chunk message for the rewriters (rewrap, reencrypt), with the
    /// same checks as [`Repository::open_chunk`]: its header, its body as
    /// stored (compressed or not) and its compression, so that the body can
    /// go into a new message without being compressed again.
    pub fn open_chunk_body(
        &self,
        message: &[u8],
        loc: &Location,
        id: &ChunkId,
    ) -> Result<OpenedChunk> {
        let d = self.decrypt_chunk(message, loc, id)?;
        let compression = match d.compression.as_str() {
            "none" => Compression::Off,
            _ => Compression::Auto,
        };
        Ok(OpenedChunk {
            header: d.header,
            body: d.body,
            compression,
        })
    }

    fn decrypt_chunk(&self, message: &[u8], loc: &Location, id: &ChunkId) -> Result<Decrypted> {
        let name = chunk_name(loc, id);
        let compression = self.chunk_compression(message, &name)?;
        let mut dec = Decryptor::new(
            self.provider(),
            &self.decrypt_options(Kind::Chunk, None),
            message,
        )
        .map_err(|e| named(e, &name))?;
        let mut body = Vec::with_capacity(loc.raw_length as usize + 64);
        dec.copy_to(&mut body).map_err(|e| named(e, &name))?;
        let kept = body.clone();
        let chunk = compress::decode(&compression, body, loc.raw_length as usize)
            .map_err(|why| Error::Integrity(format!("{name}: {why}")))?;
        if self.chunker().id(&chunk) != *id {
            return Err(mismatch(&name));
        }
        Ok(Decrypted {
            header: dec.header().clone(),
            compression,
            body: kept,
        })
    }

    /// A new message for a chunk whose body ([`OpenedChunk::body`]) is
    /// already in its stored form, under `key` (a new message ID every
    /// time): for rewrap, which keeps a chunk's data key and wraps it anew,
    /// and reencrypt, which gives it a fresh one.
    pub fn reseal_chunk(&self, key: &FileKey, body: &[u8]) -> Result<Vec<u8>> {
        let mut opts = self.encrypt_options(Kind::Chunk, None);
        opts.context = self.chunk_context(key.compression);
        let out = Vec::with_capacity(body.len() + body.len() / 1024 + 1024);
        let mut enc = Encryptor::with_data_key(&key.data_key, key.edks.clone(), &opts, out)?;
        io::Write::write_all(&mut enc, body).map_err(crate::envelope::from_io)?;
        Ok(enc.finish()?.0)
    }

    /// The encryption context of a chunk message of `compression`: what
    /// its EDKs are bound to.
    pub fn chunk_context_of(&self, compression: Compression) -> EncryptionContext {
        self.chunk_context(compression)
    }

    /// Reads chunk `id` at `loc`.
    pub fn read_chunk_at(&self, loc: &Location, id: &ChunkId) -> Result<Vec<u8>> {
        Ok(self.read_chunk_data_at(loc, id)?.into_vec())
    }

    /// Reads chunk `id` at `loc`, decrypted where it was read.
    pub fn read_chunk_data_at(&self, loc: &Location, id: &ChunkId) -> Result<ChunkData> {
        let name = pack_name(&loc.pack);
        let message = self
            .storage()
            .read_range(&name, loc.offset, loc.length)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => Error::Integrity(format!(
                    "pack {} is missing (chunk {})",
                    loc.pack,
                    id.short()
                )),
                io::ErrorKind::UnexpectedEof => Error::Integrity(format!(
                    "pack {} is shorter than the index says (chunk {})",
                    loc.pack,
                    id.short()
                )),
                _ => Error::io(format!("reading {name}"), e),
            })?;
        let mut message = message;
        let d = self.open_in_place(&mut message, loc, id, true)?;
        Ok(ChunkData::new(message, d))
    }

    /// Reads chunk `id`, trying each copy the index lists; the first copy's
    /// error when none opens.
    pub fn read_chunk(&self, index: &Index, id: &ChunkId) -> Result<Vec<u8>> {
        Ok(self.read_chunk_data(index, id)?.into_vec())
    }

    /// [`Repository::read_chunk`], the plaintext where it was decrypted.
    pub fn read_chunk_data(&self, index: &Index, id: &ChunkId) -> Result<ChunkData> {
        let locations = index.locations(id);
        let mut first_err = None;
        for loc in &locations {
            match self.read_chunk_data_at(loc, id) {
                Ok(c) => return Ok(c),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| {
            Error::Integrity(format!(
                "chunk {} is not in the repository's index",
                id.short()
            ))
        }))
    }

    /// Checks a chunk message's header without reading its body: the key
    /// policy, the context, and that the data key unwraps and the header
    /// authenticates under it.
    pub fn check_chunk_header(&self, loc: &Location, id: &ChunkId) -> Result<()> {
        let name = chunk_name(loc, id);
        let prefix = self
            .storage()
            .read_range(&pack_name(&loc.pack), loc.offset, loc.length.min(64 * 1024))
            .map_err(|e| Error::io(format!("reading {name}"), e))?;
        let header = self.parse_header(&prefix, &name)?;
        if !header.context.contains_key(CONTEXT_COMPRESSION) {
            return Err(Error::Integrity(format!(
                "{name}: its context does not say how it is compressed"
            )));
        }
        Decryptor::new(
            self.provider(),
            &self.decrypt_options(Kind::Chunk, None),
            &prefix[..],
        )
        .map(|_| ())
        .map_err(|e| named(e, &name))
    }

    /// The header of the message object `name` holds (an index file or a
    /// snapshot), from its first bytes only: which keys wrap it, for stats,
    /// rewrap and reencrypt. Not authenticated (no key is used); the key
    /// policy is not applied, so that a message under a retired version can
    /// still be named.
    pub fn object_header(&self, name: &str) -> Result<Header> {
        let limits = ReadLimits::default();
        let io_err = |e| {
            Error::io(
                format!("reading {name} in {}", self.storage().location()),
                e,
            )
        };
        let size = self.storage().stat(name).map_err(io_err)?.size;
        let want = size.min(limits.max_header_size as u64);
        let prefix = self.storage().read_range(name, 0, want).map_err(io_err)?;
        Ok(open_header(
            &mut &prefix[..],
            CommitmentPolicy::RequireCommitment,
            &limits,
        )
        .map_err(|e| named(e, name))?
        .header)
    }

    /// The header of a chunk message (for stats and rewrap: its EDKs).
    pub fn chunk_header(&self, message: &[u8]) -> Result<Header> {
        let limits = ReadLimits::default();
        Ok(open_header(
            &mut &message[..],
            CommitmentPolicy::RequireCommitment,
            &limits,
        )?
        .header)
    }
}
