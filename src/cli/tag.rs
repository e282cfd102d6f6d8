//! `envarc tag`: change the tags of snapshots. A snapshot is a sealed
//! message bound to its name (`envarc-id` in its context), so a changed
//! snapshot is written anew under a new ID and the old one removed, as
//! restic does; the IDs are printed old → new.

use serde_json::json;

use super::filter::SnapshotFilter;
use super::repo::RepoArgs;
use super::{GlobalArgs, Output};
use envarc::error::exit;
use envarc::repo::{Id, LockKind, Repository};
use envarc::{Error, Result};

#[derive(clap::Args)]
pub struct TagArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Snapshots to change (IDs, unique prefixes or `latest`); with none,
    /// every snapshot the --host/--tag/--path filters select.
    #[arg(value_name = "SNAP")]
    pub snapshots: Vec<String>,
    /// Add tag TAG; repeatable.
    #[arg(long, value_name = "TAG", conflicts_with = "set")]
    pub add: Vec<String>,
    /// Remove tag TAG; repeatable.
    #[arg(long, value_name = "TAG", conflicts_with = "set")]
    pub remove: Vec<String>,
    /// Replace all tags with these; repeatable (`--set ''` removes every tag).
    #[arg(long, value_name = "TAG")]
    pub set: Vec<String>,
    /// Show what would change; write nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub filter: SnapshotFilter,
}

/// The tags after the change, or `None` when they stay as they are.
fn new_tags(old: &[String], a: &TagArgs) -> Option<Vec<String>> {
    let mut tags: Vec<String> = if a.set.is_empty() {
        old.to_vec()
    } else {
        a.set.iter().filter(|t| !t.is_empty()).cloned().collect()
    };
    for t in &a.add {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    tags.retain(|t| !a.remove.contains(t));
    (tags != old).then_some(tags)
}

/// The snapshots named, or those the filter selects; in time order.
fn selected(repo: &Repository, a: &TagArgs) -> Result<Vec<Id>> {
    let filter = a.filter.build()?;
    let all = repo.snapshots()?;
    let mut named = Vec::new();
    for spec in &a.snapshots {
        named.push(repo.resolve_snapshot(spec)?);
    }
    let ids: Vec<Id> = all
        .iter()
        .filter(|(id, m)| (named.is_empty() || named.contains(id)) && filter.matches(m))
        .map(|(id, _)| *id)
        .collect();
    if ids.is_empty() && !filter.is_empty() {
        return Err(Error::Usage(format!(
            "no snapshot matches {}: nothing was changed",
            filter.describe()
        )));
    }
    Ok(ids)
}

pub fn tag(out: &Output, g: &GlobalArgs, a: TagArgs) -> Result<i32> {
    if a.add.is_empty() && a.remove.is_empty() && a.set.is_empty() {
        return Err(Error::Usage(
            "say what to change: --add TAG, --remove TAG or --set TAG".into(),
        ));
    }
    if a.snapshots.is_empty() && a.filter.is_empty() {
        return Err(Error::Usage(
            "name the snapshots to change (IDs or `latest`), or select them with \
             --host/--tag/--path"
                .into(),
        ));
    }
    let repo = a.repo.open(g, out)?;
    let progress = out.progress();
    let _lock = if a.dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Exclusive, progress.as_ref())?)
    };
    let mut changed = Vec::new();
    let mut unchanged = 0u64;
    for id in selected(&repo, &a)? {
        if envarc::interrupt::requested() {
            return Err(Error::Interrupted(format!(
                "{} changed before the interrupt (printed above)",
                super::fmt::plural(changed.len() as u64, "snapshot was", "snapshots were")
            )));
        }
        let (mut meta, entries) = repo.load_snapshot(&id)?;
        let Some(tags) = new_tags(&meta.tags, &a) else {
            unchanged += 1;
            continue;
        };
        meta.tags = tags;
        let new = if a.dry_run {
            None
        } else {
            Some(repo.resave_snapshot(&id, &meta, &entries)?)
        };
        let shown = new.map_or_else(|| "(dry run)".to_string(), |n| n.short());
        out.say(format!(
            "{} → {shown}  tags {}",
            id.short(),
            if meta.tags.is_empty() {
                "(none)".to_string()
            } else {
                meta.tags.join(",")
            }
        ));
        changed.push(json!({
            "old": id.to_hex(),
            "new": new.map(|n| n.to_hex()),
            "tags": meta.tags,
        }));
    }
    drop(progress);
    let would = if a.dry_run { "would change" } else { "changed" };
    out.say(format!(
        "{would} {}; {unchanged} already as asked",
        super::fmt::plural(changed.len() as u64, "snapshot", "snapshots")
    ));
    out.json(&json!({ "dry_run": a.dry_run, "changed": changed, "unchanged": unchanged }))?;
    Ok(exit::OK)
}
