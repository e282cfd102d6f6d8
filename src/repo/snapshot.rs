//! Snapshots: one message (kind `snapshot`) per backup run under
//! `snapshots/<id>`, holding the manifest in a compact binary encoding.
//!
//! Plaintext layout: `len(u32 LE) | postcard(SnapshotMeta)` then, for each of
//! `meta.entries` entries, `len(u32 LE) | postcard(Entry)`. The metadata comes
//! first so that listings read only the first frame(s) of each snapshot (each
//! frame authenticated on its own); loading the entries reads and
//! authenticates the whole message, final frame included. Entries are read and
//! written one at a time, so a snapshot is never held twice in memory.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::envelope::{from_io, Decryptor, Encryptor, MessageId};
use crate::fsutil::AtomicFile;
use crate::{Error, Result};

use super::{remove_durably, with_path, writing, Id, Kind, Repository};

/// Version of the snapshot encoding this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Bounds on decoded record sizes, so a corrupt length cannot make a reader
/// allocate without bound (a path or link target is at most a few KiB).
const MAX_META: usize = 64 * 1024 * 1024;
const MAX_ENTRY: usize = 1024 * 1024;

/// A file-system timestamp, exact to the nanosecond.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time {
    /// Seconds since the Unix epoch (negative before 1970).
    pub sec: i64,
    /// Nanoseconds, 0..1e9.
    pub nsec: u32,
}

impl Time {
    pub fn now() -> Time {
        let d = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        Time {
            sec: d.as_secs() as i64,
            nsec: d.subsec_nanos(),
        }
    }

    pub fn as_nanos(&self) -> i128 {
        i128::from(self.sec) * 1_000_000_000 + i128::from(self.nsec)
    }

    /// RFC 3339 in UTC, to the second (`2024-05-01T02:00:00Z`).
    pub fn to_rfc3339(&self) -> String {
        time::OffsetDateTime::from_unix_timestamp(self.sec)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| format!("@{}", self.sec))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    File,
    Dir,
    Symlink,
}

/// One file-system object of a snapshot, with everything restore needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Absolute path as raw bytes (any name the file system allows).
    pub path: Vec<u8>,
    pub kind: EntryKind,
    /// Permission bits including setuid, setgid and sticky (`st_mode & 0o7777`).
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Time,
    pub ctime: Time,
    /// Bytes of content for files, `st_size` for others.
    pub size: u64,
    pub inode: u64,
    pub device: u64,
    /// Hard-link count, so restore can re-link files that share an inode.
    pub nlink: u64,
    /// Target of a symlink, raw bytes.
    pub link_target: Option<Vec<u8>>,
    /// The message holding a file's content.
    pub content: Option<MessageId>,
}

impl Entry {
    pub fn path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }
}

/// Counts of one backup run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Entries of other kinds (FIFOs, sockets, devices): listed, not stored.
    pub skipped: u64,
    /// Entries that could not be read (permission denied, vanished, changed).
    pub errors: u64,
    /// Plaintext bytes of all files in the snapshot.
    pub total_bytes: u64,
    pub files_new: u64,
    pub files_changed: u64,
    pub files_unchanged: u64,
    /// File content bytes read from disk in this run.
    pub bytes_read: u64,
    /// Bytes of new messages written to the repository in this run.
    pub bytes_stored: u64,
    /// Object messages written in this run.
    pub messages_added: u64,
    pub duration_ms: u64,
}

/// Everything about a snapshot except its entries.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotMeta {
    pub version: u32,
    /// When the backup started (files changed after this are re-read next time).
    pub time: Time,
    pub host: String,
    /// The backed-up paths, absolute, raw bytes, sorted.
    pub paths: Vec<Vec<u8>>,
    pub tags: Vec<String>,
    pub parent: Option<Id>,
    pub summary: Summary,
    /// Number of entries that follow the metadata.
    pub entries: u64,
}

fn put_record<T: Serialize>(out: &mut impl Write, value: &T, buf: &mut Vec<u8>) -> io::Result<()> {
    buf.clear();
    let encoded = postcard::to_extend(value, std::mem::take(buf))
        .map_err(|e| io::Error::other(format!("encoding a snapshot record: {e}")))?;
    *buf = encoded;
    let len =
        u32::try_from(buf.len()).map_err(|_| io::Error::other("snapshot record too large"))?;
    out.write_all(&len.to_le_bytes())?;
    out.write_all(buf)
}

/// Reads one length-prefixed record into `buf`.
fn get_record<R: Read>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> Result<(), RecordError> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(RecordError::Io)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(RecordError::Corrupt(format!(
            "a record claims {len} bytes, more than the limit of {max}"
        )));
    }
    buf.resize(len, 0);
    r.read_exact(buf).map_err(RecordError::Io)
}

enum RecordError {
    Io(io::Error),
    Corrupt(String),
}

type SnapshotReader = Decryptor<BufReader<File>>;

impl Repository {
    /// The file of snapshot `id`.
    pub fn snapshot_path(&self, id: &Id) -> std::path::PathBuf {
        self.dir("snapshots").join(id.to_hex())
    }

    /// Writes a snapshot atomically and durably; `meta.entries` is set from
    /// `entries`. Call only after the data and index it refers to are durable.
    pub fn save_snapshot(&self, meta: &SnapshotMeta, entries: &[Entry]) -> Result<Id> {
        let id = Id::random();
        self.write_snapshot(&id, meta, entries)?;
        Ok(id)
    }

    /// Replaces snapshot `id` with new contents under the same ID, atomically
    /// (the old file stays until the new one is durable and renamed over it).
    /// For rewriters that re-encrypt what a snapshot refers to; call only
    /// after the data and index the new contents refer to are durable.
    pub fn replace_snapshot(&self, id: &Id, meta: &SnapshotMeta, entries: &[Entry]) -> Result<()> {
        if !self.snapshot_path(id).is_file() {
            return Err(Error::Usage(format!("no snapshot {id} in this repository")));
        }
        self.write_snapshot(id, meta, entries)
    }

    fn write_snapshot(&self, id: &Id, meta: &SnapshotMeta, entries: &[Entry]) -> Result<()> {
        let path = self.snapshot_path(id);
        let io_err = |e| Error::io(format!("writing {}", path.display()), e);
        let mut meta = meta.clone();
        meta.entries = entries.len() as u64;
        let mut f = AtomicFile::create(&path).map_err(io_err)?;
        let mut enc = Encryptor::new(
            self.provider(),
            &self.encrypt_options(Kind::Snapshot),
            BufWriter::with_capacity(256 * 1024, &mut f),
        )
        .map_err(|e| writing(e, &path))?;
        let mut buf = Vec::with_capacity(512);
        put_record(&mut enc, &meta, &mut buf).map_err(io_err)?;
        for e in entries {
            put_record(&mut enc, e, &mut buf).map_err(io_err)?;
        }
        let (mut w, _) = enc.finish().map_err(|e| writing(e, &path))?;
        w.flush().map_err(io_err)?;
        drop(w);
        f.commit().map_err(io_err)?;
        Ok(())
    }

    fn open_snapshot(&self, id: &Id) -> Result<(SnapshotReader, SnapshotMeta)> {
        let path = self.snapshot_path(id);
        let f = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Usage(format!("no snapshot {id} in this repository")),
            _ => Error::io(format!("opening {}", path.display()), e),
        })?;
        let mut dec = Decryptor::new(
            self.provider(),
            &self.decrypt_options(Kind::Snapshot),
            BufReader::with_capacity(256 * 1024, f),
        )
        .map_err(|e| with_path(e, &path))?;
        let mut buf = Vec::new();
        self.record(&mut dec, &mut buf, MAX_META, &path)?;
        let meta: SnapshotMeta = decode(&buf, &path)?;
        if meta.version != SNAPSHOT_VERSION {
            return Err(Error::Other(format!(
                "snapshot {id} has encoding version {}, this envarc reads {SNAPSHOT_VERSION}",
                meta.version
            )));
        }
        Ok((dec, meta))
    }

    fn record(
        &self,
        dec: &mut SnapshotReader,
        buf: &mut Vec<u8>,
        max: usize,
        path: &Path,
    ) -> Result<()> {
        get_record(dec, buf, max).map_err(|e| match e {
            RecordError::Io(io) if io.kind() == io::ErrorKind::UnexpectedEof => {
                Error::Integrity(format!(
                    "{}: the manifest ends before its last entry",
                    path.display()
                ))
            }
            RecordError::Io(io) => with_path(from_io(io), path),
            RecordError::Corrupt(m) => Error::Integrity(format!("{}: {m}", path.display())),
        })
    }

    /// The snapshot's metadata, from the first frame(s) only.
    pub fn load_snapshot_meta(&self, id: &Id) -> Result<SnapshotMeta> {
        Ok(self.open_snapshot(id)?.1)
    }

    /// Streams a snapshot's entries to `each`, in the order they were saved
    /// (walk order: a directory before its contents), then checks that the
    /// message authenticated to its end with nothing after the last entry.
    pub fn load_snapshot_with(
        &self,
        id: &Id,
        mut each: impl FnMut(Entry) -> Result<()>,
    ) -> Result<SnapshotMeta> {
        let (mut dec, meta) = self.open_snapshot(id)?;
        let path = self.snapshot_path(id);
        let mut buf = Vec::with_capacity(512);
        for _ in 0..meta.entries {
            self.record(&mut dec, &mut buf, MAX_ENTRY, &path)?;
            each(decode(&buf, &path)?)?;
        }
        let mut extra = [0u8; 1];
        match dec.read(&mut extra) {
            Ok(0) => Ok(meta),
            Ok(_) => Err(Error::Integrity(format!(
                "{}: bytes follow the manifest's last entry",
                path.display()
            ))),
            Err(e) => Err(with_path(from_io(e), &path)),
        }
    }

    /// A whole snapshot: metadata and entries.
    pub fn load_snapshot(&self, id: &Id) -> Result<(SnapshotMeta, Vec<Entry>)> {
        let mut entries = Vec::new();
        let meta = self.load_snapshot_with(id, |e| {
            entries.push(e);
            Ok(())
        })?;
        Ok((meta, entries))
    }

    /// IDs of all snapshots (unordered by time; see [`Self::snapshots`]).
    pub fn list_snapshots(&self) -> Result<Vec<Id>> {
        self.list_ids("snapshots")
    }

    /// Every snapshot's metadata, oldest first; fails if any cannot be read.
    pub fn snapshots(&self) -> Result<Vec<(Id, SnapshotMeta)>> {
        let (all, mut failed) = self.snapshots_lenient()?;
        match failed.pop() {
            Some((_, e)) => Err(e),
            None => Ok(all),
        }
    }

    /// Every readable snapshot's metadata, oldest first, and the snapshots
    /// that could not be read with the reason (for listings that go on).
    #[allow(clippy::type_complexity)]
    pub fn snapshots_lenient(&self) -> Result<(Vec<(Id, SnapshotMeta)>, Vec<(Id, Error)>)> {
        use rayon::prelude::*;
        let ids = self.list_snapshots()?;
        let loaded: Vec<(Id, Result<SnapshotMeta>)> = ids
            .par_iter()
            .map(|id| (*id, self.load_snapshot_meta(id)))
            .collect();
        let mut all = Vec::with_capacity(loaded.len());
        let mut failed = Vec::new();
        for (id, r) in loaded {
            match r {
                Ok(m) => all.push((id, m)),
                Err(e) => failed.push((id, e)),
            }
        }
        all.sort_by(|a, b| a.1.time.cmp(&b.1.time).then(a.0.cmp(&b.0)));
        Ok((all, failed))
    }

    /// Resolves `latest`, a full ID or a unique ID prefix.
    pub fn resolve_snapshot(&self, spec: &str) -> Result<Id> {
        if spec == "latest" {
            return self
                .snapshots()?
                .pop()
                .map(|(id, _)| id)
                .ok_or_else(|| Error::Usage("the repository has no snapshots yet".into()));
        }
        let spec_l = spec.to_ascii_lowercase();
        let matches: Vec<Id> = self
            .list_snapshots()?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&spec_l))
            .collect();
        match matches.as_slice() {
            [one] if !spec.is_empty() => Ok(*one),
            [] | [_] => Err(Error::Usage(format!(
                "no snapshot matches '{spec}'; list them with `envarc snapshots`"
            ))),
            _ => Err(Error::Usage(format!(
                "'{spec}' matches {} snapshots; give more digits of the ID",
                matches.len()
            ))),
        }
    }

    /// Deletes a snapshot; durable when this returns.
    pub fn delete_snapshot(&self, id: &Id) -> Result<()> {
        remove_durably(&self.snapshot_path(id))
    }
}

/// Decodes a whole manifest plaintext (the layout in the module
/// documentation): the metadata and every entry, checking that nothing
/// follows the last entry. Pure (no I/O, no key), so it can be fuzzed; the
/// repository streams the same records through [`Repository::load_snapshot_with`].
pub fn decode_manifest(mut plain: &[u8]) -> Result<(SnapshotMeta, Vec<Entry>)> {
    let path = Path::new("<manifest>");
    let mut buf = Vec::new();
    let mut next = |max: usize, buf: &mut Vec<u8>| {
        get_record(&mut plain, buf, max).map_err(|e| match e {
            RecordError::Io(_) => Error::Integrity(format!(
                "{}: the manifest ends before its last entry",
                path.display()
            )),
            RecordError::Corrupt(m) => Error::Integrity(format!("{}: {m}", path.display())),
        })
    };
    next(MAX_META, &mut buf)?;
    let meta: SnapshotMeta = decode(&buf, path)?;
    if meta.version != SNAPSHOT_VERSION {
        return Err(Error::Other(format!(
            "the snapshot has encoding version {}, this envarc reads {SNAPSHOT_VERSION}",
            meta.version
        )));
    }
    // No capacity from `meta.entries`: it is untrusted until the records exist.
    let mut entries = Vec::new();
    for _ in 0..meta.entries {
        next(MAX_ENTRY, &mut buf)?;
        entries.push(decode(&buf, path)?);
    }
    if !plain.is_empty() {
        return Err(Error::Integrity(format!(
            "{}: bytes follow the manifest's last entry",
            path.display()
        )));
    }
    Ok((meta, entries))
}

/// Encodes a manifest plaintext: the inverse of [`decode_manifest`] (with
/// `meta.entries` set from `entries`), as [`Repository::save_snapshot`] writes it.
pub fn encode_manifest(meta: &SnapshotMeta, entries: &[Entry]) -> Result<Vec<u8>> {
    let mut meta = meta.clone();
    meta.entries = entries.len() as u64;
    let mut out = Vec::new();
    let mut buf = Vec::new();
    let err = |e: io::Error| Error::Other(e.to_string());
    put_record(&mut out, &meta, &mut buf).map_err(err)?;
    for e in entries {
        put_record(&mut out, e, &mut buf).map_err(err)?;
    }
    Ok(out)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], path: &Path) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::Integrity(format!(
            "{}: a manifest record decrypted but does not decode: {e}",
            path.display()
        ))
    })
}
