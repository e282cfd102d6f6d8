//! `envarc prune`: removes data no snapshot refers to, under the exclusive
//! lock. A pack with nothing in use is deleted; a pack mostly unused (more
//! than `repack_threshold` of its bytes) is repacked: the messages in use are
//! copied byte for byte into new packs, then it is deleted (see `rewrite.rs`
//! for the order). Packs no index lists (left by killed backups) and
//! temporary files are deleted too.
//!
//! Protecting backups: a running backup holds a shared lock, so prune cannot
//! start meanwhile (it fails with exit code 6, or waits with `--retry-lock`),
//! and a backup cannot start while prune runs. Beyond that, nothing younger
//! than the grace period (default one hour, by file modification time) is
//! touched: a pack, an unindexed pack or a temporary file written by a backup
//! whose lock prune could not see (another host whose lock was removed by
//! hand, a clock set wrong) stays until a later prune.
//!
//! Prune refuses to run while any snapshot cannot be read: it could not know
//! what that snapshot needs.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::rewrite::{rewrite_packs, Action, Item, Plan};
use crate::envelope::MessageId;
use crate::progress::Progress;
use crate::repo::{EntryKind, Id, IndexFile, Location, LockKind, Repository};
use crate::{Error, Result};

/// Default grace period.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);
/// Default share of unused bytes above which a pack is repacked.
pub const DEFAULT_REPACK_THRESHOLD: f64 = 0.5;

#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Decide and count; change nothing (and take no lock).
    pub dry_run: bool,
    /// Files modified less than this long ago are left alone.
    pub grace: Duration,
    /// Repack a pack when more than this share of its bytes is unused.
    pub repack_threshold: f64,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            dry_run: false,
            grace: DEFAULT_GRACE,
            repack_threshold: DEFAULT_REPACK_THRESHOLD,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub dry_run: bool,
    pub snapshots: u64,
    /// Messages (copies) in use, and their bytes.
    pub messages_used: u64,
    pub bytes_used: u64,
    /// Messages (copies) no snapshot needs, and their bytes.
    pub messages_unused: u64,
    pub bytes_unused: u64,
    pub packs_deleted: u64,
    pub packs_repacked: u64,
    /// Bytes of messages copied into new packs.
    pub bytes_repacked: u64,
    /// Bytes of pack files removed (deleted or repacked) and of other files
    /// removed, minus the bytes written anew.
    pub bytes_freed: u64,
    /// Packs with unused data left alone because they are younger than the
    /// grace period.
    pub packs_kept_recent: u64,
    /// Packs with some unused data left alone because most of it is in use
    /// (repacking them would copy more than it frees).
    pub packs_kept_mostly_used: u64,
    /// Bytes of unused messages in those packs.
    pub bytes_kept_mostly_used: u64,
    /// Packs no index lists, deleted.
    pub unindexed_packs_deleted: u64,
    /// Temporary files of interrupted writers, deleted.
    pub temporary_files_deleted: u64,
    /// Packs the index lists that are missing (a message in use among them
    /// cannot be restored; `envarc verify` tells which).
    pub missing_packs: Vec<String>,
    /// Messages that could not be copied (their packs were kept).
    pub failed: Vec<String>,
}

/// Message IDs every snapshot refers to; fails if any snapshot is unreadable.
fn referenced(repo: &Repository, progress: &dyn Progress) -> Result<(u64, HashSet<MessageId>)> {
    let (metas, failed) = repo.snapshots_lenient()?;
    if let Some((id, e)) = failed.into_iter().next() {
        return Err(Error::Integrity(format!(
            "snapshot {id} cannot be read ({e}); prune cannot know which data it needs and removes nothing. \
             Repair it or remove it (after checking with `envarc verify`) first"
        )));
    }
    progress.start("reading snapshots", Some(metas.len() as u64), None);
    let mut used = HashSet::new();
    for (id, _) in &metas {
        repo.load_snapshot_with(id, |e| {
            if let (EntryKind::File, Some(m)) = (e.kind, e.content) {
                used.insert(m);
            }
            Ok(())
        })
        .map_err(|e| {
            Error::Integrity(format!(
                "snapshot {id} cannot be read to its end ({e}); prune removes nothing"
            ))
        })?;
        progress.advance(1, 0);
    }
    progress.finish();
    Ok((metas.len() as u64, used))
}

fn older_than(modified: SystemTime, grace: Duration, now: SystemTime) -> bool {
    modified + grace <= now
}

/// Removes unreferenced data (see the module documentation).
pub fn prune(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let _lock = if opts.dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, progress)?)
    };
    prune_locked(repo, opts, progress)
}

/// [`prune`] for a caller that holds the exclusive lock (or runs dry).
pub fn prune_locked(
    repo: &Repository,
    opts: &PruneOptions,
    progress: &dyn Progress,
) -> Result<PruneReport> {
    let now = SystemTime::now();
    let mut report = PruneReport {
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let (snapshots, used) = referenced(repo, progress)?;
    report.snapshots = snapshots;
    let index = repo.load_index()?;
    let on_disk: HashMap<Id, crate::repo::PackFile> = repo
        .list_pack_files()?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();

    // One copy per message in use: the one in the newest pack (after an
    // interrupted rewrap, the rewrapped one), among packs that exist.
    let mut keeper: HashMap<MessageId, Location> = HashMap::new();
    for (id, loc) in index.copies() {
        let Some(p) = on_disk.get(&loc.pack) else {
            continue;
        };
        if !used.contains(&id) {
            continue;
        }
        let better = match keeper.get(&id) {
            None => true,
            Some(k) => {
                let q = &on_disk[&k.pack];
                (p.modified, loc.pack, loc.offset) > (q.modified, k.pack, k.offset)
            }
        };
        if better {
            keeper.insert(id, loc);
        }
    }
    #[derive(Default)]
    struct PackUse {
        live: Vec<(MessageId, Location)>,
        live_bytes: u64,
        dead_bytes: u64,
    }
    let mut packs: HashMap<Id, PackUse> = HashMap::new();
    for (id, loc) in index.copies() {
        let u = packs.entry(loc.pack).or_default();
        if keeper.get(&id) == Some(&loc) {
            u.live.push((id, loc));
            u.live_bytes += loc.length;
            report.messages_used += 1;
            report.bytes_used += loc.length;
        } else {
            u.dead_bytes += loc.length;
            report.messages_unused += 1;
            report.bytes_unused += loc.length;
        }
    }
    let mut retire = Vec::new();
    let mut items = Vec::new();
    let mut ids: Vec<&Id> = packs.keys().collect();
    ids.sort();
    for id in ids {
        let u = &packs[id];
        let Some(file) = on_disk.get(id) else {
            report.missing_packs.push(id.to_hex());
            continue;
        };
        if u.dead_bytes == 0 {
            continue;
        }
        if !older_than(file.modified, opts.grace, now) {
            report.packs_kept_recent += 1;
            continue;
        }
        let total = (u.live_bytes + u.dead_bytes) as f64;
        if u.live.is_empty() {
            report.packs_deleted += 1;
        } else if u.dead_bytes as f64 > opts.repack_threshold * total {
            report.packs_repacked += 1;
            report.bytes_repacked += u.live_bytes;
            items.extend(u.live.iter().map(|(id, loc)| Item {
                id: *id,
                loc: *loc,
                action: Action::Copy,
            }));
        } else {
            report.packs_kept_mostly_used += 1;
            report.bytes_kept_mostly_used += u.dead_bytes;
            continue;
        }
        retire.push(*id);
        report.bytes_freed += file.size;
    }
    let indexed: HashSet<Id> = index.packs().map(|p| p.id).collect();
    let unindexed: Vec<&crate::repo::PackFile> = on_disk
        .values()
        .filter(|p| !indexed.contains(&p.id) && older_than(p.modified, opts.grace, now))
        .collect();
    report.unindexed_packs_deleted = unindexed.len() as u64;
    report.bytes_freed += unindexed.iter().map(|p| p.size).sum::<u64>();
    let leftovers: Vec<(std::path::PathBuf, u64)> = repo
        .list_leftovers()?
        .into_iter()
        .filter_map(|p| {
            let md = std::fs::metadata(&p).ok()?;
            let m = md.modified().ok()?;
            older_than(m, opts.grace, now).then_some((p, md.len()))
        })
        .collect();
    report.temporary_files_deleted = leftovers.len() as u64;
    report.bytes_freed += leftovers.iter().map(|(_, n)| n).sum::<u64>();
    report.bytes_freed = report.bytes_freed.saturating_sub(report.bytes_repacked);
    if opts.dry_run {
        return Ok(report);
    }

    let mut files: Vec<IndexFile> = index.files().to_vec();
    let plan = Plan {
        packs: retire,
        items,
        rewrapper: None,
        batch_bytes: 0,
        phase: "repacking",
    };
    let done = rewrite_packs(repo, &mut files, plan, progress)?;
    report.failed = done.failed;
    for p in unindexed {
        remove_if_present(&repo.pack_path(&p.id))?;
    }
    for (path, _) in &leftovers {
        remove_if_present(path)?;
    }
    Ok(report)
}

fn remove_if_present(path: &std::path::Path) -> Result<()> {
    match crate::repo::remove_durably(path) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// What [`drop_copies`] did.
pub struct Dropped {
    pub packs_deleted: u64,
    pub failed: Vec<String>,
}

/// Removes the given copies of messages, whatever their age, repacking
/// every other copy their packs hold (in use or not): for reencrypt, whose
/// old messages must go. The caller holds the exclusive lock and has made
/// sure nothing refers to these copies any more.
pub fn drop_copies(
    repo: &Repository,
    files: &mut Vec<IndexFile>,
    copies: &[(MessageId, Location)],
    progress: &dyn Progress,
) -> Result<Dropped> {
    let doomed: HashSet<(Id, u64)> = copies.iter().map(|(_, l)| (l.pack, l.offset)).collect();
    let packs: HashSet<Id> = copies.iter().map(|(_, l)| l.pack).collect();
    let index = crate::repo::Index::from_files(files.clone());
    let items: Vec<Item> = index
        .copies()
        .filter(|(_, l)| packs.contains(&l.pack) && !doomed.contains(&(l.pack, l.offset)))
        .map(|(id, loc)| Item {
            id,
            loc,
            action: Action::Copy,
        })
        .collect();
    let plan = Plan {
        packs: packs.into_iter().collect(),
        items,
        rewrapper: None,
        batch_bytes: 0,
        phase: "removing old messages",
    };
    let done = rewrite_packs(repo, files, plan, progress)?;
    Ok(Dropped {
        packs_deleted: done.packs_deleted,
        failed: done.failed,
    })
}
