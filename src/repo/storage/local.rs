//! A repository in a local folder (or any mounted file system).
//!
//! New objects are written to a temporary file beside their final name
//! (`.NAME.XXXXXX.envarc-tmp`), fsynced, and moved into place with
//! `renameat2(RENAME_NOREPLACE)` (a hard link where the file system lacks
//! it), then the folder is fsynced: an object is never seen partly written,
//! never overwritten, and durable once `commit` returns. Folders are created
//! on demand with mode 0700.
//!
//! Locks hold an `flock` on their file for the holder's lifetime; the kernel
//! drops it when the process dies (SIGKILL included), which is how a lock of
//! this host is judged stale. Where the file system has no flock, the
//! holder's pid is checked instead. Locks of other hosts are never stale.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use tempfile::NamedTempFile;

use super::{check_name, HeldLock, LockInfo, ObjectInfo, ObjectWriter, Storage};
use crate::fsutil::{fsync_dir, Writeback};

/// Suffix of every temporary file a local writer creates.
const TMP_SUFFIX: &str = ".envarc-tmp";

/// A repository folder.
pub struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    /// The folder `root` (it need not exist yet: writers create folders).
    pub fn new(root: impl Into<PathBuf>) -> LocalStorage {
        LocalStorage { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, name: &str) -> io::Result<PathBuf> {
        check_name(name)?;
        Ok(self.root.join(name))
    }

    fn named(&self, name: &str, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("{}: {e}", self.root.join(name).display()))
    }

    /// A temporary file beside `target`, creating its folder if needed;
    /// with the folder it created (if it did), whose entry in its parent
    /// is durable only once the caller fsyncs that parent
    /// ([`sync_created`]).
    fn temp_beside(&self, target: &Path) -> io::Result<(NamedTempFile, Option<PathBuf>)> {
        let dir = target.parent().expect("object paths have a parent");
        let base = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let make = || {
            tempfile::Builder::new()
                .prefix(&format!(".{base}."))
                .suffix(TMP_SUFFIX)
                .tempfile_in(dir)
        };
        match make() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                use std::os::unix::fs::DirBuilderExt;
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)?;
                Ok((make()?, Some(dir.to_path_buf())))
            }
            r => Ok((r?, None)),
        }
    }
}

/// Makes the creation of folder `created` (from [`LocalStorage::temp_beside`])
/// durable. A pack writer does it at commit, on the thread that commits
/// packs, so that a worker starting a pack in a new `data/xx/` folder does
/// not wait for the disk; the backup writes its index only after every
/// pack's commit, so no index names a pack whose folder could be lost.
fn sync_created(created: Option<&Path>) -> io::Result<()> {
    match created.and_then(Path::parent) {
        Some(parent) => fsync_dir(parent),
        None => Ok(()),
    }
}

/// Moves `tmp` to `target` only if `target` does not exist.
fn rename_noreplace(tmp: &Path, target: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, tmp, CWD, target, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        // Older kernels and some file systems (NFS, FUSE) lack the flag:
        // a hard link is just as exclusive.
        Err(e) if e == rustix::io::Errno::INVAL || e == rustix::io::Errno::NOSYS => {
            fs::hard_link(tmp, target)?;
            fs::remove_file(tmp)
        }
        Err(e) => Err(e.into()),
    }
}

struct LocalWriter {
    tmp: Option<NamedTempFile>,
    target: PathBuf,
    /// The folder this writer created for the object, if it did.
    created: Option<PathBuf>,
    written: u64,
    /// A pack's writeback starts as it is written, so that its fsync at
    /// commit finds little left to do.
    writeback: Writeback,
}

impl Write for LocalWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let tmp = self.tmp.as_mut().expect("not committed");
        let n = self.writeback.write(tmp, buf)?;
        self.written += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.as_mut().expect("not committed").flush()
    }
}

impl ObjectWriter for LocalWriter {
    fn written(&self) -> u64 {
        self.written
    }

    fn commit(mut self: Box<Self>) -> io::Result<()> {
        let tmp = self.tmp.take().expect("committed once");
        tmp.as_file().sync_all()?;
        // Keep the temporary path until the rename succeeded, so a failure
        // still removes it (NamedTempFile deletes on drop).
        rename_noreplace(tmp.path(), &self.target)?;
        let _ = tmp.into_temp_path().keep();
        fsync_dir(self.target.parent().expect("object paths have a parent"))?;
        sync_created(self.created.as_deref())
    }
}

struct LocalLock {
    path: PathBuf,
    /// Holds the flock that tells others we are alive.
    _file: File,
}

impl HeldLock for LocalLock {}

impl Drop for LocalLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Storage for LocalStorage {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn list(&self, prefix: &str) -> io::Result<Vec<ObjectInfo>> {
        // Start at the deepest folder the prefix names, then filter by name.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        let start = if dir_part.is_empty() {
            self.root.clone()
        } else {
            self.path(dir_part)?
        };
        let mut out = Vec::new();
        let mut pending = vec![(start, dir_part.to_string())];
        while let Some((dir, rel)) = pending.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("listing {}: {e}", dir.display()),
                    ))
                }
            };
            for entry in rd {
                let entry = entry?;
                let Ok(file_name) = entry.file_name().into_string() else {
                    continue; // not a name envarc writes
                };
                if file_name.starts_with('.') {
                    continue; // a writer's temporary file
                }
                let name = if rel.is_empty() {
                    file_name
                } else {
                    format!("{rel}/{file_name}")
                };
                let md = match entry.metadata() {
                    Ok(md) => md,
                    // Deleted between the listing and the stat.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                };
                if md.is_dir() {
                    if name.starts_with(prefix) || prefix.starts_with(&format!("{name}/")) {
                        pending.push((entry.path(), name));
                    }
                } else if md.is_file() && name.starts_with(prefix) {
                    out.push(ObjectInfo {
                        name,
                        size: md.len(),
                        modified: md.modified().ok(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn stat(&self, name: &str) -> io::Result<ObjectInfo> {
        let md = fs::metadata(self.path(name)?).map_err(|e| self.named(name, e))?;
        if !md.is_file() {
            return Err(self.named(name, io::Error::other("not a regular file")));
        }
        Ok(ObjectInfo {
            name: name.to_string(),
            size: md.len(),
            modified: md.modified().ok(),
        })
    }

    fn read(&self, name: &str) -> io::Result<Vec<u8>> {
        fs::read(self.path(name)?).map_err(|e| self.named(name, e))
    }

    fn read_range(&self, name: &str, offset: u64, length: u64) -> io::Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_range_into(name, offset, length, &mut buf)?;
        Ok(buf)
    }

    fn read_range_into(
        &self,
        name: &str,
        offset: u64,
        length: u64,
        buf: &mut Vec<u8>,
    ) -> io::Result<()> {
        let mut f = File::open(self.path(name)?).map_err(|e| self.named(name, e))?;
        f.seek(SeekFrom::Start(offset))?;
        let len = usize::try_from(length)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "range too large"))?;
        buf.clear();
        // Exact, not amortized: a range a little longer than the last one
        // would otherwise double the buffer. read_to_end fills the spare
        // capacity without zeroing it first.
        buf.reserve_exact(len);
        f.take(length)
            .read_to_end(buf)
            .map_err(|e| self.named(name, e))?;
        if buf.len() < len {
            let e = io::Error::new(io::ErrorKind::UnexpectedEof, "failed to fill whole buffer");
            return Err(self.named(name, e));
        }
        Ok(())
    }

    fn create_writer(&self, name: &str) -> io::Result<Box<dyn ObjectWriter>> {
        let target = self.path(name)?;
        let (tmp, created) = self.temp_beside(&target).map_err(|e| self.named(name, e))?;
        Ok(Box::new(LocalWriter {
            tmp: Some(tmp),
            target,
            created,
            written: 0,
            writeback: Writeback::default(),
        }))
    }

    fn replace(&self, name: &str, data: &[u8]) -> io::Result<()> {
        let target = self.path(name)?;
        let (mut tmp, created) = self.temp_beside(&target).map_err(|e| self.named(name, e))?;
        tmp.write_all(data)?;
        tmp.as_file().sync_all()?;
        tmp.persist(&target).map_err(|e| e.error)?;
        fsync_dir(target.parent().expect("object paths have a parent"))?;
        sync_created(created.as_deref())
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        let path = self.path(name)?;
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.named(name, e)),
        }
        fsync_dir(path.parent().expect("object paths have a parent"))
    }

    fn create_lock(&self, name: &str, data: &[u8]) -> io::Result<Box<dyn HeldLock>> {
        let target = self.path(name)?;
        let (mut tmp, created) = self.temp_beside(&target).map_err(|e| self.named(name, e))?;
        // Lock before the file gets its name, so no one ever sees it unlocked.
        let held = tmp.as_file().try_clone()?;
        // Without flock support this fails, and others judge us by our pid.
        let _ = FileExt::try_lock_exclusive(&held);
        tmp.write_all(data)?;
        tmp.as_file().sync_all()?;
        rename_noreplace(tmp.path(), &target).map_err(|e| self.named(name, e))?;
        let _ = tmp.into_temp_path().keep();
        fsync_dir(target.parent().expect("object paths have a parent"))?;
        sync_created(created.as_deref())?;
        Ok(Box::new(LocalLock {
            path: target,
            _file: held,
        }))
    }

    fn lock_is_stale(&self, object: &ObjectInfo, info: &LockInfo) -> bool {
        if info.host != super::lock::hostname() {
            return false;
        }
        let Ok(path) = self.path(&object.name) else {
            return false;
        };
        match File::open(&path).map(|f| FileExt::try_lock_exclusive(&f)) {
            // We got the flock: nobody holds it. (Dropping `f` releases it.)
            Ok(Ok(true)) => true,
            Ok(Ok(false)) => false,
            // No flock here (or the file vanished): fall back to the pid.
            _ => !Path::new(&format!("/proc/{}", info.pid)).exists(),
        }
    }

    fn leftovers(&self) -> io::Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let mut pending = vec![(self.root.clone(), String::new())];
        while let Some((dir, rel)) = pending.pop() {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            for entry in rd {
                let entry = entry?;
                let Ok(file_name) = entry.file_name().into_string() else {
                    continue;
                };
                let name = if rel.is_empty() {
                    file_name.clone()
                } else {
                    format!("{rel}/{file_name}")
                };
                let Ok(md) = entry.metadata() else { continue };
                if md.is_dir() && !file_name.starts_with('.') {
                    pending.push((entry.path(), name));
                } else if md.is_file()
                    && file_name.starts_with('.')
                    && file_name.ends_with(TMP_SUFFIX)
                {
                    out.push(ObjectInfo {
                        name,
                        size: md.len(),
                        modified: md.modified().ok(),
                    });
                }
            }
        }
        Ok(out)
    }

    fn remove_leftover(&self, leftover: &ObjectInfo) -> io::Result<()> {
        LocalStorage::remove_leftover(self, leftover)
    }
}

impl LocalStorage {
    /// Removes a temporary file that [`Storage::leftovers`] listed (its name
    /// starts with `.`, so [`Storage::delete`] refuses it).
    pub fn remove_leftover(&self, leftover: &ObjectInfo) -> io::Result<()> {
        let (dir, file) = match leftover.name.rsplit_once('/') {
            Some((d, f)) => (self.path(d)?, f),
            None => (self.root.clone(), leftover.name.as_str()),
        };
        if !(file.starts_with('.') && file.ends_with(TMP_SUFFIX)) || file.contains("..") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a temporary file", leftover.name),
            ));
        }
        match fs::remove_file(dir.join(file)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, LocalStorage) {
        let d = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(d.path().join("repo"));
        (d, s)
    }

    #[test]
    fn objects_are_created_once_read_back_and_listed() {
        let (_d, s) = store();
        s.create("data/ab/ab01", b"hello world").unwrap();
        s.create("index/01", b"i").unwrap();
        let e = s.create("data/ab/ab01", b"other").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(s.read("data/ab/ab01").unwrap(), b"hello world");
        assert_eq!(s.read_range("data/ab/ab01", 6, 5).unwrap(), b"world");
        let e = s.read_range("data/ab/ab01", 6, 6).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let mut names: Vec<_> = s
            .list("data/")
            .unwrap()
            .into_iter()
            .map(|o| o.name)
            .collect();
        names.sort();
        assert_eq!(names, ["data/ab/ab01"]);
        assert_eq!(s.list("").unwrap().len(), 2);
        assert_eq!(s.list("data/ab/ab").unwrap().len(), 1);
        assert!(s.list("snapshots/").unwrap().is_empty());
        assert_eq!(s.stat("index/01").unwrap().size, 1);
        assert_eq!(
            s.stat("index/02").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn read_range_into_replaces_the_buffer_and_keeps_its_allocation() {
        let (_d, s) = store();
        s.create("data/ab/ab01", b"hello world").unwrap();
        s.create("data/ab/ab02", b"hi").unwrap();
        let mut buf = Vec::with_capacity(1 << 16);
        buf.extend_from_slice(b"left over from the previous object");
        let before = buf.as_ptr();
        s.read_range_into("data/ab/ab01", 6, 5, &mut buf).unwrap();
        assert_eq!(buf, b"world");
        s.read_range_into("data/ab/ab02", 0, 2, &mut buf).unwrap();
        assert_eq!(buf, b"hi");
        assert_eq!(
            buf.as_ptr(),
            before,
            "no new allocation for a shorter range"
        );
        let e = s
            .read_range_into("data/ab/ab02", 1, 2, &mut buf)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
        let e = s
            .read_range_into("data/ab/ab03", 0, 1, &mut buf)
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn an_uncommitted_writer_leaves_nothing_and_delete_is_idempotent() {
        let (_d, s) = store();
        let mut w = s.create_writer("data/00/0001").unwrap();
        w.write_all(b"partial").unwrap();
        assert_eq!(w.written(), 7);
        assert_eq!(
            s.leftovers().unwrap().len(),
            1,
            "the temporary file is a leftover"
        );
        assert!(s.list("").unwrap().is_empty(), "and is never listed");
        drop(w);
        assert!(s.leftovers().unwrap().is_empty());
        s.create("snapshots/aa", b"x").unwrap();
        s.delete("snapshots/aa").unwrap();
        s.delete("snapshots/aa").unwrap();
        assert!(s.list("snapshots/").unwrap().is_empty());
    }

    #[test]
    fn replace_swaps_the_whole_object() {
        let (_d, s) = store();
        s.replace("config", b"one").unwrap();
        s.replace("config", b"two").unwrap();
        assert_eq!(s.read("config").unwrap(), b"two");
    }

    #[test]
    fn names_outside_the_repository_are_refused() {
        let (_d, s) = store();
        for bad in ["../x", "/etc/passwd", "data/../../x", ".hidden"] {
            assert_eq!(
                s.create(bad, b"x").unwrap_err().kind(),
                io::ErrorKind::InvalidInput,
                "{bad}"
            );
            assert!(s.read(bad).is_err());
        }
    }

    #[test]
    fn leftovers_of_killed_writers_are_found_and_removed() {
        let (_d, s) = store();
        let w = s.create_writer("data/01/0102").unwrap();
        std::mem::forget(w); // as if killed: the temporary file stays
        let left = s.leftovers().unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].name.starts_with("data/01/."));
        s.remove_leftover(&left[0]).unwrap();
        assert!(s.leftovers().unwrap().is_empty());
    }
}
