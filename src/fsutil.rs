//! File-system helpers for crash safety, shared by every writer: nothing
//! appears at a final path until it is complete and on stable storage.

use std::fs::{self, File};
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// Fsyncs a directory so that a rename or creation inside it is durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes written after which a writer starts their writeback.
pub const WRITEBACK_STEP: u64 = 8 << 20;

/// Bytes one `write` system call hands the kernel at most. Linux fills a
/// buffered write of N bytes into page-cache folios of up to N bytes, and
/// such large folios cost more to allocate and fill here than small ones:
/// on this project's machine (a VM), a 2 GiB backup whose packs went out in
/// 1 MiB writes spent 1.9–4.6 s of system time against 1.3–1.9 s with the
/// same bytes in 256 KiB writes (five runs each, in turn; wall 3.81 s against
/// 3.29 s, medians). 256 KiB keeps the calls themselves negligible.
pub const WRITE_PIECE: usize = 256 << 10;

/// How a large stream goes into a file: in writes of at most
/// [`WRITE_PIECE`], with the kernel's writeback of each [`WRITEBACK_STEP`]
/// started as soon as it is written, without waiting for it, so that the
/// disk writes while the next data is prepared and the final fsync (or
/// `syncfs`) finds little left to do. `POSIX_FADV_DONTNEED` does on Linux
/// what `sync_file_range(SYNC_FILE_RANGE_WRITE)` does (which would need
/// `unsafe`): the pages are dirty, so none is dropped from the cache. The
/// advice is only advice: its error is of no consequence.
#[derive(Default)]
pub struct Writeback {
    written: u64,
    started: u64,
}

impl Writeback {
    /// Writes the start of `buf` (at most [`WRITE_PIECE`] bytes) at the end
    /// of the file `out`; returns how much, as [`Write::write`] does (and
    /// with `out`'s own errors: a `NamedTempFile` names its path in them).
    pub fn write<W: Write + AsFd>(&mut self, out: &mut W, buf: &[u8]) -> io::Result<usize> {
        let n = out.write(&buf[..buf.len().min(WRITE_PIECE)])?;
        self.wrote(out.as_fd(), n);
        Ok(n)
    }

    /// Writes the start of `bufs` (at most [`WRITE_PIECE`] bytes, the last
    /// slice cut short if need be) at the end of the file `out`, in one `writev`.
    pub fn write_vectored<W: Write + AsFd>(
        &mut self,
        out: &mut W,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        let mut room = WRITE_PIECE;
        let mut piece = Vec::with_capacity(bufs.len().min(IOV_MAX));
        for b in bufs.iter().take(IOV_MAX) {
            if room == 0 {
                break;
            }
            let take = b.len().min(room);
            piece.push(IoSlice::new(&b[..take]));
            room -= take;
        }
        let n = out.write_vectored(&piece)?;
        self.wrote(out.as_fd(), n);
        Ok(n)
    }

    fn wrote(&mut self, file: BorrowedFd<'_>, n: usize) {
        self.written += n as u64;
        if self.written - self.started >= WRITEBACK_STEP {
            let len = std::num::NonZeroU64::new(self.written - self.started);
            let _ = rustix::fs::fadvise(file, self.started, len, rustix::fs::Advice::DontNeed);
            self.started = self.written;
        }
    }
}

/// Slices one `writev` takes at most on Linux.
const IOV_MAX: usize = 1024;

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A file being written under a temporary name beside its final path. It
/// replaces the final path only in [`commit`](Self::commit); dropping it
/// removes the temporary file and leaves the final path untouched.
pub struct AtomicFile {
    tmp: NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    pub fn create(target: &Path) -> io::Result<AtomicFile> {
        let dir = parent_of(target);
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".envarc-tmp")
            .tempfile_in(&dir)?;
        Ok(AtomicFile {
            tmp,
            target: target.to_path_buf(),
        })
    }

    pub fn file(&mut self) -> &mut File {
        self.tmp.as_file_mut()
    }

    /// Sets the permission bits the final file will have.
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(self.tmp.path(), fs::Permissions::from_mode(mode))
    }

    /// Flushes to stable storage, renames over the target, and fsyncs the folder.
    pub fn commit(mut self) -> io::Result<()> {
        self.tmp.as_file_mut().flush()?;
        self.tmp.as_file().sync_all()?;
        self.tmp.persist(&self.target).map_err(|e| e.error)?;
        fsync_dir(&parent_of(&self.target))
    }

    /// Renames without forcing to disk (for restores, where the user decides
    /// about durability and one fsync per file would dominate).
    pub fn commit_nosync(self) -> io::Result<()> {
        self.tmp.persist(&self.target).map_err(|e| e.error)?;
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

/// Writes `bytes` to `path` atomically and durably.
pub fn atomic_write(path: &Path, bytes: &[u8], mode: Option<u32>) -> io::Result<()> {
    let mut f = AtomicFile::create(path)?;
    if let Some(m) = mode {
        f.set_mode(m)?;
    }
    f.write_all(bytes)?;
    f.commit()
}
