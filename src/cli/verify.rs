//! `envarc verify`.

use envarc::envelope;
use envarc::error::exit;
use envarc::repo::Repository;
use envarc::verify::{verify as run_verify, Problem, ReadData, VerifyOptions, VerifyReport};
use envarc::{Error, Result};

use super::fmt::{fmt_bytes, plural};
use super::repo::RepoArgs;
use super::{GlobalArgs, Output};

#[derive(clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Also read every chunk the snapshots need: authenticate, decompress
    /// and check its MAC (reads all data; writes nothing).
    #[arg(long, conflicts_with = "read_data_subset")]
    pub read_data: bool,
    /// Read only a subset: K/N is the K-th of N fixed groups of chunks (run
    /// 1/N … N/N on successive days to read everything once); P% is a random
    /// P% of the chunks, drawn anew on each run.
    #[arg(long, value_name = "K/N|P%", value_parser = ReadData::parse_subset)]
    pub read_data_subset: Option<ReadData>,
    /// Check only this snapshot (`latest`, an ID or a prefix); repeatable.
    #[arg(long = "snapshot", value_name = "SNAP")]
    pub snapshots: Vec<String>,
}

/// Whether an error opening the repository means its config is damaged (as
/// opposed to a wrong key, a missing repository or an I/O error).
fn config_damaged(e: &Error) -> bool {
    match e {
        Error::Integrity(_) => true,
        Error::Envelope(x) => !matches!(x, envelope::Error::Provider(_) | envelope::Error::Io(_)),
        _ => false,
    }
}

fn open(
    a: &RepoArgs,
    g: &GlobalArgs,
    out: &Output,
) -> std::result::Result<Repository, (Error, bool)> {
    a.open(g, out).map_err(|e| {
        let damaged = config_damaged(&e);
        (e, damaged)
    })
}

pub fn verify(out: &Output, g: &GlobalArgs, a: VerifyArgs) -> Result<i32> {
    let repo = match open(&a.repo, g, out) {
        Ok(r) => r,
        Err((e, true)) => {
            let report = VerifyReport {
                problems: vec![Problem::config(&e)],
                ..Default::default()
            };
            print(out, &report);
            return Ok(exit_code(&report));
        }
        Err((e, false)) => return Err(e),
    };
    let read_data = match (a.read_data, a.read_data_subset) {
        (true, _) => ReadData::All,
        (false, Some(s)) => s,
        (false, None) => ReadData::None,
    };
    let opts = VerifyOptions {
        read_data,
        snapshots: a.snapshots,
    };
    let progress = out.progress();
    let report = run_verify(&repo, &opts, progress.as_ref())?;
    print(out, &report);
    Ok(exit_code(&report))
}

/// 0 when everything checked is sound, else 4.
fn exit_code(r: &VerifyReport) -> i32 {
    if r.is_sound() {
        exit::OK
    } else {
        exit::INTEGRITY
    }
}

/// The first line of `envarc verify`'s report (and of the demo's verify).
pub(super) fn checked_line(r: &VerifyReport) -> String {
    format!(
        "checked {} index files, {} packs, {} snapshots, {} chunks (data read: {}: {} chunks, {})",
        r.index_files,
        r.packs,
        r.snapshots,
        r.chunks,
        r.read_data,
        r.chunks_read,
        fmt_bytes(r.bytes_read)
    )
}

/// The last line of `envarc verify`'s report.
pub(super) fn verdict_line(r: &VerifyReport) -> String {
    if r.is_sound() {
        format!("no problems found ({:.1} s)", r.duration_ms as f64 / 1000.0)
    } else {
        format!(
            "{} found; see each one's consequence above",
            plural(r.problems.len() as u64, "problem", "problems")
        )
    }
}

fn print(out: &Output, r: &VerifyReport) {
    if out.json {
        if let Err(e) = out.json(r) {
            out.warn(e.to_string());
        }
        return;
    }
    out.say(checked_line(r));
    for p in &r.problems {
        let what = match p.id.as_str() {
            "" => p.kind.to_string(),
            id => format!("{} {id}", p.kind),
        };
        if out.quiet {
            // Quiet hides stdout's report; the journal must still name it.
            eprintln!("envarc: error: {what} ({}): {}", p.class, p.error);
        }
        out.say(format!("error: {what} ({}): {}", p.class, p.error));
        out.say(format!("  consequence: {}", p.consequence));
        for rf in &p.references {
            out.say(format!(
                "  referenced by snapshot {} at {}",
                &rf.snapshot[..8.min(rf.snapshot.len())],
                rf.path
            ));
        }
        let more = p.references_total.saturating_sub(p.references.len() as u64);
        if more > 0 {
            out.say(format!("  … and {more} more references"));
        }
    }
    if r.unreferenced_chunks > 0 || !r.unreferenced_packs.is_empty() {
        out.say(format!(
            "info: {} chunks ({}) and {} packs are not referenced by any snapshot; not an error (prune removes them)",
            r.unreferenced_chunks,
            fmt_bytes(r.unreferenced_bytes),
            r.unreferenced_packs.len()
        ));
    }
    for i in &r.info {
        out.say(format!("info: {i}"));
    }
    out.say(verdict_line(r));
    if !r.is_sound() {
        let detail = if out.quiet {
            " verification; run without --quiet for each one's consequence"
        } else {
            " verification; see each one's consequence above"
        };
        out.failed(r.problems.len(), detail);
    }
}
