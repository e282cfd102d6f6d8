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
}
