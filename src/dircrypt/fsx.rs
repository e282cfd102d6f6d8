//! File-system access for directory mode, never through a symlink inside
//! either tree (the O_NOFOLLOW discipline of backup and restore).
//!
//! Both roots are opened once (a symlink naming a root is followed: it is the
//! user's own choice); every path below is resolved one component at a time
//! with `openat(O_DIRECTORY | O_NOFOLLOW)` from the root's handle, so a
//! component that is a symlink, or that was swapped for one since the scan,
//! makes the open fail instead of leading elsewhere. Files are created under
//! a temporary name with `O_EXCL | O_NOFOLLOW` and renamed into place with
//! `renameat` (`RENAME_NOREPLACE` when an existing file must survive).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rand::RngCore;
use rustix::fs::{self as rfs, AtFlags, FileType, FlockOperation, Mode, OFlags, RenameFlags};
use rustix::io::Errno;

use super::record::{Stamp, Time};

pub const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Mode of output folders while files are written into them; each one gets
/// its source folder's mode at the end of the run.
pub const WORK_DIR_MODE: u32 = 0o700;

/// Ending of the temporary files an output is written to (see [`temp_name`]).
pub const TEMP_ENDING: &str = ".envarc-tmp";

/// A folder held open: one of the two roots.
pub struct Root {
    fd: OwnedFd,
    pub path: PathBuf,
}

impl Root {
    /// Opens an existing folder.
    pub fn open(path: &Path) -> io::Result<Root> {
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens a folder, creating it and its parents first if missing; says
    /// whether it created the folder itself.
    pub fn create(path: &Path) -> io::Result<(Root, bool)> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let created = match std::fs::create_dir(path) {
            Ok(()) => true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
            Err(e) => return Err(e),
        };
        Ok((Root::open(path)?, created))
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Takes the run's exclusive lock on this folder (`flock` on its handle,
    /// so nothing is written into the tree); fails at once if another run
    /// holds it. Released when the process ends.
    pub fn lock(&self) -> io::Result<()> {
        rfs::flock(&self.fd, FlockOperation::NonBlockingLockExclusive).map_err(io::Error::from)
    }

    /// Opens the folder `rel` below the root (`""` is the root itself),
    /// creating missing folders when `create` (mode [`WORK_DIR_MODE`]).
    pub fn dir(&self, rel: &Path, create: bool) -> io::Result<OwnedFd> {
        let mut cur = rfs::openat(&self.fd, ".", DIR_FLAGS, Mode::empty())?;
        for name in components(rel)? {
            cur = match rfs::openat(&cur, name, DIR_FLAGS, Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(&cur, name, Mode::from_raw_mode(WORK_DIR_MODE)) {
                        Ok(()) | Err(Errno::EXIST) => {}
                        Err(e) => return Err(e.into()),
                    }
                    rfs::openat(&cur, name, DIR_FLAGS, Mode::empty())?
                }
                Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
                    return Err(io::Error::other(format!(
                        "{} is a symlink or not a folder, and envarc never follows symlinks inside a tree",
                        self.path.join(rel).display()
                    )))
                }
                Err(e) => return Err(e.into()),
            };
        }
        Ok(cur)
    }

    /// Opens the regular file `rel` for reading without following a symlink
    /// (nor blocking on a FIFO swapped in since the scan).
    pub fn open_file(&self, rel: &Path) -> io::Result<File> {
        let (parent, name) = split(rel)?;
        let dir = self.dir(parent, false)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rfs::openat(&dir, name, flags, Mode::empty()).map_err(|e| match e {
            Errno::LOOP => io::Error::other("is now a symlink; left alone"),
            e => e.into(),
        })?;
        Ok(File::from(fd))
    }

    /// What is at `rel` now, without following a symlink.
    pub fn probe(&self, rel: &Path) -> io::Result<Found> {
        let (parent, name) = split(rel)?;
        let dir = match self.dir(parent, false) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Absent),
            Err(e) => return Err(e),
        };
        match rfs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(match FileType::from_raw_mode(st.st_mode) {
                FileType::RegularFile => Found::File(stamp_of(&st)),
                FileType::Directory => Found::Other("a folder"),
                FileType::Symlink => Found::Other("a symlink"),
                _ => Found::Other("a special file"),
            }),
            Err(Errno::NOENT) => Ok(Found::Absent),
            Err(e) => Err(e.into()),
        }
    }
}

/// Opens the existing regular file `name` of the folder `dir` for reading,
/// never through a symlink.
pub fn open_in(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<File> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    Ok(File::from(rfs::openat(dir, name, flags, Mode::empty())?))
}

/// What a probe found at a path.
pub enum Found {
    Absent,
    File(Stamp),
    Other(&'static str),
}

fn stamp_of(st: &rfs::Stat) -> Stamp {
    Stamp {
        size: st.st_size as u64,
        mtime: Time {
            sec: st.st_mtime,
            nsec: st.st_mtime_nsec.clamp(0, 999_999_999) as u32,
        },
    }
}

/// The names of a relative path; anything but plain names is refused.
fn components(rel: &Path) -> io::Result<Vec<&OsStr>> {
    rel.components()
        .map(|c| match c {
            Component::Normal(n) => Ok(n),
            _ => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", rel.display()),
            )),
        })
        .collect()
}

/// Splits a relative file path into its folder and its name.
pub fn split(rel: &Path) -> io::Result<(&Path, &OsStr)> {
    match (rel.parent(), rel.file_name()) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file", rel.display()),
        )),
    }
}

/// `.NAME.<12 hex>.envarc-tmp`: hidden, unique, and recognisable as ours.
fn temp_name(final_name: &OsStr) -> OsString {
    let mut r = [0u8; 6];
    rand::thread_rng().fill_bytes(&mut r);
    let mut n = b".".to_vec();
    n.extend_from_slice(final_name.as_bytes());
    n.push(b'.');
    n.extend_from_slice(hex::encode(r).as_bytes());
    n.extend_from_slice(TEMP_ENDING.as_bytes());
    <OsString as std::os::unix::ffi::OsStringExt>::from_vec(n)
}

/// The final name a temporary file of this module stands for, if `name` is
/// one (`.NAME.<12 hex>.envarc-tmp`).
pub fn temp_target(name: &OsStr) -> Option<&OsStr> {
    let b = name.as_bytes().strip_suffix(TEMP_ENDING.as_bytes())?;
    let b = b.strip_prefix(b".")?;
    let (stem, hexpart) = b.split_at(b.len().checked_sub(13)?);
    let hexpart = hexpart.strip_prefix(b".")?;
    (!stem.is_empty() && hexpart.iter().all(|c| c.is_ascii_hexdigit()))
        .then(|| OsStr::from_bytes(stem))
}

/// Removes the temporary files an interrupted run left in `dir` for the
/// names in `targets`; returns how many it removed.
pub fn remove_leftovers(
    dir: BorrowedFd<'_>,
    targets: &dyn Fn(&OsStr) -> bool,
) -> io::Result<usize> {
    let mut removed = 0;
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        if temp_target(name).is_some_and(targets) {
            match rfs::unlinkat(dir, name, AtFlags::empty()) {
                Ok(()) => removed += 1,
                Err(Errno::NOENT) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(removed)
}

/// A new file under a temporary name: removed on drop unless renamed into place.
pub struct Temp<'d> {
    dir: BorrowedFd<'d>,
    name: OsString,
    armed: bool,
}

impl<'d> Temp<'d> {
    /// Creates an empty file (mode 0600, never an existing name) beside `final_name`.
    pub fn create(dir: BorrowedFd<'d>, final_name: &OsStr) -> io::Result<(Temp<'d>, File)> {
        let name = temp_name(final_name);
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rfs::openat(dir, &name, flags, Mode::from_raw_mode(0o600))?;
        Ok((
            Temp {
                dir,
                name,
                armed: true,
            },
            File::from(fd),
        ))
    }

    /// Renames the file to `final_name`. Without `replace` an existing file
    /// there is kept and `Ok(false)` returned (the temporary file is removed).
    pub fn commit(mut self, final_name: &OsStr, replace: bool) -> io::Result<bool> {
        let flags = if replace {
            RenameFlags::empty()
        } else {
            RenameFlags::NOREPLACE
        };
        match rfs::renameat_with(self.dir, &self.name, self.dir, final_name, flags) {
            Ok(()) => {
                self.armed = false;
                Ok(true)
            }
            Err(Errno::EXIST) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }
}

impl Drop for Temp<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = rfs::unlinkat(self.dir, &self.name, AtFlags::empty());
        }
    }
}

fn timespec(t: Time) -> rfs::Timespec {
    rfs::Timespec {
        tv_sec: t.sec,
        tv_nsec: t.nsec as _,
    }
}

/// Gives an open file or folder its permission bits (setuid, setgid and
/// sticky dropped: a tree handed around must not grow privileges) and its
/// access and modification times.
pub fn set_meta(fd: impl AsFd, mode: u32, mtime: Time) -> io::Result<()> {
    rfs::fchmod(&fd, Mode::from_raw_mode(mode & 0o777))?;
    set_mtime(fd, mtime)
}

/// Sets the access and modification times of an open file or folder.
fn set_mtime(fd: impl AsFd, mtime: Time) -> io::Result<()> {
    let t = timespec(mtime);
    rfs::futimens(
        &fd,
        &rfs::Timestamps {
            last_access: t,
            last_modification: t,
        },
    )?;
    Ok(())
}

/// Gives the output root its mtime, and its mode when one is given.
pub fn set_root_meta(root: &Root, mode: Option<u32>, mtime: Time) -> io::Result<()> {
    match mode {
        Some(m) => set_meta(root.fd(), m, mtime),
        None => set_mtime(root.fd(), mtime),
    }
}

/// Makes sure the owner may add files to an existing output folder (a
/// folder's own mode, applied at the end of a run, may forbid it).
pub fn ensure_writable(dir: impl AsFd) -> io::Result<()> {
    let st = rfs::fstat(&dir)?;
    if st.st_mode & 0o700 != 0o700 {
        rfs::fchmod(&dir, Mode::from_raw_mode((st.st_mode | 0o700) & 0o7777))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised_and_nothing_else_is() {
        let t = temp_name(OsStr::new("a.txt.encrypted"));
        assert_eq!(temp_target(&t), Some(OsStr::new("a.txt.encrypted")));
        for other in [
            ".a.txt.envarc-tmp",
            "a.txt.0123456789ab.envarc-tmp",
            "..0123456789ab.envarc-tmp",
            ".a.0123456789xz.envarc-tmp",
            ".a.0123456789ab.envarc-tmpx",
        ] {
            assert_eq!(temp_target(OsStr::new(other)), None, "{other}");
        }
    }

    #[test]
    fn paths_never_leave_the_root_through_a_symlink() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        let root_path = d.path().join("root");
        std::fs::create_dir(&root_path).unwrap();
        std::os::unix::fs::symlink(&outside, root_path.join("link")).unwrap();
        std::fs::write(outside.join("f"), b"x").unwrap();
        let root = Root::open(&root_path).unwrap();
        assert!(root.dir(Path::new("link"), true).is_err());
        assert!(root.dir(Path::new("link/sub"), true).is_err());
        assert!(root.open_file(Path::new("link/f")).is_err());
        assert!(root.dir(Path::new("../outside"), false).is_err());
        assert!(matches!(
            root.probe(Path::new("link")).unwrap(),
            Found::Other("a symlink")
        ));
        assert!(root.probe(Path::new("link/f")).is_err());
        assert!(!outside.join("sub").exists());
    }

    #[test]
    fn commit_without_replace_keeps_an_existing_file() {
        let d = tempfile::tempdir().unwrap();
        let root = Root::open(d.path()).unwrap();
        let dir = root.dir(Path::new("a/b"), true).unwrap();
        std::fs::write(d.path().join("a/b/x"), b"old").unwrap();
        let (t, mut f) = Temp::create(dir.as_fd(), OsStr::new("x")).unwrap();
        io::Write::write_all(&mut f, b"new").unwrap();
        assert!(!t.commit(OsStr::new("x"), false).unwrap());
        assert_eq!(std::fs::read(d.path().join("a/b/x")).unwrap(), b"old");
        let (t, mut f) = Temp::create(dir.as_fd(), OsStr::new("x")).unwrap();
        io::Write::write_all(&mut f, b"new").unwrap();
        assert!(t.commit(OsStr::new("x"), true).unwrap());
        assert_eq!(std::fs::read(d.path().join("a/b/x")).unwrap(), b"new");
        let names: Vec<_> = std::fs::read_dir(d.path().join("a/b")).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
    }
}
