//! Walking the trees to back up: which entries there are, with their metadata.
//! Content is read later, by the workers.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use globset::{Candidate, GlobBuilder, GlobSet, GlobSetBuilder};

use crate::progress::Progress;
use crate::repo::{Entry, EntryKind, Time};
use crate::{Error, Result};

/// `--exclude` patterns. A pattern without `/` matches an entry's name at any
/// depth (`*.tmp`, `node_modules`); a pattern with `/` matches the whole
/// absolute path (`/home/*/.cache`, `**/build/*.o`), where `*` does not cross
/// a `/` and `**` does. An excluded directory is not entered.
pub struct Excludes {
    names: GlobSet,
    paths: GlobSet,
}

impl Excludes {
    pub fn new(patterns: &[String]) -> Result<Excludes> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let p = p.trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            let glob = GlobBuilder::new(p)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::Usage(format!("bad --exclude pattern '{p}': {e}")))?;
            if p.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build()
                .map_err(|e| Error::Usage(format!("bad --exclude pattern: {e}")))
        };
        Ok(Excludes {
            names: build(names)?,
            paths: build(paths)?,
        })
    }

    /// Reads an `--exclude-file`: one pattern per line; blank lines and lines
    /// starting with `#` are ignored.
    pub fn read_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::io(format!("reading the exclude file {}", path.display()), e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    pub fn is_excluded(&self, path: &Path) -> bool {
        if let Some(name) = path.file_name() {
            if self
                .names
                .is_match_candidate(&Candidate::from_bytes(name.as_bytes()))
            {
                return true;
            }
        }
        self.paths.is_match(path)
    }
}

/// Makes a path absolute and clean, lexically (no symlink is resolved, as
/// the user named it): `.` and `..` removed, no trailing `/`.
pub fn clean_absolute(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io("reading the current folder", e))?
            .join(p)
    };
    let mut out = PathBuf::from("/");
    for c in abs.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Ok(out)
}

/// The distinct roots to walk: absolute, clean, sorted, none inside another.
pub fn roots(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut abs = paths
        .iter()
        .map(|p| clean_absolute(p))
        .collect::<Result<Vec<_>>>()?;
    abs.sort();
    abs.dedup();
    let mut out: Vec<PathBuf> = Vec::new();
    for p in abs {
        if !out.iter().any(|r| p.starts_with(r)) {
            out.push(p);
        }
    }
    for p in &out {
        std::fs::symlink_metadata(p)
            .map_err(|e| Error::io(format!("cannot back up {}", p.display()), e))?;
    }
    Ok(out)
}

fn time(sec: i64, nsec: i64) -> Time {
    Time {
        sec,
        nsec: nsec.clamp(0, 999_999_999) as u32,
    }
}

/// An entry with the metadata of `md`; `None` for kinds envarc does not store.
pub fn entry_of(path: &Path, md: &Metadata) -> Option<Entry> {
    let ft = md.file_type();
    let kind = if ft.is_file() {
        EntryKind::File
    } else if ft.is_dir() {
        EntryKind::Dir
    } else if ft.is_symlink() {
        EntryKind::Symlink
    } else {
        return None;
    };
    Some(Entry {
        path: path.as_os_str().as_bytes().to_vec(),
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: time(md.mtime(), md.mtime_nsec()),
        ctime: time(md.ctime(), md.ctime_nsec()),
        size: md.size(),
        inode: md.ino(),
        device: md.dev(),
        nlink: md.nlink(),
        link_target: None,
        content: None,
    })
}

/// Names a kind that is skipped, for the warning.
fn other_kind(md: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let ft = md.file_type();
    if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_socket() {
        "a socket"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_char_device() {
        "a character device"
    } else {
        "of an unknown kind"
    }
}

/// What the walk found.
#[derive(Default)]
pub struct Scan {
    /// In walk order: each root, then its contents, names sorted bytewise.
    pub entries: Vec<Entry>,
    pub skipped: u64,
    /// Entries that could not be listed or read, phrased for the user.
    pub errors: Vec<String>,
}

pub struct WalkOptions<'a> {
    pub excludes: &'a Excludes,
    pub one_file_system: bool,
    /// (device, inode) of a directory never to enter: the repository itself.
    pub skip_dir: Option<(u64, u64)>,
}

/// Walks every root. Problems with single entries are collected, not fatal.
pub fn scan(roots: &[PathBuf], opts: &WalkOptions, progress: &dyn Progress) -> Scan {
    let mut scan = Scan::default();
    for root in roots {
        let mut it = walkdir::WalkDir::new(root)
            .follow_links(false)
            .follow_root_links(false)
            .same_file_system(opts.one_file_system)
            .sort_by_file_name()
            .into_iter();
        while let Some(next) = it.next() {
            let de = match next {
                Ok(de) => de,
                Err(e) => {
                    let path = e
                        .path()
                        .map(|p| p.display().to_string())
                        .unwrap_or_else(|| root.display().to_string());
                    let cause = e
                        .io_error()
                        .map(|io| io.to_string())
                        .unwrap_or_else(|| e.to_string());
                    let msg = format!("{path}: cannot list: {cause}");
                    progress.warn(&msg);
                    scan.errors.push(msg);
                    continue;
                }
            };
            let path = de.path();
            if de.depth() > 0 && opts.excludes.is_excluded(path) {
                if de.file_type().is_dir() {
                    it.skip_current_dir();
                }
                continue;
            }
            let md = match de.metadata() {
                Ok(md) => md,
                Err(e) => {
                    let cause = e
                        .io_error()
                        .map(|io| io.to_string())
                        .unwrap_or_else(|| e.to_string());
                    let msg = format!("{}: cannot read metadata: {cause}", path.display());
                    progress.warn(&msg);
                    scan.errors.push(msg);
                    continue;
                }
            };
            if md.is_dir() && opts.skip_dir == Some((md.dev(), md.ino())) {
                it.skip_current_dir();
                continue;
            }
            let Some(mut entry) = entry_of(path, &md) else {
                progress.warn(&format!(
                    "{}: skipped: {} is not backed up",
                    path.display(),
                    other_kind(&md)
                ));
                scan.skipped += 1;
                continue;
            };
            if entry.kind == EntryKind::Symlink {
                match std::fs::read_link(path) {
                    Ok(t) => entry.link_target = Some(t.as_os_str().as_bytes().to_vec()),
                    Err(e) => {
                        let msg = format!("{}: cannot read the symlink: {e}", path.display());
                        progress.warn(&msg);
                        scan.errors.push(msg);
                        continue;
                    }
                }
            }
            scan.entries.push(entry);
            progress.advance(1, 0);
        }
    }
    scan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excludes_match_names_anywhere_and_paths_from_the_root() {
        let ex = Excludes::new(&[
            "*.tmp".into(),
            "node_modules/".into(),
            "/home/*/.cache".into(),
            "**/build/*.o".into(),
        ])
        .unwrap();
        for yes in [
            "/a/b/x.tmp",
            "/x/node_modules",
            "/home/u/.cache",
            "/p/q/build/m.o",
        ] {
            assert!(ex.is_excluded(Path::new(yes)), "{yes}");
        }
        for no in [
            "/a/b/x.tmpl",
            "/home/u/v/.cache",
            "/p/build/sub/m.o",
            "/home/u/.cachex",
        ] {
            assert!(!ex.is_excluded(Path::new(no)), "{no}");
        }
        assert!(Excludes::new(&["a[".into()]).is_err());
    }

    #[test]
    fn paths_are_made_absolute_lexically() {
        assert_eq!(
            clean_absolute(Path::new("/a/./b/../c/")).unwrap(),
            Path::new("/a/c")
        );
        assert_eq!(clean_absolute(Path::new("/..")).unwrap(), Path::new("/"));
        let rel = clean_absolute(Path::new("x/y")).unwrap();
        assert_eq!(rel, std::env::current_dir().unwrap().join("x/y"));
    }

    #[test]
    fn nested_roots_collapse() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::create_dir_all(a.join("b")).unwrap();
        let r = roots(&[a.join("b"), a.clone(), a.join("./b/..")]).unwrap();
        assert_eq!(r, vec![a.clone()]);
        assert!(roots(&[d.path().join("missing")]).is_err());
    }
}
