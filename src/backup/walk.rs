//! Walking the trees to back up: which entries there are, with their metadata.
//! Content is read later, by the workers.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::pathmatch::PathMatcher;
use crate::progress::Progress;
use crate::repo::{Entry, EntryKind, Time};
use crate::{Error, Result};

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
        chunks: Vec::new(),
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
    pub excludes: &'a PathMatcher,
    pub one_file_system: bool,
    /// (device, inode) of a directory never to enter: the repository itself.
    pub skip_dir: Option<(u64, u64)>,
}

/// Walks every root. Problems with single entries are collected, not fatal.
///
/// Never leaves the tree through a symlink, even one that replaces a
/// directory while the walk runs: each directory is opened with `O_NOFOLLOW`
/// and must be the very directory (device and inode) its parent listed; its
/// entries are then listed and `lstat`ed through that open descriptor
/// (`/proc/self/fd/N/NAME`), so a parent swapped for a symlink meanwhile
/// changes nothing. (Without `/proc`, the listing goes by path after the
/// same check.) The workers check the device and inode of each file they
/// open against the scan's (see `store.rs`).
pub fn scan(roots: &[PathBuf], opts: &WalkOptions, progress: &dyn Progress) -> Scan {
    let mut scan = Scan::default();
    let mut w = Walker {
        opts,
        progress,
        scan: &mut scan,
        root_dev: 0,
    };
    for root in roots {
        let md = match std::fs::symlink_metadata(root) {
            Ok(md) => md,
            Err(e) => {
                w.error(format!("{}: cannot read metadata: {e}", root.display()));
                continue;
            }
        };
        w.root_dev = md.dev();
        let link = md
            .file_type()
            .is_symlink()
            .then(|| std::fs::read_link(root));
        w.visit(root, md, link);
    }
    scan
}

struct Walker<'a> {
    opts: &'a WalkOptions<'a>,
    progress: &'a dyn Progress,
    scan: &'a mut Scan,
    root_dev: u64,
}

impl Walker<'_> {
    fn error(&mut self, msg: String) {
        self.progress.warn(&msg);
        self.scan.errors.push(msg);
    }

    /// Records one entry and descends into directories. `link` is the
    /// symlink target, read by the caller where it could read it safely.
    fn visit(&mut self, path: &Path, md: Metadata, link: Option<std::io::Result<PathBuf>>) {
        if md.is_dir() && self.opts.skip_dir == Some((md.dev(), md.ino())) {
            return;
        }
        let Some(mut entry) = entry_of(path, &md) else {
            self.progress.warn(&format!(
                "{}: skipped: {} is not backed up",
                path.display(),
                other_kind(&md)
            ));
            self.scan.skipped += 1;
            return;
        };
        match link {
            Some(Ok(t)) => entry.link_target = Some(t.as_os_str().as_bytes().to_vec()),
            Some(Err(e)) => {
                return self.error(format!("{}: cannot read the symlink: {e}", path.display()))
            }
            None => {}
        }
        self.scan.entries.push(entry);
        self.progress.advance(1, 0);
        if md.is_dir() && (!self.opts.one_file_system || md.dev() == self.root_dev) {
            self.walk_dir(path, &md);
        }
    }

    fn walk_dir(&mut self, path: &Path, md: &Metadata) {
        use std::os::unix::fs::OpenOptionsExt;
        use std::os::unix::io::AsRawFd;
        let dir = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
            .open(path)
        {
            Ok(f) => f,
            Err(e) => {
                let cause = match e.raw_os_error() {
                    Some(libc::ELOOP) | Some(libc::ENOTDIR) => {
                        "it was replaced while being scanned; left out of this snapshot".into()
                    }
                    _ => e.to_string(),
                };
                return self.error(format!("{}: cannot list: {cause}", path.display()));
            }
        };
        match dir.metadata() {
            Ok(now) if now.dev() == md.dev() && now.ino() == md.ino() => {}
            Ok(_) => {
                return self.error(format!(
                "{}: cannot list: it was replaced while being scanned; left out of this snapshot",
                path.display()
            ))
            }
            Err(e) => return self.error(format!("{}: cannot list: {e}", path.display())),
        }
        let proc_fd = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
        let via = if proc_fd.is_dir() {
            proc_fd
        } else {
            path.to_path_buf()
        };
        let mut names = Vec::new();
        let listed = std::fs::read_dir(&via).and_then(|rd| {
            for e in rd {
                names.push(e?.file_name());
            }
            Ok(())
        });
        if let Err(e) = listed {
            return self.error(format!("{}: cannot list: {e}", path.display()));
        }
        names.sort();
        // Metadata of every child while the directory is held open; the
        // descriptor is closed before descending, so open files stay bounded.
        let mut children = Vec::with_capacity(names.len());
        for name in names {
            let child = path.join(&name);
            if self.opts.excludes.is_match(&child) {
                continue;
            }
            let child_via = via.join(&name);
            match std::fs::symlink_metadata(&child_via) {
                Ok(cmd) => {
                    // A symlink's target is read now, through the open directory.
                    let link = cmd
                        .file_type()
                        .is_symlink()
                        .then(|| std::fs::read_link(&child_via));
                    children.push((child, cmd, link));
                }
                Err(e) => self.error(format!("{}: cannot read metadata: {e}", child.display())),
            }
        }
        drop(dir);
        for (child, cmd, link) in children {
            self.visit(&child, cmd, link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
