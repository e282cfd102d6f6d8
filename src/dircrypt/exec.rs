//! Executing a plan: every file on a worker of its own lane.
//!
//! - The small lane: `workers` threads, each taking the next file and
//!   encrypting or decrypting it alone with the streaming [`Encryptor`] /
//!   [`Decryptor`] (one frame in memory). There are at least as many workers
//!   as cores, and at least the key provider's `max_in_flight()`, so that a
//!   remote key service always has that many GenerateDataKey/Decrypt calls
//!   in flight.
//! - The large lane: one thread that takes files of [`LARGE_FILE`] bytes or
//!   more, one at a time, through [`pipeline`] (frames in parallel on every
//!   core, read ahead, write behind), and messages whose frames are too long
//!   for a small worker's budget.
//!
//! Memory is bounded whatever the sizes: a small worker holds one frame and
//! two 64 KiB buffers, the large lane the pipeline's few batches.
//!
//! Each output is written to a temporary file beside its place, given its
//! mode and mtime, flushed to disk, and renamed into place only then; a
//! decrypted file only once every frame and the signature authenticated.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, IoSliceMut, Read, Seek, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;

use super::fsx::{self, set_meta, split, Root, Temp};
use super::naming::Direction;
use super::plan::{FileAction, Job};
use super::record::{add_stamp, recorded, user_pairs, Stamp};
use super::walk::SourceFile;
use crate::envelope::{
    open_header, pipeline, ContentType, DecryptOptions, Decryptor, EncryptOptions, Encryptor,
    Error as EnvError, KeyProvider, ProviderError,
};
use crate::progress::Progress;

/// Files at least this large go through the pipeline (one batch of frames).
pub const LARGE_FILE: u64 = 4 << 20;
/// Capacity of each worker's read buffer and output buffer.
const IO_BUFFER: usize = 64 * 1024;

/// How one file ended.
#[derive(Debug)]
pub enum FileOutcome {
    Written {
        read: u64,
        written: u64,
    },
    /// `if-changed`: the output's authenticated header records this source.
    Current,
    /// The output appeared while the run went on; kept.
    Existed,
    Failed(String),
}

pub struct Engine<'a> {
    pub direction: Direction,
    pub provider: &'a dyn KeyProvider,
    pub progress: &'a dyn Progress,
    pub input: &'a Root,
    pub output: &'a Root,
    pub files: &'a [SourceFile],
    /// Encryption: suite, frame length and the `-c` pairs.
    pub encrypt: &'a EncryptOptions,
    pub decrypt: &'a DecryptOptions,
    /// Threads of the small lane.
    pub workers: usize,
    /// Decryption: the longest frame a small worker takes on.
    pub small_frame_max: u32,
}

enum Lane {
    Small,
    Large,
}

/// A file's failure, or a message the small lane hands to the large one.
enum Stop {
    Failed(String),
    Handoff,
}

impl From<String> for Stop {
    fn from(s: String) -> Stop {
        Stop::Failed(s)
    }
}

impl Engine<'_> {
    /// Runs every job; returns each job's outcome (in no particular order)
    /// and the output folders that got new entries.
    pub fn run(&self, jobs: &[Job]) -> (Vec<(usize, FileOutcome)>, Vec<PathBuf>) {
        let (small, large): (Vec<&Job>, Vec<&Job>) = jobs
            .iter()
            .partition(|j| self.files[j.file].stamp.size < LARGE_FILE);
        let next = AtomicUsize::new(0);
        let results = Mutex::new(Vec::with_capacity(jobs.len()));
        let touched = Mutex::new(std::collections::BTreeSet::new());
        let (tx, rx) = channel::<&Job>();
        for j in large {
            tx.send(j)
                .expect("the receiver lives until the end of the scope");
        }
        std::thread::scope(|s| {
            let (results, touched) = (&results, &touched);
            s.spawn(move || {
                let mut buf = vec![0u8; IO_BUFFER];
                for job in rx {
                    let counted = AtomicU64::new(0);
                    let r = self.one(job, Lane::Large, &mut buf, &counted);
                    let o = self.finish(job, r, &counted);
                    record(results, touched, job, o);
                }
            });
            for _ in 0..self.workers.max(1) {
                let tx: Sender<&Job> = tx.clone();
                let (next, small) = (&next, &small);
                s.spawn(move || {
                    let mut buf = vec![0u8; IO_BUFFER];
                    while let Some(job) = small.get(next.fetch_add(1, Ordering::Relaxed)) {
                        let counted = AtomicU64::new(0);
                        match self.one(job, Lane::Small, &mut buf, &counted) {
                            Err(Stop::Handoff) => {
                                tx.send(job).expect("the large lane outlives the workers")
                            }
                            r => {
                                let o = self.finish(job, r, &counted);
                                record(results, touched, job, o);
                            }
                        }
                    }
                });
            }
            drop(tx);
        });
        (
            results.into_inner().expect("no worker panics"),
            touched
                .into_inner()
                .expect("no worker panics")
                .into_iter()
                .collect(),
        )
    }

    /// Turns a result into an outcome, and brings the progress display to
    /// the whole file's bytes whatever was read of it.
    fn finish(&self, job: &Job, r: Result<FileOutcome, Stop>, counted: &AtomicU64) -> FileOutcome {
        let o = match r {
            Ok(o) => o,
            Err(Stop::Failed(why)) => FileOutcome::Failed(why),
            Err(Stop::Handoff) => unreachable!("the large lane takes every message"),
        };
        let size = self.files[job.file].stamp.size;
        let counted = counted.load(Ordering::Relaxed);
        self.progress.advance(1, size.saturating_sub(counted));
        o
    }

    fn src_path(&self, f: &SourceFile) -> PathBuf {
        self.input.path.join(&f.rel)
    }

    /// Opens the input file the scan listed, refusing anything else there now.
    fn open_source(&self, f: &SourceFile) -> Result<(File, std::fs::Metadata), Stop> {
        let p = self.src_path(f);
        let file = self
            .input
            .open_file(&f.rel)
            .map_err(|e| format!("{}: cannot open: {e}", p.display()))?;
        let md = file
            .metadata()
            .map_err(|e| format!("{}: cannot read metadata: {e}", p.display()))?;
        if !md.is_file() {
            return Err(format!("{}: is no longer a regular file; left alone", p.display()).into());
        }
        if md.dev() != f.dev || md.ino() != f.ino {
            return Err(format!(
                "{}: was replaced since the scan; run again to include it",
                p.display()
            )
            .into());
        }
        Ok((file, md))
    }

    fn one(
        &self,
        job: &Job,
        lane: Lane,
        buf: &mut [u8],
        counted: &AtomicU64,
    ) -> Result<FileOutcome, Stop> {
        let f = &self.files[job.file];
        let (file, md) = self.open_source(f)?;
        let (parent, name) = split(&job.out).map_err(|e| e.to_string())?;
        let out_path = self.output.path.join(&job.out);
        let dir = self
            .output
            .dir(parent, true)
            .map_err(|e| format!("{}: cannot open the output folder: {e}", out_path.display()))?;
        if let Lane::Large = lane {
            self.progress.item(&f.rel.to_string_lossy());
        }
        let io_err = |what: &str, e: &dyn std::fmt::Display| -> Stop {
            format!(
                "{}: {what} {}: {e}",
                self.src_path(f).display(),
                out_path.display()
            )
            .into()
        };
        let stamp = Stamp::of(&md);
        if job.action == FileAction::ReplaceUnlessCurrent
            && self.is_current(dir.as_fd(), name, stamp, &out_path)?
        {
            return Ok(FileOutcome::Current);
        }
        let (temp, tf) = Temp::create(dir.as_fd(), name)
            .map_err(|e| io_err("creating a temporary file for", &e))?;
        let reader = Counting {
            inner: file,
            progress: self.progress,
            counted,
        };
        let (read, written, mtime) = match self.direction {
            Direction::Encrypt => {
                let (r, w) = self.encrypt_one(f, reader, stamp, &tf, lane, buf)?;
                (r, w, stamp.mtime)
            }
            Direction::Decrypt => {
                let (r, w, rec) = self.decrypt_one(f, reader, &tf, lane, buf)?;
                // The source's mtime as the (now authenticated) message
                // records it, else the input file's.
                (r, w, rec.map_or(stamp.mtime, |s| s.mtime))
            }
        };
        set_meta(&tf, md.mode(), mtime).map_err(|e| io_err("setting mode and mtime of", &e))?;
        tf.sync_all().map_err(|e| io_err("flushing", &e))?;
        drop(tf);
        match temp.commit(name, job.action != FileAction::Create) {
            Ok(true) => Ok(FileOutcome::Written { read, written }),
            Ok(false) => Ok(FileOutcome::Existed),
            Err(e) => Err(io_err("renaming into place", &e)),
        }
    }

    fn encrypt_one(
        &self,
        f: &SourceFile,
        mut reader: Counting<'_, File>,
        stamp: Stamp,
        out: &File,
        lane: Lane,
        buf: &mut [u8],
    ) -> Result<(u64, u64), Stop> {
        let mut opts = self.encrypt.clone();
        add_stamp(&mut opts.context, stamp);
        let p = self.src_path(f);
        let w = BufWriter::with_capacity(IO_BUFFER, out);
        let info = match lane {
            Lane::Large => pipeline::encrypt_stream(self.provider, &opts, &mut reader, w, None)
                .and_then(|(mut w, i)| {
                    w.flush()?;
                    Ok(i)
                }),
            Lane::Small => Encryptor::new(self.provider, &opts, w).and_then(|mut enc| {
                copy(&mut reader, &mut enc, buf)?;
                Ok(enc.finish()?.1)
            }),
        }
        .map_err(|e| format!("{}: {e}", p.display()))?;
        // The recorded stamp must be the one of the bytes read.
        let after = reader.inner.metadata().map(|m| Stamp::of(&m));
        if after.ok() != Some(stamp) || info.plaintext_len != stamp.size {
            return Err(format!(
                "{}: changed while being read; run again to encrypt it",
                p.display()
            )
            .into());
        }
        Ok((info.plaintext_len, info.total_len))
    }

    /// Decrypts into `out`; returns the bytes read and written, and the
    /// stamp the (now authenticated) header records.
    fn decrypt_one(
        &self,
        f: &SourceFile,
        mut reader: Counting<'_, File>,
        out: &File,
        lane: Lane,
        buf: &mut [u8],
    ) -> Result<(u64, u64, Option<Stamp>), Stop> {
        let _ = buf;
        let p = self.src_path(f);
        let fail = |e: EnvError| Stop::Failed(format!("{}: {e}", p.display()));
        if let Lane::Small = lane {
            // Uncounted: the worker reads the header again below.
            let file = &mut reader.inner;
            let parsed =
                open_header(file, self.decrypt.policy, &self.decrypt.limits).map_err(fail)?;
            let h = &parsed.header;
            let frame = match h.content_type {
                ContentType::Framed => u64::from(h.frame_length),
                ContentType::NonFramed => f.stamp.size,
            };
            if frame > u64::from(self.small_frame_max) {
                return Err(Stop::Handoff);
            }
            file.rewind().map_err(|e| format!("{}: {e}", p.display()))?;
        }
        let size = f.stamp.size;
        let mut w = BufWriter::with_capacity(IO_BUFFER, out);
        let (ctx, n) = match lane {
            Lane::Large => pipeline::decrypt_stream(self.provider, self.decrypt, reader, w, None)
                .and_then(|(h, mut w, n)| {
                    w.flush()?;
                    Ok((h.context, n))
                }),
            Lane::Small => {
                Decryptor::new(self.provider, self.decrypt, reader).and_then(|mut dec| {
                    let n = dec.copy_to(&mut w)?;
                    w.flush()?;
                    let ctx = dec.header().context.clone();
                    dec.finish()?;
                    Ok((ctx, n))
                })
            }
        }
        .map_err(fail)?;
        Ok((size, n, recorded(&ctx)))
    }

    /// Whether the existing output `name` authenticates and records exactly
    /// this source, suite and context. A header that does not authenticate,
    /// or that no given key unwraps, is not current (it will be replaced);
    /// a key service that cannot be reached fails the file.
    fn is_current(
        &self,
        dir: std::os::fd::BorrowedFd<'_>,
        name: &OsStr,
        stamp: Stamp,
        out: &Path,
    ) -> Result<bool, Stop> {
        let file =
            fsx::open_in(dir, name).map_err(|e| format!("{}: cannot open: {e}", out.display()))?;
        let opts = DecryptOptions::default();
        match Decryptor::new(self.provider, &opts, file) {
            Ok(dec) => {
                let h = dec.header();
                Ok(recorded(&h.context) == Some(stamp)
                    && h.suite == self.encrypt.suite
                    && user_pairs(&h.context) == self.encrypt.context)
            }
            Err(EnvError::Provider(ProviderError::Unavailable(e))) => {
                Err(format!("{}: cannot check whether it is current: {e}", out.display()).into())
            }
            Err(EnvError::Io(e)) => Err(format!("{}: {e}", out.display()).into()),
            Err(_) => Ok(false),
        }
    }
}

fn record(
    results: &Mutex<Vec<(usize, FileOutcome)>>,
    touched: &Mutex<std::collections::BTreeSet<PathBuf>>,
    job: &Job,
    o: FileOutcome,
) {
    if let FileOutcome::Written { .. } = o {
        let parent = job.out.parent().unwrap_or(Path::new("")).to_path_buf();
        touched.lock().expect("no worker panics").insert(parent);
    }
    results
        .lock()
        .expect("no worker panics")
        .push((job.file, o));
}

/// Copies with the worker's own buffer (io::copy's is 8 KiB).
fn copy(mut r: impl Read, w: &mut impl Write, buf: &mut [u8]) -> io::Result<u64> {
    let mut n = 0;
    loop {
        match r.read(buf) {
            Ok(0) => return Ok(n),
            Ok(k) => {
                w.write_all(&buf[..k])?;
                n += k as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Reports the bytes read as progress, and counts them for the file's outcome.
struct Counting<'a, R> {
    inner: R,
    progress: &'a dyn Progress,
    counted: &'a AtomicU64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let k = self.inner.read(buf)?;
        self.tick(k);
        Ok(k)
    }

    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        let k = self.inner.read_vectored(bufs)?;
        self.tick(k);
        Ok(k)
    }
}

impl<R> Counting<'_, R> {
    fn tick(&mut self, k: usize) {
        self.counted.fetch_add(k as u64, Ordering::Relaxed);
        self.progress.advance(0, k as u64);
    }
}
