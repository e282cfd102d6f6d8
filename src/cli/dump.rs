//! `envarc dump SNAP PATH`: one file of a snapshot to stdout or a file, as
//! restic's `dump` (a folder is refused: `restore --include` is for those).

use std::io::IsTerminal;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use super::crypt::{check_output, is_stdio, with_output};
use super::fmt::lossy;
use super::repo::RepoArgs;
use super::{GlobalArgs, Output};
use envarc::error::exit;
use envarc::repo::{Entry, EntryKind, LockKind};
use envarc::{Error, Result};

#[derive(clap::Args)]
pub struct DumpArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Snapshot: `latest`, an ID or a unique ID prefix.
    pub snapshot: String,
    /// The file, as backed up (absolute; a relative path is taken from the
    /// current folder).
    pub path: PathBuf,
    /// Write to FILE (it appears only once every chunk authenticated) instead
    /// of stdout; `-o -` writes even a binary file to a terminal.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Replace an existing output file (refused otherwise).
    #[arg(long)]
    pub force: bool,
}

/// The entry at `want`, or an error that says what is there instead.
fn find(repo: &envarc::repo::Repository, id: &envarc::repo::Id, want: &[u8]) -> Result<Entry> {
    let mut found = None;
    repo.load_snapshot_with(id, |e| {
        if e.path == want {
            found = Some(e);
        }
        Ok(())
    })?;
    let shown = lossy(want);
    match found {
        None => Err(Error::Usage(format!(
            "snapshot {} has no entry at {shown}; list its entries with `envarc ls {}`",
            id.short(),
            id.short()
        ))),
        Some(e) if e.kind == EntryKind::Dir => Err(Error::Usage(format!(
            "{shown} is a folder in snapshot {}: dump writes one file's contents; restore a \
             folder with `envarc restore {} --include {shown} -t DIR`",
            id.short(),
            id.short()
        ))),
        Some(e) if e.kind == EntryKind::Symlink => Err(Error::Usage(format!(
            "{shown} is a symlink in snapshot {} (to {}): dump writes a file's contents; dump \
             its target instead",
            id.short(),
            e.link_target.as_deref().map(lossy).unwrap_or_default()
        ))),
        Some(e) => Ok(e),
    }
}

/// A chunk message that does not open for a reason other than a key or
/// I/O is damage in the repository (exit 4), as `verify` and `restore` count it.
fn damaged(e: Error) -> Error {
    match e {
        Error::Envelope(x)
            if !matches!(
                x,
                envarc::envelope::Error::Provider(_) | envarc::envelope::Error::Io(_)
            ) =>
        {
            Error::Integrity(x.to_string())
        }
        e => e,
    }
}

pub fn dump(out: &Output, g: &GlobalArgs, a: DumpArgs) -> Result<i32> {
    if out.json && is_stdio(&a.output) {
        return Err(Error::Usage(
            "--json prints its summary on stdout, which carries the file here; pass -o FILE, or drop --json"
                .into(),
        ));
    }
    check_output(&a.output, a.force, false)?;
    let want = envarc::backup::walk::clean_absolute(&a.path)?;
    let repo = a.repo.open(g, out)?;
    let progress = out.progress();
    let _lock = repo.lock(LockKind::Shared, progress.as_ref())?;
    let id = repo.resolve_snapshot(&a.snapshot)?;
    let entry = find(&repo, &id, want.as_os_str().as_bytes())?;
    let index = repo.load_index()?;
    // Plain text may go to a terminal; a binary file only with `-o -`.
    let guard_tty = a.output.is_none() && std::io::stdout().is_terminal();
    let mut written = 0u64;
    with_output(&a.output, |w| {
        for (i, c) in entry.chunks.iter().enumerate() {
            envarc::interrupt::check()?;
            // The error names the chunk and its pack; the file is the one asked for.
            let chunk = repo.read_chunk(&index, c).map_err(damaged)?;
            if i == 0 && guard_tty && chunk.contains(&0) {
                return Err(Error::Usage(format!(
                    "{} is binary; refusing to write it to the terminal: pass -o FILE, \
                     redirect stdout, or pass -o - to write it there anyway",
                    lossy(&entry.path)
                )));
            }
            w.write_all(&chunk)
                .map_err(|e| Error::io("writing the file's contents", e))?;
            written += chunk.len() as u64;
        }
        // Before a file output is renamed into place.
        if written != entry.size {
            return Err(Error::Integrity(format!(
                "{}: its chunks hold {written} bytes, the snapshot says {}",
                lossy(&entry.path),
                entry.size
            )));
        }
        Ok(())
    })?;
    out.json(&serde_json::json!({
        "snapshot": id.to_hex(),
        "path": lossy(&entry.path),
        "size": written,
        "output": a.output.as_ref().map(|p| p.display().to_string()),
    }))?;
    Ok(exit::OK)
}
