//! Writing the selected entries under the target: folders, files (in
//! parallel), symlinks, then folder metadata; see the module documentation
//! of `restore` for the order and its reasons.

use std::io::{self, IoSlice};
use std::os::fd::{AsFd, OwnedFd};

use rayon::prelude::*;
use rustix::fs::FileType;

use crate::fsutil::Writeback;
use crate::progress::Progress;
use crate::repo::{ChunkData, ChunkId, Entry, EntryKind, Index, Repository};
use crate::text::lossy;

use super::safe_fs::{self, Target, TempEntry};
use super::{count, Item, Overwrite, RestoreError, RestoreReport};

/// How an entry relates to what is already at its place.
pub(super) enum Decision {
    Create,
    Replace,
    Keep,
    Conflict(String),
}

pub(super) fn decide(
    e: &Entry,
    existing: Option<&rustix::fs::Stat>,
    link_now: impl FnOnce() -> Option<Vec<u8>>,
    ow: Overwrite,
) -> Decision {
    let Some(st) = existing else {
        return Decision::Create;
    };
    let t = safe_fs::file_type(st);
    match (e.kind, t) {
        (EntryKind::Dir, FileType::Directory) if ow == Overwrite::Never => Decision::Keep,
        (EntryKind::Dir, FileType::Directory) => Decision::Replace,
        (EntryKind::Dir, _) if ow == Overwrite::Never => Decision::Conflict(
            "something other than a folder is in the way; it is left as it is (--overwrite never)"
                .into(),
        ),
        (EntryKind::Dir, _) => Decision::Replace,
        (_, FileType::Directory) => {
            Decision::Conflict("a folder is in the way; envarc does not remove folders".into())
        }
        (_, _) if ow == Overwrite::Never => Decision::Keep,
        (EntryKind::File, FileType::RegularFile)
            if ow == Overwrite::IfChanged
                && st.st_size as u64 == e.size
                && safe_fs::mtime(st) == e.mtime =>
        {
            Decision::Keep
        }
        (EntryKind::Symlink, FileType::Symlink)
            if ow == Overwrite::IfChanged
                && safe_fs::mtime(st) == e.mtime
                && link_now() == e.link_target =>
        {
            Decision::Keep
        }
        _ => Decision::Replace,
    }
}

/// Everything the workers share.
pub(super) struct Ctx<'a> {
    pub repo: &'a Repository,
    pub index: &'a Index,
    pub target: &'a Target,
    pub overwrite: Overwrite,
    pub owners: bool,
    /// Keep setuid and setgid bits although the owners are not restored.
    pub keep_setid: bool,
    pub progress: &'a dyn Progress,
    pub pool: &'a crate::pool::Pool,
}

enum Outcome {
    Restored(u64),
    Kept,
    Failed(RestoreError),
}

/// A file worker: remembers the last folder it opened, since consecutive
/// files of a snapshot mostly share one.
struct Worker<'a> {
    ctx: &'a Ctx<'a>,
    cached: Option<(Vec<u8>, OwnedFd)>,
}

impl Worker<'_> {
    fn parent_fd(&mut self, it: &Item) -> std::io::Result<&OwnedFd> {
        let key = it.parent().join(&b'/');
        if self.cached.as_ref().map(|(k, _)| k) != Some(&key) {
            let (fd, _) = self.ctx.target.open_dir(it.parent(), true)?;
            self.cached = Some((key, fd));
        }
        Ok(&self.cached.as_ref().expect("just set").1)
    }

    fn restore_file(&mut self, it: &Item) -> Outcome {
        let ctx = self.ctx;
        let e = it.e;
        let parent = match self.parent_fd(it) {
            Ok(fd) => fd.as_fd(),
            Err(err) => return Outcome::Failed(it.fail(err.to_string(), false)),
        };
        let name = it.name();
        let io_fail = |what: &str, err: std::io::Error| {
            Outcome::Failed(it.fail(format!("{what}: {err}"), false))
        };
        let existing = match safe_fs::lstat_at(parent, name) {
            Ok(s) => s,
            Err(err) => return io_fail("cannot look at the existing entry", err),
        };
        match decide(e, existing.as_ref(), || None, ctx.overwrite) {
            Decision::Keep => return Outcome::Kept,
            Decision::Conflict(why) => return Outcome::Failed(it.fail(why, false)),
            Decision::Create | Decision::Replace => {}
        }
        let (tmp, mut file) = match TempEntry::file(parent, name) {
            Ok(t) => t,
            Err(err) => return io_fail("cannot create a temporary file", err),
        };
        let n = match write_chunks(ctx, &e.chunks, &mut file) {
            Ok(n) => n,
            Err(err) => {
                let integrity = err.is_integrity();
                return Outcome::Failed(it.fail(err.to_string(), integrity));
            }
        };
        if n != e.size {
            return Outcome::Failed(it.fail(
                format!("its chunks hold {n} bytes but the manifest says {}", e.size),
                true,
            ));
        }
        if let Err(err) = safe_fs::apply_fd(&file, e, ctx.owners, ctx.keep_setid) {
            return io_fail("cannot set metadata", err);
        }
        drop(file);
        match tmp.commit(name) {
            Ok(()) => Outcome::Restored(n),
            Err(err) => io_fail("cannot rename into place", err),
        }
    }
}

/// Chunks fetched at once per file: a large file's chunks are read,
/// authenticated, MAC-checked and decompressed on several threads while
/// they are written in order. Memory: this many chunks per file in flight.
const WINDOW: usize = 8;

/// Writes a file's chunks in order; every chunk is checked (MAC included)
/// before its bytes are written, and the file is renamed into place only
/// after the last one. A chunk's plaintext is written from where it was
/// decrypted (one vectored write per window of chunks), and its writeback
/// starts as it goes, so that the final `syncfs` does not wait for a whole
/// large file.
fn write_chunks(ctx: &Ctx, chunks: &[ChunkId], file: &mut std::fs::File) -> crate::Result<u64> {
    let mut n = 0u64;
    let mut writeback = Writeback::default();
    for window in chunks.chunks(WINDOW) {
        crate::interrupt::check()?;
        let data: Vec<crate::Result<ChunkData>> = if window.len() == 1 {
            vec![ctx.repo.read_chunk_data(ctx.index, &window[0])]
        } else {
            window
                .par_iter()
                .map(|id| ctx.repo.read_chunk_data(ctx.index, id))
                .collect()
        };
        // Up to the first failure in file order, as a serial read meets it.
        let mut good = Vec::with_capacity(data.len());
        let mut failed = None;
        for d in data {
            match d {
                Ok(c) if failed.is_none() => good.push(c),
                Ok(_) => {}
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        let k = write_parts(file, &mut writeback, &good)?;
        n += k;
        if let Some(e) = failed {
            return Err(e);
        }
    }
    Ok(n)
}

/// Writes the chunks' plaintext parts in `writev` calls of up to
/// [`WRITE_PIECE`](crate::fsutil::WRITE_PIECE) bytes; returns the bytes written.
fn write_parts(
    mut file: &std::fs::File,
    writeback: &mut Writeback,
    chunks: &[ChunkData],
) -> crate::Result<u64> {
    let mut slices: Vec<IoSlice> = chunks
        .iter()
        .flat_map(|c| c.parts())
        .map(IoSlice::new)
        .collect();
    let n = slices.iter().map(|s| s.len() as u64).sum();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        match writeback.write_vectored(&mut file, rest) {
            Ok(0) => {
                return Err(crate::Error::io(
                    "writing the restored file",
                    io::ErrorKind::WriteZero.into(),
                ))
            }
            Ok(k) => IoSlice::advance_slices(&mut rest, k),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(crate::Error::io("writing the restored file", e)),
        }
    }
    Ok(n)
}

/// Restores `items` in four stages: folders, then files (in parallel),
/// then symbolic links, then the folders' metadata, deepest first (so
/// that writing into a folder does not change its restored times).
pub(super) fn write_all(ctx: &Ctx, items: &[Item], report: &mut RestoreReport) {
    let of_kind =
        |kind: EntryKind| -> Vec<&Item> { items.iter().filter(|i| i.e.kind == kind).collect() };
    let mut dirs = of_kind(EntryKind::Dir);
    dirs.sort_by(|a, b| a.comps.cmp(&b.comps));
    let dir_meta = make_dirs(ctx, &dirs, report);
    if !write_files(ctx, &of_kind(EntryKind::File), report) {
        return; // interrupted
    }
    for it in of_kind(EntryKind::Symlink) {
        match make_symlink(ctx, it) {
            Ok(true) => count(report, it.e),
            Ok(false) => report.skipped += 1,
            Err(err) => report_failure(ctx, report, err),
        }
    }
    apply_dir_meta(ctx, &dir_meta, report);
}

fn report_failure(ctx: &Ctx, report: &mut RestoreReport, err: RestoreError) {
    ctx.progress.warn(&format!("{}: {}", err.path, err.cause));
    report.errors.push(err);
}

/// Creates the folders (parents first); returns those whose metadata is to
/// be applied at the end.
fn make_dirs<'a, 'e>(
    ctx: &Ctx,
    dirs: &[&'a Item<'e>],
    report: &mut RestoreReport,
) -> Vec<&'a Item<'e>> {
    let mut dir_meta = Vec::new();
    for it in dirs {
        match make_dir(ctx, it) {
            Ok(Some(())) => {
                count(report, it.e);
                dir_meta.push(*it);
            }
            Ok(None) => {}
            Err(err) => report_failure(ctx, report, err),
        }
    }
    dir_meta
}

/// Restores the files on the worker pool. `false` when a signal stopped it.
fn write_files(ctx: &Ctx, files: &[&Item], report: &mut RestoreReport) -> bool {
    let bytes: u64 = files.iter().map(|i| i.e.size).sum();
    ctx.progress
        .start("restoring", Some(files.len() as u64), Some(bytes));
    let outcomes: Vec<Outcome> = ctx.pool.install(|| {
        files
            .par_iter()
            .map_init(
                || Worker { ctx, cached: None },
                |w, it| {
                    if crate::interrupt::requested() {
                        return Outcome::Kept;
                    }
                    ctx.progress.item(&lossy(&it.e.path));
                    let o = w.restore_file(it);
                    let n = if let Outcome::Restored(n) = o { n } else { 0 };
                    ctx.progress.advance(1, n);
                    o
                },
            )
            .collect()
    });
    ctx.progress.finish();
    let interrupted = crate::interrupt::requested();
    for (it, o) in files.iter().zip(outcomes) {
        match o {
            // Failures after a signal are the signal's doing (a file cut
            // short, its temporary file removed), not the file's.
            Outcome::Failed(_) if interrupted => {}
            Outcome::Restored(_) => count(report, it.e),
            Outcome::Kept => report.skipped += 1,
            Outcome::Failed(err) => report_failure(ctx, report, err),
        }
    }
    !interrupted
}

/// Applies the folders' metadata, deepest first.
fn apply_dir_meta(ctx: &Ctx, dir_meta: &[&Item], report: &mut RestoreReport) {
    for it in dir_meta.iter().rev() {
        let r = if it.comps.is_empty() {
            safe_fs::apply_fd(ctx.target.fd(), it.e, ctx.owners, ctx.keep_setid)
        } else {
            ctx.target
                .open_dir(&it.comps, false)
                .and_then(|(fd, _)| safe_fs::apply_fd(&fd, it.e, ctx.owners, ctx.keep_setid))
        };
        if let Err(e) = r {
            report_failure(ctx, report, it.fail(format!("folder metadata: {e}"), false));
        }
    }
}

/// Creates (or adopts) one folder. `Some` when its metadata is to be applied.
fn make_dir(ctx: &Ctx, it: &Item) -> std::result::Result<Option<()>, RestoreError> {
    if it.comps.is_empty() {
        // `/` was backed up: the target folder stands for it.
        return Ok((ctx.overwrite != Overwrite::Never).then_some(()));
    }
    let io = |e: std::io::Error| it.fail(e.to_string(), false);
    let (parent, _) = ctx.target.open_dir(it.parent(), true).map_err(io)?;
    let existing = safe_fs::lstat_at(&parent, it.name()).map_err(io)?;
    match decide(it.e, existing.as_ref(), || None, ctx.overwrite) {
        Decision::Create => {
            match safe_fs::mkdir_at(&parent, it.name()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(e)),
            }
            Ok(Some(()))
        }
        Decision::Replace => {
            if existing.is_some_and(|s| safe_fs::file_type(&s) != FileType::Directory) {
                safe_fs::remove_at(&parent, it.name()).map_err(io)?;
                safe_fs::mkdir_at(&parent, it.name()).map_err(io)?;
            }
            Ok(Some(()))
        }
        Decision::Keep => Ok(None),
        Decision::Conflict(why) => Err(it.fail(why, false)),
    }
}

/// Creates one symlink under a temporary name and renames it into place.
/// `false` when an existing entry was kept.
fn make_symlink(ctx: &Ctx, it: &Item) -> std::result::Result<bool, RestoreError> {
    let io = |e: std::io::Error| it.fail(e.to_string(), false);
    let Some(link) = &it.e.link_target else {
        return Err(it.fail("the manifest entry names no symlink target", true));
    };
    let (parent, _) = ctx.target.open_dir(it.parent(), true).map_err(io)?;
    let name = it.name();
    let existing = safe_fs::lstat_at(&parent, name).map_err(io)?;
    let current = || safe_fs::read_link_at(&parent, name).ok();
    match decide(it.e, existing.as_ref(), current, ctx.overwrite) {
        Decision::Keep => return Ok(false),
        Decision::Conflict(why) => return Err(it.fail(why, false)),
        Decision::Create | Decision::Replace => {}
    }
    let tmp = TempEntry::symlink(parent.as_fd(), name, link).map_err(io)?;
    safe_fs::apply_symlink_at(&parent, tmp.name(), it.e, ctx.owners).map_err(io)?;
    tmp.commit(name).map_err(io)?;
    Ok(true)
}
