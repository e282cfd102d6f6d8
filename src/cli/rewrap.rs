//! `envarc rewrap` and `envarc reencrypt`.

use super::fmt::{fmt_bytes, plural};
use super::keyspec::opened::OpenedRepo;
use super::repo::RepoArgs;
use super::{GlobalArgs, Output};
use envarc::error::exit;
use envarc::maintain::reencrypt::reencrypt as run_reencrypt;
use envarc::maintain::rekey::RekeyReport;
use envarc::maintain::rewrap::{rewrap as run_rewrap, RewrapOptions};
use envarc::maintain::KeyVersion;
use envarc::providers::ProviderKind;
use envarc::{Error, Result};

#[derive(clap::Args)]
pub struct RewrapArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Count what would be rewrapped; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(clap::Args)]
pub struct ReencryptArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The key version whose data must move: KEY/vN, KEY being alias/NAME, a
    /// key id, or transit:NAME (e.g. alias/backup/v1).
    #[arg(long, value_name = "KEY/vN")]
    pub key_version: String,
    /// Count what would be re-encrypted; change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

/// The lines both commands print after their first: what else moved.
fn details(r: &RekeyReport, dry_run: bool) -> String {
    let mut also = vec![format!(
        "needed by {} in {}",
        plural(r.files_affected, "file", "files"),
        plural(r.snapshots_affected, "snapshot", "snapshots")
    )];
    if r.chunks_copied > 0 {
        also.push(format!(
            "{} copied unchanged from the same packs",
            plural(r.chunks_copied, "other chunk", "other chunks")
        ));
    }
    if r.copies_dropped > 0 {
        also.push(format!(
            "{} dropped",
            plural(r.copies_dropped, "old extra copy", "old extra copies")
        ));
    }
    let also_msgs = [
        (r.snapshots_rewritten, "snapshot", "snapshots"),
        (r.index_files_rewritten, "index file", "index files"),
    ];
    for (n, one, many) in also_msgs {
        if n > 0 {
            also.push(format!("{} written anew", plural(n, one, many)));
        }
    }
    if r.config_renewed {
        also.push("the config sealed anew".into());
    }
    if !dry_run {
        also.push(format!(
            "{} written, {} deleted",
            plural(r.packs_written, "pack", "packs"),
            r.packs_deleted
        ));
    }
    format!("  {}", also.join("; "))
}

/// Warns about what failed; the exit code of a run with `failed` items.
fn failures(out: &Output, failed: &[String], what: &str) -> i32 {
    for f in failed {
        out.warn(format!("not {what}: {f}"));
    }
    if failed.is_empty() {
        exit::OK
    } else {
        out.warn(format!(
            "{} could not be {what} and keep their old message; `envarc verify` tells more",
            plural(failed.len() as u64, "message", "messages")
        ));
        exit::PARTIAL
    }
}

pub fn rewrap(out: &Output, g: &GlobalArgs, a: RewrapArgs) -> Result<i32> {
    let mut opened = OpenedRepo::open(&a.repo, g, out)?;
    let rewrappers = opened.rewrappers(&a.repo)?;
    let progress = out.progress();
    let opts = RewrapOptions {
        dry_run: a.dry_run,
        ..Default::default()
    };
    let r = run_rewrap(&mut opened.repo, &rewrappers, &opts, progress.as_ref())?;
    drop(progress);
    if r.work.config_renewed && !a.dry_run {
        opened.record_pin()?;
    }
    out.json(&r)?;
    let w = &r.work;
    let would = if a.dry_run { "would write" } else { "wrote" };
    out.say(format!(
        "{would} {} anew ({}; new messages, every byte read and encrypted again) with their data keys \
         wrapped by {}; {}",
        plural(w.chunks, "chunk", "chunks"),
        fmt_bytes(w.bytes),
        r.targets.join(", "),
        if a.dry_run {
            format!("{} already current", plural(w.chunks_current, "chunk", "chunks"))
        } else {
            format!(
                "{} re-wrapped once each, {} already current",
                plural(w.data_keys, "data key", "data keys"),
                plural(w.chunks_current, "chunk", "chunks")
            )
        }
    ));
    out.say(details(w, a.dry_run));
    Ok(failures(out, &w.failed, "rewrapped"))
}

/// The version `--key-version` names, checked against the keyring.
fn target(opened: &OpenedRepo, spec: &str) -> Result<KeyVersion> {
    let target = KeyVersion::parse_spec(spec, |k| opened.resolve_key(k))?;
    if let (Some(kr), Some(v)) = (&opened.keyring, target.version) {
        if target.kind() == Some(ProviderKind::Keyring) && kr.get(&target.key)?.version(v).is_none()
        {
            return Err(Error::Usage(format!(
                "{} has no backing key v{v}; see its versions with `envarc key rotations {}`",
                opened.label(&target),
                target.key
            )));
        }
    }
    Ok(target)
}

pub fn reencrypt(out: &Output, g: &GlobalArgs, a: ReencryptArgs) -> Result<i32> {
    let mut opened = OpenedRepo::open(&a.repo, g, out)?;
    let target = target(&opened, &a.key_version)?;
    let current = opened.current(&a.repo, out);
    let is_current = |kv: &KeyVersion| current.contains(kv);
    let progress = out.progress();
    let label = opened.label(&target);
    let r = run_reencrypt(
        &mut opened.repo,
        &target,
        &is_current,
        a.dry_run,
        progress.as_ref(),
    )?;
    drop(progress);
    if r.work.config_renewed && !a.dry_run {
        opened.record_pin()?;
    }
    out.json(&r)?;
    let v = target.version.unwrap_or(0);
    let would = if a.dry_run { "would write" } else { "wrote" };
    let w = &r.work;
    out.say(format!(
        "{would} {} anew ({}) that {label} v{v} protected, under {} wrapped by the current versions",
        plural(w.chunks, "chunk", "chunks"),
        fmt_bytes(w.bytes),
        if a.dry_run {
            "fresh data keys".to_string()
        } else {
            plural(w.data_keys, "fresh data key", "fresh data keys")
        }
    ));
    out.say(details(w, a.dry_run));
    if a.dry_run {
        return Ok(exit::OK);
    }
    let code = failures(out, &w.failed, "re-encrypted");
    if r.retired {
        out.say(format!(
            "nothing in this repository is wrapped by v{v} any more, and it now refuses v{v}: \
             the repository no longer needs that backing key"
        ));
        Ok(code)
    } else {
        out.warn(format!(
            "{} still wrapped by v{v}, which stays accepted; run `envarc verify`, then reencrypt again",
            plural(r.remaining, "message is", "messages are")
        ));
        Ok(exit::PARTIAL)
    }
}
