//! Snapshots: one message (kind `snapshot`, context also `envarc-id: <id>`)
//! per backup run under `snapshots/<id>`, holding the manifest.
//!
//! Plaintext layout: `len(u32 LE) | postcard(SnapshotMeta)`, then one zstd
//! frame holding, for each of `meta.entries` entries, `len(u32 LE) |
//! postcard(Entry)`. The metadata comes first and uncompressed, so listings
//! read only the first frame(s) of each snapshot; loading the entries reads
//! and authenticates the whole message, final frame included. Entries are
//! streamed one at a time, never held twice. The ID in the context binds the
//! manifest to its name: a snapshot copied over another's name does not open.

use std::ffi::OsStr;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::envelope::{from_io, Decryptor, Encryptor};
use crate::{Error, Result};

use super::chunker::ChunkId;
use super::{Id, Kind, ObjectReader, Repository};

/// Version of the snapshot encoding this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 2;
/// Bounds on decoded record sizes, so a corrupt length cannot make a reader
/// allocate without bound (an entry of a 1 TiB file lists 32 MiB of IDs).
const MAX_META: usize = 64 * 1024 * 1024;
const MAX_ENTRY: usize = 64 * 1024 * 1024;

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

impl std::fmt::Display for EntryKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            EntryKind::File => "file",
            EntryKind::Dir => "folder",
            EntryKind::Symlink => "symlink",
        })
    }
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
    /// A file's content: its chunks in order (none for an empty file).
    pub chunks: Vec<ChunkId>,
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
    /// Chunks this run stored (new to the repository).
    pub chunks_added: u64,
    /// Plaintext bytes of those chunks.
    pub bytes_added: u64,
    /// Bytes of chunk messages written (after compression and encryption).
    pub bytes_stored: u64,
    /// Chunks read that the repository already had.
    pub chunks_deduplicated: u64,
    /// Data keys generated (one per file with new content).
    pub data_keys: u64,
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

/// Reads one length-prefixed record into `buf`, or says why not.
fn get_record<R: Read>(r: &mut R, buf: &mut Vec<u8>, max: usize, what: &str) -> Result<()> {
    let corrupt = |m: String| Error::Integrity(format!("{what}: {m}"));
    let io_err = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => corrupt("the manifest ends before its last entry".into()),
        _ => match from_io(e) {
            e if e.is_integrity() => corrupt(e.to_string()),
            e => super::read::named(e, what),
        },
    };
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(io_err)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Err(corrupt(format!(
            "a record claims {len} bytes, more than the limit of {max}"
        )));
    }
    buf.resize(len, 0);
    r.read_exact(buf).map_err(io_err)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T> {
    postcard::from_bytes(bytes).map_err(|e| {
        Error::Integrity(format!(
            "{what}: a manifest record decrypted but does not decode: {e}"
        ))
    })
}

fn check_version(meta: &SnapshotMeta, what: &str) -> Result<()> {
    if meta.version != SNAPSHOT_VERSION {
        return Err(Error::Integrity(format!(
            "{what} has encoding version {}, this envarc reads {SNAPSHOT_VERSION}",
            meta.version
        )));
    }
    Ok(())
}

/// Writes the manifest plaintext of the module docs into `out`.
fn write_manifest(out: &mut impl Write, meta: &SnapshotMeta, entries: &[Entry]) -> io::Result<()> {
    let mut meta = meta.clone();
    meta.entries = entries.len() as u64;
    let mut buf = Vec::with_capacity(512);
    put_record(out, &meta, &mut buf)?;
    let mut z = zstd::stream::write::Encoder::new(out, 3)?;
    for e in entries {
        put_record(&mut z, e, &mut buf)?;
    }
    z.finish()?;
    Ok(())
}

/// Reads the entries that follow the metadata, then checks that nothing
/// follows the last one (in the zstd frame, and in the message).
fn read_entries<R: Read>(
    r: R,
    meta: &SnapshotMeta,
    what: &str,
    mut each: impl FnMut(Entry) -> Result<()>,
) -> Result<()> {
    let corrupt = |m: String| Error::Integrity(format!("{what}: {m}"));
    let mut z = zstd::stream::read::Decoder::new(r)
        .map_err(|e| corrupt(e.to_string()))?
        .single_frame();
    let mut buf = Vec::with_capacity(512);
    for _ in 0..meta.entries {
        get_record(&mut z, &mut buf, MAX_ENTRY, what)?;
        each(decode(&buf, what)?)?;
    }
    let mut extra = [0u8; 1];
    let after = |n: io::Result<usize>| match n {
        Ok(0) => Ok(()),
        Ok(_) => Err(corrupt("bytes follow the manifest's last entry".into())),
        Err(e) => Err(corrupt(from_io(e).to_string())),
    };
    after(z.read(&mut extra))?;
    after(z.finish().read(&mut extra))
}

/// Decodes a whole manifest plaintext: the metadata and every entry,
/// checking that nothing follows the last entry. Pure (no I/O, no key), so
/// it can be fuzzed.
pub fn decode_manifest(mut plain: &[u8]) -> Result<(SnapshotMeta, Vec<Entry>)> {
    let what = "<manifest>";
    let mut buf = Vec::new();
    get_record(&mut plain, &mut buf, MAX_META, what)?;
    let meta: SnapshotMeta = decode(&buf, what)?;
    check_version(&meta, what)?;
    // No capacity from `meta.entries`: it is untrusted until the records exist.
    let mut entries = Vec::new();
    read_entries(plain, &meta, what, |e| {
        entries.push(e);
        Ok(())
    })?;
    Ok((meta, entries))
}

/// Encodes a manifest plaintext: the inverse of [`decode_manifest`].
pub fn encode_manifest(meta: &SnapshotMeta, entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    write_manifest(&mut out, meta, entries).expect("writing to a Vec does not fail");
    out
}

/// The object name of snapshot `id`.
pub fn snapshot_name(id: &Id) -> String {
    format!("snapshots/{}", id.to_hex())
}

type SnapshotReader<'a> = Decryptor<ObjectReader<'a>>;

impl Repository {
    /// Writes a new snapshot, durably. Call only after the data and index it
    /// refers to are durable.
    pub fn save_snapshot(&self, meta: &SnapshotMeta, entries: &[Entry]) -> Result<Id> {
        let id = Id::random();
        self.save_snapshot_as(&id, meta, entries)?;
        Ok(id)
    }

    /// Writes a new snapshot under a given ID (`envarc copy` keeps the
    /// source's), durably; an `Io` error of kind `AlreadyExists` if the
    /// repository has it. Call only after its data and index are durable.
    pub fn save_snapshot_as(&self, id: &Id, meta: &SnapshotMeta, entries: &[Entry]) -> Result<()> {
        let id = *id;
        let name = snapshot_name(&id);
        let storage = self.storage();
        let w = storage
            .create_writer(&name)
            .map_err(|e| Error::io(format!("creating {name} in {}", storage.location()), e))?;
        let mut enc = Encryptor::new(
            self.provider(),
            &self.encrypt_options(Kind::Snapshot, Some(&id)),
            BufWriter::with_capacity(256 * 1024, w),
        )?;
        let io_err = |e| Error::io(format!("writing {name}"), e);
        write_manifest(&mut enc, meta, entries).map_err(io_err)?;
        let (w, _) = enc.finish()?;
        w.into_inner()
            .map_err(|e| io_err(e.into_error()))?
            .commit()
            .map_err(io_err)?;
        Ok(())
    }

    /// Writes a new message for snapshot `id` (same ID, new message ID and
    /// contents), replacing the old atomically: for rewriters, under the
    /// exclusive lock, after what the new contents refer to is durable.
    pub fn replace_snapshot(&self, id: &Id, meta: &SnapshotMeta, entries: &[Entry]) -> Result<()> {
        let name = snapshot_name(id);
        self.storage()
            .stat(&name)
            .map_err(|_| Error::Usage(format!("no snapshot {id} in this repository")))?;
        let plain = encode_manifest(meta, entries);
        let msg = self.encrypt_message(Kind::Snapshot, Some(id), &plain)?;
        self.storage()
            .replace(&name, &msg)
            .map_err(|e| Error::io(format!("replacing {name}"), e))
    }

    fn open_snapshot(&self, id: &Id) -> Result<(SnapshotReader<'_>, SnapshotMeta)> {
        let name = snapshot_name(id);
        let mut dec = match self.open_stream(&name, Kind::Snapshot, Some(id)) {
            Err(Error::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(Error::Usage(format!("no snapshot {id} in this repository")))
            }
            r => r?,
        };
        let mut buf = Vec::new();
        get_record(&mut dec, &mut buf, MAX_META, &name)?;
        let meta: SnapshotMeta = decode(&buf, &name)?;
        check_version(&meta, &name)?;
        Ok((dec, meta))
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
        each: impl FnMut(Entry) -> Result<()>,
    ) -> Result<SnapshotMeta> {
        let (dec, meta) = self.open_snapshot(id)?;
        read_entries(dec, &meta, &snapshot_name(id), each)?;
        Ok(meta)
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
        self.list_ids("snapshots/")
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

    /// Resolves `latest` (the newest readable snapshot), a full ID or a
    /// unique ID prefix.
    pub fn resolve_snapshot(&self, spec: &str) -> Result<Id> {
        if spec == "latest" {
            return self
                .snapshots_lenient()?
                .0
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
            _ => {
                let mut shown: Vec<String> = matches
                    .iter()
                    .take(8)
                    .map(|id| id.to_hex()[..16].to_string())
                    .collect();
                if matches.len() > shown.len() {
                    shown.push("…".into());
                }
                Err(Error::Usage(format!(
                    "'{spec}' matches {} snapshots ({}); give more digits of the ID",
                    matches.len(),
                    shown.join(", ")
                )))
            }
        }
    }

    /// Writes `meta` and `entries` as a new snapshot (a new ID, so a new
    /// name and a fresh message bound to it), then deletes snapshot `old`:
    /// for changes that make it another snapshot (`envarc tag`, as restic
    /// does), unlike [`Self::replace_snapshot`], which keeps the ID. Under
    /// the exclusive lock; a crash in between leaves both, never neither.
    pub fn resave_snapshot(&self, old: &Id, meta: &SnapshotMeta, entries: &[Entry]) -> Result<Id> {
        let new = self.save_snapshot(meta, entries)?;
        self.delete_snapshot(old)?;
        Ok(new)
    }

    /// Deletes a snapshot; durable when this returns.
    pub fn delete_snapshot(&self, id: &Id) -> Result<()> {
        self.delete_object(&snapshot_name(id))
    }
}
