//! The messages that are not chunks: snapshots, index files and the sealed
//! config. Which key versions wrap each (from their headers alone, for
//! stats, rewrap and reencrypt), and writing a snapshot anew: the same
//! snapshot ID and contents in a new message (new message ID, fresh data
//! key), replacing the old atomically.

use rayon::prelude::*;

use crate::pool::Pool;
use crate::progress::Progress;
use crate::repo::{index_name, snapshot_name, Id, KeyVersion, RepoLock, Repository};
use crate::Result;

/// The key versions that wrap a message, or why its header cannot be read.
pub type Wrapped = std::result::Result<Vec<KeyVersion>, String>;

/// What wraps every message that is not a chunk.
pub struct Others {
    pub snapshots: Vec<(Id, Wrapped)>,
    pub index_files: Vec<(Id, Wrapped)>,
    pub config: Wrapped,
}

fn versions(header: Result<crate::envelope::Header>) -> Wrapped {
    header
        .map(|h| h.edks.iter().map(KeyVersion::of).collect())
        .map_err(|e| e.to_string())
}

/// Reads the header of every snapshot, index file and the config.
pub fn scan(repo: &Repository, pool: &Pool, progress: &dyn Progress) -> Result<Others> {
    let snapshots = repo.list_snapshots()?;
    let index_files = repo.list_index_files()?;
    progress.start(
        "reading headers",
        Some((snapshots.len() + index_files.len()) as u64),
        None,
    );
    let read = |ids: &[Id], name: fn(&Id) -> String| -> Vec<(Id, Wrapped)> {
        pool.install(|| {
            ids.par_iter()
                .map(|id| {
                    let w = versions(repo.object_header(&name(id)));
                    progress.advance(1, 0);
                    (*id, w)
                })
                .collect()
        })
    };
    let out = Others {
        snapshots: read(&snapshots, snapshot_name),
        index_files: read(&index_files, index_name),
        config: versions(repo.config_header()),
    };
    progress.finish();
    Ok(out)
}

impl Others {
    /// Messages whose headers could not be read, for reports.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (what, list) in [
            ("snapshot", &self.snapshots),
            ("index file", &self.index_files),
        ] {
            for (id, w) in list {
                if let Err(e) = w {
                    out.push(format!("{what} {id}: its header cannot be read: {e}"));
                }
            }
        }
        if let Err(e) = &self.config {
            out.push(format!("the config: its header cannot be read: {e}"));
        }
        out
    }
}

/// The IDs of `list` wrapped by a version `pick` names.
pub fn wrapped_by(list: &[(Id, Wrapped)], pick: &dyn Fn(&KeyVersion) -> bool) -> Vec<Id> {
    list.iter()
        .filter(|(_, w)| w.as_ref().is_ok_and(|ks| ks.iter().any(pick)))
        .map(|(id, _)| *id)
        .collect()
}

/// Whether the config is wrapped by a version `pick` names.
pub fn config_wrapped_by(others: &Others, pick: &dyn Fn(&KeyVersion) -> bool) -> bool {
    others.config.as_ref().is_ok_and(|ks| ks.iter().any(pick))
}

/// Writes each snapshot anew (see the module docs), checking the lock
/// first each time. Returns how many were written and the failures; a
/// snapshot that cannot be read stays as it is.
pub fn renew_snapshots(
    repo: &Repository,
    ids: &[Id],
    lock: &RepoLock,
    progress: &dyn Progress,
) -> Result<(u64, Vec<String>)> {
    progress.start("writing snapshots anew", Some(ids.len() as u64), None);
    let mut done = 0;
    let mut failed = Vec::new();
    for id in ids {
        crate::interrupt::check()?;
        lock.check()?;
        match repo.load_snapshot(id) {
            Ok((meta, entries)) => {
                repo.replace_snapshot(id, &meta, &entries)?;
                done += 1;
            }
            Err(e) => failed.push(format!("snapshot {id}: {e}; it stays as it is")),
        }
        progress.advance(1, 0);
    }
    progress.finish();
    Ok((done, failed))
}
