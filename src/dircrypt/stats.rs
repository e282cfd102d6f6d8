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
use crate::envelope::{open_header, CommitmentPolicy, ReadLimits};
use crate::progress::Progress;
use crate::repo::keys::KeyVersion;
use crate::{Error, Result};

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
