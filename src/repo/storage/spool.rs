//! Where a remote object waits until it is complete: in memory up to
//! [`IN_MEMORY`] bytes, past that in an unnamed temporary file of the local
//! temporary folder (`$TMPDIR`, else `/tmp`; gone with the process, whatever
//! way it ends). Remote writers spool, and send the object in `commit`:
//! writing into a pack costs no network round trip and no memory beyond
//! the first megabyte, so a backup can keep one pack open per thread, and
//! the uploads run on threads of their own, as many as the store serves
//! (`Storage::max_in_flight`), each holding one part of one object.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::Mutex;

use bytes::Bytes;

/// Bytes kept in memory before the spool moves to a temporary file (locks,
/// index files and small snapshots never touch the disk).
pub const IN_MEMORY: usize = 1 << 20;

/// An object being written.
pub(crate) struct Spool {
    mem: Vec<u8>,
    file: Option<File>,
    len: u64,
}

fn spool_error(e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "spooling an object to a temporary file in {}: {e}",
            std::env::temp_dir().display()
        ),
    )
}

impl Spool {
    pub(crate) fn new() -> Spool {
        Spool {
            mem: Vec::new(),
            file: None,
            len: 0,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.file.is_none() && self.mem.len() + data.len() > IN_MEMORY {
            let mut f = tempfile::tempfile().map_err(spool_error)?;
            f.write_all(&self.mem).map_err(spool_error)?;
            self.mem = Vec::new();
            self.file = Some(f);
        }
        match &mut self.file {
            Some(f) => f.write_all(data).map_err(spool_error)?,
            None => self.mem.extend_from_slice(data),
        }
        self.len += data.len() as u64;
        Ok(())
    }

    /// The spooled bytes, from the start.
    pub(crate) fn into_reader(self) -> io::Result<SpoolReader> {
        let file = match self.file {
            Some(mut f) => {
                f.seek(SeekFrom::Start(0)).map_err(spool_error)?;
                Some(f)
            }
            None => None,
        };
        Ok(SpoolReader {
            mem: self.mem,
            file,
            left: self.len,
        })
    }
}

/// Reads a spool back, a part at a time.
pub(crate) struct SpoolReader {
    mem: Vec<u8>,
    file: Option<File>,
    left: u64,
}

impl SpoolReader {
    /// Bytes not yet read.
    pub(crate) fn left(&self) -> u64 {
        self.left
    }

    /// The next `max` bytes or fewer (at the end); empty once all are read.
    pub(crate) fn next_part(&mut self, max: usize) -> io::Result<Vec<u8>> {
        let n = max.min(usize::try_from(self.left).unwrap_or(usize::MAX));
        self.left -= n as u64;
        match &mut self.file {
            None => {
                let rest = self.mem.split_off(n);
                Ok(std::mem::replace(&mut self.mem, rest))
            }
            Some(f) => {
                let mut part = vec![0u8; n];
                f.read_exact(&mut part).map_err(spool_error)?;
                Ok(part)
            }
        }
    }
}

/// Size of the pieces an upload is read back into.
const BLOCK: usize = 1 << 20;

/// Most blocks kept for reuse. The pool holds what the peak of uploads
/// needed at once (a backup: its committers' packs), never more than this.
const POOL_MAX: usize = 128;

/// Blocks of finished uploads, for the next ones. Why not free them: the
/// allocator keeps large freed buffers in its heaps once it has seen a few
/// (glibc raises its mmap threshold), and a run of 16 MiB bodies freed on
/// one thread and allocated on another grows the process by tens of
/// megabytes; reused blocks keep it at its peak of use.
static POOL: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

/// A block lent to the HTTP stack; it comes back to [`POOL`] when the
/// last reference to the body is gone (sent, or given up on).
struct Block(Vec<u8>);

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        let mut v = std::mem::take(&mut self.0);
        if v.capacity() == BLOCK {
            let mut pool = POOL.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_MAX {
                v.clear();
                pool.push(v);
            }
        }
    }
}

fn block() -> Vec<u8> {
    let reused = POOL.lock().unwrap_or_else(|e| e.into_inner()).pop();
    reused.unwrap_or_else(|| Vec::with_capacity(BLOCK))
}

impl SpoolReader {
    /// Like [`SpoolReader::next_part`], as a body of pooled blocks.
    pub(crate) fn next_body(&mut self, max: usize) -> io::Result<opendal::Buffer> {
        let n = max.min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let Some(f) = &mut self.file else {
            return Ok(opendal::Buffer::from(self.next_part(n)?));
        };
        let mut pieces = Vec::with_capacity(n.div_ceil(BLOCK));
        let mut got = 0;
        while got < n {
            let len = BLOCK.min(n - got);
            let mut b = block();
            b.resize(len, 0);
            f.read_exact(&mut b).map_err(spool_error)?;
            pieces.push(Bytes::from_owner(Block(b)));
            got += len;
        }
        self.left -= n as u64;
        Ok(opendal::Buffer::from(pieces))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_objects_stay_in_memory_large_ones_come_back_whole() {
        for len in [0usize, 10, IN_MEMORY, IN_MEMORY + 1, 3 * IN_MEMORY + 17] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut s = Spool::new();
            for piece in data.chunks(100_000) {
                s.write_all(piece).unwrap();
            }
            assert_eq!(s.len(), len as u64);
            assert_eq!(s.file.is_some(), len > IN_MEMORY, "{len}");
            let mut r = s.into_reader().unwrap();
            let mut back = Vec::new();
            loop {
                let p = r.next_part(IN_MEMORY / 3).unwrap();
                if p.is_empty() {
                    break;
                }
                back.extend(p);
            }
            assert_eq!(r.left(), 0);
            assert!(back == data, "{len}");
        }
    }

    #[test]
    fn bodies_come_back_whole_and_their_blocks_are_reused() {
        let len = 5 * BLOCK / 2 + 3;
        let data: Vec<u8> = (0..len).map(|i| (i * 13 % 251) as u8).collect();
        for _ in 0..2 {
            let mut s = Spool::new();
            s.write_all(&data).unwrap();
            let mut r = s.into_reader().unwrap();
            let first = r.next_body(BLOCK + 1).unwrap();
            let rest = r.next_body(len).unwrap();
            assert_eq!(r.left(), 0);
            assert_eq!(first.len() + rest.len(), len);
            let mut back = first.to_vec();
            back.extend(rest.to_vec());
            assert!(back == data);
        }
        assert!(
            !POOL.lock().unwrap().is_empty(),
            "blocks went back to the pool"
        );
    }
}
