//! `envarc backup`.

use std::path::PathBuf;

use serde_json::json;

use crate::backup::{backup as run_backup, BackupOptions};
use crate::error::exit;
use crate::pathmatch::PathMatcher;
use crate::repo::Compression;
use crate::Result;

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
    let repo = a.repo.open(g, out)?;
    let mut excludes = a.exclude.clone();
    for f in &a.exclude_file {
        excludes.extend(PathMatcher::read_file(f)?);
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
    match r.snapshot {
        Some(id) => out.say(format!(
            "snapshot {} saved{}",
            id.short(),
            r.parent
                .map(|p| format!(" (parent {})", p.short()))
                .unwrap_or_default()
        )),
        None => out.say("dry run: nothing was read or written"),
    }
    out.say(format!(
        "files: {} new, {} changed, {} unchanged; {} dirs, {} symlinks; {} skipped, {} errors",
        s.files_new, s.files_changed, s.files_unchanged, s.dirs, s.symlinks, s.skipped, s.errors
    ));
    if a.dry_run {
        out.say(format!(
            "would read {} of new or changed files",
            fmt_bytes(r.bytes_new_or_changed)
        ));
    } else {
        out.say(format!(
            "read {}, added {} in {} new chunks ({} stored), {:.1} s",
            fmt_bytes(s.bytes_read),
            fmt_bytes(s.bytes_added),
            s.chunks_added,
            fmt_bytes(s.bytes_stored),
            s.duration_ms as f64 / 1000.0
        ));
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
