//! The restore pipeline: load the snapshot, check and select its entries
//! (plan.rs), then write under the target (safe_fs.rs) in four phases:
//!
//! 1. folders, parents first, with mode 0700 so their contents can be written;
//! 2. files, in parallel: each decrypted into a temporary file in its final
//!    folder, given its owner, mode and mtime, and renamed to its final name
//!    only after its last frame authenticated and its length matched the
//!    manifest (invariant 4); a failed file leaves nothing behind;
//! 3. symlinks, each made under a temporary name and renamed into place;
//! 4. folder owners, modes and mtimes, deepest first, so that writing a
//!    folder's contents does not change them afterwards.
//!
//! Then one `syncfs` of the target's file system makes everything durable
//! (an fsync per file would dominate a restore of many small files).
//!
//! Per-entry problems are collected and the rest is restored; the report's
//! exit code says 3 (some entries failed) or 4 (some failed authentication,
//! were missing from the repository, or were refused as unsafe: 4 wins over 3).

pub mod plan;
pub mod safe_fs;
mod write;

use std::time::Instant;

use serde::Serialize;

use crate::progress::Progress;
use crate::repo::{manifest, Entry, EntryKind, Id, LockKind, Repository};
use crate::text::{lossy, plural};
use crate::{Error, Result};

use plan::Selection;
use safe_fs::Target;
use write::{decide, write_all, Ctx, Decision};

/// What to do with an entry that already exists in the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Overwrite {
    /// Leave it as it is (the default: a restore never destroys anything, and
    /// re-running an interrupted restore continues where it stopped).
    #[default]
    Never,
    /// Replace a file unless it has the snapshot's size and mtime (a symlink
    /// unless it has the snapshot's target and mtime).
    IfChanged,
    /// Replace every file and symlink.
    Always,
}

impl std::str::FromStr for Overwrite {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "never" => Ok(Overwrite::Never),
            "if-changed" => Ok(Overwrite::IfChanged),
            "always" => Ok(Overwrite::Always),
            _ => Err(format!(
                "'{s}' is not an overwrite mode; use never, if-changed or always"
            )),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    pub target: std::path::PathBuf,
    /// Restore only entries matching one of these (and the folders above them).
    pub include: Vec<String>,
    /// Leave out entries matching one of these (and everything below them).
    pub exclude: Vec<String>,
    pub overwrite: Overwrite,
    /// Decide and list what would be done; write nothing.
    pub dry_run: bool,
    /// Keep setuid and setgid bits in a restore that does not restore owners
    /// (not root): off by default, see [`safe_fs::mode_of`].
    pub keep_setuid: bool,
}

/// One entry that was not restored.
#[derive(Clone, Debug, Serialize)]
pub struct RestoreError {
    /// The entry's path in the snapshot (lossy UTF-8).
    pub path: String,
    pub cause: String,
    /// Authentication failed, the data is missing from the repository, or
    /// the manifest entry was refused as unsafe.
    pub integrity: bool,
}

/// What happens (or, in a dry run, would happen) to one entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Nothing is there yet.
    Create,
    /// A file or symlink there is replaced; an existing folder gets the
    /// snapshot's metadata.
    Replace,
    /// What is there is left as it is.
    Keep,
}

/// An entry of a dry run's plan.
#[derive(Clone, Debug)]
pub struct Planned {
    pub path: Vec<u8>,
    pub kind: EntryKind,
    pub action: Action,
    pub size: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct RestoreReport {
    pub snapshot: String,
    pub target: std::path::PathBuf,
    pub dry_run: bool,
    /// Entries restored (or, in a dry run, to be restored).
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Plaintext bytes of the restored files.
    pub bytes: u64,
    /// Existing entries left as they are (`--overwrite`).
    pub skipped: u64,
    pub errors: Vec<RestoreError>,
    pub duration_ms: u64,
    /// The plan of a dry run, in manifest order.
    #[serde(skip)]
    pub planned: Vec<Planned>,
}

/// A selected entry and its path's components below the target.
struct Item<'a> {
    e: &'a Entry,
    comps: Vec<&'a [u8]>,
}

impl Item<'_> {
    fn parent(&self) -> &[&[u8]] {
        &self.comps[..self.comps.len().saturating_sub(1)]
    }
    fn name(&self) -> &[u8] {
        self.comps.last().copied().unwrap_or(b"")
    }
    fn fail(&self, cause: impl Into<String>, integrity: bool) -> RestoreError {
        RestoreError {
            path: lossy(&self.e.path),
            cause: cause.into(),
            integrity,
        }
    }
}

/// Restores `snapshot` as `opts` says. Fails outright only when the
/// repository, the snapshot or the target cannot be used at all.
pub fn restore(
    repo: &Repository,
    snapshot: &Id,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let started = Instant::now();
    let selection = Selection::new(&opts.include, &opts.exclude)?;
    let _lock = if opts.dry_run {
        None
    } else {
        Some(repo.lock(LockKind::Shared, progress)?)
    };
    let (meta, entries) = repo.load_snapshot(snapshot)?;
    let mut report = RestoreReport {
        snapshot: snapshot.to_hex(),
        target: opts.target.clone(),
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut ok = vec![true; entries.len()];
    for r in manifest::check_entries(&meta, &entries) {
        ok[r.idx] = false;
        let err = RestoreError {
            path: lossy(&entries[r.idx].path),
            cause: format!("refused: {}", r.reason),
            integrity: true,
        };
        progress.warn(&format!("{}: {}", err.path, err.cause));
        report.errors.push(err);
    }
    let chosen = selection.select(&entries, &ok);
    let items: Vec<Item> = entries
        .iter()
        .zip(&chosen)
        .filter(|(_, c)| **c)
        .map(|(e, _)| Item {
            e,
            comps: manifest::components(&e.path).expect("checked"),
        })
        .collect();
    if opts.dry_run {
        dry_run(&items, opts, &mut report, progress)?;
    } else {
        write(repo, &items, opts, &mut report, progress)?;
    }
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// Restores the chosen items into the target and flushes them to disk.
fn write(
    repo: &Repository,
    items: &[Item],
    opts: &RestoreOptions,
    report: &mut RestoreReport,
    progress: &dyn Progress,
) -> Result<()> {
    // A damaged index file costs only the files it lists: they fail
    // below as "not in the index", the rest is restored.
    let (index, failed) = repo.load_index_lenient()?;
    for (id, e) in failed {
        progress.warn(&format!(
            "index file {id} cannot be read, the files whose data it lists will fail: {e}"
        ));
    }
    let target = Target::open(&opts.target)
        .map_err(|e| Error::io(format!("opening the target {}", opts.target.display()), e))?;
    let pool = crate::pool::Pool::for_repo(repo)?;
    let ctx = Ctx {
        repo,
        pool: &pool,
        keep_setid: opts.keep_setuid,
        index: &index,
        target: &target,
        overwrite: opts.overwrite,
        owners: safe_fs::can_chown(),
        progress,
    };
    write_all(&ctx, items, report);
    if crate::interrupt::requested() {
        return Err(Error::Interrupted(format!(
            "{} restored, nothing half-written left; the same command continues (it keeps what is there)",
            plural(report.files, "file", "files")
        )));
    }
    if let Err(e) = safe_fs::sync_target(&target) {
        // Everything is in place, but maybe not on stable storage yet.
        let err = RestoreError {
            path: opts.target.display().to_string(),
            cause: format!("flushing the restored files to disk failed: {e}"),
            integrity: false,
        };
        progress.warn(&format!("{}: {}", err.path, err.cause));
        report.errors.push(err);
    }
    Ok(())
}

fn count(report: &mut RestoreReport, e: &Entry) {
    match e.kind {
        EntryKind::File => {
            report.files += 1;
            report.bytes += e.size;
        }
        EntryKind::Dir => report.dirs += 1,
        EntryKind::Symlink => report.symlinks += 1,
    }
}

/// Decides every entry against what is in the target now; writes nothing.
fn dry_run(
    items: &[Item],
    opts: &RestoreOptions,
    report: &mut RestoreReport,
    _progress: &dyn Progress,
) -> Result<()> {
    let target = Target::open_existing(&opts.target)
        .map_err(|e| Error::io(format!("opening the target {}", opts.target.display()), e))?;
    for it in items {
        let decision = match (&target, it.comps.is_empty()) {
            (None, _) => Decision::Create,
            (Some(_), true) => decide(it.e, None, || None, opts.overwrite),
            (Some(t), false) => match t.open_dir(it.parent(), false) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Decision::Create,
                Err(e) => Decision::Conflict(e.to_string()),
                Ok((fd, _)) => match safe_fs::lstat_at(&fd, it.name()) {
                    Ok(st) => decide(
                        it.e,
                        st.as_ref(),
                        || safe_fs::read_link_at(&fd, it.name()).ok(),
                        opts.overwrite,
                    ),
                    Err(e) => Decision::Conflict(e.to_string()),
                },
            },
        };
        let action = match decision {
            Decision::Create => Action::Create,
            Decision::Replace => Action::Replace,
            Decision::Keep => Action::Keep,
            Decision::Conflict(why) => {
                report.errors.push(it.fail(why, false));
                continue;
            }
        };
        match action {
            Action::Keep if it.e.kind != EntryKind::Dir => report.skipped += 1,
            Action::Keep => {}
            Action::Create | Action::Replace => count(report, it.e),
        }
        report.planned.push(Planned {
            path: it.e.path.clone(),
            kind: it.e.kind,
            action,
            size: it.e.size,
        });
    }
    Ok(())
}
