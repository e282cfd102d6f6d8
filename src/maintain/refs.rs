//! Which chunks each snapshot needs: the one place that reads every
//! snapshot's entries for the maintenance commands. `stats` turns the
//! references into the blast radius of each key version, `prune` into the
//! set of chunks in use, `rewrap` and `reencrypt` into what their rewrite
//! touches.
//!
//! Snapshots are read on the worker pool, several at once, each streamed
//! entry by entry into a [`Visitor`]'s per-snapshot state, so memory is what
//! the visitor keeps, not the manifests.

use std::collections::HashSet;
use std::sync::Mutex;

use rayon::prelude::*;

use crate::pool::Pool;
use crate::progress::Progress;
use crate::repo::{ChunkId, Entry, EntryKind, Id, Repository, SnapshotMeta};
use crate::{Error, Result};

/// Takes each snapshot's entries. `Local` is the state of one snapshot
/// being read; [`Visitor::snapshot_done`] gets it once the snapshot was read
/// to its authenticated end (never for one that failed).
pub trait Visitor: Sync {
    type Local: Default + Send;
    fn entry(&self, local: &mut Self::Local, entry: &Entry);
    /// `snapshot` is the position in [`Snapshots::all`].
    fn snapshot_done(&self, snapshot: usize, local: Self::Local);
}

/// The snapshots as read.
pub struct Snapshots {
    /// Every snapshot whose metadata opened, oldest first.
    pub all: Vec<(Id, SnapshotMeta)>,
    /// Snapshots that could not be read (their metadata, or their entries
    /// to the end), with the reason. Their references are unknown.
    pub failed: Vec<(Id, Error)>,
}

impl Snapshots {
    /// Whether every snapshot was read, so that the references are complete.
    pub fn complete(&self) -> bool {
        self.failed.is_empty()
    }

    /// Refuses to go on when a snapshot could not be read (what it needs is
    /// unknown): for commands that delete what no snapshot needs.
    pub fn require_complete(&self, what: &str) -> Result<()> {
        match self.failed.first() {
            None => Ok(()),
            Some((id, e)) => Err(Error::Integrity(format!(
                "snapshot {id} cannot be read ({e}); {what} cannot know which data it needs and \
                 removes nothing. Run `envarc verify`, then repair or remove that snapshot"
            ))),
        }
    }

    /// Whether snapshot `id` was read completely.
    pub fn is_read(&self, id: &Id) -> bool {
        self.all.iter().any(|(i, _)| i == id) && !self.failed.iter().any(|(i, _)| i == id)
    }
}

/// Reads every snapshot into `visitor` (see the module docs).
pub fn references<V: Visitor>(
    repo: &Repository,
    pool: &Pool,
    visitor: &V,
    progress: &dyn Progress,
) -> Result<Snapshots> {
    let (all, failed) = repo.snapshots_lenient()?;
    progress.start("reading snapshots", Some(all.len() as u64), None);
    let failed = Mutex::new(failed);
    pool.install(|| {
        all.par_iter().enumerate().for_each(|(pos, (id, _))| {
            let mut local = V::Local::default();
            let r = repo.load_snapshot_with(id, |e| {
                visitor.entry(&mut local, &e);
                Ok(())
            });
            match r {
                Ok(_) => visitor.snapshot_done(pos, local),
                Err(e) => failed.lock().expect("no panics holding it").push((*id, e)),
            }
            progress.advance(1, 0);
        })
    });
    progress.finish();
    let mut failed = failed.into_inner().expect("no panics holding it");
    failed.sort_by_key(|(id, _)| *id);
    Ok(Snapshots { all, failed })
}

/// The chunks of files, as [`references`] collects them into one set.
#[derive(Default)]
pub struct UsedChunks {
    used: Mutex<HashSet<ChunkId>>,
}

impl Visitor for UsedChunks {
    type Local = HashSet<ChunkId>;

    fn entry(&self, local: &mut HashSet<ChunkId>, entry: &Entry) {
        if entry.kind == EntryKind::File {
            local.extend(entry.chunks.iter().copied());
        }
    }

    fn snapshot_done(&self, _: usize, local: HashSet<ChunkId>) {
        let mut used = self.used.lock().expect("no panics holding it");
        if used.is_empty() {
            *used = local;
        } else {
            used.extend(local);
        }
    }
}

/// Every chunk some snapshot needs, and the snapshots as read.
pub fn used_chunks(
    repo: &Repository,
    pool: &Pool,
    progress: &dyn Progress,
) -> Result<(Snapshots, HashSet<ChunkId>)> {
    let v = UsedChunks::default();
    let snaps = references(repo, pool, &v, progress)?;
    Ok((snaps, v.used.into_inner().expect("no panics holding it")))
}

/// Counts the snapshots and files that need any chunk of a set (what a
/// rewrite touches, for reports).
pub struct Touching<'a> {
    chunks: &'a HashSet<ChunkId>,
    counts: Mutex<(u64, u64)>,
}

impl<'a> Touching<'a> {
    pub fn new(chunks: &'a HashSet<ChunkId>) -> Touching<'a> {
        Touching {
            chunks,
            counts: Mutex::new((0, 0)),
        }
    }

    /// (snapshots, files) that need a chunk of the set; a file is counted
    /// once per snapshot it is in.
    pub fn counts(&self) -> (u64, u64) {
        *self.counts.lock().expect("no panics holding it")
    }
}

impl Visitor for Touching<'_> {
    type Local = u64;

    fn entry(&self, files: &mut u64, entry: &Entry) {
        if entry.kind == EntryKind::File && entry.chunks.iter().any(|c| self.chunks.contains(c)) {
            *files += 1;
        }
    }

    fn snapshot_done(&self, _: usize, files: u64) {
        if files > 0 {
            let mut c = self.counts.lock().expect("no panics holding it");
            c.0 += 1;
            c.1 += files;
        }
    }
}
