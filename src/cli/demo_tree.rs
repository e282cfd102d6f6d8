//! The demo's sample tree, embedded in the binary (so `envarc demo` works
//! from any folder, with no checkout beside it), and a way to capture a tree
//! and compare two captures (what was backed up with what was restored).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use envarc::{Error, Result};

/// The files of `fixtures/sample`, by relative path.
pub const SAMPLE_FILES: &[(&str, &[u8])] = &[
    (
        "README.txt",
        include_bytes!("../../fixtures/sample/README.txt"),
    ),
    (
        "data/blob.bin",
        include_bytes!("../../fixtures/sample/data/blob.bin"),
    ),
    (
        "docs/2026/report.csv",
        include_bytes!("../../fixtures/sample/docs/2026/report.csv"),
    ),
    (
        "docs/notes.md",
        include_bytes!("../../fixtures/sample/docs/notes.md"),
    ),
];

/// The symbolic links of `fixtures/sample`: path, target.
pub const SAMPLE_LINKS: &[(&str, &str)] = &[("notes-link.md", "docs/notes.md")];

fn io(what: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::io(format!("writing {}", what.display()), e)
}

/// Writes the sample tree into `dir` (which must exist).
pub fn write_sample(dir: &Path) -> Result<()> {
    for (rel, bytes) in SAMPLE_FILES {
        let p = dir.join(rel);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).map_err(io(parent))?;
        }
        fs::write(&p, bytes).map_err(io(&p))?;
    }
    for (rel, target) in SAMPLE_LINKS {
        let p = dir.join(rel);
        std::os::unix::fs::symlink(target, &p).map_err(io(&p))?;
    }
    Ok(())
}

/// One entry of a captured tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// SHA-256 of the content, and the permission bits.
    File([u8; 32], u32),
    Dir(u32),
    Symlink(PathBuf),
}

impl std::fmt::Display for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::File(h, mode) => write!(f, "file sha256 {}… mode {mode:o}", hex::encode(&h[..6])),
            Node::Dir(mode) => write!(f, "folder mode {mode:o}"),
            Node::Symlink(t) => write!(f, "symlink to {}", t.display()),
        }
    }
}

/// A tree as captured: relative path -> entry.
pub type Tree = BTreeMap<PathBuf, Node>;

/// Captures everything below `root` (not `root` itself).
pub fn capture(root: &Path) -> Result<Tree> {
    let mut out = Tree::new();
    for e in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let e = e.map_err(|e| Error::Other(format!("reading {}: {e}", root.display())))?;
        let rel = e
            .path()
            .strip_prefix(root)
            .expect("below root")
            .to_path_buf();
        let read = |e: std::io::Error| Error::io(format!("reading {}", rel.display()), e);
        let md = fs::symlink_metadata(e.path()).map_err(read)?;
        let mode = md.permissions().mode() & 0o7777;
        let node = if md.file_type().is_symlink() {
            Node::Symlink(fs::read_link(e.path()).map_err(read)?)
        } else if md.is_dir() {
            Node::Dir(mode)
        } else {
            let bytes = fs::read(e.path()).map_err(read)?;
            Node::File(Sha256::digest(&bytes).into(), mode)
        };
        out.insert(rel, node);
    }
    Ok(out)
}

/// What differs between two captures, one line per path.
pub fn differences(expected: &Tree, found: &Tree) -> Vec<String> {
    let mut out = Vec::new();
    for (p, n) in expected {
        match found.get(p) {
            None => out.push(format!("{}: missing", p.display())),
            Some(m) if m != n => out.push(format!("{}: differs ({n} vs {m})", p.display())),
            Some(_) => {}
        }
    }
    for p in found.keys().filter(|p| !expected.contains_key(*p)) {
        out.push(format!("{}: not in the backup", p.display()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded list is the fixture folder, no more and no less.
    #[test]
    fn embedded_sample_matches_the_fixtures_folder() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample");
        let on_disk = capture(&dir).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        write_sample(tmp.path()).unwrap();
        let written = capture(tmp.path()).unwrap();
        let strip_modes = |t: &Tree| -> Vec<(PathBuf, Option<[u8; 32]>, Option<PathBuf>)> {
            t.iter()
                .map(|(p, n)| match n {
                    Node::File(h, _) => (p.clone(), Some(*h), None),
                    Node::Dir(_) => (p.clone(), None, None),
                    Node::Symlink(t) => (p.clone(), None, Some(t.clone())),
                })
                .collect()
        };
        assert_eq!(strip_modes(&on_disk), strip_modes(&written));
        assert!(differences(&written, &written).is_empty());
    }
}
