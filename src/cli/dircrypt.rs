//! `envarc encrypt|decrypt --recursive DIR -o OUTDIR` and
//! `envarc stats --recursive DIR`: the CLI side of `envarc::dircrypt`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::fmt::{fmt_bytes, plural};
use super::Output;
use envarc::dircrypt::stats::DirStats;
use envarc::dircrypt::{self, Direction, Overwrite, Request, Summary, DEFAULT_SUFFIX};
use envarc::envelope::{DecryptOptions, EncryptOptions, KeyProvider};
use envarc::error::exit;
use envarc::providers::ProviderKind;
use envarc::repo::KeyVersion;
use envarc::{Error, Result};

/// Directory mode, shared by `encrypt` and `decrypt`.
#[derive(clap::Args, Clone, Debug)]
pub struct DirArgs {
    /// INPUT is a folder: every regular file below it becomes one message
    /// (decrypting: one file) in the folder -o OUTDIR, with the same layout.
    /// Symlinks, FIFOs, sockets and devices are reported and skipped. Each
    /// output appears only once complete (decrypting: authenticated,
    /// signature included). Exit code 3 when some files failed.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    /// Appended to each output name when encrypting; removed from each input
    /// name when decrypting (a name without it gets `.decrypted` appended).
    #[arg(long, default_value = DEFAULT_SUFFIX, value_name = "SUFFIX", requires = "recursive")]
    pub suffix: String,
    /// When to replace an output that exists: never (a rerun goes on where an
    /// interrupted one stopped), if-changed (only where the source changed
    /// since: its size or mtime differ from those the output's authenticated
    /// header records), or always.
    #[arg(long, value_enum, default_value_t = Overwrite::Never, value_name = "WHEN", requires = "recursive")]
    pub overwrite: Overwrite,
    /// Files processed at once [default: the number of cores, or the key
    /// service's --kms-max-in-flight when larger].
    #[arg(long, value_name = "N", requires = "recursive", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub jobs: Option<u32>,
}

/// Checks the paths of a recursive run (before any key is opened).
pub fn check_paths(input: &Option<PathBuf>, output: &Option<PathBuf>) -> Result<()> {
    paths(input, output).map(|_| ())
}

/// The paths of a recursive run: a folder in, a folder out.
fn paths<'a>(
    input: &'a Option<PathBuf>,
    output: &'a Option<PathBuf>,
) -> Result<(&'a Path, &'a Path)> {
    let stdio = |p: &Option<PathBuf>| p.as_deref().is_none_or(|p| p == Path::new("-"));
    if stdio(input) {
        return Err(Error::Usage(
            "--recursive needs an input folder: envarc encrypt --recursive DIR -o OUTDIR".into(),
        ));
    }
    if stdio(output) {
        return Err(Error::Usage(
            "--recursive needs an output folder: pass -o OUTDIR".into(),
        ));
    }
    Ok((input.as_deref().unwrap(), output.as_deref().unwrap()))
}

pub fn encrypt(
    out: &Output,
    d: &DirArgs,
    (input, output): (&Option<PathBuf>, &Option<PathBuf>),
    provider: &dyn KeyProvider,
    opts: EncryptOptions,
) -> Result<i32> {
    let (input, output) = paths(input, output)?;
    let suite = opts.suite;
    let req = Request {
        direction: Direction::Encrypt,
        input,
        output,
        suffix: &d.suffix,
        overwrite: d.overwrite,
        encrypt: opts,
        decrypt: DecryptOptions::default(),
        workers: d.jobs.map(|n| n as usize),
    };
    run(out, &req, provider, Some(suite.id()))
}

pub fn decrypt(
    out: &Output,
    d: &DirArgs,
    (input, output): (&Option<PathBuf>, &Option<PathBuf>),
    provider: &dyn KeyProvider,
    opts: DecryptOptions,
) -> Result<i32> {
    let (input, output) = paths(input, output)?;
    let req = Request {
        direction: Direction::Decrypt,
        input,
        output,
        suffix: &d.suffix,
        overwrite: d.overwrite,
        encrypt: EncryptOptions::default(),
        decrypt: opts,
        workers: d.jobs.map(|n| n as usize),
    };
    run(out, &req, provider, None)
}

fn run(out: &Output, req: &Request, provider: &dyn KeyProvider, suite: Option<u16>) -> Result<i32> {
    let started = Instant::now();
    let progress = out.progress();
    let s = dircrypt::run(req, provider, progress.as_ref())?;
    let secs = started.elapsed().as_secs_f64();
    // Failures reach stderr even with --quiet: a job's log must name them.
    for f in &s.failed {
        eprintln!("envarc: error: {f}");
    }
    let mut j = serde_json::to_value(&s).map_err(|e| Error::Other(e.to_string()))?;
    j["Input"] = req.input.display().to_string().into();
    j["Output"] = req.output.display().to_string().into();
    j["Seconds"] = json!((secs * 1000.0).round() / 1000.0);
    if let Some(id) = suite {
        j["Suite"] = format!("{id:#06x}").into();
    }
    out.json(&j)?;
    for line in summary_lines(req.direction, &s, secs) {
        out.say(line);
    }
    if s.failed.is_empty() {
        return Ok(exit::OK);
    }
    eprintln!(
        "envarc: error: {}",
        plural(s.failed.len() as u64, "file failed", "files failed")
    );
    Ok(exit::PARTIAL)
}

fn summary_lines(dir: Direction, s: &Summary, secs: f64) -> Vec<String> {
    let verb = match dir {
        Direction::Encrypt => "encrypted",
        Direction::Decrypt => "decrypted",
    };
    let mut lines = vec![format!(
        "{verb} {} ({} read, {} written) in {secs:.1} s",
        plural(s.written, "file", "files"),
        fmt_bytes(s.bytes_read),
        fmt_bytes(s.bytes_written)
    )];
    if s.kept_existing > 0 {
        lines.push(format!(
            "kept {} that already existed (--overwrite if-changed refreshes changed sources, --overwrite always rewrites all)",
            plural(s.kept_existing, "output", "outputs")
        ));
    }
    if s.kept_current > 0 {
        lines.push(format!(
            "kept {} whose source did not change",
            plural(s.kept_current, "output", "outputs")
        ));
    }
    if !s.skipped.is_empty() {
        lines.push(format!(
            "skipped {} (symlinks and special files are not {verb})",
            plural(s.skipped.len() as u64, "entry", "entries")
        ));
    }
    if s.leftovers_removed > 0 {
        lines.push(format!(
            "removed {} left by an interrupted run",
            plural(s.leftovers_removed, "temporary file", "temporary files")
        ));
    }
    lines
}

/// How a key is named in the report.
fn label(k: &KeyVersion) -> String {
    match k.kind() {
        Some(kind) => format!("{} {}", kind.key_noun(), k.key),
        None => format!("{} key {}", k.provider, k.key),
    }
}

fn render(dir: &Path, s: &DirStats) -> Vec<String> {
    let mut lines = vec![format!(
        "{}: {}, {}; per key version, what its material would expose:",
        dir.display(),
        plural(s.messages, "message", "messages"),
        fmt_bytes(s.bytes)
    )];
    let mut last: Option<(&str, &str)> = None;
    for v in &s.versions {
        let k = &v.key;
        if last != Some((&k.provider, &k.key)) {
            lines.push(label(k));
            last = Some((&k.provider, &k.key));
        }
        let name = match (k.version, k.kind()) {
            (Some(n), _) => format!("v{n}"),
            (None, Some(ProviderKind::AwsKms)) => "(rotated inside KMS)".into(),
            (None, _) => "(no versions)".into(),
        };
        lines.push(format!(
            "  {name:<20} {:>12}  {:>10}",
            plural(v.files, "file", "files"),
            fmt_bytes(v.bytes)
        ));
    }
    let suites: Vec<String> = s
        .suites
        .iter()
        .map(|(id, n)| format!("{id}: {n}"))
        .collect();
    if !suites.is_empty() {
        lines.push(format!("suites: {}", suites.join(", ")));
    }
    lines
}

/// `envarc stats --recursive DIR`.
pub fn stats(out: &Output, dir: &Path) -> Result<i32> {
    let progress = out.progress();
    let s = dircrypt::stats::stats(dir, progress.as_ref())?;
    for p in &s.not_messages {
        eprintln!("envarc: error: {p}");
    }
    out.json(&json!({
        "folder": dir.display().to_string(),
        "messages": s.messages,
        "bytes": s.bytes,
        "versions": s.versions,
        "suites": s.suites,
        "not_messages": s.not_messages,
        "skipped": s.skipped,
    }))?;
    for l in render(dir, &s) {
        out.say(l);
    }
    if s.not_messages.is_empty() {
        return Ok(exit::OK);
    }
    eprintln!(
        "envarc: error: {} not messages",
        plural(s.not_messages.len() as u64, "file is", "files are")
    );
    Ok(exit::PARTIAL)
}
