//! `envarc forget` and `envarc prune`.

use std::time::Duration;

use serde_json::json;

use super::fmt::{fmt_bytes, fmt_duration, parse_duration, plural};
use super::repo::RepoArgs;
use super::{GlobalArgs, Output};
use envarc::error::exit;
use envarc::maintain::forget::{
    forget as run_forget, forget_named as run_forget_named, ForgetReport,
};
use envarc::maintain::prune::{prune as run_prune, PruneOptions, PruneReport};
use envarc::maintain::retention::{Count, Policy};
use envarc::repo::{Id, Repository, SnapshotMeta};
use envarc::Result;

#[derive(clap::Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Snapshots to remove (IDs, unique prefixes or `latest`), instead of a
    /// --keep-* policy. All are checked before any is removed.
    #[arg(value_name = "SNAP")]
    pub snapshots: Vec<String>,
    /// Keep the N most recent snapshots ('unlimited': all).
    #[arg(long, value_name = "N")]
    pub keep_last: Option<Count>,
    /// Keep the most recent snapshot of each of the last N hours that have one.
    #[arg(long, value_name = "N")]
    pub keep_hourly: Option<Count>,
    /// Keep the most recent snapshot of each of the last N days that have one.
    #[arg(long, value_name = "N")]
    pub keep_daily: Option<Count>,
    /// Keep the most recent snapshot of each of the last N weeks (ISO weeks,
    /// Monday to Sunday) that have one.
    #[arg(long, value_name = "N")]
    pub keep_weekly: Option<Count>,
    /// Keep the most recent snapshot of each of the last N months that have one.
    #[arg(long, value_name = "N")]
    pub keep_monthly: Option<Count>,
    /// Keep the most recent snapshot of each of the last N years that have one.
    #[arg(long, value_name = "N")]
    pub keep_yearly: Option<Count>,
    /// Keep every snapshot with these tags (TAG[,TAG...]: all of them; '' for
    /// untagged snapshots); repeatable.
    #[arg(long, value_name = "TAGS")]
    pub keep_tag: Vec<String>,
    /// Keep every snapshot taken less than DURATION before the newest of its
    /// group (e.g. 7d, 2w, 1y = 365 days, 1d12h; m is minutes).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keep_within: Option<Duration>,
    /// Which snapshots the policy considers (others are left alone).
    #[command(flatten)]
    pub filter: super::filter::SnapshotFilter,
    /// Run prune afterwards.
    #[arg(long)]
    pub prune: bool,
    /// Show what would be removed; remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// With --prune: leave files younger than this alone.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub grace: Duration,
}

#[derive(clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Show what would be removed; remove nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Leave packs and temporary files younger than this alone, so that a
    /// backup running where its lock cannot be seen is never robbed.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub grace: Duration,
}

fn print_forget(out: &Output, r: &ForgetReport, metas: &[(Id, SnapshotMeta)]) {
    let time = |id: &Id| {
        metas
            .iter()
            .find(|(i, _)| i == id)
            .map(|(_, m)| m.time.to_rfc3339())
            .unwrap_or_default()
    };
    for g in &r.groups {
        out.say(format!(
            "snapshots of host {}, paths {}:",
            g.host,
            g.paths.join(" ")
        ));
        out.say(format!(
            "keep {}:",
            plural(g.keep.len() as u64, "snapshot", "snapshots")
        ));
        for (id, why) in &g.keep {
            out.say(format!(
                "  {}  {}  {}",
                id.short(),
                time(id),
                why.join(", ")
            ));
        }
        let verb = if r.dry_run { "would remove" } else { "remove" };
        out.say(format!(
            "{verb} {}:",
            plural(g.remove.len() as u64, "snapshot", "snapshots")
        ));
        for id in &g.remove {
            out.say(format!("  {}  {}", id.short(), time(id)));
        }
    }
    for u in &r.unreadable {
        out.warn(u);
    }
}

fn print_prune(out: &Output, r: &PruneReport, grace: Duration) {
    let would = if r.dry_run { "would " } else { "" };
    out.say(format!(
        "prune: {}; in use {} ({}), unused {} ({})",
        plural(r.snapshots, "snapshot", "snapshots"),
        plural(r.chunks_used, "chunk", "chunks"),
        fmt_bytes(r.bytes_used),
        plural(r.chunks_unused, "chunk", "chunks"),
        fmt_bytes(r.bytes_unused)
    ));
    out.say(format!(
        "  {would}delete {} and repack {} ({} copied); {would}remove {} no index lists and {}",
        plural(r.packs_deleted, "pack", "packs"),
        plural(r.packs_repacked, "pack", "packs"),
        fmt_bytes(r.bytes_repacked),
        plural(r.unindexed_packs_deleted, "pack", "packs"),
        plural(
            r.temporary_files_deleted,
            "temporary file",
            "temporary files"
        ),
    ));
    out.say(format!("  {would}free {}", fmt_bytes(r.bytes_freed)));
    if r.packs_kept_mostly_used > 0 {
        out.say(format!(
            "  kept {} unused in {}: mostly in use, not worth repacking yet",
            fmt_bytes(r.bytes_kept_mostly_used),
            plural(r.packs_kept_mostly_used, "pack", "packs")
        ));
    }
    let young = [
        (
            r.packs_kept_recent,
            "pack with unused data",
            "packs with unused data",
        ),
        (
            r.unindexed_packs_kept_recent,
            "pack no index lists",
            "packs no index lists",
        ),
        (
            r.temporary_files_kept_recent,
            "temporary file",
            "temporary files",
        ),
    ];
    let young: Vec<String> = young
        .iter()
        .filter(|(n, ..)| *n > 0)
        .map(|(n, one, many)| plural(*n, one, many))
        .collect();
    if !young.is_empty() {
        // Why `free` may read 0 B right after an interrupted backup.
        out.say(format!(
            "  kept {} ({}): younger than the grace period ({}), as a running backup may still need them; freeable in {} (a prune then, or `--grace 0` when no backup runs)",
            young.join(", "),
            fmt_bytes(r.bytes_kept_recent),
            fmt_duration(grace),
            approx(r.kept_recent_freeable_in_s),
        ));
    }
    if !r.missing_packs.is_empty() {
        out.warn(format!(
            "{} listed in the index missing from data/; run `envarc verify`",
            plural(r.missing_packs.len() as u64, "pack is", "packs are")
        ));
    }
    for f in &r.failed {
        out.warn(format!("not repacked: {f}"));
    }
}

fn do_prune(
    out: &Output,
    repo: &Repository,
    dry_run: bool,
    grace: Duration,
) -> Result<(PruneReport, i32)> {
    let progress = out.progress();
    let opts = PruneOptions {
        dry_run,
        grace,
        ..Default::default()
    };
    let r = run_prune(repo, &opts, progress.as_ref())?;
    let code = if r.failed.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    };
    Ok((r, code))
}

fn policy_of(a: &ForgetArgs) -> Policy {
    Policy {
        last: a.keep_last,
        hourly: a.keep_hourly,
        daily: a.keep_daily,
        weekly: a.keep_weekly,
        monthly: a.keep_monthly,
        yearly: a.keep_yearly,
        tags: a
            .keep_tag
            .iter()
            .map(|t| t.split(',').map(|s| s.trim().to_string()).collect())
            .collect(),
        within: a.keep_within,
    }
}

pub fn forget(out: &Output, g: &GlobalArgs, a: ForgetArgs) -> Result<i32> {
    let policy = policy_of(&a);
    if !a.snapshots.is_empty() {
        return forget_named(out, g, a, &policy);
    }
    let filter = a.filter.build()?;
    let repo = a.repo.open(g, out)?;
    let metas = repo.snapshots_lenient()?.0;
    let progress = out.progress();
    let r = run_forget(
        &repo,
        &policy,
        &|m| filter.matches(m),
        a.dry_run,
        progress.as_ref(),
    )?;
    drop(progress);
    if r.groups.is_empty() && !filter.is_empty() {
        // A filter that matches nothing would otherwise end in silence.
        out.alert(format!(
            "no snapshot matches {}: nothing to remove (list them with `envarc snapshots`)",
            filter.describe()
        ));
    }
    print_forget(out, &r, &metas);
    finish(out, &repo, &a, json!(r))
}

/// The end of every forget: the prune it asked for, the JSON, the exit code.
fn finish(out: &Output, repo: &Repository, a: &ForgetArgs, r: serde_json::Value) -> Result<i32> {
    let mut code = exit::OK;
    let mut pruned = None;
    if a.prune {
        let (p, c) = do_prune(out, repo, a.dry_run, a.grace)?;
        print_prune(out, &p, a.grace);
        code = c;
        pruned = Some(p);
    }
    out.json(&json!({ "forget": r, "prune": pruned }))?;
    Ok(code)
}

/// `forget SNAP…`: the named snapshots, with nothing of a policy.
fn forget_named(out: &Output, g: &GlobalArgs, a: ForgetArgs, policy: &Policy) -> Result<i32> {
    if !policy.is_empty() || !a.filter.is_empty() {
        return Err(envarc::Error::Usage(
            "give either snapshots to remove or a --keep-* policy (with --host/--tag/--path), \
             not both (nothing was removed)"
                .into(),
        ));
    }
    let repo = a.repo.open(g, out)?;
    let progress = out.progress();
    let r = run_forget_named(&repo, &a.snapshots, a.dry_run, progress.as_ref())?;
    drop(progress);
    let verb = if r.dry_run { "would remove" } else { "removed" };
    for (id, meta) in &r.snapshots {
        let about = match meta {
            Some(m) => format!(
                "{}  host {}  {}",
                m.time.to_rfc3339(),
                m.host,
                m.paths
                    .iter()
                    .map(|p| super::fmt::lossy(p))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
            None => "(cannot be read)".into(),
        };
        out.say(format!("{verb} snapshot {}  {about}", id.short()));
    }
    finish(out, &repo, &a, json!(r))
}

pub fn prune(out: &Output, g: &GlobalArgs, a: PruneArgs) -> Result<i32> {
    let repo = a.repo.open(g, out)?;
    let (r, code) = do_prune(out, &repo, a.dry_run, a.grace)?;
    out.json(&r)?;
    print_prune(out, &r, a.grace);
    Ok(code)
}

/// A wait as a person reads it: seconds under two minutes, else whole
/// minutes rounded up (so "freeable in 59m" is never early).
fn approx(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs}s"),
        s => format!("{}m", s.div_ceil(60)),
    }
}
