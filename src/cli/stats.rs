//! `envarc stats`: the blast radius of every key version.

use serde_json::json;

use super::maint_keys::Opened;
use super::repo::{fmt_bytes, RepoArgs};
use super::{GlobalArgs, Output};
use crate::error::exit;
use crate::maintain::stats::{stats as compute, Stats, VersionStats};
use crate::maintain::KeyVersion;
use crate::Result;

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

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
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

fn version_line(v: &VersionStats) -> String {
    let kv = v.key.as_ref().expect("stats name each key");
    let name = match kv.version {
        Some(n) => format!("v{n}"),
        None => "(no versions)".into(),
    };
    let mut also = Vec::new();
    if v.manifests > 0 {
        also.push(plural(v.manifests, "manifest", "manifests"));
    }
    if v.index_files > 0 {
        also.push(plural(v.index_files, "index file", "index files"));
    }
    if v.key_check {
        also.push("the key check".into());
    }
    format!(
        "  {:<14} {:>12}  {:>10}  {}{}",
        format!("{name}{}", if v.current { " (current)" } else { "" }),
        plural(v.objects, "file", "files"),
        fmt_bytes(v.plaintext_bytes),
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
        "{} in {}; per key version, what its material would expose:",
        plural(s.objects, "stored file content", "stored file contents"),
        plural(s.snapshots, "snapshot", "snapshots")
    )];
    let mut last_key: Option<&KeyVersion> = None;
    for v in &s.versions {
        let kv = v.key.as_ref().expect("stats name each key");
        if !last_key.is_some_and(|k| k.same_key(kv)) {
            lines.push(label(kv));
            last_key = Some(kv);
        }
        lines.push(version_line(v));
    }
    if s.duplicated > 0 {
        lines.push(format!(
            "{} stored twice (an interrupted rewrap or prune); `envarc rewrap` or `envarc prune` keeps one copy",
            plural(s.duplicated, "message is", "messages are")
        ));
    }
    lines
}

pub fn stats(out: &Output, g: &GlobalArgs, a: StatsArgs) -> Result<i32> {
    if let Some(dir) = &a.recursive {
        return super::dircrypt::stats(out, dir);
    }
    let opened = Opened::open(&a.repo, g)?;
    let current = opened.current(&a.repo);
    let is_current = |kv: &KeyVersion| current.as_ref() == Some(kv);
    let progress = out.progress();
    let s = compute(&opened.repo, &is_current, progress.as_ref())?;
    for p in &s.problems {
        out.warn(p);
    }
    out.json(&json!({
        "repository": opened.repo.config().id,
        "current": current,
        "objects": s.objects,
        "duplicated": s.duplicated,
        "snapshots": s.snapshots,
        "versions": s.versions.iter().map(|v| {
            let mut j = serde_json::to_value(v).expect("plain data");
            j["label"] = opened.label(v.key.as_ref().expect("named")).into();
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
