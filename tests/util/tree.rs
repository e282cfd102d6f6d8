//! The one place the tests capture a file tree: its entries with their
//! metadata, its contents, its files and their size, a comparable
//! description (kind, mode, mtime to the nanosecond, size, content digest,
//! symlink target, owner) and a comparison of two trees listing every
//! difference; and a copy that keeps mtimes.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs::Metadata;
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

/// Every entry below `root` (not `root` itself) by relative path, with its
/// own metadata (symlinks not followed): the one walk the other captures
/// here are made from.
pub fn entries(root: &Path) -> BTreeMap<PathBuf, Metadata> {
    let mut out = BTreeMap::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, Metadata>) {
    let path = root.join(rel);
    let listing = std::fs::read_dir(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for e in listing {
        let e = e.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let rel = rel.join(e.file_name());
        let md = e
            .metadata()
            .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
        let is_dir = md.is_dir();
        out.insert(rel.clone(), md);
        if is_dir {
            walk(root, &rel, out);
        }
    }
}

/// Every entry below `root` (and `root` itself, as ""), by relative path.
pub fn describe(root: &Path) -> BTreeMap<PathBuf, Node> {
    let top = std::fs::symlink_metadata(root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let mut out = BTreeMap::from([(PathBuf::new(), node(root, &top))]);
    if top.is_dir() {
        for (rel, md) in entries(root) {
            let n = node(&root.join(&rel), &md);
            out.insert(rel, n);
        }
    }
    out
}

fn node(path: &Path, md: &Metadata) -> Node {
    let ft = md.file_type();
    let (kind, digest, link) = if ft.is_symlink() {
        (
            "symlink",
            None,
            Some(std::fs::read_link(path).unwrap().into_os_string()),
        )
    } else if ft.is_dir() {
        ("dir", None, None)
    } else if ft.is_file() {
        let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        ("file", Some(Sha256::digest(&data).into()), None)
    } else {
        ("other", None, None)
    };
    Node {
        kind,
        mode: (!ft.is_symlink()).then_some(md.mode() & 0o7777),
        mtime: (md.mtime(), md.mtime_nsec()),
        size: if ft.is_dir() { 0 } else { md.size() },
        digest,
        link,
        owner: (md.uid(), md.gid()),
    }
}

/// A tree as backed up: relative path → content (`None` for folders and
/// anything else that is not a regular file).
pub type Contents = BTreeMap<PathBuf, Option<Vec<u8>>>;

/// The [`Contents`] of the tree below `root`.
pub fn contents(root: &Path) -> Contents {
    entries(root)
        .into_iter()
        .map(|(rel, md)| {
            let content = md.is_file().then(|| read(&root.join(&rel)));
            (rel, content)
        })
        .collect()
}

/// The regular files below `root`: relative path → content.
pub fn file_contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    entries(root)
        .into_iter()
        .filter(|(_, md)| md.is_file())
        .map(|(rel, _)| {
            let content = read(&root.join(&rel));
            (rel, content)
        })
        .collect()
}

/// The regular files below `root`, relative to it, sorted; none when
/// `root` does not exist (an object store has no empty folders).
pub fn files(root: &Path) -> Vec<PathBuf> {
    if !root.exists() {
        return Vec::new();
    }
    entries(root)
        .into_iter()
        .filter(|(_, md)| md.is_file())
        .map(|(rel, _)| rel)
        .collect()
}

/// The bytes of the regular files below `root` (0 when it does not exist).
pub fn total_size(root: &Path) -> u64 {
    files(root)
        .iter()
        .map(|rel| std::fs::symlink_metadata(root.join(rel)).unwrap().len())
        .sum()
}

/// Copies the tree below `from` into `to` (made if missing; what is there
/// stays unless overwritten) with `cp -a`, so modes and mtimes are kept.
pub fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap_or_else(|e| panic!("{}: {e}", to.display()));
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status()
        .expect("running cp")
        .success();
    assert!(ok, "cp -a {}/. {}", from.display(), to.display());
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
