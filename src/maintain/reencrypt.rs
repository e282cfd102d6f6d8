//! `envarc reencrypt --key-version KEY/vN`: for a backing key (or transit
//! key version) that may be compromised. Every message vN wraps is written
//! anew under a *fresh* data key (one per old data key, so still one per
//! file) wrapped by the repository's current key versions: chunks, index
//! files, snapshots and the sealed config. When nothing is left under vN,
//! the repository records vN as retired in its sealed config
//! ([`Repository::retire_version`]): from then on every message vN wraps is
//! refused, so whoever holds vN's material cannot slip one in.
//!
//! The order, interruptions and reruns: see [`super::rekey`]. A run that
//! could not move everything (a damaged message) retires nothing and says
//! what is left.

use serde::Serialize;

use crate::envelope::Header;
use crate::pool::Pool;
use crate::progress::Progress;
use crate::repo::{Compression, FileKey, KeyVersion, LockKind, Repository};
use crate::{Error, Result};

use super::messages::{scan, wrapped_by};
use super::rekey::{run, RekeyReport, RekeyRun};
use super::rewrite::Rekey;

/// A fresh data key for each old one.
struct FreshDataKey;

impl Rekey for FreshDataKey {
    fn key_for(&self, repo: &Repository, _: &Header, compression: Compression) -> Result<FileKey> {
        repo.file_key(compression)
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct ReencryptReport {
    pub target: KeyVersion,
    #[serde(flatten)]
    pub work: RekeyReport,
    /// Messages still wrapped by the target afterwards (0 after a complete run).
    pub remaining: u64,
    /// Whether the repository now refuses the target version.
    pub retired: bool,
}

/// Checks that `target` is a version of one of the repository's keys and
/// not the one new data keys are wrapped by.
fn check_target(
    repo: &Repository,
    target: &KeyVersion,
    is_current: &dyn Fn(&KeyVersion) -> bool,
) -> Result<()> {
    let c = repo.config();
    if target.version.is_none() || !c.keys.iter().any(|k| k.names(target)) {
        return Err(Error::Usage(format!(
            "{target} is not a version of this repository's keys ({})",
            c.describe_keys()
        )));
    }
    if is_current(target) {
        return Err(Error::Usage(format!(
            "{target} is the current version: new data keys are wrapped by it. Rotate the key \
             first (`envarc key rotate-on-demand KEY`, or rotate the transit key), then \
             reencrypt this version"
        )));
    }
    Ok(())
}

/// Chunks, snapshots and index files still wrapped by `target` (the config
/// is written anew by the retirement itself).
fn remaining(repo: &Repository, target: &KeyVersion, progress: &dyn Progress) -> Result<u64> {
    let index = repo.load_index()?;
    let chunks = index
        .chunks()
        .filter(|c| c.key_set.contains(target))
        .count() as u64;
    let pick = |kv: &KeyVersion| kv == target;
    let others = scan(repo, &Pool::for_repo(repo)?, progress)?;
    let files =
        wrapped_by(&others.snapshots, &pick).len() + wrapped_by(&others.index_files, &pick).len();
    Ok(chunks + files as u64)
}

/// Re-encrypts everything `target` wraps, then retires it (see the module docs).
pub fn reencrypt(
    repo: &mut Repository,
    target: &KeyVersion,
    is_current: &dyn Fn(&KeyVersion) -> bool,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<ReencryptReport> {
    check_target(repo, target, is_current)?;
    let lock = if dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, progress)?)
    };
    let pick = |kv: &KeyVersion| kv == target;
    let job = RekeyRun {
        pick: &pick,
        rekey: &FreshDataKey,
        phase: "re-encrypting",
        // Retiring the version writes the config anew anyway.
        reseal_config: false,
        batch_bytes: 0,
    };
    let work = run(repo, lock.as_ref(), &job, progress)?;
    let mut report = ReencryptReport {
        target: target.clone(),
        remaining: 0,
        retired: repo.config().retired.contains(target),
        work,
    };
    let Some(lock) = lock else {
        report.remaining = report.work.chunks
            + report.work.snapshots_rewritten
            + report.work.index_files_rewritten;
        return Ok(report);
    };
    report.remaining = remaining(repo, target, progress)?;
    if report.remaining == 0 && report.work.failed.is_empty() {
        lock.check()?;
        report.work.config_renewed = !report.retired;
        repo.retire_version(target.clone())?;
        report.retired = true;
    }
    Ok(report)
}
