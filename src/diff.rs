//! Comparing two snapshots' manifests: which paths were added, removed or
//! changed, and what changed about them.
//!
//! Content is compared by chunk list: chunk IDs are keyed MACs of the
//! plaintext under the repository's one chunker, so equal lists mean equal
//! bytes and different lists different bytes (a file re-read because of a
//! ctime or inode change, e.g. a chmod, gets the same list again). Nothing
//! is decrypted. ctime, inode, device and link count are not compared: they
//! change on any copy.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::repo::{Entry, EntryKind};

/// An aspect of an entry that differs between the two snapshots.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Aspect {
    /// File, folder or symlink.
    Type,
    /// The file was stored anew (see the module documentation).
    Content,
    Size,
    LinkTarget,
    Mode,
    Owner,
    Mtime,
}

impl Aspect {
    pub fn name(self) -> &'static str {
        match self {
            Aspect::Type => "type",
            Aspect::Content => "content",
            Aspect::Size => "size",
            Aspect::LinkTarget => "link-target",
            Aspect::Mode => "mode",
            Aspect::Owner => "owner",
            Aspect::Mtime => "mtime",
        }
    }

    /// Whether the change is to the data (as opposed to metadata only).
    pub fn is_content(self) -> bool {
        matches!(
            self,
            Aspect::Type | Aspect::Content | Aspect::Size | Aspect::LinkTarget
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change<'a> {
    Added(&'a Entry),
    Removed(&'a Entry),
    Changed {
        old: &'a Entry,
        new: &'a Entry,
        what: Vec<Aspect>,
    },
}

impl Change<'_> {
    pub fn path(&self) -> &[u8] {
        match self {
            Change::Added(e) | Change::Removed(e) => &e.path,
            Change::Changed { new, .. } => &new.path,
        }
    }
}

/// What differs between two versions of one path.
pub fn compare(old: &Entry, new: &Entry) -> Vec<Aspect> {
    let mut what = Vec::new();
    if old.kind != new.kind {
        what.push(Aspect::Type);
    } else {
        if old.kind == EntryKind::File && old.chunks != new.chunks {
            what.push(Aspect::Content);
        }
        if old.kind == EntryKind::File && old.size != new.size {
            what.push(Aspect::Size);
        }
        if old.link_target != new.link_target {
            what.push(Aspect::LinkTarget);
        }
    }
    // Linux symlinks have no mode of their own (always 0777).
    if old.mode != new.mode && new.kind != EntryKind::Symlink {
        what.push(Aspect::Mode);
    }
    if (old.uid, old.gid) != (new.uid, new.gid) {
        what.push(Aspect::Owner);
    }
    if old.mtime != new.mtime {
        what.push(Aspect::Mtime);
    }
    what
}

/// Every difference from `old` to `new`, sorted by path (bytewise).
pub fn diff<'a>(old: &'a [Entry], new: &'a [Entry]) -> Vec<Change<'a>> {
    let a: BTreeMap<&[u8], &Entry> = old.iter().map(|e| (e.path.as_slice(), e)).collect();
    let b: BTreeMap<&[u8], &Entry> = new.iter().map(|e| (e.path.as_slice(), e)).collect();
    let mut out = Vec::new();
    for (p, o) in &a {
        match b.get(p) {
            None => out.push(Change::Removed(o)),
            Some(n) => {
                let what = compare(o, n);
                if !what.is_empty() {
                    out.push(Change::Changed {
                        old: o,
                        new: n,
                        what,
                    });
                }
            }
        }
    }
    for (p, n) in &b {
        if !a.contains_key(p) {
            out.push(Change::Added(n));
        }
    }
    out.sort_by(|x, y| x.path().cmp(y.path()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::Time;

    fn file(path: &str, content: u8, size: u64) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind: EntryKind::File,
            mode: 0o644,
            uid: 1,
            gid: 1,
            mtime: Time { sec: 1, nsec: 0 },
            ctime: Time { sec: 1, nsec: 0 },
            size,
            inode: 1,
            device: 1,
            nlink: 1,
            link_target: None,
            chunks: vec![crate::repo::ChunkId([content; 32])],
        }
    }

    #[test]
    fn added_removed_and_changed_with_aspects() {
        let old = vec![file("/a", 1, 10), file("/b", 2, 10), file("/c", 3, 10)];
        let mut b2 = file("/b", 2, 10);
        b2.mode = 0o600;
        b2.inode = 99; // not compared
        let mut c2 = file("/c", 4, 12);
        c2.mtime = Time { sec: 2, nsec: 5 };
        let new = vec![b2, c2, file("/d", 5, 1)];
        let d = diff(&old, &new);
        assert_eq!(d.len(), 4);
        assert_eq!(d[0], Change::Removed(&old[0]));
        match &d[1] {
            Change::Changed { what, .. } => assert_eq!(what, &vec![Aspect::Mode]),
            other => panic!("{other:?}"),
        }
        match &d[2] {
            Change::Changed { what, .. } => {
                assert_eq!(what, &vec![Aspect::Content, Aspect::Size, Aspect::Mtime])
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d[3], Change::Added(&new[2]));
        assert!(diff(&old, &old).is_empty());
        // Same size and mtime, other bytes: other chunks, a content change.
        let mut again = old.clone();
        again[0].chunks = vec![crate::repo::ChunkId([9; 32])];
        assert_eq!(diff(&old, &again).len(), 1);
    }
}
