//! `envarc stats --recursive DIR`: which keys and key versions wrap how many
//! files and bytes of an encrypted tree, from the headers alone (no key is
//! needed, nothing is decrypted). After a rotation and an `encrypt
//! --recursive --overwrite if-changed`, this shows how much still depends on
//! each older backing key.

use std::collections::BTreeMap;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use super::fsx::Root;
use super::walk;
use crate::envelope::raw_aes::key_name_of;
use crate::envelope::{open_header, CommitmentPolicy, EncryptedDataKey, ReadLimits};
use crate::keyring::cmk::parse_key_name;
use crate::progress::Progress;
use crate::providers::transit;
use crate::{Error, Result};

/// A key and, where the provider shows them in its EDKs, one version of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct KeyVersion {
    /// `keyring`, `transit`, `raw-aes`, `aws-kms`, or the EDK's provider ID.
    pub provider: String,
    /// Keyring: the CMK's UUID. Transit: `<mount>/<name>`. Raw AES: the key
    /// name. AWS KMS: the key ARN.
    pub key: String,
    /// Keyring backing-key or transit key version. AWS KMS rotates inside
    /// the service and its EDKs do not say which version wrapped them.
    pub version: Option<u32>,
}

impl KeyVersion {
    /// What wrapped `edk`, read from the EDK alone.
    pub fn of(edk: &EncryptedDataKey) -> KeyVersion {
        let kv = |provider: &str, key: String, version| KeyVersion {
            provider: provider.into(),
            key,
            version,
        };
        if edk.provider_id == transit::PROVIDER_ID {
            let key = transit::edk_key(edk)
                .map(|k| format!("{}/{}", k.mount, k.name))
                .unwrap_or_else(|| String::from_utf8_lossy(&edk.provider_info).into_owned());
            return kv("transit", key, transit::edk_version(edk));
        }
        if edk.provider_id == "aws-kms" {
            return kv(
                "aws-kms",
                String::from_utf8_lossy(&edk.provider_info).into_owned(),
                None,
            );
        }
        let name = key_name_of(&edk.provider_info);
        if edk.provider_id == crate::keyring::PROVIDER_ID {
            if let Some((id, v)) = name.and_then(parse_key_name) {
                return kv("keyring", id.to_string(), Some(v));
            }
        }
        match name {
            Some(n) if edk.provider_id == "envarc" => kv("raw-aes", n.to_string(), None),
            Some(n) => kv("raw-aes", format!("{}:{n}", edk.provider_id), None),
            None => kv(
                &edk.provider_id,
                String::from_utf8_lossy(&edk.provider_info).into_owned(),
                None,
            ),
        }
    }
}

/// Files and bytes under one key version.
#[derive(Clone, Debug, Serialize)]
pub struct VersionStats {
    #[serde(flatten)]
    pub key: KeyVersion,
    pub files: u64,
    /// Message bytes on disk.
    pub bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct DirStats {
    /// Messages read (files whose header parsed).
    pub messages: u64,
    pub bytes: u64,
    /// Sorted by key, then version. A file wrapped under several keys counts under each.
    pub versions: Vec<VersionStats>,
    /// Messages per algorithm suite (hex ID).
    pub suites: BTreeMap<String, u64>,
    /// Files that are not messages envarc reads, with why.
    pub not_messages: Vec<String>,
    /// Entries left alone (symlinks, special files) and folders not listed.
    pub skipped: Vec<String>,
}

/// Reads the header of every regular file below `dir`.
pub fn stats(dir: &Path, progress: &dyn Progress) -> Result<DirStats> {
    let root = Root::open(dir)
        .map_err(|e| Error::io(format!("opening the folder {}", dir.display()), e))?;
    progress.start("scanning", None, None);
    let scan = walk::scan(&root, progress);
    progress.finish();
    progress.start("reading headers", Some(scan.files.len() as u64), None);
    let limits = ReadLimits::default();
    let read: Vec<_> = scan
        .files
        .par_iter()
        .map(|f| {
            let r = root
                .open_file(&f.rel)
                .map_err(|e| e.to_string())
                .and_then(|mut file| {
                    open_header(&mut file, CommitmentPolicy::AllowLegacyRead, &limits)
                        .map_err(|e| e.to_string())
                });
            progress.advance(1, 0);
            (f, r)
        })
        .collect();
    progress.finish();
    let mut s = DirStats {
        skipped: scan.skipped.into_iter().chain(scan.errors).collect(),
        ..DirStats::default()
    };
    let mut by_key: BTreeMap<KeyVersion, (u64, u64)> = BTreeMap::new();
    for (f, r) in read {
        match r {
            Ok(parsed) => {
                s.messages += 1;
                s.bytes += f.stamp.size;
                *s.suites
                    .entry(format!("{:#06x}", parsed.header.suite.id()))
                    .or_default() += 1;
                let mut keys: Vec<KeyVersion> =
                    parsed.header.edks.iter().map(KeyVersion::of).collect();
                keys.sort();
                keys.dedup();
                for k in keys {
                    let e = by_key.entry(k).or_default();
                    e.0 += 1;
                    e.1 += f.stamp.size;
                }
            }
            Err(why) => s.not_messages.push(format!(
                "{}: not a message envarc reads: {why}",
                root.path.join(&f.rel).display()
            )),
        }
    }
    s.versions = by_key
        .into_iter()
        .map(|(key, (files, bytes))| VersionStats { key, files, bytes })
        .collect();
    Ok(s)
}
