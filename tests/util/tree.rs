//! Walks a file tree into a comparable description (kind, mode, mtime to the
//! nanosecond, size, content digest, symlink target, owner) and compares two
//! trees, listing every difference: for round-trip tests of restore.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    /// Permission bits (none for symlinks: Linux gives them none of their own).
    pub mode: Option<u32>,
    pub mtime: (i64, i64),
    pub size: u64,
    pub digest: Option<[u8; 32]>,
    pub link: Option<OsString>,
    pub owner: (u32, u32),
}

/// Every entry below `root` (and `root` itself, as ""), by relative path.
pub fn describe(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let path = root.join(rel);
    let md = std::fs::symlink_metadata(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ft = md.file_type();
    let (kind, digest, link) = if ft.is_symlink() {
        (
            "symlink",
            None,
            Some(std::fs::read_link(&path).unwrap().into_os_string()),
        )
    } else if ft.is_dir() {
        ("dir", None, None)
    } else if ft.is_file() {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        ("file", Some(Sha256::digest(&data).into()), None)
    } else {
        ("other", None, None)
    };
    out.insert(
        rel.to_path_buf(),
        Node {
            kind,
            mode: (!ft.is_symlink()).then_some(md.mode() & 0o7777),
            mtime: (md.mtime(), md.mtime_nsec()),
            size: if ft.is_dir() { 0 } else { md.size() },
            digest,
            link,
            owner: (md.uid(), md.gid()),
        },
    );
    if ft.is_dir() {
        let mut names: Vec<OsString> = std::fs::read_dir(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .map(|e| e.unwrap().file_name())
            .collect();
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for n in names {
            walk(root, &rel.join(n), out);
        }
    }
}

/// Asserts that the trees at `a` and `b` are the same: the same entries,
/// each with the same kind, mode, mtime (ns), size, content and symlink
/// target, and with `owners` also the same owner. Panics listing every
/// difference.
pub fn assert_same_tree(a: &Path, b: &Path, owners: bool) -> usize {
    let x = describe(a);
    let y = describe(b);
    let mut diffs = Vec::new();
    for (p, na) in &x {
        match y.get(p) {
            None => diffs.push(format!("{}: missing from {}", p.display(), b.display())),
            Some(nb) => {
                let mut na = na.clone();
                let mut nb = nb.clone();
                if !owners {
                    na.owner = (0, 0);
                    nb.owner = (0, 0);
                }
                if na != nb {
                    diffs.push(format!("{}: {na:?} != {nb:?}", p.display()));
                }
            }
        }
    }
    for p in y.keys().filter(|p| !x.contains_key(*p)) {
        diffs.push(format!("{}: only in {}", p.display(), b.display()));
    }
    assert!(
        diffs.is_empty(),
        "{} differences between {} and {}:\n{}",
        diffs.len(),
        a.display(),
        b.display(),
        diffs.join("\n")
    );
    x.len()
}

/// Every path below `root` whose name ends in `.envarc-tmp` (left-over
/// temporary files of a restore).
pub fn temp_files(root: &Path) -> Vec<PathBuf> {
    describe(root)
        .into_keys()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.as_bytes().ends_with(b".envarc-tmp"))
        })
        .collect()
}
