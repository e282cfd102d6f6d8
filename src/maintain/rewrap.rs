//! `envarc rewrap`: moves every data key wrapped by an older key version to
//! the current one, like KMS ReEncrypt or Vault's rewrap. Only headers
//! change (new EDKs, new header tag); body bytes are copied unchanged and no
//! plaintext is touched. Message IDs stay, so snapshots stay as they are.
//!
//! Objects are rewritten into new packs in batches (see `rewrite.rs` for the
//! order that never loses a message); snapshot manifests and index files,
//! each a message in a file of its own, get their new header in place
//! (temporary file, fsync, rename); the config's key check is made anew.
//! Killed at any point, a rerun finishes the job: a message listed twice
//! keeps the copy that is already current and drops the other.

use std::collections::{HashMap, HashSet};
use std::io::{BufReader, Read, Seek, SeekFrom, Write};
use std::sync::Mutex;

use serde::Serialize;

use super::headers::{scan, ObjectCopy, Scan};
use super::keys::{KeyVersion, KEYRING, TRANSIT};
use super::rewrite::{rewrite_packs, Action, Item, Plan};
use crate::envelope::{
    rewrap_header_with, DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, MessageId,
    ProviderError,
};
use crate::fsutil::AtomicFile;
use crate::keyring::KeyringProvider;
use crate::progress::Progress;
use crate::providers::transit::{KeyRef as TransitKey, TransitProvider};
use crate::repo::{Id, IndexFile, Kind, LockKind, Repository};
use crate::{Error, Result};

/// Decides which key versions are old and wraps data keys anew.
pub trait Rewrapper: Sync {
    /// Where data keys go, for messages ("keyring key … v3").
    fn target(&self) -> String;
    /// For each key version: whether a data key it wraps must be rewrapped.
    /// May ask a key service (once per key).
    fn plan(&self, keys: &[KeyVersion]) -> Result<Vec<bool>>;
    /// The new EDKs of a message whose data key is `key`.
    fn new_edks(
        &self,
        edks: &[EncryptedDataKey],
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> std::result::Result<Vec<EncryptedDataKey>, ProviderError>;
}

/// A keyring CMK: every EDK that is not of its current backing key is old
/// (older versions, and other CMKs of the keyring).
pub struct KeyringRewrapper {
    provider: KeyringProvider,
    current: KeyVersion,
}

impl KeyringRewrapper {
    /// `provider` must be bound to the CMK (it wraps with its current version).
    pub fn new(provider: KeyringProvider) -> Result<KeyringRewrapper> {
        let (id, v) = provider.key().ok_or_else(|| {
            Error::Usage("rewrap needs a keyring key to wrap data keys with".into())
        })?;
        Ok(KeyringRewrapper {
            provider,
            current: KeyVersion {
                provider: KEYRING.into(),
                key: id.to_string(),
                version: Some(v),
            },
        })
    }

    pub fn current(&self) -> &KeyVersion {
        &self.current
    }
}

impl Rewrapper for KeyringRewrapper {
    fn target(&self) -> String {
        format!("keyring key {}", self.current)
    }

    fn plan(&self, keys: &[KeyVersion]) -> Result<Vec<bool>> {
        Ok(keys.iter().map(|k| *k != self.current).collect())
    }

    fn new_edks(
        &self,
        _edks: &[EncryptedDataKey],
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> std::result::Result<Vec<EncryptedDataKey>, ProviderError> {
        self.provider.wrap_data_key(key, ctx)
    }
}

/// Transit keys: an EDK is old when its version is below its key's latest
/// version on the server; transit's own `rewrap` re-encrypts it (the data
/// key is never sent to the server).
pub struct TransitRewrapper {
    provider: TransitProvider,
    latest: Mutex<HashMap<String, u32>>,
}

impl TransitRewrapper {
    pub fn new(provider: TransitProvider) -> TransitRewrapper {
        TransitRewrapper {
            provider,
            latest: Mutex::new(HashMap::new()),
        }
    }

    /// The latest version of transit key `mount/name`, asked once.
    pub fn latest(&self, key: &str) -> Result<u32> {
        if let Some(v) = self.latest.lock().expect("not poisoned").get(key) {
            return Ok(*v);
        }
        let (mount, name) = key.rsplit_once('/').unwrap_or(("transit", key));
        let info = self
            .provider
            .key_info(&TransitKey {
                mount: mount.into(),
                name: name.into(),
            })
            .map_err(Error::from)?;
        self.latest
            .lock()
            .expect("not poisoned")
            .insert(key.to_string(), info.latest_version);
        Ok(info.latest_version)
    }
}

impl Rewrapper for TransitRewrapper {
    fn target(&self) -> String {
        "the latest version of each transit key".into()
    }

    fn plan(&self, keys: &[KeyVersion]) -> Result<Vec<bool>> {
        keys.iter()
            .map(|k| match (k.provider.as_str(), k.version) {
                (TRANSIT, Some(v)) => Ok(v < self.latest(&k.key)?),
                _ => Ok(false),
            })
            .collect()
    }

    fn new_edks(
        &self,
        edks: &[EncryptedDataKey],
        _key: &DataKey,
        ctx: &EncryptionContext,
    ) -> std::result::Result<Vec<EncryptedDataKey>, ProviderError> {
        self.provider.rewrap_edks(edks, ctx)
    }
}

#[derive(Clone, Debug, Default)]
pub struct RewrapOptions {
    /// Count what would be done; write nothing (and take no lock).
    pub dry_run: bool,
    /// Bytes of messages per batch (each batch is committed on its own, so a
    /// killed run keeps the batches before); 0: 16 packs' worth.
    pub batch_bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RewrapReport {
    pub target: String,
    pub dry_run: bool,
    /// Object messages whose header was (or would be) rewritten.
    pub objects_rewrapped: u64,
    pub bytes_rewrapped: u64,
    /// Object messages already under the current version.
    pub objects_current: u64,
    /// Messages copied unchanged because they shared a pack with rewrapped ones.
    pub objects_copied: u64,
    /// Extra copies dropped (left by an interrupted earlier run).
    pub copies_dropped: u64,
    pub packs_written: u64,
    pub packs_deleted: u64,
    pub snapshots_rewrapped: u64,
    pub index_files_rewrapped: u64,
    pub key_check_rewrapped: bool,
    /// Messages that could not be rewrapped, with the reason.
    pub failed: Vec<String>,
}

/// Per copy: what happens to it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fate {
    Keep,
    Rewrap,
    Drop,
}

/// Decides each copy's fate: per message, one copy is kept (one already
/// current if any, else the first readable one, rewrapped), the rest dropped.
/// A message with no readable copy keeps every copy as it is.
fn fates(scan: &Scan, old: &[bool]) -> Vec<Fate> {
    let needs = |o: &ObjectCopy| match &o.keys {
        Ok(ks) => Some(ks.iter().any(|&k| old[k as usize])),
        Err(_) => None,
    };
    let mut by_id: HashMap<MessageId, Vec<usize>> = HashMap::new();
    for (i, o) in scan.objects.iter().enumerate() {
        by_id.entry(o.id).or_default().push(i);
    }
    let mut fate = vec![Fate::Keep; scan.objects.len()];
    for copies in by_id.values() {
        let keeper = copies
            .iter()
            .find(|&&i| needs(&scan.objects[i]) == Some(false))
            .or_else(|| copies.iter().find(|&&i| needs(&scan.objects[i]).is_some()));
        let Some(&k) = keeper else { continue };
        for &i in copies {
            fate[i] = if i != k {
                Fate::Drop
            } else if needs(&scan.objects[i]) == Some(true) {
                Fate::Rewrap
            } else {
                Fate::Keep
            };
        }
    }
    fate
}

/// Rewraps every message wrapped by an old key version (see the module docs).
pub fn rewrap(
    repo: &mut Repository,
    rewrapper: &dyn Rewrapper,
    opts: &RewrapOptions,
    progress: &dyn Progress,
) -> Result<RewrapReport> {
    let lock = if opts.dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, progress)?)
    };
    let index = repo.load_index()?;
    let scan = scan(repo, &index, progress)?;
    let old = rewrapper.plan(&scan.keys)?;
    let fate = fates(&scan, &old);
    let mut report = RewrapReport {
        target: rewrapper.target(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    for (o, f) in scan.objects.iter().zip(&fate) {
        if let (Err(why), Fate::Keep) = (&o.keys, f) {
            report.failed.push(format!(
                "message {}: its header cannot be read ({why}); it stays as it is",
                hex::encode(o.id)
            ));
        }
        match f {
            Fate::Rewrap => {
                report.objects_rewrapped += 1;
                report.bytes_rewrapped += o.loc.length;
            }
            Fate::Drop => report.copies_dropped += 1,
            Fate::Keep => report.objects_current += u64::from(o.keys.is_ok()),
        }
    }
    // Packs with anything to change; every copy kept in them moves.
    let affected: HashSet<Id> = scan
        .objects
        .iter()
        .zip(&fate)
        .filter(|(_, f)| **f != Fate::Keep)
        .map(|(o, _)| o.loc.pack)
        .collect();
    let items: Vec<Item> = scan
        .objects
        .iter()
        .zip(&fate)
        .filter(|(o, f)| affected.contains(&o.loc.pack) && **f != Fate::Drop)
        .map(|(o, f)| Item {
            id: o.id,
            loc: o.loc,
            action: if *f == Fate::Rewrap {
                Action::Rewrap
            } else {
                Action::Copy
            },
        })
        .collect();
    report.objects_copied = items.iter().filter(|i| i.action == Action::Copy).count() as u64;
    let needs_file = |keys: &std::result::Result<Vec<u32>, String>| {
        keys.as_ref()
            .is_ok_and(|ks| ks.iter().any(|&k| old[k as usize]))
    };
    let snapshots: Vec<Id> = scan
        .snapshots
        .iter()
        .filter(|f| needs_file(&f.keys))
        .map(|f| f.id)
        .collect();
    let index_files: Vec<Id> = scan
        .index_files
        .iter()
        .filter(|f| needs_file(&f.keys))
        .map(|f| f.id)
        .collect();
    let key_check = needs_file(&scan.key_check);
    if opts.dry_run {
        report.snapshots_rewrapped = snapshots.len() as u64;
        report.index_files_rewrapped = index_files.len() as u64;
        report.key_check_rewrapped = key_check;
        return Ok(report);
    }

    // Objects, batch by batch, each batch's old packs retired after it.
    let mut files: Vec<IndexFile> = index.files().to_vec();
    let packs: Vec<Id> = affected.into_iter().collect();
    let plan = Plan {
        packs,
        items,
        rewrapper: Some(rewrapper),
        batch_bytes: opts.batch_bytes,
        phase: "rewrapping",
    };
    let done = rewrite_packs(repo, &mut files, plan, progress)?;
    report.packs_written = done.packs_written;
    report.packs_deleted = done.packs_deleted;
    report.failed.extend(done.failed);

    // Manifests and index files, in place.
    progress.start(
        "rewrapping manifests and index files",
        Some((snapshots.len() + index_files.len()) as u64),
        None,
    );
    for id in &snapshots {
        match rewrap_file(repo, rewrapper, &repo.snapshot_path(id), Kind::Snapshot) {
            Ok(true) => report.snapshots_rewrapped += 1,
            Ok(false) => {}
            Err(e) => report.failed.push(format!("snapshot {id}: {e}")),
        }
        progress.advance(1, 0);
    }
    // Index files the batches replaced are gone: rewrap_file skips them.
    for id in &index_files {
        match rewrap_file(repo, rewrapper, &repo.index_path(id), Kind::Index) {
            Ok(true) => report.index_files_rewrapped += 1,
            Ok(false) => {}
            Err(e) => report.failed.push(format!("index file {id}: {e}")),
        }
        progress.advance(1, 0);
    }
    progress.finish();
    if key_check {
        let mut cfg = repo.config().clone();
        cfg.set_key(cfg.key.clone(), repo.provider())?;
        repo.set_config(cfg)?;
        report.key_check_rewrapped = true;
    }
    drop(lock);
    Ok(report)
}

/// Rewraps the message that fills `path` in place. `Ok(false)`: the file is
/// gone (removed since the scan).
fn rewrap_file(
    repo: &Repository,
    rewrapper: &dyn Rewrapper,
    path: &std::path::Path,
    kind: Kind,
) -> Result<bool> {
    let io_err = |e| Error::io(format!("rewrapping {}", path.display()), e);
    let mut f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(io_err(e)),
    };
    let (header, old_len, _) = rewrap_header_with(
        &mut BufReader::new(&mut f),
        repo.provider(),
        &repo.decrypt_options(kind),
        |edks, key, ctx| rewrapper.new_edks(edks, key, ctx),
    )
    .map_err(|e| crate::repo::with_path(e, path))?;
    f.seek(SeekFrom::Start(old_len)).map_err(io_err)?;
    let mut out = AtomicFile::create(path).map_err(io_err)?;
    out.write_all(&header).map_err(io_err)?;
    std::io::copy(&mut BufReader::new(f).take(u64::MAX), &mut out).map_err(io_err)?;
    out.commit().map_err(io_err)?;
    Ok(true)
}
