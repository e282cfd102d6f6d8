//! `envarc forget`: removes the snapshots a [`Policy`] does not keep. Only
//! snapshot files are deleted; the data they alone referred to stays until
//! `prune`. Takes the exclusive lock (as restic does), so that a backup never
//! picks as its parent a snapshot that is being removed.

use serde::Serialize;

use super::retention::{apply, GroupDecision, Policy};
use crate::progress::Progress;
use crate::repo::{Id, LockKind, Repository, SnapshotMeta};
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

/// Applies `policy` to the snapshots `select` accepts (others are left
/// alone, as restic's `--host/--tag/--path` do).
pub fn forget(
    repo: &Repository,
    policy: &Policy,
    select: &dyn Fn(&SnapshotMeta) -> bool,
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
    let considered: Vec<_> = all.into_iter().filter(|(_, m)| select(m)).collect();
    let groups = apply(policy, &considered, None);
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
    let doomed: Vec<&Id> = groups.iter().flat_map(|g| g.remove.iter()).collect();
    let removed = remove(repo, &doomed, dry_run, "snapshots the policy removes")?;
    Ok(ForgetReport {
        dry_run,
        groups,
        removed,
        unreadable,
    })
}

/// Deletes the snapshot files `ids` (none in a dry run), stopping between
/// two at an interrupt (each deletion is whole: the repository stays
/// consistent); returns how many were (or would be) removed.
fn remove(repo: &Repository, ids: &[&Id], dry_run: bool, what: &str) -> Result<u64> {
    for (removed, id) in ids.iter().enumerate() {
        if crate::interrupt::requested() {
            return Err(Error::Interrupted(format!(
                "{removed} of the {} {what} were removed",
                ids.len()
            )));
        }
        if !dry_run {
            repo.delete_snapshot(id)?;
        }
    }
    Ok(ids.len() as u64)
}

/// What `forget SNAP…` removed.
#[derive(Clone, Debug, Serialize)]
pub struct NamedReport {
    pub dry_run: bool,
    /// Each snapshot named, once, with its metadata when it could be read
    /// (an unreadable snapshot can be removed by its ID).
    #[serde(serialize_with = "named_as_hex")]
    pub snapshots: Vec<(Id, Option<SnapshotMeta>)>,
    pub removed: u64,
}

fn named_as_hex<S: serde::Serializer>(
    v: &[(Id, Option<SnapshotMeta>)],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(|(id, _)| id.to_hex()))
}

/// Removes the snapshots named by `specs` (IDs, unique prefixes, `latest`).
/// Every name is resolved under the lock before anything is removed, so
/// an unknown or ambiguous one removes nothing.
pub fn forget_named(
    repo: &Repository,
    specs: &[String],
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<NamedReport> {
    let _lock = if dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, progress)?)
    };
    let mut ids: Vec<Id> = Vec::with_capacity(specs.len());
    for spec in specs {
        let id = repo.resolve_snapshot(spec)?;
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let mut snapshots = Vec::with_capacity(ids.len());
    for id in ids {
        snapshots.push((id, repo.load_snapshot_meta(&id).ok()));
    }
    let doomed: Vec<&Id> = snapshots.iter().map(|(id, _)| id).collect();
    let removed = remove(repo, &doomed, dry_run, "named snapshots")?;
    Ok(NamedReport {
        dry_run,
        snapshots,
        removed,
    })
}
