//! Directory mode: `envarc encrypt|decrypt --recursive DIR -o OUTDIR`.
//!
//! Every regular file of a tree becomes one standalone ESDK message under a
//! data key of its own (one GenerateDataKey per file, the wrapped key in the
//! file's own header), with the same relative layout and the AWS Encryption
//! CLI's names (`naming.rs`); decryption turns such a tree back. A run is a
//! pure plan between two pieces of I/O:
//!
//! 1. `walk`: list the input tree (never through a symlink);
//! 2. probe what already exists at each output's place;
//! 3. `plan`: names, clashes, and what `--overwrite` means for each file (pure);
//! 4. `exec`: the workers, each output written to a temporary file and
//!    renamed into place only once complete (and, decrypting, authenticated).
//!
//! Independent of the repository code: it shares only the envelope, the key
//! providers and the progress trait.

mod exec;
mod fsx;
pub mod naming;
pub mod plan;
pub mod record;
pub mod stats;
mod walk;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;

use crate::envelope::{open_header, CommitmentPolicy, DecryptOptions, EncryptOptions, KeyProvider};
use crate::progress::Progress;
use crate::{Error, Result};

pub use naming::{Direction, DEFAULT_SUFFIX};
pub use plan::Overwrite;

use exec::{Engine, FileOutcome};
use fsx::{Found, Root};
use plan::{Existing, Kept, Record};

/// Memory the small lane's workers may hold in frames and buffers together.
const WORKER_BUDGET: usize = 32 << 20;
/// What a small worker holds besides one frame: its read and write buffers.
const WORKER_OVERHEAD: usize = 128 << 10;
/// Most small-lane workers (the most KMS requests in flight one may ask for).
const MAX_WORKERS: usize = 256;

/// What to do with which trees.
pub struct Request<'a> {
    pub direction: Direction,
    pub input: &'a Path,
    pub output: &'a Path,
    /// Appended when encrypting, removed when decrypting.
    pub suffix: &'a str,
    pub overwrite: Overwrite,
    /// Encryption: suite, frame length, `-c` pairs.
    pub encrypt: EncryptOptions,
    /// Decryption: commitment policy, limits, required pairs.
    pub decrypt: DecryptOptions,
    /// Workers of the small lane; by default the larger of the number of
    /// cores and the provider's `max_in_flight()`.
    pub workers: Option<usize>,
}

/// How a run went.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Summary {
    /// Regular files found in the input tree.
    pub files: u64,
    pub written: u64,
    /// Kept because an output existed (`--overwrite never`).
    pub kept_existing: u64,
    /// Kept because their source did not change (`--overwrite if-changed`).
    pub kept_current: u64,
    /// Each failed file (or folder), with what happened.
    pub failed: Vec<String>,
    /// Symlinks, FIFOs, sockets and devices, left alone.
    pub skipped: Vec<String>,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// Temporary files of an interrupted run, removed.
    pub leftovers_removed: u64,
    pub workers: usize,
}

/// Runs one directory encryption or decryption. Problems with single files
/// are collected in the summary; an error is returned only when the run
/// cannot start (bad arguments, nested trees, the output locked).
pub fn run(req: &Request, provider: &dyn KeyProvider, progress: &dyn Progress) -> Result<Summary> {
    let Roots {
        input,
        output,
        in_root,
        out_root,
        created,
    } = open_roots(req)?;

    progress.start("scanning", None, None);
    let scan = walk::scan(&in_root, progress);
    progress.finish();
    // The output folder gets the input folder's mtime, and its mode too
    // where this run made it (an existing folder keeps its own mode, such
    // as a setgid bit for a shared folder).
    let root_meta = std::fs::metadata(&input).ok().map(|md| root_dir(&md));
    let targets = plan::targets(&scan.files, &scan.dirs, req.direction, req.suffix);
    let existing = probe(req, &in_root, &out_root, &scan.files, &targets.out);
    let all_targets: Vec<Option<PathBuf>> = targets.out.clone();
    let want = plan::Want {
        direction: req.direction,
        overwrite: req.overwrite,
        suite: req.encrypt.suite,
        context: &req.encrypt.context,
    };
    let plan = plan::decide(&scan.files, targets, &existing, &want);

    let mut s = Summary {
        files: scan.files.len() as u64,
        skipped: scan.skipped,
        ..Summary::default()
    };
    let mut failed: Vec<(usize, String)> = Vec::new();
    let src = |i: usize| in_root.path.join(&scan.files[i].rel);
    for (i, why) in plan.failed {
        failed.push((i, format!("{}: {why}", src(i).display())));
    }
    for (_, k) in &plan.kept {
        match k {
            Kept::Exists => s.kept_existing += 1,
            Kept::Current => s.kept_current += 1,
        }
    }
    let mut folder_errors = scan.errors;
    s.leftovers_removed = prepare_dirs(&out_root, &scan.dirs, &all_targets, &mut folder_errors);

    let (workers, small_frame_max) = workers(req, provider);
    s.workers = workers;
    let engine = Engine {
        direction: req.direction,
        provider,
        progress,
        input: &in_root,
        output: &out_root,
        files: &scan.files,
        encrypt: &req.encrypt,
        decrypt: &req.decrypt,
        workers,
        small_frame_max,
    };
    let touched = execute(&engine, &plan.jobs, &mut s, &mut failed);
    finish_dirs(&out_root, &scan.dirs, &touched, &mut folder_errors);
    if let Some(root) = root_meta {
        if let Err(e) = fsx::set_root_meta(&out_root, created.then_some(root.mode), root.mtime) {
            folder_errors.push(format!("{}: cannot set its mtime: {e}", output.display()));
        }
    }
    failed.sort();
    s.failed = folder_errors
        .into_iter()
        .chain(failed.into_iter().map(|(_, m)| m))
        .collect();
    Ok(s)
}

/// The folders of a run, opened, the output locked.
struct Roots {
    input: PathBuf,
    output: PathBuf,
    in_root: Root,
    out_root: Root,
    /// Whether this run made the output folder.
    created: bool,
}

/// Checks the request, opens the input folder, creates the output folder
/// (if need be) and locks it.
fn open_roots(req: &Request) -> Result<Roots> {
    naming::check_suffix(req.suffix).map_err(Error::Usage)?;
    if req.direction == Direction::Encrypt {
        record::check_user_context(&req.encrypt.context).map_err(Error::Usage)?;
    }
    let (input, output) = check_roots(req.input, req.output)?;
    let in_root = Root::open(&input)
        .map_err(|e| Error::io(format!("opening the input folder {}", input.display()), e))?;
    let (out_root, created) = Root::create(&output).map_err(|e| {
        Error::io(
            format!("creating the output folder {}", output.display()),
            e,
        )
    })?;
    out_root.lock().map_err(|_| {
        Error::Locked(format!(
            "another envarc run is writing into {}; wait for it to end (or stop it), then run this again",
            output.display()
        ))
    })?;
    Ok(Roots {
        input,
        output,
        in_root,
        out_root,
        created,
    })
}

/// Runs the jobs and counts how each file ended into `s` and `failed`;
/// returns the folders that got a file.
fn execute(
    engine: &Engine<'_>,
    jobs: &[plan::Job],
    s: &mut Summary,
    failed: &mut Vec<(usize, String)>,
) -> Vec<PathBuf> {
    let total: u64 = jobs.iter().map(|j| engine.files[j.file].stamp.size).sum();
    let phase = match engine.direction {
        Direction::Encrypt => "encrypting",
        Direction::Decrypt => "decrypting",
    };
    engine
        .progress
        .start(phase, Some(jobs.len() as u64), Some(total));
    let (outcomes, touched) = engine.run(jobs);
    engine.progress.finish();
    for (i, o) in outcomes {
        match o {
            FileOutcome::Written { read, written } => {
                s.written += 1;
                s.bytes_read += read;
                s.bytes_written += written;
            }
            FileOutcome::Current => s.kept_current += 1,
            FileOutcome::Existed => s.kept_existing += 1,
            FileOutcome::Failed(why) => failed.push((i, why)),
        }
    }
    touched
}

/// The input root as a folder entry (relative path `""`).
fn root_dir(md: &std::fs::Metadata) -> walk::SourceDir {
    use std::os::unix::fs::MetadataExt;
    walk::SourceDir {
        rel: PathBuf::new(),
        mode: md.mode() & 0o7777,
        mtime: record::Stamp::of(md).mtime,
    }
}

/// Both trees as absolute paths without symlinks, refusing one inside the
/// other: encrypting into the tree being encrypted would feed the outputs
/// back in as inputs (and decrypting likewise).
fn check_roots(input: &Path, output: &Path) -> Result<(PathBuf, PathBuf)> {
    let md = std::fs::metadata(input)
        .map_err(|e| Error::io(format!("reading the input folder {}", input.display()), e))?;
    if !md.is_dir() {
        return Err(Error::Usage(format!(
            "{} is not a folder; --recursive takes a folder (without it, one file)",
            input.display()
        )));
    }
    let input = std::fs::canonicalize(input)
        .map_err(|e| Error::io(format!("resolving {}", input.display()), e))?;
    let output = resolve_new(output)?;
    if output.starts_with(&input) || input.starts_with(&output) {
        return Err(Error::Usage(format!(
            "the output folder {} and the input folder {} are one inside the other, so outputs would be read back as inputs; choose an output folder outside the input",
            output.display(),
            input.display()
        )));
    }
    Ok((input, output))
}

/// A path that may not exist yet, made absolute with every existing part's
/// symlinks resolved (so that nesting is judged on the real folders).
fn resolve_new(p: &Path) -> Result<PathBuf> {
    let cwd = std::env::current_dir().map_err(|e| Error::io("reading the current folder", e))?;
    let mut abs = PathBuf::from("/");
    for c in cwd.join(p).components() {
        match c {
            Component::Normal(n) => abs.push(n),
            Component::ParentDir => {
                abs.pop();
            }
            _ => {}
        }
    }
    let mut rest = Vec::new();
    let mut base = abs.as_path();
    loop {
        if let Ok(real) = std::fs::canonicalize(base) {
            let mut out = real;
            out.extend(rest.iter().rev());
            return Ok(out);
        }
        match (base.parent(), base.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                base = parent;
            }
            _ => return Ok(abs),
        }
    }
}

/// What exists at each target, with what the pairing's message records for
/// `if-changed` (read without a key: only a hint, see `plan.rs`).
fn probe(
    req: &Request,
    in_root: &Root,
    out_root: &Root,
    files: &[walk::SourceFile],
    targets: &[Option<PathBuf>],
) -> Vec<Existing> {
    targets
        .par_iter()
        .enumerate()
        .map(|(i, t)| {
            let Some(t) = t else { return Existing::Absent };
            match out_root.probe(t) {
                Ok(Found::Absent) => Existing::Absent,
                Ok(Found::Other(kind)) => Existing::Other(kind),
                Ok(Found::File(stamp)) => {
                    let record = (req.overwrite == Overwrite::IfChanged)
                        .then(|| match req.direction {
                            Direction::Encrypt => peek(out_root, t, &req.decrypt),
                            Direction::Decrypt => peek(in_root, &files[i].rel, &req.decrypt),
                        })
                        .flatten();
                    Existing::File { stamp, record }
                }
                Err(e) => Existing::Unreadable(format!(
                    "cannot look at its output {}: {e}",
                    out_root.path.join(t).display()
                )),
            }
        })
        .collect()
}

/// What a message's header records, read without a key; `None` when the
/// file is no message envarc reads.
fn peek(root: &Root, rel: &Path, opts: &DecryptOptions) -> Option<Record> {
    let mut f = root.open_file(rel).ok()?;
    let parsed = open_header(&mut f, CommitmentPolicy::AllowLegacyRead, &opts.limits).ok()?;
    let h = parsed.header;
    Some(Record {
        stamp: record::recorded(&h.context),
        suite: h.suite,
        context: record::user_pairs(&h.context),
    })
}

/// Creates every output folder and removes the temporary files an
/// interrupted run left beside any target. Returns how many it removed.
fn prepare_dirs(
    out: &Root,
    dirs: &[walk::SourceDir],
    targets: &[Option<PathBuf>],
    errors: &mut Vec<String>,
) -> u64 {
    let mut names: BTreeMap<&Path, BTreeSet<&OsStr>> = BTreeMap::new();
    for t in targets.iter().flatten() {
        let (parent, name) = fsx::split(t).expect("targets name files");
        names.entry(parent).or_default().insert(name);
    }
    let mut removed = 0;
    let all = std::iter::once(Path::new("")).chain(dirs.iter().map(|d| d.rel.as_path()));
    let mut seen = BTreeSet::new();
    for rel in all.filter(|r| seen.insert(*r)) {
        let fd = match out.dir(rel, true) {
            Ok(fd) => fd,
            Err(e) => {
                errors.push(format!(
                    "{}: cannot create the folder: {e}",
                    out.path.join(rel).display()
                ));
                continue;
            }
        };
        if !rel.as_os_str().is_empty() {
            if let Err(e) = fsx::ensure_writable(&fd) {
                errors.push(format!(
                    "{}: cannot make it writable: {e}",
                    out.path.join(rel).display()
                ));
            }
        }
        if let Some(set) = names.get(rel) {
            match fsx::remove_leftovers(std::os::fd::AsFd::as_fd(&fd), &|n| set.contains(n)) {
                Ok(n) => removed += n as u64,
                Err(e) => errors.push(format!(
                    "{}: cannot list: {e}",
                    out.path.join(rel).display()
                )),
            }
        }
    }
    removed
}

/// Makes the renames durable, then gives every output folder its source
/// folder's mode and mtime, deepest first (adding a file changes a folder's mtime).
fn finish_dirs(
    out: &Root,
    dirs: &[walk::SourceDir],
    touched: &[PathBuf],
    errors: &mut Vec<String>,
) {
    for rel in touched {
        if let Err(e) = out
            .dir(rel, false)
            .and_then(|fd| rustix::fs::fsync(&fd).map_err(Into::into))
        {
            errors.push(format!(
                "{}: cannot flush the folder: {e}",
                out.path.join(rel).display()
            ));
        }
    }
    let mut order: Vec<&walk::SourceDir> = dirs.iter().collect();
    order.sort_by_key(|d| std::cmp::Reverse(d.rel.components().count()));
    for d in order {
        let r = out
            .dir(&d.rel, false)
            .and_then(|fd| fsx::set_meta(&fd, d.mode, d.mtime));
        if let Err(e) = r {
            errors.push(format!(
                "{}: cannot set its mode and mtime: {e}",
                out.path.join(&d.rel).display()
            ));
        }
    }
}

/// Small-lane workers and (decrypting) the longest frame one may take on,
/// so that all of them together stay within [`WORKER_BUDGET`].
fn workers(req: &Request, provider: &dyn KeyProvider) -> (usize, u32) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = req
        .workers
        .unwrap_or_else(|| cores.max(provider.max_in_flight()))
        .clamp(1, MAX_WORKERS);
    match req.direction {
        Direction::Encrypt => {
            let per = req.encrypt.frame_length as usize + WORKER_OVERHEAD;
            (wanted.min((WORKER_BUDGET / per).max(1)), 0)
        }
        Direction::Decrypt => {
            let share = (WORKER_BUDGET / wanted).saturating_sub(WORKER_OVERHEAD);
            (wanted, share.clamp(64 << 10, 1 << 20) as u32)
        }
    }
}
