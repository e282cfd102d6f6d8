//! `envarc restore`.

use std::io::Write;
use std::path::PathBuf;

use base64::Engine;
use serde_json::json;

use envarc::error::exit;
use envarc::repo::EntryKind;
use envarc::restore::{restore as run_restore, Action, RestoreOptions, RestoreReport};
use envarc::{Error, Result};

use super::fmt::{fmt_bytes, plural};
use super::repo::RepoArgs;
use super::{GlobalArgs, Output};

#[derive(clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Snapshot: `latest`, an ID or a unique ID prefix.
    pub snapshot: String,
    /// Folder to restore into (created if missing). Each entry goes to
    /// DIR/<its absolute path>: /home/a/x is restored as DIR/home/a/x.
    #[arg(short = 't', long, value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only entries matching GLOB (and the folders above them); same
    /// syntax as backup's --exclude; repeatable.
    #[arg(short = 'i', long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Leave out entries matching GLOB and everything below them; repeatable.
    #[arg(short = 'e', long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// What to do with entries that already exist in DIR: never replace them
    /// (re-running an interrupted restore continues it), replace files whose
    /// size or mtime differ (if-changed), or replace every file and symlink
    /// (always). Folders are never removed.
    #[arg(long, default_value = "never", value_name = "WHEN", value_parser = ["never", "if-changed", "always"])]
    pub overwrite: String,
    /// List what would be restored; write nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Keep setuid and setgid bits although this restore does not restore
    /// owners (it does not run as root); by default they are dropped, as tar
    /// does, so no program runs with the restoring user's rights unasked.
    #[arg(long)]
    pub keep_setuid: bool,
}

fn kind_name(k: EntryKind) -> &'static str {
    match k {
        EntryKind::File => "file",
        EntryKind::Dir => "dir",
        EntryKind::Symlink => "symlink",
    }
}

fn action_name(a: Action) -> &'static str {
    match a {
        Action::Create => "new",
        Action::Replace => "replace",
        Action::Keep => "keep",
    }
}

pub fn restore(out: &Output, g: &GlobalArgs, a: RestoreArgs) -> Result<i32> {
    let repo = a.repo.open(g, out)?;
    let id = repo.resolve_snapshot(&a.snapshot)?;
    let opts = RestoreOptions {
        target: a.target.clone(),
        include: a.include.clone(),
        exclude: a.exclude.clone(),
        overwrite: a.overwrite.parse().map_err(Error::Usage)?,
        dry_run: a.dry_run,
        keep_setuid: a.keep_setuid,
    };
    let progress = out.progress();
    let r = run_restore(&repo, &id, &opts, progress.as_ref())?;
    if out.json {
        print_json(out, &r)?;
    } else {
        if a.dry_run && !out.quiet {
            print_plan(&r)?;
        }
        print_summary(out, &r, &a.overwrite);
    }
    let nothing = r.files + r.dirs + r.symlinks + r.skipped == 0 && r.errors.is_empty();
    if !a.include.is_empty() && nothing {
        // A typo in --include must not pass for a successful restore.
        out.alert(format!(
            "--include {} matched nothing in snapshot {}; `envarc ls -r REPO {}` lists its paths (each entry is stored under its absolute path)",
            a.include.join(" --include "),
            &r.snapshot[..8.min(r.snapshot.len())],
            &r.snapshot[..8.min(r.snapshot.len())],
        ));
        return Ok(exit_code(&r).max(exit::PARTIAL));
    }
    Ok(exit_code(&r))
}

/// 0 when everything selected was restored; 4 when any entry failed for
/// an integrity reason; 3 when entries failed otherwise.
fn exit_code(r: &RestoreReport) -> i32 {
    if r.errors.iter().any(|e| e.integrity) {
        exit::INTEGRITY
    } else if r.errors.is_empty() {
        exit::OK
    } else {
        exit::PARTIAL
    }
}

fn print_plan(r: &RestoreReport) -> Result<()> {
    let stdout = std::io::stdout();
    let mut o = std::io::BufWriter::new(stdout.lock());
    let io_err = |e| Error::io("writing to stdout", e);
    for p in &r.planned {
        write!(
            o,
            "{:<8} {:<8} {:>12} ",
            action_name(p.action),
            kind_name(p.kind),
            p.size
        )
        .map_err(io_err)?;
        // Raw bytes: a non-UTF-8 name prints exactly as it is.
        o.write_all(&p.path).map_err(io_err)?;
        o.write_all(b"\n").map_err(io_err)?;
    }
    o.flush().map_err(io_err)
}

/// The first line of `envarc restore`'s summary (and of the demo's restores).
pub(super) fn summary_line(r: &RestoreReport) -> String {
    let verb = if r.dry_run {
        "would restore"
    } else {
        "restored"
    };
    format!(
        "{verb} {} ({}), {}, {} into {} in {:.1} s",
        plural(r.files, "file", "files"),
        fmt_bytes(r.bytes),
        plural(r.dirs, "dir", "dirs"),
        plural(r.symlinks, "symlink", "symlinks"),
        r.target.display(),
        r.duration_ms as f64 / 1000.0
    )
}

fn print_summary(out: &Output, r: &RestoreReport, overwrite: &str) {
    out.say(summary_line(r));
    if r.skipped > 0 {
        let advice = match overwrite {
            "never" => "pass --overwrite if-changed or always to replace them",
            // if-changed kept only entries whose size and mtime match.
            _ => "their size and mtime match the snapshot; pass --overwrite always to replace them anyway",
        };
        out.say(format!(
            "{} {} as they are; {advice}",
            plural(r.skipped, "existing entry", "existing entries"),
            match (r.dry_run, r.skipped == 1) {
                (true, _) => "would be left",
                (false, true) => "was left",
                (false, false) => "were left",
            }
        ));
    }
    if !r.errors.is_empty() {
        let integrity = r.errors.iter().filter(|e| e.integrity).count();
        out.failed(
            r.errors.len(),
            format!(
                ": not restored ({integrity} of them because of damaged or unsafe data; `envarc verify --read-data` tells more); each is named above"
            ),
        );
    }
}

fn print_json(out: &Output, r: &RestoreReport) -> Result<()> {
    let mut v = json!({
        "snapshot": r.snapshot,
        "target": r.target,
        "dry_run": r.dry_run,
        "files": r.files,
        "dirs": r.dirs,
        "symlinks": r.symlinks,
        "bytes": r.bytes,
        "skipped": r.skipped,
        "error_count": r.errors.len(),
        "errors": r.errors,
        "duration_s": r.duration_ms as f64 / 1000.0,
    });
    if r.dry_run {
        let plan: Vec<_> = r
            .planned
            .iter()
            .map(|p| {
                let mut e = json!({
                    "path": String::from_utf8_lossy(&p.path),
                    "type": kind_name(p.kind),
                    "action": action_name(p.action),
                    "size": p.size,
                });
                if std::str::from_utf8(&p.path).is_err() {
                    e["path_base64"] = base64::engine::general_purpose::STANDARD
                        .encode(&p.path)
                        .into();
                }
                e
            })
            .collect();
        v["plan"] = plan.into();
    }
    out.json(&v)
}

#[cfg(test)]
mod tests {
    use envarc::restore::Overwrite;

    #[test]
    fn overwrite_names_parse() {
        assert_eq!("never".parse::<Overwrite>(), Ok(Overwrite::Never));
        assert_eq!("if-changed".parse::<Overwrite>(), Ok(Overwrite::IfChanged));
        assert_eq!("always".parse::<Overwrite>(), Ok(Overwrite::Always));
        assert!("sometimes".parse::<Overwrite>().is_err());
    }
}
