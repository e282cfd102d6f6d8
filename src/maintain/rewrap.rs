//! `envarc rewrap`: every message whose data key an older version of a
//! rotating key wraps (a keyring CMK's older backing key, a transit key's
//! older version) is written anew with that data key wrapped under the
//! current version: chunks, index files, snapshots and the sealed config.
//!
//! A new message, never a new header on an old one: the header IV is fixed
//! at zero, so tagging a second header under one data key and message ID
//! would give away the GHASH key (security invariant 2). So rewrap reads and
//! writes the data (it costs about what a restore plus a backup of the
//! stored bytes cost, without compressing again).
//!
//! Chunks keep their data key: it is unwrapped once and wrapped anew once
//! per data key (per file that first stored the chunks), by the keyring
//! under the current backing key, or by transit's own `rewrap` on the
//! server (so the data key is never sent to it), and the chunk bodies are
//! encrypted again under it with new message IDs. Keeping the key costs the
//! same provider calls as a fresh one would and keeps transit's data keys off
//! the wire; the version being moved away from can still unwrap the old EDKs
//! of copies kept elsewhere, which is what `reencrypt` is for. Snapshots,
//! index files and the config, one message each, get fresh data keys.
//!
//! The order, interruptions and reruns: see [`super::rekey`].

use crate::envelope::{
    DataKey, EncryptedDataKey, EncryptionContext, Header, KeyProvider, ProviderError,
};
use crate::keyring::KeyringProvider;
use crate::progress::Progress;
use crate::providers::transit::{TransitKey, TransitProvider};
use crate::providers::ProviderKind;
use crate::repo::{Compression, FileKey, KeyVersion, LockKind, Repository};
use crate::{Error, Result};

use super::rekey::{run, RekeyReport, RekeyRun};
use super::rewrite::Rekey;

/// One rotating key of the repository: which of its versions are old, and
/// how to wrap a data key under its current one.
pub trait Rewrapper: Sync {
    /// Where data keys go, for messages ("keyring key …/v3").
    fn target(&self) -> String;
    /// Whether an EDK of `kv` must be wrapped anew.
    fn is_old(&self, kv: &KeyVersion) -> bool;
    /// The EDK that replaces `edk` (one `is_old` names) for data key `key`.
    fn rewrap(
        &self,
        edk: &EncryptedDataKey,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> std::result::Result<EncryptedDataKey, ProviderError>;
}

/// A keyring CMK: its versions below the current one are old.
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
                provider: ProviderKind::Keyring.into(),
                key: id.to_string(),
                version: Some(v),
            },
        })
    }
}

impl Rewrapper for KeyringRewrapper {
    fn target(&self) -> String {
        format!("keyring key {}", self.current)
    }

    fn is_old(&self, kv: &KeyVersion) -> bool {
        kv.same_key(&self.current) && kv.version != self.current.version
    }

    fn rewrap(
        &self,
        _edk: &EncryptedDataKey,
        key: &DataKey,
        ctx: &EncryptionContext,
    ) -> std::result::Result<EncryptedDataKey, ProviderError> {
        self.provider
            .wrap_data_key(key, ctx)?
            .into_iter()
            .next()
            .ok_or_else(|| {
                ProviderError::Other("the keyring wrapped the data key under no key".into())
            })
    }
}

/// A transit key: versions below its latest on the server are old; the
/// server's `rewrap` makes the new EDK.
pub struct TransitRewrapper {
    provider: TransitProvider,
    current: KeyVersion,
}

impl TransitRewrapper {
    /// Asks the server for the key's latest version (once).
    pub fn new(provider: TransitProvider, mount: &str, name: &str) -> Result<TransitRewrapper> {
        let info = provider
            .key_info(&TransitKey {
                mount: mount.into(),
                name: name.into(),
            })
            .map_err(Error::from)?;
        Ok(TransitRewrapper {
            provider,
            current: KeyVersion {
                provider: ProviderKind::Transit.into(),
                key: format!("{mount}/{name}"),
                version: Some(info.latest_version),
            },
        })
    }

    pub fn current(&self) -> &KeyVersion {
        &self.current
    }
}

impl Rewrapper for TransitRewrapper {
    fn target(&self) -> String {
        format!(
            "transit key {} v{}",
            self.current.key,
            self.current.version.unwrap_or(0)
        )
    }

    fn is_old(&self, kv: &KeyVersion) -> bool {
        kv.same_key(&self.current)
            && matches!((kv.version, self.current.version), (Some(v), Some(latest)) if v < latest)
    }

    fn rewrap(
        &self,
        edk: &EncryptedDataKey,
        _key: &DataKey,
        ctx: &EncryptionContext,
    ) -> std::result::Result<EncryptedDataKey, ProviderError> {
        self.provider.rewrap_edk(edk, ctx)
    }
}

/// Keeps each chunk's data key and wraps it anew: every EDK an old version
/// made is replaced, the others (of keys that need no rewrap) stay.
struct KeepDataKey<'a> {
    rewrappers: &'a [Box<dyn Rewrapper>],
}

impl Rekey for KeepDataKey<'_> {
    fn key_for(
        &self,
        repo: &Repository,
        header: &Header,
        compression: Compression,
    ) -> Result<FileKey> {
        let ctx = &header.context;
        let key = repo.provider().decrypt_data_key(&header.edks, ctx)?;
        let edks = header
            .edks
            .iter()
            .map(|e| {
                let kv = KeyVersion::of(e);
                match self.rewrappers.iter().find(|r| r.is_old(&kv)) {
                    Some(r) => r.rewrap(e, &key, ctx),
                    None => Ok(e.clone()),
                }
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(FileKey::from_parts(key, edks, compression))
    }
}

#[derive(Clone, Debug, Default)]
pub struct RewrapOptions {
    /// Count what would be done; write nothing (and take no lock).
    pub dry_run: bool,
    /// Bytes of chunk messages per batch; 0: 16 packs' worth.
    pub batch_bytes: u64,
}

/// What rewrap did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RewrapReport {
    /// Where data keys went, one line per rotating key.
    pub targets: Vec<String>,
    #[serde(flatten)]
    pub work: RekeyReport,
}

/// Rewraps every message an old version wraps (see the module docs).
pub fn rewrap(
    repo: &mut Repository,
    rewrappers: &[Box<dyn Rewrapper>],
    opts: &RewrapOptions,
    progress: &dyn Progress,
) -> Result<RewrapReport> {
    if rewrappers.is_empty() {
        return Err(Error::Usage(format!(
            "this repository's keys ({}) have no versions to move between, so there is nothing to \
             rewrap: a raw key has none, and AWS KMS keeps every backing key of a rotated key and \
             picks the right one itself",
            repo.config().describe_keys()
        )));
    }
    let lock = if opts.dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, progress)?)
    };
    let pick = |kv: &KeyVersion| rewrappers.iter().any(|r| r.is_old(kv));
    let rekey = KeepDataKey { rewrappers };
    let job = RekeyRun {
        pick: &pick,
        rekey: &rekey,
        phase: "rewrapping",
        reseal_config: true,
        batch_bytes: opts.batch_bytes,
    };
    let work = run(repo, lock.as_ref(), &job, progress)?;
    Ok(RewrapReport {
        targets: rewrappers.iter().map(|r| r.target()).collect(),
        work,
    })
}
