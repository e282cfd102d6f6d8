//! The repository: a folder of ESDK messages.
//!
//! ```text
//! REPO/config                 plaintext JSON (config.rs)
//! REPO/data/<2 hex>/<pack id> packs: complete messages one after another;
//!                             a large file's message alone in its own pack
//! REPO/index/<id>             message (kind index): message ID -> pack, offset, length
//! REPO/snapshots/<id>         message (kind snapshot): one backup run's manifest
//! REPO/locks/<id>             lock files (lock.rs)
//! ```
//!
//! Every message's encryption context is `{"envarc-repo": <repo id>,
//! "envarc-kind": object|snapshot|index|key-check}`, never a file name. Every
//! file appears at its final name only complete and on stable storage
//! (temporary name, fsync, rename, fsync of the folder); names starting with
//! `.` are temporary files of a running or interrupted writer.

mod config;
mod index;
mod lock;
mod pack;
mod snapshot;
pub mod storage;

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rand::RngCore;

use crate::envelope::{
    CommitmentPolicy, DecryptOptions, Decryptor, EncryptOptions, EncryptionContext, KeyProvider,
    MessageId, ReadLimits,
};
use crate::fsutil::fsync_dir;
use crate::{Error, Result};

pub use config::{
    describe_key, Config, InitOptions, KeyRef, DEFAULT_LARGE_FILE_SIZE, DEFAULT_PACK_SIZE,
    FORMAT_VERSION, MAX_FRAME_LENGTH,
};
pub use index::{decode_index, encode_index, Index, IndexFile, Location};
pub use lock::{hostname, LockKind, RepoLock};
pub use pack::{IndexEntry, PackRecord, PackWriter, Written};
pub use snapshot::{
    decode_manifest, encode_manifest, Entry, EntryKind, SnapshotMeta, Summary, Time,
    SNAPSHOT_VERSION,
};

/// Context key naming the repository a message belongs to.
pub const CONTEXT_REPO: &str = "envarc-repo";
/// Context key naming what a message holds.
pub const CONTEXT_KIND: &str = "envarc-kind";

/// What a message holds; part of its encryption context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// One file's content.
    Object,
    /// One backup run's manifest.
    Snapshot,
    /// A part of the index.
    Index,
    /// The config's key check.
    KeyCheck,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Object => "object",
            Kind::Snapshot => "snapshot",
            Kind::Index => "index",
            Kind::KeyCheck => "key-check",
        }
    }
}

/// The encryption context of a message of `kind` in repository `repo_id`.
pub fn encryption_context(repo_id: &str, kind: Kind) -> EncryptionContext {
    let mut c = EncryptionContext::new();
    c.insert(CONTEXT_REPO.into(), repo_id.into());
    c.insert(CONTEXT_KIND.into(), kind.as_str().into());
    c
}

/// A random 32-byte name: of a pack, an index file, a snapshot or a lock.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Id(pub [u8; 32]);

impl Id {
    pub fn random() -> Id {
        let mut b = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut b);
        Id(b)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Id> {
        let v = hex::decode(s).ok()?;
        Some(Id(v.try_into().ok()?))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, as listings show it.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Id({})", self.short())
    }
}

/// A pack file as found in `data/`.
#[derive(Clone, Debug)]
pub struct PackFile {
    pub id: Id,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// The exact bytes of one message inside its pack: reading it yields the
/// message and then end of file, so a [`Decryptor`] over it also detects
/// truncation and trailing bytes.
pub type MessageReader = io::Take<BufReader<File>>;

/// An open repository with the key provider that wraps and unwraps its data keys.
pub struct Repository {
    root: PathBuf,
    config: Config,
    provider: Box<dyn KeyProvider>,
    /// How long [`Repository::lock`] retries while another process holds a
    /// conflicting lock.
    lock_wait: std::time::Duration,
}

const SUBDIRS: [&str; 4] = ["data", "index", "snapshots", "locks"];

fn create_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(|e| Error::io(format!("creating {}", path.display()), e))
}

impl Repository {
    /// Creates a repository at `root` (absent or an empty folder). The config
    /// is written last, so a folder without one is not a repository yet.
    pub fn init(
        root: &Path,
        key: KeyRef,
        provider: Box<dyn KeyProvider>,
        opts: &InitOptions,
    ) -> Result<Repository> {
        Repository::init_with_keys(root, vec![key], provider, opts)
    }

    /// Like [`Repository::init`], with every data key wrapped under each of
    /// `keys` (at least one) by `provider`.
    pub fn init_with_keys(
        root: &Path,
        keys: Vec<KeyRef>,
        provider: Box<dyn KeyProvider>,
        opts: &InitOptions,
    ) -> Result<Repository> {
        let missing = match fs::read_dir(root) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(Error::Usage(format!(
                        "{} exists and is not empty; choose a new or empty folder for the repository",
                        root.display()
                    )));
                }
                false
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(Error::io(format!("reading {}", root.display()), e)),
        };
        // The key check first: a key that does not work creates nothing.
        let config = Config::with_keys(keys, provider.as_ref(), opts)?;
        if missing {
            // Missing parents get the default mode, the repository 0700.
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)
                    .map_err(|e| Error::io(format!("creating {}", parent.display()), e))?;
            }
            create_dir(root)?
        }
        for sub in SUBDIRS {
            create_dir(&root.join(sub))?;
        }
        // All 256 fan-out folders now, so writers never create folders.
        for i in 0..=255u8 {
            create_dir(&root.join("data").join(hex::encode([i])))?;
        }
        let sync =
            |p: &Path| fsync_dir(p).map_err(|e| Error::io(format!("syncing {}", p.display()), e));
        sync(&root.join("data"))?;
        sync(root)?;
        let repo = Repository {
            root: root.to_path_buf(),
            config,
            provider,
            lock_wait: std::time::Duration::ZERO,
        };
        repo.save_config()?;
        Ok(repo)
    }

    /// Opens a repository whose config the caller loaded (to choose the key
    /// provider from it). Checks that the provider opens the repository.
    pub fn open(root: &Path, config: Config, provider: Box<dyn KeyProvider>) -> Result<Repository> {
        config.check_key(provider.as_ref())?;
        for sub in SUBDIRS {
            if !root.join(sub).is_dir() {
                return Err(Error::Integrity(format!(
                    "the repository {} has no {sub}/ folder; it is damaged or not an envarc repository",
                    root.display()
                )));
            }
        }
        Ok(Repository {
            root: root.to_path_buf(),
            config,
            provider,
            lock_wait: std::time::Duration::ZERO,
        })
    }

    /// Lets [`Repository::lock`] wait up to `wait` for a conflicting lock to
    /// go away (restic's `--retry-lock`) instead of failing at once.
    pub fn set_lock_wait(&mut self, wait: std::time::Duration) {
        self.lock_wait = wait;
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Replaces the config (e.g. after [`Config::set_key`]) atomically on disk.
    pub fn set_config(&mut self, config: Config) -> Result<()> {
        self.config = config;
        self.save_config()
    }

    fn save_config(&self) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(&self.config)
            .map_err(|e| Error::Other(format!("encoding the config: {e}")))?;
        json.push(b'\n');
        let path = self.root.join("config");
        crate::fsutil::atomic_write(&path, &json, Some(0o600))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }

    pub fn provider(&self) -> &dyn KeyProvider {
        self.provider.as_ref()
    }

    /// Replaces the key provider (e.g. after a rewrap changed the key).
    pub fn set_provider(&mut self, provider: Box<dyn KeyProvider>) {
        self.provider = provider;
    }

    pub fn context(&self, kind: Kind) -> EncryptionContext {
        encryption_context(&self.config.id, kind)
    }

    /// Options for writing a new message of `kind`.
    pub fn encrypt_options(&self, kind: Kind) -> EncryptOptions {
        EncryptOptions {
            suite: self
                .config
                .suite()
                .expect("checked when the config was loaded"),
            frame_length: self.config.frame_length,
            context: self.context(kind),
        }
    }

    /// Options for reading a message of `kind`: the context must name this
    /// repository and kind; frames up to the larger of the default limit and
    /// the repository's frame length are accepted.
    pub fn decrypt_options(&self, kind: Kind) -> DecryptOptions {
        let mut limits = ReadLimits::default();
        limits.max_frame_length = limits.max_frame_length.max(self.config.frame_length);
        DecryptOptions {
            policy: CommitmentPolicy::RequireCommitment,
            limits,
            expected_context: self.context(kind),
        }
    }

    /// Path of a pack (or a large file's data file).
    pub fn pack_path(&self, id: &Id) -> PathBuf {
        let hex = id.to_hex();
        self.root.join("data").join(&hex[..2]).join(hex)
    }

    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The exact bytes of the message at `loc`.
    pub fn open_message(&self, loc: &Location) -> Result<MessageReader> {
        let path = self.pack_path(&loc.pack);
        let mut f = File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::Integrity(format!(
                "pack {} is missing from the repository (expected at {})",
                loc.pack,
                path.display()
            )),
            _ => Error::io(format!("opening {}", path.display()), e),
        })?;
        f.seek(SeekFrom::Start(loc.offset))
            .map_err(|e| Error::io(format!("seeking in {}", path.display()), e))?;
        // A buffer no larger than the message: a small file's message in a
        // pack is then one read, not 256 KiB of its neighbours copied along.
        let capacity = loc.length.clamp(4096, 256 * 1024) as usize;
        Ok(BufReader::with_capacity(capacity, f).take(loc.length))
    }

    /// The exact bytes of message `id`, found through `index`.
    pub fn read_message(&self, index: &Index, id: &MessageId) -> Result<MessageReader> {
        let loc = index.get(id).ok_or_else(|| {
            Error::Integrity(format!(
                "message {} is not in the repository's index",
                hex::encode(id)
            ))
        })?;
        self.open_message(&loc)
    }

    /// A decryptor over object message `id`, after checking that the header
    /// carries that ID (a swapped or replaced message is an integrity error).
    /// When the index lists more than one copy (an interrupted rewrap or
    /// repack), the first copy whose header opens is used; if none opens,
    /// the first copy's error is returned.
    pub fn decrypt_object(
        &self,
        index: &Index,
        id: &MessageId,
    ) -> Result<Decryptor<MessageReader>> {
        let locations = index.locations(id);
        if locations.is_empty() {
            // Same error as read_message gives.
            self.read_message(index, id)?;
        }
        let mut first_err = None;
        for loc in &locations {
            match self.decrypt_object_at(loc, id) {
                Ok(dec) => return Ok(dec),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.expect("at least one location was tried"))
    }

    /// A decryptor over the object message at `loc`, which must carry `id`.
    pub fn decrypt_object_at(
        &self,
        loc: &Location,
        id: &MessageId,
    ) -> Result<Decryptor<MessageReader>> {
        let reader = self.open_message(loc)?;
        let dec = Decryptor::new(self.provider(), &self.decrypt_options(Kind::Object), reader)?;
        if dec.header().message_id.as_slice() != id.as_slice() {
            return Err(crate::envelope::Error::MessageIdMismatch {
                expected: hex::encode(id),
                found: hex::encode(&dec.header().message_id),
            }
            .into());
        }
        Ok(dec)
    }

    /// Every pack (and large file's data file) with its size in bytes.
    pub fn list_packs(&self) -> Result<Vec<(Id, u64)>> {
        let mut out = Vec::new();
        let data = self.dir("data");
        for sub in read_dir_names(&data)? {
            let dir = data.join(&sub);
            if !dir.is_dir() {
                continue;
            }
            for name in read_dir_names(&dir)? {
                if let Some(id) = Id::from_hex(&name) {
                    let p = dir.join(&name);
                    let len = fs::metadata(&p)
                        .map_err(|e| Error::io(format!("reading {}", p.display()), e))?
                        .len();
                    out.push((id, len));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every pack with its size and modification time (for prune's grace
    /// period).
    pub fn list_pack_files(&self) -> Result<Vec<PackFile>> {
        let mut out = Vec::new();
        let data = self.dir("data");
        for sub in read_dir_names(&data)? {
            let dir = data.join(&sub);
            if !dir.is_dir() {
                continue;
            }
            for name in read_dir_names(&dir)? {
                let Some(id) = Id::from_hex(&name) else {
                    continue;
                };
                let p = dir.join(&name);
                let md = match fs::metadata(&p) {
                    Ok(md) => md,
                    // Deleted meanwhile (by a concurrent reader's listing race).
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(Error::io(format!("reading {}", p.display()), e)),
                };
                out.push(PackFile {
                    id,
                    size: md.len(),
                    modified: md.modified().unwrap_or(std::time::UNIX_EPOCH),
                });
            }
        }
        out.sort_by_key(|p| p.id);
        Ok(out)
    }

    /// Deletes a pack; the deletion is durable when this returns.
    pub fn delete_pack(&self, id: &Id) -> Result<()> {
        remove_durably(&self.pack_path(id))
    }

    /// Temporary files left by interrupted writers (names starting with `.`)
    /// in data/, index/ and snapshots/. Only remove them under an exclusive
    /// lock: a running backup's open packs look the same.
    pub fn list_leftovers(&self) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let mut dirs = vec![self.dir("index"), self.dir("snapshots")];
        for sub in read_dir_names(&self.dir("data"))? {
            dirs.push(self.dir("data").join(sub));
        }
        for d in dirs {
            if !d.is_dir() {
                continue;
            }
            for name in read_dir_names(&d)? {
                if name.starts_with('.') {
                    out.push(d.join(name));
                }
            }
        }
        Ok(out)
    }

    /// Lists names (hex IDs) in one of the flat folders.
    pub(crate) fn list_ids(&self, dir: &str) -> Result<Vec<Id>> {
        let mut ids: Vec<Id> = read_dir_names(&self.dir(dir))?
            .iter()
            .filter_map(|n| Id::from_hex(n))
            .collect();
        ids.sort();
        Ok(ids)
    }
}

/// File names in a folder (non-UTF-8 names are not envarc's and are skipped).
fn read_dir_names(dir: &Path) -> Result<Vec<String>> {
    let rd = fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        if let Ok(name) = e.file_name().into_string() {
            out.push(name);
        }
    }
    Ok(out)
}

/// Removes a file and fsyncs its folder.
pub(crate) fn remove_durably(path: &Path) -> Result<()> {
    fs::remove_file(path).map_err(|e| Error::io(format!("deleting {}", path.display()), e))?;
    if let Some(dir) = path.parent() {
        fsync_dir(dir).map_err(|e| Error::io(format!("syncing {}", dir.display()), e))?;
    }
    Ok(())
}

/// Reads a whole small message file (index, snapshot) and decrypts it as `kind`.
pub(crate) fn decrypt_file(repo: &Repository, path: &Path, kind: Kind) -> Result<Vec<u8>> {
    let f = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
    let mut dec = Decryptor::new(
        repo.provider(),
        &repo.decrypt_options(kind),
        BufReader::with_capacity(256 * 1024, f),
    )
    .map_err(|e| with_path(e, path))?;
    let mut out = Vec::new();
    dec.copy_to(&mut out).map_err(|e| with_path(e, path))?;
    Ok(out)
}

/// Names the file an envelope error happened while writing (a full disk
/// shows as an I/O error of the encryptor's writer).
pub(crate) fn writing(e: crate::envelope::Error, path: &Path) -> Error {
    match e {
        crate::envelope::Error::Io(io) => Error::io(format!("writing {}", path.display()), io),
        e => e.into(),
    }
}

/// Names the file in an envelope error about it, keeping the error's class
/// (integrity, key, I/O) for the exit code.
pub(crate) fn with_path(e: crate::envelope::Error, path: &Path) -> Error {
    use crate::envelope::Error as E;
    match e {
        E::Provider(p) => Error::Key {
            message: format!("{}: {p}", path.display()),
        },
        E::Io(io) => Error::io(format!("reading {}", path.display()), io),
        e if e.is_integrity() || matches!(e, E::ContextMismatch { .. }) => {
            Error::Integrity(format!("{}: {e}", path.display()))
        }
        e => Error::Other(format!("{}: {e}", path.display())),
    }
}
