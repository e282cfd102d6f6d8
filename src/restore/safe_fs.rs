//! Writing under the restore target without ever leaving it (invariant 5).
//!
//! Paths are resolved one component at a time from a handle on the target
//! folder with `openat(O_DIRECTORY | O_NOFOLLOW)`: a component that is a
//! symlink (one this restore created, or one already in the target) makes
//! the open fail instead of being followed. Names are created, replaced and
//! changed with the `*at` calls relative to their parent's handle, never
//! following a symlink either. `..`, `.` and empty components never get here:
//! the plan (plan.rs) refuses such manifest entries before anything is written.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rand::RngCore;
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;

use crate::repo::{Entry, Time};

/// Mode of folders while their contents are written (an entry's own mode is
/// applied last), and of folders above the backed-up paths, whose real
/// permissions the snapshot does not hold.
pub const WORK_DIR_MODE: u32 = 0o700;

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// A relative path's components, for messages.
pub fn display(comps: &[&[u8]]) -> String {
    let joined: Vec<u8> = comps.join(&b'/');
    String::from_utf8_lossy(&joined).into_owned()
}

fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

fn err(kind: io::ErrorKind, msg: String) -> io::Error {
    io::Error::new(kind, msg)
}

/// The folder everything is restored into, held open.
pub struct Target {
    fd: OwnedFd,
    path: PathBuf,
}

impl Target {
    /// Opens the target folder, creating it (and its parents) if missing. The
    /// target is the user's own choice, so a symlink naming it is followed.
    pub fn open(path: &Path) -> io::Result<Target> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(WORK_DIR_MODE)
            .create(path)?;
        let fd = rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Target {
            fd,
            path: path.to_path_buf(),
        })
    }

    /// Opens an existing target folder; `None` when it does not exist.
    pub fn open_existing(path: &Path) -> io::Result<Option<Target>> {
        match rfs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Ok(Some(Target {
                fd,
                path: path.to_path_buf(),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Opens the folder at `comps` below the target without following any
    /// symlink. With `create`, missing folders are made with
    /// [`WORK_DIR_MODE`]. Returns the handle and whether the last component
    /// was created by this call.
    pub fn open_dir(&self, comps: &[&[u8]], create: bool) -> io::Result<(OwnedFd, bool)> {
        let mut cur = rfs::openat(self.fd(), ".", DIR_FLAGS, Mode::empty())?;
        let mut created = false;
        for (i, c) in comps.iter().enumerate() {
            created = false;
            let next = match rfs::openat(&cur, os(c), DIR_FLAGS, Mode::empty()) {
                Err(Errno::NOENT) if create => {
                    match rfs::mkdirat(&cur, os(c), Mode::from_raw_mode(WORK_DIR_MODE)) {
                        Ok(()) => created = true,
                        Err(Errno::EXIST) => {}
                        Err(e) => {
                            return Err(err(
                                io::Error::from(e).kind(),
                                format!("cannot create folder {}: {e}", display(&comps[..=i])),
                            ))
                        }
                    }
                    rfs::openat(&cur, os(c), DIR_FLAGS, Mode::empty())
                }
                other => other,
            };
            cur = next.map_err(|e| walk_error(&cur, comps, i, e))?;
        }
        Ok((cur, created))
    }
}

/// Explains why component `i` of `comps` could not be opened as a folder.
fn walk_error(parent: &OwnedFd, comps: &[&[u8]], i: usize, e: Errno) -> io::Error {
    let name = display(&comps[..=i]);
    let st = lstat_at(parent, comps[i]).ok().flatten();
    match st.map(|s| FileType::from_raw_mode(s.st_mode)) {
        Some(FileType::Symlink) => err(
            io::ErrorKind::Other,
            format!("{name} is a symlink in the target; envarc never writes through a symlink"),
        ),
        Some(t) if t != FileType::Directory => err(
            io::ErrorKind::Other,
            format!("{name} is in the way: it is not a folder in the target"),
        ),
        _ => err(
            io::Error::from(e).kind(),
            format!("cannot open folder {name}: {e}"),
        ),
    }
}

/// `lstat` of `name` in `dir`; `None` when nothing is there.
pub fn lstat_at(dir: impl AsFd, name: &[u8]) -> io::Result<Option<Stat>> {
    match rfs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(s) => Ok(Some(s)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

/// The mtime of a stat, exact to the nanosecond.
// The fields' integer types differ between architectures.
#[allow(clippy::unnecessary_cast)]
pub fn mtime(st: &Stat) -> Time {
    Time {
        sec: st.st_mtime as i64,
        nsec: st.st_mtime_nsec as u32,
    }
}

pub fn read_link_at(dir: impl AsFd, name: &[u8]) -> io::Result<Vec<u8>> {
    Ok(rfs::readlinkat(dir, os(name), Vec::new())?.into_bytes())
}

/// Removes a file or symlink in the way (never a folder).
pub fn remove_at(dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    Ok(rfs::unlinkat(dir, os(name), AtFlags::empty())?)
}

pub fn mkdir_at(dir: impl AsFd, name: &[u8]) -> io::Result<()> {
    Ok(rfs::mkdirat(
        dir,
        os(name),
        Mode::from_raw_mode(WORK_DIR_MODE),
    )?)
}

/// A temporary name beside a final one: `.NAME.RANDOM.envarc-tmp`, with NAME
/// cut so that the whole stays within the 255-byte limit of a file name.
fn temp_name(final_name: &[u8]) -> Vec<u8> {
    let mut r = [0u8; 6];
    rand::rngs::OsRng.fill_bytes(&mut r);
    let keep = &final_name[..final_name.len().min(200)];
    let mut n = Vec::with_capacity(keep.len() + 32);
    n.push(b'.');
    n.extend_from_slice(keep);
    n.push(b'.');
    n.extend_from_slice(hex::encode(r).as_bytes());
    n.extend_from_slice(b".envarc-tmp");
    n
}

/// A temporary entry in a folder: removed on drop unless renamed into place.
pub struct TempEntry<'d> {
    dir: BorrowedFd<'d>,
    name: Vec<u8>,
    armed: bool,
}

impl<'d> TempEntry<'d> {
    /// Creates a new empty file (mode 0600, never an existing name) beside
    /// `final_name`.
    pub fn file(dir: BorrowedFd<'d>, final_name: &[u8]) -> io::Result<(TempEntry<'d>, File)> {
        let name = temp_name(final_name);
        let fd = rfs::openat(
            dir,
            os(&name),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        Ok((
            TempEntry {
                dir,
                name,
                armed: true,
            },
            File::from(fd),
        ))
    }

    /// Creates a symlink to `target` beside `final_name`.
    pub fn symlink(dir: BorrowedFd<'d>, final_name: &[u8], target: &[u8]) -> io::Result<Self> {
        let name = temp_name(final_name);
        rfs::symlinkat(os(target), dir, os(&name))?;
        Ok(TempEntry {
            dir,
            name,
            armed: true,
        })
    }

    pub fn name(&self) -> &[u8] {
        &self.name
    }

    /// Renames the temporary entry to `final_name`, replacing a file or
    /// symlink there (rename never follows a symlink at the destination).
    pub fn commit(mut self, final_name: &[u8]) -> io::Result<()> {
        rfs::renameat(self.dir, os(&self.name), self.dir, os(final_name))?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for TempEntry<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = rfs::unlinkat(self.dir, os(&self.name), AtFlags::empty());
        }
    }
}

fn timestamps(t: Time) -> Timestamps {
    Timestamps {
        // The snapshot holds no access time; leave it as the restore set it.
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: t.sec,
            tv_nsec: t.nsec.min(999_999_999) as _,
        },
    }
}

fn owner(e: &Entry) -> (Option<rfs::Uid>, Option<rfs::Gid>) {
    // u32::MAX is "-1", which means "leave unchanged" to chown.
    let uid = (e.uid != u32::MAX).then(|| rfs::Uid::from_raw(e.uid));
    let gid = (e.gid != u32::MAX).then(|| rfs::Gid::from_raw(e.gid));
    (uid, gid)
}

/// The mode bits a restore sets: setuid and setgid only when the owners
/// are restored too (root) or the user asked for them (`--keep-setuid`):
/// otherwise a restored setuid program would run as the restoring user
/// (invariant 5; tar drops them the same way).
pub fn mode_of(e: &Entry, owners: bool, keep_setid: bool) -> u32 {
    if owners || keep_setid {
        e.mode & 0o7777
    } else {
        e.mode & 0o1777
    }
}

/// Applies owner (when `owners`), mode and mtime of `e` to an open file or
/// folder. Owner first: chown clears setuid and setgid bits.
pub fn apply_fd(fd: impl AsFd, e: &Entry, owners: bool, keep_setid: bool) -> io::Result<()> {
    let fd = fd.as_fd();
    if owners {
        let (u, g) = owner(e);
        rfs::fchown(fd, u, g).map_err(|x| with(x, "setting the owner"))?;
    }
    rfs::fchmod(fd, Mode::from_raw_mode(mode_of(e, owners, keep_setid)))
        .map_err(|x| with(x, "setting the mode"))?;
    rfs::futimens(fd, &timestamps(e.mtime)).map_err(|x| with(x, "setting the mtime"))?;
    Ok(())
}

/// Applies owner (when `owners`) and mtime of `e` to the symlink `name` in
/// `dir` itself (Linux gives symlinks no mode of their own).
pub fn apply_symlink_at(dir: impl AsFd, name: &[u8], e: &Entry, owners: bool) -> io::Result<()> {
    let dir = dir.as_fd();
    if owners {
        let (u, g) = owner(e);
        rfs::chownat(dir, os(name), u, g, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|x| with(x, "setting the symlink's owner"))?;
    }
    rfs::utimensat(
        dir,
        os(name),
        &timestamps(e.mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(|x| with(x, "setting the symlink's mtime"))?;
    Ok(())
}

fn with(e: Errno, what: &str) -> io::Error {
    err(io::Error::from(e).kind(), format!("{what}: {e}"))
}

/// Flushes the target's file system once (instead of an fsync per file).
pub fn sync_target(t: &Target) -> io::Result<()> {
    Ok(rfs::syncfs(t.fd())?)
}

/// Whether this process may set owners (it runs as root).
pub fn can_chown() -> bool {
    rustix::process::geteuid().is_root()
}
