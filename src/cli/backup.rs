//! `envarc backup`.

use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use serde_json::json;

use envarc::backup::{backup as run_backup, BackupOptions, BackupReport};
use envarc::error::exit;
use envarc::pathmatch::PathMatcher;
use envarc::repo::Compression;
use envarc::Result;

use super::fmt::fmt_bytes;
use super::repo::RepoArgs;
use super::{GlobalArgs, Output};

#[derive(clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Files and folders to back up (stored as absolute paths).
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Leave out entries matching GLOB: without a `/` it matches a name at any
    /// depth (`*.tmp`), with one the whole absolute path (`/home/*/.cache`).
    #[arg(short = 'e', long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Read --exclude patterns from FILE, one per line (`#` starts a comment).
    #[arg(long, value_name = "FILE")]
    pub exclude_file: Vec<PathBuf>,
    /// Stay on the file system of each PATH (do not enter mount points).
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Tag the snapshot; repeatable.
    #[arg(long, value_name = "TAG")]
    pub tag: Vec<String>,
    /// Host name to record (default: this machine's).
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Compare with this snapshot (`latest`, an ID or prefix) instead of the
    /// latest one of the same host and paths.
    #[arg(long, value_name = "SNAP")]
    pub parent: Option<String>,
    /// Compression of new chunks: off, auto (zstd where it pays) or max
    /// (default: the repository's, set at init).
    #[arg(long, value_name = "MODE")]
    pub compression: Option<Compression>,
    /// Only walk and compare with the parent: read no file, write nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

pub fn backup(out: &Output, g: &GlobalArgs, a: BackupArgs) -> Result<i32> {
    let (repo, keyring) = a.repo.open_with_keyring(g, out)?;
    let mut excludes = a.exclude.clone();
    for f in &a.exclude_file {
        excludes.extend(PathMatcher::read_file(f)?);
    }
    if !a.dry_run {
        warn_secrets_inside(out, g, keyring.is_some(), &a.paths, &excludes)?;
    }
    let opts = BackupOptions {
        paths: a.paths.clone(),
        excludes,
        one_file_system: a.one_file_system,
        tags: a.tag.clone(),
        host: a.host.clone(),
        parent: a.parent.clone(),
        compression: a.compression,
        dry_run: a.dry_run,
        skip_dir: a.repo.local_dir_id(),
    };
    let progress = out.progress();
    let r = run_backup(&repo, &opts, progress.as_ref())?;
    let s = &r.summary;
    out.json(&json!({
        "snapshot_id": r.snapshot.map(|i| i.to_hex()),
        "parent": r.parent.map(|i| i.to_hex()),
        "dry_run": a.dry_run,
        "files_new": s.files_new,
        "files_changed": s.files_changed,
        "files_unchanged": s.files_unchanged,
        "dirs": s.dirs,
        "symlinks": s.symlinks,
        "skipped": s.skipped,
        "errors": s.errors,
        "error_messages": r.errors,
        "total_files": s.files,
        "total_bytes": s.total_bytes,
        "bytes_new_or_changed": r.bytes_new_or_changed,
        "bytes_read": s.bytes_read,
        "bytes_stored": s.bytes_stored,
        "chunks_added": s.chunks_added,
        "bytes_added": s.bytes_added,
        "chunks_deduplicated": s.chunks_deduplicated,
        "data_keys": s.data_keys,
        "duration_s": s.duration_ms as f64 / 1000.0,
    }))?;
    for line in summary_lines(&r, a.dry_run) {
        out.say(line);
    }
    if r.errors.is_empty() {
        Ok(exit::OK)
    } else {
        let detail = match r.snapshot {
            Some(_) => ": not backed up (each named above); the snapshot was saved without them",
            None => ": could not be read (each named above)",
        };
        out.failed(r.errors.len(), detail);
        Ok(exit::PARTIAL)
    }
}

/// The keyring in use and the files that unlock it, when they lie inside a
/// path this backup saves and no --exclude leaves them out: a copy inside
/// the repository they unlock is no copy at all (it cannot be decrypted
/// without them), and restoring that folder later would put back an old
/// keyring over the current one, without the backing keys made since.
/// Shown even under -q: a nightly job's journal is where it is read.
/// What `envarc backup` prints when it ends (and the demo, after each of
/// its backups).
pub(super) fn summary_lines(r: &BackupReport, dry_run: bool) -> Vec<String> {
    let s = &r.summary;
    let mut lines =
        vec![
            match r.snapshot {
                Some(id) => format!(
                    "snapshot {} saved{}",
                    id.short(),
                    r.parent
                        .map(|p| format!(" (parent {})", p.short()))
                        .unwrap_or_default()
                ),
                None => "dry run: nothing was read or written".into(),
            },
            format!(
            "files: {} new, {} changed, {} unchanged; {} dirs, {} symlinks; {} skipped, {} errors",
            s.files_new, s.files_changed, s.files_unchanged, s.dirs, s.symlinks, s.skipped, s.errors
        ),
        ];
    lines.push(if dry_run {
        format!(
            "would read {} of new or changed files",
            fmt_bytes(r.bytes_new_or_changed)
        )
    } else {
        format!(
            "read {}, added {} in {} new chunks ({} stored), {:.1} s",
            fmt_bytes(s.bytes_read),
            fmt_bytes(s.bytes_added),
            s.chunks_added,
            fmt_bytes(s.bytes_stored),
            s.duration_ms as f64 / 1000.0
        )
    });
    lines
}

fn warn_secrets_inside(
    out: &Output,
    g: &GlobalArgs,
    keyring_in_use: bool,
    paths: &[PathBuf],
    excludes: &[String],
) -> Result<()> {
    use envarc::backup::walk::clean_absolute;
    let mut secrets = Vec::new();
    if keyring_in_use {
        secrets.push((
            "the keyring",
            super::keyspec::keyring_open::keyring_path(g)?,
        ));
        if let Some(p) = &g.keyring_key_file {
            secrets.push(("the keyring's key file", p.clone()));
        }
        if let Some(p) = &g.passphrase_file {
            secrets.push(("the keyring's passphrase file", p.clone()));
        }
    }
    let matcher = PathMatcher::new("--exclude", excludes)?;
    for (what, path) in secrets {
        let names = spellings(&clean_absolute(&path)?);
        for root in paths {
            let roots = spellings(&clean_absolute(root)?);
            let inside = names.iter().find(|s| {
                roots.iter().any(|r| s.starts_with(r)) && !matcher.covers(s.as_os_str().as_bytes())
            });
            if let Some(s) = inside {
                out.alert(format!(
                    "{what} {} is inside {}, which this backup saves: a copy in the repository it \
                     unlocks cannot be decrypted without it, and restoring {} later would put back \
                     an old copy over the current one; add `--exclude {}` and keep a copy of the \
                     keyring and what unlocks it somewhere else (another machine, a password manager)",
                    path.display(),
                    root.display(),
                    root.display(),
                    s.display()
                ));
                break;
            }
        }
    }
    Ok(())
}

/// A path as the user named it and, when it exists, with symlinks resolved
/// (the walk saves names as given, but `/etc` may be reached as a link).
fn spellings(p: &std::path::Path) -> Vec<PathBuf> {
    let mut v = vec![p.to_path_buf()];
    if let Ok(c) = p.canonicalize() {
        if c != p {
            v.push(c);
        }
    }
    v
}
