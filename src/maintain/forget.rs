//! `envarc forget`: removes the snapshots a [`Policy`] does not keep. Only
//! snapshot files are deleted; the data they alone referred to stays until
//! `prune`. Takes the exclusive lock (as restic does), so that a backup never
//! picks as its parent a snapshot that is being removed.

use serde::Serialize;

use super::retention::{apply, GroupDecision, Policy};
use crate::progress::Progress;
use crate::repo::{LockKind, Repository};
use crate::{Error, Result};

#[derive(Clone, Debug, Serialize)]
pub struct ForgetReport {
    pub dry_run: bool,
    pub groups: Vec<GroupDecision>,
    /// Snapshots removed (or, in a dry run, to be removed).
    pub removed: u64,
    /// Snapshots that could not be read and were left alone, with the reason.
    pub unreadable: Vec<String>,
}

pub fn forget(
    repo: &Repository,
    policy: &Policy,
    host: Option<&str>,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<ForgetReport> {
    if policy.is_empty() {
        return Err(Error::Usage(
            "no policy given: pass at least one --keep-* option (nothing was removed)".into(),
        ));
    }
    let _lock = if dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, progress)?)
    };
    let (all, failed) = repo.snapshots_lenient()?;
    let unreadable: Vec<String> = failed
        .iter()
        .map(|(id, e)| format!("snapshot {id} cannot be read and is left alone: {e}"))
        .collect();
    let groups = apply(policy, &all, host);
    for g in &groups {
        if g.keep.is_empty() && !g.remove.is_empty() {
            return Err(Error::Usage(format!(
                "the policy keeps no snapshot of host {} paths {}: none has the tags of --keep-tag; \
                 refusing to remove every snapshot of a group (nothing was removed)",
                g.host,
                g.paths.join(" ")
            )));
        }
    }
    let mut removed = 0;
    for id in groups.iter().flat_map(|g| g.remove.iter()) {
        if !dry_run {
            repo.delete_snapshot(id)?;
        }
        removed += 1;
    }
    Ok(ForgetReport {
        dry_run,
        groups,
        removed,
        unreadable,
    })
}
