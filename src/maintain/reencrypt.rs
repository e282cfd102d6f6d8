//! `envarc reencrypt --key-version KEY/vN`: the remedy for a compromised
//! backing key. Every object message whose data key that version wrapped is
//! decrypted and encrypted again under a fresh data key wrapped by the
//! current version (a new message, with a new ID); every snapshot that refers
//! to such a message, or whose manifest that version wrapped, is rewritten in
//! place to point at the new messages; the old messages are then removed
//! (their packs repacked), index files and the key check renewed.
//!
//! Order, under the exclusive lock: new messages and their index file are
//! durable before any snapshot changes; a snapshot is replaced atomically
//! (temporary file, fsync, rename) so its ID stays; the old messages are
//! removed only once no snapshot refers to them. Killed at any point, a rerun
//! picks up what still refers to the old version; copies an earlier run made
//! and no snapshot came to use are unreferenced and go at the next prune.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use super::headers::{scan, scan as scan_again, Scan};
use super::keys::KeyVersion;
use super::prune::{drop_copies, Dropped};
use super::rewrite::{commit, write_items, Action, Item};
use crate::envelope::MessageId;
use crate::progress::Progress;
use crate::repo::{EntryKind, Id, IndexFile, LockKind, Repository};
use crate::{Error, Result};

#[derive(Clone, Debug, Default, Serialize)]
pub struct ReencryptReport {
    pub key_version: String,
    pub dry_run: bool,
    /// Object messages re-encrypted (or to be).
    pub objects_reencrypted: u64,
    pub bytes_reencrypted: u64,
    /// Copies under the version that were dropped without re-encryption:
    /// unreferenced, or another copy of the message is under another version.
    pub copies_dropped: u64,
    /// Snapshots rewritten to point at the new messages (IDs unchanged).
    pub snapshots_rewritten: u64,
    pub index_files_rewritten: u64,
    pub key_check_renewed: bool,
    pub packs_deleted: u64,
    /// What could not be done, with the reason (the old message then stays).
    pub failed: Vec<String>,
    /// Messages and files still wrapped by the version after the run
    /// (0 unless something failed).
    pub remaining: u64,
}

/// Messages and files under `target`, as a fresh scan sees them.
fn count_under(scan: &Scan, target: &KeyVersion) -> u64 {
    let is = |ks: &std::result::Result<Vec<u32>, String>| {
        ks.as_ref()
            .is_ok_and(|ks| ks.iter().any(|&k| scan.keys[k as usize] == *target))
    };
    let objects = scan.objects.iter().filter(|o| is(&o.keys)).count();
    let files = scan.snapshots.iter().filter(|f| is(&f.keys)).count()
        + scan.index_files.iter().filter(|f| is(&f.keys)).count();
    (objects + files) as u64 + u64::from(is(&scan.key_check))
}

/// Re-encrypts everything under `target` (see the module documentation).
/// `is_current` names the version new data keys are wrapped by: re-encrypting
/// under the very version to be replaced is refused.
pub fn reencrypt(
    repo: &mut Repository,
    target: &KeyVersion,
    is_current: &dyn Fn(&KeyVersion) -> bool,
    dry_run: bool,
    progress: &dyn Progress,
) -> Result<ReencryptReport> {
    if is_current(target) {
        return Err(Error::Usage(format!(
            "{target} is the current version: new data keys would be wrapped by it again. Rotate the key first \
             (`envarc key rotate-on-demand KEY`), then re-encrypt"
        )));
    }
    let lock = if dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, progress)?)
    };
    let mut report = ReencryptReport {
        key_version: target.to_string(),
        dry_run,
        ..Default::default()
    };
    let index = repo.load_index()?;
    let scan = scan(repo, &index, progress)?;
    let under = |ks: &std::result::Result<Vec<u32>, String>| {
        ks.as_ref()
            .is_ok_and(|ks| ks.iter().any(|&k| scan.keys[k as usize] == *target))
    };
    // Every snapshot must be readable: an unreadable one may refer to
    // messages under the version, which would then be lost.
    let snapshots = repo.snapshots()?;
    let mut refs: HashMap<MessageId, Vec<Id>> = HashMap::new();
    for (id, _) in &snapshots {
        repo.load_snapshot_with(id, |e| {
            if let (EntryKind::File, Some(m)) = (e.kind, e.content) {
                refs.entry(m).or_default().push(*id);
            }
            Ok(())
        })?;
    }

    // Per message: re-encrypt it if every readable copy is under the version
    // and a snapshot needs it; drop its copies under the version otherwise.
    let mut elsewhere: HashSet<MessageId> = HashSet::new();
    for o in &scan.objects {
        if o.keys.is_ok() && !under(&o.keys) {
            elsewhere.insert(o.id);
        }
    }
    let mut items: Vec<Item> = Vec::new();
    let mut chosen: HashSet<MessageId> = HashSet::new();
    let mut old_copies: Vec<(MessageId, crate::repo::Location)> = Vec::new();
    for o in scan.objects.iter().filter(|o| under(&o.keys)) {
        old_copies.push((o.id, o.loc));
        if !elsewhere.contains(&o.id) && refs.contains_key(&o.id) && chosen.insert(o.id) {
            items.push(Item {
                id: o.id,
                loc: o.loc,
                action: Action::Reencrypt,
            });
        }
    }
    report.objects_reencrypted = items.len() as u64;
    report.bytes_reencrypted = items.iter().map(|i| i.loc.plaintext_len).sum();
    report.copies_dropped = (old_copies.len() - items.len()) as u64;
    let manifests: HashSet<Id> = scan
        .snapshots
        .iter()
        .filter(|f| under(&f.keys))
        .map(|f| f.id)
        .collect();
    let affected_snaps: HashSet<Id> = items
        .iter()
        .flat_map(|i| refs[&i.id].iter().copied())
        .chain(manifests.iter().copied())
        .collect();
    let old_index: Vec<Id> = scan
        .index_files
        .iter()
        .filter(|f| under(&f.keys))
        .map(|f| f.id)
        .collect();
    if dry_run {
        report.snapshots_rewritten = affected_snaps.len() as u64;
        report.index_files_rewritten = old_index.len() as u64;
        report.key_check_renewed = under(&scan.key_check);
        return Ok(report);
    }

    // 1. New messages, indexed and durable, batch by batch.
    let mut files: Vec<IndexFile> = index.files().to_vec();
    let mut renamed: HashMap<MessageId, MessageId> = HashMap::new();
    let mut failed_ids: HashSet<MessageId> = HashSet::new();
    let batch = repo.config().pack_size.saturating_mul(16);
    items.sort_by_key(|i| (i.loc.pack, i.loc.offset));
    let mut rest = &items[..];
    while !rest.is_empty() {
        let mut n = 0;
        let mut bytes = 0;
        while n < rest.len() && (n == 0 || bytes < batch) {
            bytes += rest[n].loc.length;
            n += 1;
        }
        let (chunk, more) = rest.split_at(n);
        rest = more;
        let written = write_items(repo, chunk, None, "re-encrypting", progress)?;
        for (i, why) in &written.failed {
            failed_ids.insert(i.id);
            report
                .failed
                .push(format!("message {}: {why}", hex::encode(i.id)));
        }
        let done = commit(repo, &files, written.packs, &HashSet::new())?;
        done.apply(&mut files);
        renamed.extend(written.renamed);
    }
    report.objects_reencrypted -= failed_ids.len() as u64;

    // 2. Snapshots, each replaced in place.
    let mut snaps: Vec<Id> = affected_snaps.into_iter().collect();
    snaps.sort();
    progress.start("rewriting snapshots", Some(snaps.len() as u64), None);
    for id in &snaps {
        let (meta, mut entries) = repo.load_snapshot(id)?;
        for e in entries.iter_mut() {
            if let Some(new) = e.content.and_then(|m| renamed.get(&m)) {
                e.content = Some(*new);
            }
        }
        repo.replace_snapshot(id, &meta, &entries)?;
        report.snapshots_rewritten += 1;
        progress.advance(1, 0);
    }
    progress.finish();

    // 3. The old copies, now unreferenced (except those that failed).
    let old_copies: Vec<_> = old_copies
        .into_iter()
        .filter(|(id, _)| !failed_ids.contains(id))
        .collect();
    let Dropped {
        packs_deleted,
        failed,
    } = drop_copies(repo, &mut files, &old_copies, progress)?;
    report.packs_deleted = packs_deleted;
    report.failed.extend(failed);

    // 4. Index files and the key check still under the version.
    for id in old_index {
        let Some(pos) = files.iter().position(|f| f.id == id) else {
            continue;
        };
        let new = repo.write_index_file(&files[pos].packs)?;
        repo.delete_index_file(&id)?;
        files[pos].id = new;
        report.index_files_rewritten += 1;
    }
    if under(&scan.key_check) {
        let mut cfg = repo.config().clone();
        cfg.set_key(cfg.key.clone(), repo.provider())?;
        repo.set_config(cfg)?;
        report.key_check_renewed = true;
    }
    let index = repo.load_index()?;
    report.remaining = count_under(&scan_again(repo, &index, progress)?, target);
    drop(lock);
    Ok(report)
}
