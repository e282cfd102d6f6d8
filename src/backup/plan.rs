//! The plan step of a backup: which files must be read, which reuse the
//! parent's chunk list unread. Pure (no I/O), so it is unit-tested.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::repo::{ChunkId, Entry, EntryKind, Summary, Time};

/// A file whose ctime is this close to (or after) the start of the backup that
/// read it is read again next time even if it looks unchanged: a second change
/// within the same timestamp tick would not show in size, mtime or ctime.
const RACY_MARGIN_NS: i128 = 50_000_000;

/// One file to read.
#[derive(Clone, Debug)]
pub struct Job {
    /// Position of its entry in the scan.
    pub idx: usize,
    pub path: PathBuf,
    pub size: u64,
    /// No file was at this path in the parent.
    pub new: bool,
}

/// What the plan decided.
#[derive(Debug, Default)]
pub struct Plan {
    /// Files to read, in walk order.
    pub jobs: Vec<Job>,
    pub bytes_to_read: u64,
}

/// Whether `now` may reuse the chunks of `old` without reading the file:
/// same size, mtime, ctime, inode and device, not changed too close to the
/// parent's start, and every chunk still in the index.
pub fn unchanged(
    old: &Entry,
    now: &Entry,
    parent_time: Time,
    have: &dyn Fn(&ChunkId) -> bool,
) -> bool {
    old.kind == EntryKind::File
        && now.kind == EntryKind::File
        && old.size == now.size
        && old.mtime == now.mtime
        && old.ctime == now.ctime
        && old.inode == now.inode
        && old.device == now.device
        && old.ctime.as_nanos() < parent_time.as_nanos() - RACY_MARGIN_NS
        && (old.size == 0) == old.chunks.is_empty()
        && old.chunks.iter().all(have)
}

/// Fills reused chunk lists into `entries`, counts new, changed and
/// unchanged files into `summary`, and lists the files to read.
pub fn plan(
    entries: &mut [Entry],
    parent: &[Entry],
    parent_time: Time,
    have: &dyn Fn(&ChunkId) -> bool,
    summary: &mut Summary,
) -> Plan {
    let by_path: HashMap<&[u8], &Entry> = parent.iter().map(|e| (e.path.as_slice(), e)).collect();
    let mut plan = Plan::default();
    for (idx, e) in entries.iter_mut().enumerate() {
        if e.kind != EntryKind::File {
            continue;
        }
        match by_path.get(e.path.as_slice()) {
            Some(old) if unchanged(old, e, parent_time, have) => {
                e.chunks = old.chunks.clone();
                summary.files_unchanged += 1;
            }
            old => {
                let new = !old.is_some_and(|o| o.kind == EntryKind::File);
                if new {
                    summary.files_new += 1;
                } else {
                    summary.files_changed += 1;
                }
                plan.bytes_to_read += e.size;
                plan.jobs.push(Job {
                    idx,
                    path: e.path().to_path_buf(),
                    size: e.size,
                    new,
                });
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, size: u64, ctime: i64, chunks: &[u8]) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: Time { sec: 10, nsec: 0 },
            ctime: Time {
                sec: ctime,
                nsec: 0,
            },
            size,
            inode: 1,
            device: 1,
            nlink: 1,
            link_target: None,
            chunks: chunks.iter().map(|b| ChunkId([*b; 32])).collect(),
        }
    }

    #[test]
    fn unchanged_files_reuse_chunks_and_others_are_read() {
        let parent = vec![
            file("/a", 5, 10, &[1]),
            file("/b", 5, 10, &[2]),
            file("/racy", 5, 100, &[3]),
            file("/gone", 5, 10, &[4]),
        ];
        let mut now = vec![
            file("/a", 5, 10, &[]),
            file("/b", 6, 11, &[]),
            file("/racy", 5, 100, &[]),
            file("/gone", 5, 10, &[]),
            file("/new", 1, 10, &[]),
        ];
        let have = |id: &ChunkId| id.0[0] != 4;
        let mut s = Summary::default();
        let p = plan(&mut now, &parent, Time { sec: 100, nsec: 0 }, &have, &mut s);
        assert_eq!(now[0].chunks, parent[0].chunks);
        let read: Vec<usize> = p.jobs.iter().map(|j| j.idx).collect();
        assert_eq!(read, vec![1, 2, 3, 4]);
        assert_eq!((s.files_unchanged, s.files_changed, s.files_new), (1, 3, 1));
        assert!(p.jobs[3].new && !p.jobs[0].new);
        assert_eq!(p.bytes_to_read, 6 + 5 + 5 + 1);
    }
}
