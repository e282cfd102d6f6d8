//! Comparing two snapshots' manifests: which paths were added, removed or
//! changed, and what changed about them.
//!
//! Content is compared by message: the same message means the same bytes.
//! A file that the later backup stored anew has a new message (every message
//! has its own data key), so when its size and mtime are unchanged (it was
//! re-read because of a ctime or inode change, e.g. a chmod) the caller's
//! `same_content` decides, by decrypting both. ctime, inode, device and link
//! count are not compared: they change on any copy.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::envelope::MessageId;
use crate::repo::{Entry, EntryKind, Index, Repository};
use crate::Result;

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
        if old.kind == EntryKind::File && old.content != new.content {
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
/// `same_content(a, b)` tells whether two messages hold the same bytes; it is
/// asked only for files whose size and mtime are unchanged.
pub fn diff<'a>(
    old: &'a [Entry],
    new: &'a [Entry],
    same_content: &mut dyn FnMut(&MessageId, &MessageId) -> bool,
) -> Vec<Change<'a>> {
    let a: BTreeMap<&[u8], &Entry> = old.iter().map(|e| (e.path.as_slice(), e)).collect();
    let b: BTreeMap<&[u8], &Entry> = new.iter().map(|e| (e.path.as_slice(), e)).collect();
    let mut out = Vec::new();
    for (p, o) in &a {
        match b.get(p) {
            None => out.push(Change::Removed(o)),
            Some(n) => {
                let mut what = compare(o, n);
                if what.contains(&Aspect::Content)
                    && !what.contains(&Aspect::Size)
                    && !what.contains(&Aspect::Mtime)
                {
                    if let (Some(a), Some(b)) = (o.content, n.content) {
                        if same_content(&a, &b) {
                            what.retain(|w| *w != Aspect::Content);
                        }
                    }
                }
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

/// Whether messages `a` and `b` decrypt to the same bytes (both are read
/// and authenticated in full; memory stays at one frame each).
pub fn same_plaintext(
    repo: &Repository,
    index: &Index,
    a: &MessageId,
    b: &MessageId,
) -> Result<bool> {
    use sha2::{Digest, Sha256};
    let digest = |id: &MessageId| -> Result<(u64, [u8; 32])> {
        let mut dec = repo.decrypt_object(index, id)?;
        let mut h = Sha256::new();
        let mut n = 0u64;
        while let Some(frame) = dec.next_frame()? {
            h.update(frame);
            n += frame.len() as u64;
        }
        Ok((n, h.finalize().into()))
    };
    Ok(digest(a)? == digest(b)?)
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
            content: Some([content; 32]),
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
        let d = diff(&old, &new, &mut |_, _| false);
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
        assert!(diff(&old, &old, &mut |_, _| panic!("not asked")).is_empty());
        // A file stored anew with the same size and mtime: asked, and the
        // answer decides.
        let mut again = old.clone();
        again[0].content = Some([9; 32]);
        assert!(diff(&old, &again, &mut |_, _| true).is_empty());
        assert_eq!(diff(&old, &again, &mut |_, _| false).len(), 1);
    }
}
