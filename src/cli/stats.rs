//! `envarc stats`: the blast radius of every key version.

use serde_json::json;

use super::fmt::{fmt_bytes, plural};
use super::keyspec::opened::OpenedRepo;
use super::repo::RepoArgs;
use super::{GlobalArgs, Output};
use envarc::error::exit;
use envarc::maintain::stats::{stats as compute, KeyFacts, Stats, VersionStats};
use envarc::maintain::KeyVersion;
use envarc::Result;

/// Every option of `stats` (one struct, so that other modes can join it).
#[derive(clap::Args)]
// With --recursive no repository is needed (and any is ignored).
#[command(mut_arg("repo", |a| a
    .required(false)
    .required_unless_present("recursive")
    .default_value_if("recursive", clap::builder::ArgPredicate::IsPresent, Some("."))))]
pub struct StatsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Instead of a repository, a folder written by `encrypt --recursive`:
    /// files and bytes per key version, from the headers alone.
    #[arg(long, value_name = "DIR")]
    pub recursive: Option<std::path::PathBuf>,
}

/// "in 3 snapshots (1a2b3c4d, 5e6f7a8b, 9c0d1e2f)", at most 4 IDs shown.
fn snapshot_list(ids: &[String]) -> String {
    if ids.is_empty() {
        return "in no snapshot".into();
    }
    let mut shown: Vec<&str> = ids.iter().take(4).map(|s| &s[..8.min(s.len())]).collect();
    if ids.len() > 4 {
        shown.push("…");
    }
    format!(
        "in {} ({})",
        plural(ids.len() as u64, "snapshot", "snapshots"),
        shown.join(", ")
    )
}

fn version_name(v: &VersionStats) -> String {
    let mut name = match v.key.version {
        Some(n) => format!("v{n}"),
        None => "(no versions)".into(),
    };
    if v.current {
        name.push_str(" (current)");
    }
    name
}

fn version_line(v: &VersionStats) -> String {
    let mut also = Vec::new();
    if v.manifests > 0 {
        also.push(plural(v.manifests, "manifest", "manifests"));
    }
    if v.index_files > 0 {
        also.push(plural(v.index_files, "index file", "index files"));
    }
    if v.config {
        also.push("the config".into());
    }
    if !v.retired.is_empty() {
        also.push(format!("retired by the {}", v.retired.join(" and the ")));
    }
    format!(
        "  {:<14} {:>11} {:>10} {:>10}  {}{}",
        version_name(v),
        plural(v.chunks, "chunk", "chunks"),
        fmt_bytes(v.chunk_bytes),
        plural(v.files, "file", "files"),
        snapshot_list(&v.snapshots),
        if also.is_empty() {
            String::new()
        } else {
            format!("; {}", also.join(", "))
        }
    )
}

/// The human-readable report (also shown by `envarc demo`).
pub fn render(s: &Stats, label: &dyn Fn(&KeyVersion) -> String) -> Vec<String> {
    let mut lines = vec![format!(
        "{} in {}; per key version, what its material would expose \
         (chunks, their bytes, files that need one):",
        plural(s.chunks, "stored chunk", "stored chunks"),
        plural(s.snapshots, "snapshot", "snapshots")
    )];
    let mut last_key: Option<&KeyVersion> = None;
    for v in &s.versions {
        if !last_key.is_some_and(|k| k.same_key(&v.key)) {
            lines.push(label(&v.key));
            last_key = Some(&v.key);
        }
        lines.push(version_line(v));
    }
    if s.duplicated > 0 {
        lines.push(format!(
            "{} stored twice (an interrupted rewrap, reencrypt or prune); `envarc prune` keeps one copy",
            plural(s.duplicated, "chunk is", "chunks are")
        ));
    }
    lines
}

pub fn stats(out: &Output, g: &GlobalArgs, a: StatsArgs) -> Result<i32> {
    if let Some(dir) = &a.recursive {
        return super::dircrypt::stats(out, dir);
    }
    let opened = OpenedRepo::open(&a.repo, g, out)?;
    let current = opened.current(&a.repo, out);
    let keyring_retired = opened.keyring_retired();
    let is_current = |kv: &KeyVersion| current.contains(kv);
    let facts = KeyFacts {
        is_current: &is_current,
        keyring_retired: &keyring_retired,
    };
    let progress = out.progress();
    let s = compute(&opened.repo, &facts, progress.as_ref())?;
    drop(progress);
    for p in &s.problems {
        out.warn(p);
    }
    out.json(&json!({
        "repository": opened.repo.config().id,
        "current": current,
        "chunks": s.chunks,
        "duplicated": s.duplicated,
        "snapshots": s.snapshots,
        "versions": s.versions.iter().map(|v| {
            let mut j = serde_json::to_value(v).expect("plain data");
            j["label"] = opened.label(&v.key).into();
            j
        }).collect::<Vec<_>>(),
        "problems": s.problems,
    }))?;
    for l in render(&s, &|kv| opened.label(kv)) {
        out.say(l);
    }
    Ok(if s.problems.is_empty() {
        exit::OK
    } else {
        exit::INTEGRITY
    })
}
