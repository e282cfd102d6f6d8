//! The plan of a run, pure: which output each input file gets, which names
//! clash, and what to do where an output already exists. The I/O around it
//! (the walk, the probe of existing outputs, the execution) lives in the
//! other files of this module.
//!
//! `--overwrite if-changed` never keeps an output on the word of bytes that
//! no key authenticated: a mismatch in what the existing output records can
//! only cause it to be written again, and an output that seems current is
//! kept only after its header authenticated (see [`FileAction::ReplaceUnlessCurrent`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use super::naming::{output_name, Direction};
use super::record::Stamp;
use super::walk::{SourceDir, SourceFile};
use crate::envelope::{EncryptionContext, Suite};

/// When an existing output is replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Overwrite {
    /// Never: an existing output is kept, so a rerun goes on where one stopped.
    Never,
    /// Only where the source changed since its output was written.
    IfChanged,
    /// Always: every output is written anew.
    Always,
}

/// What the message of an input/output pair records (read from the header
/// without a key, so only a hint until checked): for encryption the
/// existing output's, for decryption the input's.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub stamp: Option<Stamp>,
    pub suite: Suite,
    /// The `-c` pairs it was written with (see `record::user_pairs`).
    pub context: EncryptionContext,
}

/// What is at an output's place before the run.
#[derive(Clone, Debug, PartialEq)]
pub enum Existing {
    Absent,
    File {
        stamp: Stamp,
        record: Option<Record>,
    },
    /// A folder, symlink or special file: never replaced.
    Other(&'static str),
    /// Could not be looked at, phrased for the user.
    Unreadable(String),
}

/// What a worker does with one file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileAction {
    /// Write the output; should one appear meanwhile, keep it.
    Create,
    /// Write the output over the existing one.
    Replace,
    /// The existing output records this very source (size, mtime), suite and
    /// context: keep it if its header authenticates (the record is then
    /// genuine), else write it anew.
    ReplaceUnlessCurrent,
}

/// Why an existing output was kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kept {
    /// It exists and `--overwrite never`.
    Exists,
    /// `--overwrite if-changed` and its source did not change.
    Current,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Index into the scan's files.
    pub file: usize,
    /// Relative to the output root.
    pub out: PathBuf,
    pub action: FileAction,
}

/// Each file's output path, or why it has none.
pub struct Targets {
    pub out: Vec<Option<PathBuf>>,
    pub failed: Vec<(usize, String)>,
}

/// Output paths: the same folders, file names changed by `naming`. Files
/// whose outputs would clash with each other or with a folder get none.
pub fn targets(files: &[SourceFile], dirs: &[SourceDir], dir: Direction, suffix: &str) -> Targets {
    let out: Vec<PathBuf> = files
        .iter()
        .map(|f| {
            let name = f.rel.file_name().expect("the walk lists named files");
            f.rel.with_file_name(output_name(name, dir, suffix))
        })
        .collect();
    let folders: HashSet<&Path> = dirs.iter().map(|d| d.rel.as_path()).collect();
    let mut by_out: HashMap<&Path, Vec<usize>> = HashMap::new();
    for (i, o) in out.iter().enumerate() {
        by_out.entry(o.as_path()).or_default().push(i);
    }
    let mut failed = Vec::new();
    let mut keep = vec![true; files.len()];
    for (i, o) in out.iter().enumerate() {
        if folders.contains(o.as_path()) {
            failed.push((
                i,
                format!(
                    "its output {} would be a folder of the tree; rename one of them",
                    o.display()
                ),
            ));
            keep[i] = false;
            continue;
        }
        let same = &by_out[o.as_path()];
        if same.len() > 1 {
            let others: Vec<String> = same
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| files[j].rel.display().to_string())
                .collect();
            failed.push((
                i,
                format!(
                    "its output {} would also be the output of {}; rename one of them or choose another --suffix",
                    o.display(),
                    others.join(", ")
                ),
            ));
            keep[i] = false;
        }
    }
    Targets {
        out: out
            .into_iter()
            .zip(keep)
            .map(|(o, k)| k.then_some(o))
            .collect(),
        failed,
    }
}

/// What the run should produce.
pub struct Want<'a> {
    pub direction: Direction,
    pub overwrite: Overwrite,
    /// Encryption: the suite and `-c` pairs asked for.
    pub suite: Suite,
    pub context: &'a EncryptionContext,
}

#[derive(Default)]
pub struct Plan {
    pub jobs: Vec<Job>,
    pub kept: Vec<(usize, Kept)>,
    pub failed: Vec<(usize, String)>,
}

/// Decides, for every file with a target, from what exists at the target
/// (`existing`, one per file; ignored where the target is `None`).
pub fn decide(files: &[SourceFile], targets: Targets, existing: &[Existing], want: &Want) -> Plan {
    let mut plan = Plan {
        failed: targets.failed,
        ..Plan::default()
    };
    for (i, out) in targets.out.into_iter().enumerate() {
        let Some(out) = out else { continue };
        let action = match &existing[i] {
            Existing::Absent => FileAction::Create,
            Existing::Other(kind) => {
                plan.failed.push((
                    i,
                    format!("the output {} exists and is {kind}, which envarc never replaces; move it away", out.display()),
                ));
                continue;
            }
            Existing::Unreadable(why) => {
                plan.failed.push((i, why.clone()));
                continue;
            }
            Existing::File { stamp, record } => match want.overwrite {
                Overwrite::Never => {
                    plan.kept.push((i, Kept::Exists));
                    continue;
                }
                Overwrite::Always => FileAction::Replace,
                Overwrite::IfChanged => match want.direction {
                    Direction::Encrypt if encrypted_current(&files[i], record.as_ref(), want) => {
                        FileAction::ReplaceUnlessCurrent
                    }
                    Direction::Encrypt => FileAction::Replace,
                    Direction::Decrypt if decrypted_current(&files[i], stamp, record.as_ref()) => {
                        plan.kept.push((i, Kept::Current));
                        continue;
                    }
                    Direction::Decrypt => FileAction::Replace,
                },
            },
        };
        plan.jobs.push(Job {
            file: i,
            out,
            action,
        });
    }
    plan
}

/// The existing output claims to be this source under these settings.
fn encrypted_current(src: &SourceFile, record: Option<&Record>, want: &Want) -> bool {
    record.is_some_and(|r| {
        r.stamp == Some(src.stamp) && r.suite == want.suite && &r.context == want.context
    })
}

/// A decrypted output is current when it has the mtime it was given, the
/// one the input records (else the input's own), and the size the input
/// records. Keeping it trusts nothing new: it is what an earlier run wrote
/// after authenticating everything.
fn decrypted_current(src: &SourceFile, out: &Stamp, record: Option<&Record>) -> bool {
    match record.and_then(|r| r.stamp) {
        Some(rec) => *out == rec,
        None => out.mtime == src.stamp.mtime,
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
