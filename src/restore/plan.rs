//! Which manifest entries a restore writes, and where.
//!
//! Every entry's path is absolute in the manifest; it is restored at the same
//! path below the target (`/home/a/x` → `TARGET/home/a/x`), as restic does.
//! Before anything is written, each entry is checked (invariant 5): its path
//! must be absolute and clean (no `.`, `..` or empty component, no NUL byte),
//! lie at or below one of the snapshot's backed-up paths, appear only once,
//! and not lie below an entry that is a symlink or a file. A backup never
//! writes such entries; a manifest that holds them was crafted, and the entry
//! is refused with an error naming it.

use std::collections::{HashMap, HashSet};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::backup::walk::Excludes;
use crate::repo::{Entry, EntryKind, SnapshotMeta};
use crate::Result;

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

/// The proper ancestors of `path`, nearest first (`/a/b/c` → `/a/b`, `/a`).
fn ancestors(path: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut end = path.len();
    std::iter::from_fn(move || {
        let slash = path[..end].iter().rposition(|b| *b == b'/')?;
        if slash == 0 {
            return None;
        }
        end = slash;
        Some(&path[..slash])
    })
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

/// `--include` and `--exclude` patterns, with the syntax of `backup
/// --exclude`: without a `/` a pattern matches a name at any depth, with one
/// the whole absolute path. A pattern that matches a folder takes in (or
/// leaves out) everything below it; the folders above an included entry are
/// restored too, so it has somewhere to go.
pub struct Selection {
    include: Option<Excludes>,
    exclude: Excludes,
}

impl Selection {
    pub fn new(include: &[String], exclude: &[String]) -> Result<Selection> {
        Ok(Selection {
            include: if include.is_empty() {
                None
            } else {
                Some(Excludes::new(include)?)
            },
            exclude: Excludes::new(exclude)?,
        })
    }

    fn matches(set: &Excludes, path: &[u8]) -> bool {
        let p = |b: &[u8]| set.is_excluded(Path::new(std::ffi::OsStr::from_bytes(b)));
        p(path) || ancestors(path).any(p)
    }

    /// Which entries to restore. `ok[i]` is false for refused entries.
    pub fn select(&self, entries: &[Entry], ok: &[bool]) -> Vec<bool> {
        let mut chosen: Vec<bool> = entries
            .iter()
            .zip(ok)
            .map(|(e, ok)| {
                *ok && !Self::matches(&self.exclude, &e.path)
                    && self
                        .include
                        .as_ref()
                        .is_none_or(|inc| Self::matches(inc, &e.path))
            })
            .collect();
        if self.include.is_some() {
            let holders: HashSet<&[u8]> = entries
                .iter()
                .zip(&chosen)
                .filter(|(_, c)| **c)
                .flat_map(|(e, _)| ancestors(&e.path))
                .collect();
            for (i, e) in entries.iter().enumerate() {
                if ok[i]
                    && e.kind == EntryKind::Dir
                    && holders.contains(e.path.as_slice())
                    && !Self::matches(&self.exclude, &e.path)
                {
                    chosen[i] = true;
                }
            }
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::{Summary, Time, SNAPSHOT_VERSION};

    fn entry(path: &str, kind: EntryKind) -> Entry {
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
            content: None,
        }
    }

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

    #[test]
    fn include_takes_folders_above_and_exclude_wins() {
        use EntryKind::*;
        let entries = vec![
            entry("/s", Dir),
            entry("/s/a", Dir),
            entry("/s/a/keep.txt", File),
            entry("/s/a/other.bin", File),
            entry("/s/b", Dir),
            entry("/s/b/x.txt", File),
            entry("/s/b/skip", Dir),
            entry("/s/b/skip/y.txt", File),
        ];
        let ok = vec![true; entries.len()];
        let sel = Selection::new(&["*.txt".into()], &["/s/b/skip".into()]).unwrap();
        let chosen = sel.select(&entries, &ok);
        assert_eq!(
            chosen,
            vec![true, true, true, false, true, true, false, false]
        );
        let all = Selection::new(&[], &[]).unwrap().select(&entries, &ok);
        assert!(all.iter().all(|c| *c));
    }
}
