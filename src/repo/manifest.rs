//! Rules of the snapshot format that readers check before they act on a
//! manifest: every entry's path must be absolute and clean (no `.`, `..` or
//! empty component, no NUL byte), lie at or below one of the snapshot's
//! backed-up paths, appear only once, and not lie below an entry that is a
//! symlink or a file (security invariant 5). A backup never writes such
//! entries; a manifest that holds them was crafted. Restore refuses such an
//! entry, verify reports it.

use std::collections::HashMap;

use crate::pathmatch::ancestors;

use super::snapshot::{Entry, EntryKind, SnapshotMeta};

/// An entry refused by the checks above.
#[derive(Clone, Debug)]
pub struct Refused {
    pub idx: usize,
    pub reason: String,
}

/// Splits a manifest path into its components, or says why it is unsafe.
/// `/` itself has no components (it is the target folder).
pub fn components(path: &[u8]) -> std::result::Result<Vec<&[u8]>, String> {
    if path.first() != Some(&b'/') {
        return Err("the path is not absolute, as every manifest path must be".into());
    }
    if path.contains(&0) {
        return Err("the path contains a NUL byte".into());
    }
    if path == b"/" {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for c in path[1..].split(|b| *b == b'/') {
        match c {
            b"" => return Err("the path has an empty component (`//` or a trailing `/`)".into()),
            b"." => return Err("the path has a `.` component".into()),
            b".." => {
                return Err(
                    "the path has a `..` component, which could lead outside the target".into(),
                )
            }
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Whether `path` is `root` or lies below it.
fn under(path: &[u8], root: &[u8]) -> bool {
    root == b"/" || path == root || (path.starts_with(root) && path.get(root.len()) == Some(&b'/'))
}

/// Checks every entry; returns the refused ones (in manifest order).
pub fn check_entries(meta: &SnapshotMeta, entries: &[Entry]) -> Vec<Refused> {
    let mut refused = Vec::new();
    let roots: Vec<&[u8]> = meta
        .paths
        .iter()
        .map(Vec::as_slice)
        .filter(|r| components(r).is_ok())
        .collect();
    let mut kinds: HashMap<&[u8], EntryKind> = HashMap::with_capacity(entries.len());
    let mut bad = vec![false; entries.len()];
    for (idx, e) in entries.iter().enumerate() {
        let reason = if let Err(why) = components(&e.path) {
            Some(why)
        } else if e.path == b"/" && e.kind != EntryKind::Dir {
            Some("the entry is `/` but not a folder; the target folder cannot be replaced".into())
        } else if !roots.iter().any(|r| under(&e.path, r)) {
            Some(
                "the path lies outside the snapshot's backed-up paths (a backup never records such an entry)"
                    .to_string(),
            )
        } else if kinds.contains_key(e.path.as_slice()) {
            // The first entry keeps its kind: a later duplicate (refused
            // here) must not turn a symlink or file into a folder for the
            // checks below.
            Some("the path appears more than once in the manifest".into())
        } else {
            kinds.insert(&e.path, e.kind);
            None
        };
        if let Some(reason) = reason {
            bad[idx] = true;
            refused.push(Refused { idx, reason });
        }
    }
    for (idx, e) in entries.iter().enumerate() {
        if bad[idx] {
            continue;
        }
        for a in ancestors(&e.path) {
            match kinds.get(a) {
                Some(EntryKind::Symlink) => {
                    refused.push(Refused {
                        idx,
                        reason: format!(
                            "the path goes through {}, a symlink in the snapshot; envarc never writes through a symlink",
                            String::from_utf8_lossy(a)
                        ),
                    });
                    break;
                }
                Some(EntryKind::File) => {
                    refused.push(Refused {
                        idx,
                        reason: format!(
                            "the path lies below {}, which is a file in the snapshot",
                            String::from_utf8_lossy(a)
                        ),
                    });
                    break;
                }
                _ => {}
            }
        }
    }
    refused.sort_by_key(|r| r.idx);
    refused
}

/// A plain entry of the given path and kind, for unit tests here and in the
/// modules that read manifests.
#[cfg(test)]
pub(crate) fn test_entry(path: &str, kind: EntryKind) -> Entry {
    use crate::repo::Time;
    Entry {
        path: path.as_bytes().to_vec(),
        kind,
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: Time::default(),
        ctime: Time::default(),
        size: 0,
        inode: 0,
        device: 0,
        nlink: 1,
        link_target: None,
        chunks: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::test_entry as entry;
    use super::*;
    use crate::pathmatch::ancestors;
    use crate::repo::{Summary, Time, SNAPSHOT_VERSION};

    fn meta(roots: &[&str]) -> SnapshotMeta {
        SnapshotMeta {
            version: SNAPSHOT_VERSION,
            time: Time::default(),
            host: "h".into(),
            paths: roots.iter().map(|r| r.as_bytes().to_vec()).collect(),
            tags: vec![],
            parent: None,
            summary: Summary::default(),
            entries: 0,
        }
    }

    #[test]
    fn unsafe_paths_are_refused_with_a_reason() {
        use EntryKind::*;
        let entries = vec![
            entry("/s", Dir),
            entry("/s/ok", File),
            entry("/s/../escape", File),
            entry("/etc/passwd", File),
            entry("relative", File),
            entry("/s/./x", File),
            entry("/s//x", File),
            entry("/s/link", Symlink),
            entry("/s/link/x", File),
            entry("/s/ok/below", File),
            entry("/s/ok", File),
        ];
        let refused = check_entries(&meta(&["/s"]), &entries);
        let idx: Vec<usize> = refused.iter().map(|r| r.idx).collect();
        assert_eq!(idx, vec![2, 3, 4, 5, 6, 8, 9, 10]);
        assert!(refused[0].reason.contains("`..`"));
        assert!(refused[1].reason.contains("outside"));
        assert!(refused[5].reason.contains("symlink"));
        assert!(refused[7].reason.contains("more than once"));
    }

    #[test]
    fn ancestors_and_roots() {
        let a: Vec<&[u8]> = ancestors(b"/a/b/c").collect();
        assert_eq!(a, vec![b"/a/b".as_slice(), b"/a".as_slice()]);
        assert!(under(b"/a/b", b"/a"));
        assert!(!under(b"/ab", b"/a"));
        assert!(under(b"/anything", b"/"));
        assert_eq!(components(b"/").unwrap().len(), 0);
    }
}
