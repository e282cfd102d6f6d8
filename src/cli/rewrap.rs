//! `envarc rewrap` and `envarc reencrypt`.

use super::maint_keys::Opened;
use super::repo::{fmt_bytes, RepoArgs};
use super::{GlobalArgs, Output};
use crate::error::exit;
use crate::maintain::reencrypt::reencrypt as run_reencrypt;
use crate::maintain::rewrap::{rewrap as run_rewrap, RewrapOptions};
use crate::maintain::KeyVersion;
use crate::{Error, Result};

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

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

pub fn rewrap(out: &Output, g: &GlobalArgs, a: RewrapArgs) -> Result<i32> {
    let mut opened = Opened::open(&a.repo, g)?;
    let rewrapper = opened.rewrapper(&a.repo)?;
    let progress = out.progress();
    let opts = RewrapOptions {
        dry_run: a.dry_run,
        ..Default::default()
    };
    let r = run_rewrap(
        &mut opened.repo,
        rewrapper.as_ref(),
        &opts,
        progress.as_ref(),
    )?;
    out.json(&r)?;
    let would = if a.dry_run {
        "would rewrap"
    } else {
        "rewrapped"
    };
    out.say(format!(
        "{would} {} ({} stored; bodies unchanged, no plaintext touched) to {}",
        plural(r.objects_rewrapped, "message", "messages"),
        fmt_bytes(r.bytes_rewrapped),
        r.target
    ));
    let mut also = vec![format!(
        "{} already current",
        plural(r.objects_current, "message", "messages")
    )];
    if r.objects_copied > 0 {
        also.push(format!(
            "{} copied unchanged from the same packs",
            r.objects_copied
        ));
    }
    if r.copies_dropped > 0 {
        also.push(format!(
            "{} dropped",
            plural(r.copies_dropped, "duplicate copy", "duplicate copies")
        ));
    }
    if r.snapshots_rewrapped > 0 {
        also.push(format!(
            "{} rewrapped in place",
            plural(
                r.snapshots_rewrapped,
                "snapshot manifest",
                "snapshot manifests"
            )
        ));
    }
    if r.index_files_rewrapped > 0 {
        also.push(format!(
            "{} rewrapped in place",
            plural(r.index_files_rewrapped, "index file", "index files")
        ));
    }
    if r.key_check_rewrapped {
        also.push("the key check renewed".into());
    }
    if !a.dry_run {
        also.push(format!(
            "{} written, {} deleted",
            plural(r.packs_written, "pack", "packs"),
            r.packs_deleted
        ));
    }
    out.say(format!("  {}", also.join("; ")));
    for f in &r.failed {
        out.warn(format!("not rewrapped: {f}"));
    }
    if r.failed.is_empty() {
        Ok(exit::OK)
    } else {
        out.warn(format!(
            "{} could not be rewrapped and keep their old wrapping; `envarc verify` tells more",
            plural(r.failed.len() as u64, "message", "messages")
        ));
        Ok(exit::PARTIAL)
    }
}

pub fn reencrypt(out: &Output, g: &GlobalArgs, a: ReencryptArgs) -> Result<i32> {
    let mut opened = Opened::open(&a.repo, g)?;
    let target = KeyVersion::parse_spec(&a.key_version, |k| opened.resolve_key(k))?;
    if let (Some(kr), Some(v)) = (&opened.keyring, target.version) {
        if target.provider == crate::maintain::keys::KEYRING
            && kr.get(&target.key)?.version(v).is_none()
        {
            return Err(Error::Usage(format!(
                "{} has no backing key v{v}; see its versions with `envarc key rotations {}`",
                opened.label(&target),
                target.key
            )));
        }
    }
    let current = opened.current(&a.repo);
    let is_current = |kv: &KeyVersion| current.as_ref() == Some(kv);
    let progress = out.progress();
    let label = opened.label(&target);
    let r = run_reencrypt(
        &mut opened.repo,
        &target,
        &is_current,
        a.dry_run,
        progress.as_ref(),
    )?;
    out.json(&r)?;
    let v = target.version.unwrap_or(0);
    let would = if a.dry_run {
        "would re-encrypt"
    } else {
        "re-encrypted"
    };
    out.say(format!(
        "{would} {} ({}) that {label} v{v} protected, under fresh data keys{}",
        plural(r.objects_reencrypted, "message", "messages"),
        fmt_bytes(r.bytes_reencrypted),
        current
            .as_ref()
            .map(|c| format!(" wrapped by v{}", c.version.unwrap_or(0)))
            .unwrap_or_default()
    ));
    let mut also = vec![format!(
        "{} rewritten to point at them (snapshot IDs unchanged)",
        plural(r.snapshots_rewritten, "snapshot", "snapshots")
    )];
    if r.index_files_rewritten > 0 {
        also.push(format!(
            "{} renewed",
            plural(r.index_files_rewritten, "index file", "index files")
        ));
    }
    if r.key_check_renewed {
        also.push("the key check renewed".into());
    }
    if r.copies_dropped > 0 {
        also.push(format!(
            "{} dropped",
            plural(r.copies_dropped, "other old copy", "other old copies")
        ));
    }
    if !a.dry_run {
        also.push(format!(
            "{} with old messages deleted",
            plural(r.packs_deleted, "pack", "packs")
        ));
    }
    out.say(format!("  {}", also.join("; ")));
    if a.dry_run {
        return Ok(exit::OK);
    }
    for f in &r.failed {
        out.warn(format!("not re-encrypted: {f}"));
    }
    if r.remaining == 0 && r.failed.is_empty() {
        out.say(format!(
            "nothing in this repository is wrapped by v{v} any more: it no longer needs that backing key"
        ));
        Ok(exit::OK)
    } else {
        out.warn(format!(
            "{} still wrapped by v{v}; run `envarc verify` and then reencrypt again",
            plural(r.remaining, "message is", "messages are")
        ));
        Ok(exit::PARTIAL)
    }
}
