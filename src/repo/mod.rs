//! The repository, format 2: chunked, deduplicated, compressed, on any
//! [`Storage`].
//!
//! ```text
//! config                   authenticated config (config.rs): clear JSON + sealed message
//! data/<2 hex>/<pack id>   packs: complete chunk messages one after another (pack.rs)
//! index/<id>               message (kind index, envarc-id <id>): chunk ID -> pack,
//!                          offset, length, chunk length, key set (index.rs)
//! snapshots/<id>           message (kind snapshot, envarc-id <id>): the manifest (snapshot.rs)
//! locks/<id>               storage::lock
//! ```
//!
//! # Chunks
//!
//! A file's content is cut by a keyed FastCDC ([`chunker`]); each chunk is
//! named by keyed BLAKE3 of its plaintext ([`ChunkId`]) and stored once per
//! repository, as one complete ESDK message, kind `chunk`, context
//! `{envarc-repo, envarc-kind: chunk, envarc-compression: zstd|none}`, body
//! zstd (or a stored zstd frame when compression does not pay, see
//! [`compress`]). One GenerateDataKey per file with new content, at its
//! first new chunk; every new chunk of that file is a message under that
//! data key with its own random message ID (so no (key, nonce) pair repeats:
//! the per-message key comes from HKDF over the message ID). A chunk first
//! stored under file A's data key and later needed by file B is referenced,
//! not stored again: B's blast radius includes A's data key.
//!
//! On read a chunk is accepted only if (1) every EDK in its header names one
//! of the config's keys and no retired version ([`keys::KeyPolicy`]), (2) its
//! context names this repository and kind `chunk`, (3) it authenticates, (4)
//! it decompresses to the length the index gives, and (5) its keyed BLAKE3
//! equals the ID that referenced it. A chunk message moved to another
//! location, swapped with another, or replaced fails (5); one under a foreign
//! key fails (1).
//!
//! # Threat model
//!
//! The attacker holds the storage (read, write, copy, delete, replay, keep
//! old copies), no key, and runs no code on the client. What they can do:
//! delete or withhold objects (verify reports what is missing and which files
//! it costs), fill the disk, deny service, and learn sizes and timing: pack,
//! chunk-message and snapshot sizes; how many chunks a backup added; which
//! chunk messages belong to one file (they carry the same EDKs); whether a
//! backup used compression (the context). With the keyed chunker, chunk
//! sizes of a known file cannot be predicted, so they do not fingerprint it;
//! compressed sizes still reveal how well new content compresses. What they
//! cannot do, and what enforces it:
//!
//! - read anything: every byte of content, manifests, index and secrets is
//!   inside an ESDK message; chunk IDs are MACs under a secret key;
//! - edit the config: every field is in the sealed copy and must equal it
//!   ([`config::compare`], exit 4 naming the field);
//! - substitute keys: a whole new config under their key is refused by the
//!   client's pin of the key set ([`pins`]);
//! - roll back the config (to un-retire a version): the pinned generation;
//! - replay a snapshot or index file under another name: the `envarc-id`
//!   context pair binds the name;
//! - slip in messages under another key or a retired version: the key policy;
//! - alter, reorder, splice or truncate anything: ESDK authentication, and the
//!   chunk MAC for chunk locations.
//!
//! # The API the maintenance commands build on
//!
//! - references of each snapshot: [`Repository::list_snapshots`],
//!   [`Repository::load_snapshot_with`] (each [`Entry`]'s `chunks`);
//! - chunks by pack and key version: [`Repository::load_index`] then
//!   [`Index::by_pack`] / [`Index::chunks`] ([`IndexedChunk::key_set`] names
//!   the key versions wrapping it), [`Index::packs`] (which index files list
//!   each pack), [`Repository::list_packs`] (what is stored, with times for a
//!   grace period); a chunk's bytes with [`Repository::read_chunk_at`], its
//!   header (EDKs) with [`Repository::chunk_header`];
//! - writing: [`Repository::file_key`] (one data key, one provider call) and
//!   [`Repository::seal_chunk`] (a new message ID every time) into a
//!   [`PackWriter`], then [`Repository::save_index`] with the returned
//!   [`PackRecord`]s, then [`Repository::replace_snapshot`] or
//!   [`Repository::save_snapshot`];
//! - deleting, only after what replaces it is durable:
//!   [`Repository::delete_index_file`], [`Repository::delete_pack`],
//!   [`Repository::delete_snapshot`]; leftovers via
//!   [`Storage::leftovers`];
//! - config changes under the exclusive lock ([`Repository::lock`]):
//!   [`Repository::retire_version`], [`Repository::set_keys`]; then the
//!   caller updates its pin ([`Pins::record`]);
//! - the worker pool: [`crate::pool::Pool::for_repo`].
//!
//! # Memory
//!
//! The index costs 52 bytes per chunk ([`Index`]); a backup holds besides it
//! the parent's and the new manifest (about 150 bytes per file plus 32 per
//! chunk) and the chunks in flight (bounded by worker count); a restore holds
//! the index and the snapshot's entries.

pub mod chunker;
pub mod compress;
pub mod config;
mod gear;
mod index;
pub mod keys;
pub mod manifest;
mod pack;
pub mod pins;
mod read;
mod snapshot;
pub mod storage;

use std::fmt;
use std::time::Duration;

use rand::RngCore;

use crate::envelope::{
    CommitmentPolicy, DecryptOptions, EncryptOptions, EncryptionContext, KeyProvider, ReadLimits,
};
use crate::progress::Progress;
use crate::{Error, Result};

pub use chunker::{ChunkId, Chunker, ChunkerParams};
pub use compress::Compression;
pub use config::{
    key_fingerprint, Config, InitOptions, OuterConfig, Secrets, DEFAULT_PACK_SIZE, FORMAT_VERSION,
    MAX_FRAME_LENGTH,
};
pub use index::{
    index_name, Index, IndexBuilder, IndexData, IndexedChunk, IndexedPack, KeySetTable, Location,
};
pub use keys::{describe_key, KeyPolicy, KeyRef, KeyVersion, PolicyProvider};

pub use pack::{pack_name, ChunkRecord, FullPack, PackRecord, PackWriter};
pub use pins::{Pin, PinStatus, Pins};
pub use read::{ChunkData, FileKey, ObjectReader, OpenedChunk};
pub use snapshot::{
    decode_manifest, encode_manifest, snapshot_name, Entry, EntryKind, SnapshotMeta, Summary, Time,
    SNAPSHOT_VERSION,
};
pub use storage::lock::hostname;
pub use storage::{LocalStorage, LockKind, RepoLock, Storage};

/// Most bytes of packs being committed at once, by `backup` and `copy`
/// alike. A remote commit holds its pack in memory while it is sent (see
/// `storage::spool`), so this bounds the uploads' memory: 48 MiB, two packs
/// of the default 16 MiB (plus the largest chunk) in flight. 64 MiB (three)
/// measured no faster to SeaweedFS on loopback and took a 2 GiB backup's
/// peak RSS past 128 MiB.
pub const UPLOAD_MEMORY: u64 = 48 << 20;

/// Context key naming the repository a message belongs to.
pub const CONTEXT_REPO: &str = "envarc-repo";
/// Context key naming what a message holds.
pub const CONTEXT_KIND: &str = "envarc-kind";
/// Context key naming the object a message must be found under.
pub const CONTEXT_ID: &str = "envarc-id";

/// What a message holds; part of its encryption context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A piece of a file's content.
    Chunk,
    /// One backup run's manifest.
    Snapshot,
    /// A part of the index.
    Index,
    /// The sealed config.
    Config,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Chunk => "chunk",
            Kind::Snapshot => "snapshot",
            Kind::Index => "index",
            Kind::Config => "config",
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

/// A pack as listed in `data/`.
#[derive(Clone, Debug)]
pub struct PackFile {
    pub id: Id,
    pub size: u64,
    pub modified: Option<std::time::SystemTime>,
}

/// A repository's config as read from its storage, before any key is used:
/// the caller checks the claimed config against its pins and picks key
/// providers for the claimed keys, then [`Unopened::open`]s it.
pub struct Unopened {
    storage: Box<dyn Storage>,
    outer: OuterConfig,
}

impl Unopened {
    pub fn read(storage: Box<dyn Storage>) -> Result<Unopened> {
        let bytes = match storage.read("config") {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let at = storage.location();
                return Err(Error::Usage(format!(
                    "{at} is not an envarc repository (it has no config); create one with `envarc init --repo {at}`"
                )));
            }
            Err(e) => {
                return Err(Error::io(
                    format!("reading the config of {}", storage.location()),
                    e,
                ))
            }
        };
        let outer = OuterConfig::parse(&bytes)
            .map_err(|e| prefix(e, &format!("{}: ", storage.location())))?;
        Ok(Unopened { storage, outer })
    }

    /// The config as the clear JSON claims it (not yet authenticated).
    pub fn claimed(&self) -> &Config {
        &self.outer.claimed
    }

    pub fn location(&self) -> String {
        self.storage.location()
    }

    /// Opens the sealed config with `provider` (under the claimed key
    /// policy) and checks the clear fields against it.
    pub fn open(self, provider: Box<dyn KeyProvider>) -> Result<Repository> {
        let provider = PolicyProvider::new(provider, self.outer.claimed.policy());
        let (config, secrets) = self.outer.open(&provider)?;
        let provider = PolicyProvider::new(provider.into_inner(), config.policy());
        Ok(Repository::assemble(
            self.storage,
            config,
            secrets,
            provider,
        ))
    }
}

fn prefix(e: Error, p: &str) -> Error {
    match e {
        Error::Integrity(m) => Error::Integrity(format!("{p}{m}")),
        Error::Other(m) => Error::Other(format!("{p}{m}")),
        e => e,
    }
}

/// An open repository with the key provider that wraps and unwraps its data
/// keys (behind the repository's key policy) and its secrets.
pub struct Repository {
    storage: Box<dyn Storage>,
    config: Config,
    secrets: Secrets,
    chunker: Chunker,
    provider: PolicyProvider,
    /// How long [`Repository::lock`] retries while another process holds a
    /// conflicting lock.
    lock_wait: Duration,
}

impl Repository {
    fn assemble(
        storage: Box<dyn Storage>,
        config: Config,
        secrets: Secrets,
        provider: PolicyProvider,
    ) -> Repository {
        Repository {
            chunker: Chunker::new(config.chunker, &secrets),
            storage,
            config,
            secrets,
            provider,
            lock_wait: Duration::ZERO,
        }
    }

    /// Creates a repository in `storage` (which must hold no objects) with
    /// every data key wrapped under each of `keys` by `provider`. The config
    /// is the only object written: a store without one is not a repository.
    pub fn init(
        storage: Box<dyn Storage>,
        keys: Vec<KeyRef>,
        provider: Box<dyn KeyProvider>,
        opts: &InitOptions,
    ) -> Result<Repository> {
        Repository::create(storage, keys, provider, opts, Secrets::generate())
    }

    /// Like [`Repository::init`], but with `like`'s chunk-ID MAC key and
    /// chunker (secret and parameters): a chunk has the same ID in both,
    /// so `envarc copy` moves only the chunks the new one lacks. The
    /// repository ID, keys and every other setting are its own.
    pub fn init_like(
        storage: Box<dyn Storage>,
        keys: Vec<KeyRef>,
        provider: Box<dyn KeyProvider>,
        opts: &InitOptions,
        like: &Repository,
    ) -> Result<Repository> {
        let opts = InitOptions {
            chunker: like.config.chunker,
            ..opts.clone()
        };
        Repository::create(storage, keys, provider, &opts, like.secrets.clone())
    }

    fn create(
        storage: Box<dyn Storage>,
        keys: Vec<KeyRef>,
        provider: Box<dyn KeyProvider>,
        opts: &InitOptions,
        secrets: Secrets,
    ) -> Result<Repository> {
        let existing = storage
            .list("")
            .map_err(|e| Error::io(format!("listing {}", storage.location()), e))?;
        let not_empty = || {
            Error::Usage(format!(
                "{} is not empty; choose a new or empty location for the repository",
                storage.location()
            ))
        };
        if !existing.is_empty() {
            return Err(not_empty());
        }
        let config = Config::new(keys, opts)?;
        let provider = PolicyProvider::new(provider, config.policy());
        // Sealing is the key check: a key that does not work creates nothing.
        let bytes = config::seal(&config, &secrets, &provider)?;
        match storage.create("config", &bytes) {
            Ok(()) => {}
            // Another init got there first (the create is conditional).
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(not_empty()),
            Err(e) => {
                return Err(Error::io(
                    format!("writing the config of {}", storage.location()),
                    e,
                ))
            }
        }
        Ok(Repository::assemble(storage, config, secrets, provider))
    }

    /// Whether `other` names chunks as this repository does (the same
    /// chunk-ID MAC key and chunker): what `envarc copy` needs.
    pub fn shares_chunk_ids_with(&self, other: &Repository) -> bool {
        use subtle::ConstantTimeEq;
        let (a, b) = (&self.secrets, &other.secrets);
        let same = a.mac_key.ct_eq(&b.mac_key) & a.chunker_key.ct_eq(&b.chunker_key);
        bool::from(same) && self.config.chunker == other.config.chunker
    }

    /// Lets [`Repository::lock`] wait up to `wait` for a conflicting lock to
    /// go away (restic's `--retry-lock`) instead of failing at once.
    pub fn set_lock_wait(&mut self, wait: Duration) {
        self.lock_wait = wait;
    }

    /// Takes a lock. A shared lock on a store this process cannot write
    /// goes on without one (reading a read-only mount), with a warning.
    pub fn lock(&self, kind: LockKind, progress: &dyn Progress) -> Result<RepoLock> {
        storage::lock::acquire(self.storage.as_ref(), kind, self.lock_wait, true, progress)
    }

    /// Takes a lock for a command that writes (backup): no going on without
    /// one where the lock cannot be written, since data written unlocked is
    /// what a concurrent prune may delete.
    pub fn lock_to_write(&self, kind: LockKind, progress: &dyn Progress) -> Result<RepoLock> {
        storage::lock::acquire(self.storage.as_ref(), kind, self.lock_wait, false, progress)
    }

    pub fn storage(&self) -> &dyn Storage {
        self.storage.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn chunker(&self) -> &Chunker {
        &self.chunker
    }

    /// The provider, behind the key policy.
    pub fn provider(&self) -> &dyn KeyProvider {
        &self.provider
    }

    /// The key policy of the authenticated config.
    pub fn policy(&self) -> &KeyPolicy {
        self.provider.policy()
    }

    /// Replaces the key provider (after a change of keys).
    pub fn set_provider(&mut self, provider: Box<dyn KeyProvider>) {
        self.provider = PolicyProvider::new(provider, self.config.policy());
    }

    /// Writes a changed config (generation + 1) sealed anew by the current
    /// provider, atomically. The caller holds the exclusive lock and updates
    /// its pin afterwards ([`Pins::record`]).
    fn write_config(&mut self, mut config: Config) -> Result<()> {
        config.generation = self.config.generation + 1;
        let bytes = config::seal(&config, &self.secrets, self.provider.inner())?;
        self.storage.replace("config", &bytes).map_err(|e| {
            Error::io(
                format!("writing the config of {}", self.storage.location()),
                e,
            )
        })?;
        self.provider.set_policy(config.policy());
        self.config = config;
        Ok(())
    }

    /// Seals the config anew (generation + 1, a new message under a fresh
    /// data key wrapped by the current key versions), settings unchanged:
    /// rewrap's last step. Under the exclusive lock; the caller updates
    /// its pin afterwards.
    pub fn reseal_config(&mut self) -> Result<()> {
        self.write_config(self.config.clone())
    }

    /// The header of the sealed config message as stored now: which key
    /// versions wrap it. Not authenticated.
    pub fn config_header(&self) -> Result<crate::envelope::Header> {
        let bytes = self.storage.read("config").map_err(|e| {
            Error::io(
                format!("reading the config of {}", self.storage.location()),
                e,
            )
        })?;
        OuterConfig::parse(&bytes)?.sealed_header()
    }

    /// Records `keys` as the repository's key set (for envarc's own key
    /// changes); `provider` must wrap under all of them.
    pub fn set_keys(&mut self, keys: Vec<KeyRef>, provider: Box<dyn KeyProvider>) -> Result<()> {
        if keys.is_empty() {
            return Err(Error::Usage("a repository needs a key".into()));
        }
        let mut c = self.config.clone();
        c.keys = keys;
        self.provider = PolicyProvider::new(provider, c.policy());
        self.write_config(c)
    }

    /// Records `version` as retired: from now on every message it wraps is
    /// refused. Call only once nothing the repository needs is wrapped by it
    /// alone (after reencrypt).
    pub fn retire_version(&mut self, version: KeyVersion) -> Result<()> {
        if !self.config.keys.iter().any(|k| k.names(&version)) {
            return Err(Error::Usage(format!(
                "{version} is not a version of this repository's keys ({})",
                self.config.describe_keys()
            )));
        }
        if self.config.retired.contains(&version) {
            return Ok(());
        }
        let mut c = self.config.clone();
        c.retired.push(version);
        c.retired.sort();
        self.write_config(c)
    }

    pub fn context(&self, kind: Kind, id: Option<&Id>) -> EncryptionContext {
        let mut c = encryption_context(&self.config.id, kind);
        if let Some(id) = id {
            c.insert(CONTEXT_ID.into(), id.to_hex());
        }
        c
    }

    /// Options for writing a new message of `kind` (bound to object `id`).
    pub fn encrypt_options(&self, kind: Kind, id: Option<&Id>) -> EncryptOptions {
        EncryptOptions {
            suite: self
                .config
                .suite()
                .expect("checked when the config was opened"),
            frame_length: self.config.frame_length,
            context: self.context(kind, id),
        }
    }

    /// Options for reading a message of `kind`: the context must name this
    /// repository, kind and object; frames up to the larger of the default
    /// limit and the repository's frame length are accepted.
    pub fn decrypt_options(&self, kind: Kind, id: Option<&Id>) -> DecryptOptions {
        let mut limits = ReadLimits::default();
        limits.max_frame_length = limits.max_frame_length.max(self.config.frame_length);
        DecryptOptions {
            policy: CommitmentPolicy::RequireCommitment,
            limits,
            expected_context: self.context(kind, id),
        }
    }

    /// Every pack with its size and time.
    pub fn list_packs(&self) -> Result<Vec<PackFile>> {
        let mut out: Vec<PackFile> = self
            .list_objects("data/")?
            .into_iter()
            .filter_map(|o| {
                let id = Id::from_hex(o.name.rsplit('/').next()?)?;
                (pack_name(&id) == o.name).then_some(PackFile {
                    id,
                    size: o.size,
                    modified: o.modified,
                })
            })
            .collect();
        out.sort_by_key(|p| p.id);
        Ok(out)
    }

    /// Deletes a pack; durable when this returns.
    pub fn delete_pack(&self, id: &Id) -> Result<()> {
        self.delete_object(&pack_name(id))
    }

    fn list_objects(&self, prefix: &str) -> Result<Vec<storage::ObjectInfo>> {
        self.storage.list(prefix).map_err(|e| {
            Error::io(
                format!("listing {prefix} in {}", self.storage.location()),
                e,
            )
        })
    }

    /// IDs named in a flat folder (`index/`, `snapshots/`).
    pub(crate) fn list_ids(&self, prefix: &str) -> Result<Vec<Id>> {
        let mut ids: Vec<Id> = self
            .list_objects(prefix)?
            .iter()
            .filter_map(|o| Id::from_hex(o.name.strip_prefix(prefix)?))
            .collect();
        ids.sort();
        Ok(ids)
    }

    pub(crate) fn delete_object(&self, name: &str) -> Result<()> {
        self.storage
            .delete(name)
            .map_err(|e| Error::io(format!("deleting {name} in {}", self.storage.location()), e))
    }
}

/// `n` bytes of xorshift noise from `seed`: incompressible, the same on every
/// run, so the chunker's and the compressor's tests see the data they saw.
#[cfg(test)]
pub(crate) fn test_noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}
