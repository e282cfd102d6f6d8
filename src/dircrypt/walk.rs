//! Listing the input tree: its regular files and folders with the metadata
//! the plan needs. Symlinks, FIFOs, sockets and devices are reported and
//! skipped; nothing is followed (see `fsx.rs`): every folder is opened with
//! `O_NOFOLLOW` from its parent's handle and must be the very folder (device
//! and inode) its parent listed.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};

use super::fsx::{temp_target, Root};
use super::record::{Stamp, Time};
use crate::progress::Progress;

/// A regular file of the input tree.
#[derive(Clone, Debug)]
pub struct SourceFile {
    /// Relative to the input root; plain names only.
    pub rel: PathBuf,
    pub stamp: Stamp,
    pub mode: u32,
    pub dev: u64,
    pub ino: u64,
}

/// A folder below the input root.
#[derive(Clone, Debug)]
pub struct SourceDir {
    pub rel: PathBuf,
    pub mode: u32,
    pub mtime: Time,
}

/// What the walk found. Folders come before their contents; names sorted bytewise.
#[derive(Default)]
pub struct TreeScan {
    pub files: Vec<SourceFile>,
    pub dirs: Vec<SourceDir>,
    /// Entries of kinds that are not encrypted, phrased for the user.
    pub skipped: Vec<String>,
    /// Entries that could not be listed or read, phrased for the user.
    pub errors: Vec<String>,
}

fn kind_name(ft: FileType) -> &'static str {
    match ft {
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::BlockDevice => "a block device",
        FileType::CharacterDevice => "a character device",
        _ => "of an unknown kind",
    }
}

/// Walks the tree below `root`.
pub fn scan(root: &Root, progress: &dyn Progress) -> TreeScan {
    let mut w = Walker {
        root,
        progress,
        scan: TreeScan::default(),
    };
    match rfs::openat(
        root.fd(),
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => w.walk_dir(&fd, Path::new("")),
        Err(e) => w.error(Path::new(""), format!("cannot list: {e}")),
    }
    w.scan
}

struct Walker<'a> {
    root: &'a Root,
    progress: &'a dyn Progress,
    scan: TreeScan,
}

impl Walker<'_> {
    fn error(&mut self, rel: &Path, why: String) {
        let msg = format!("{}: {why}", self.root.path.join(rel).display());
        self.progress.warn(&msg);
        self.scan.errors.push(msg);
    }

    fn skip(&mut self, rel: &Path, why: &str) {
        let msg = format!("{}: skipped: {why}", self.root.path.join(rel).display());
        self.progress.warn(&msg);
        self.scan.skipped.push(msg);
    }

    fn walk_dir(&mut self, dir: &OwnedFd, rel: &Path) {
        let mut names = Vec::new();
        let listed = rfs::Dir::read_from(dir).and_then(|d| {
            for e in d {
                let name = e?.file_name().to_bytes().to_vec();
                if name != b"." && name != b".." {
                    names.push(name);
                }
            }
            Ok(())
        });
        if let Err(e) = listed {
            return self.error(rel, format!("cannot list: {e}"));
        }
        names.sort();
        for name in names {
            let name = OsStr::from_bytes(&name);
            let child = rel.join(name);
            let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(e) => {
                    self.error(&child, format!("cannot read metadata: {e}"));
                    continue;
                }
            };
            let ft = FileType::from_raw_mode(st.st_mode);
            let mode = st.st_mode & 0o7777;
            let mtime = Time {
                sec: st.st_mtime,
                nsec: st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
            };
            match ft {
                FileType::RegularFile if temp_target(name).is_some() => {
                    self.skip(&child, "a partial output of an interrupted envarc run")
                }
                FileType::RegularFile => {
                    self.scan.files.push(SourceFile {
                        rel: child,
                        stamp: Stamp {
                            size: st.st_size as u64,
                            mtime,
                        },
                        mode,
                        dev: st.st_dev,
                        ino: st.st_ino,
                    });
                    self.progress.advance(1, 0);
                }
                FileType::Directory => {
                    let sub = match rfs::openat(dir, name, super::fsx::DIR_FLAGS, Mode::empty()) {
                        Ok(fd) => fd,
                        Err(e) => {
                            self.error(&child, format!("cannot list: {e}"));
                            continue;
                        }
                    };
                    match rfs::fstat(&sub) {
                        Ok(now) if now.st_dev == st.st_dev && now.st_ino == st.st_ino => {}
                        _ => {
                            self.error(&child, "was replaced while being listed; left out".into());
                            continue;
                        }
                    }
                    self.scan.dirs.push(SourceDir {
                        rel: child.clone(),
                        mode,
                        mtime,
                    });
                    self.walk_dir(&sub, &child);
                }
                other => self.skip(&child, &format!("{} is not encrypted", kind_name(other))),
            }
        }
    }
}
