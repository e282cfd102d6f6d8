//! `envarc init`, `envarc snapshots` and `envarc ls`, and the repository
//! arguments every repository command shares.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use base64::Engine;
use serde_json::json;

use crate::envelope::{Suite, DEFAULT_FRAME_LENGTH};
use crate::repo::{
    Config, Entry, EntryKind, InitOptions, Repository, SnapshotMeta, DEFAULT_LARGE_FILE_SIZE,
    DEFAULT_PACK_SIZE,
};
use crate::{Error, Result};

use super::crypt::KeyArgs;
use super::repo_key::{init_key, repo_provider};
use super::{GlobalArgs, Output};

/// The repository and the key that opens it.
#[derive(clap::Args, Clone, Debug)]
pub struct RepoArgs {
    /// Repository folder.
    #[arg(short = 'r', long, env = "ENVARC_REPOSITORY", value_name = "DIR")]
    pub repo: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
}

impl RepoArgs {
    /// Opens the repository with the provider its config and the key arguments name.
    pub fn open(&self, g: &GlobalArgs) -> Result<Repository> {
        let config = Config::load(&self.repo)?;
        let provider = repo_provider(&self.key, g, &config)?;
        let mut repo = Repository::open(&self.repo, config, provider)?;
        if let Some(w) = g.retry_lock {
            repo.set_lock_wait(w);
        }
        Ok(repo)
    }
}

/// Parses `16MiB`, `512k`, `1G` or plain bytes (binary units).
pub fn parse_size(s: &str) -> std::result::Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a size; write e.g. 16MiB, 512KiB or 1048576"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => return Err(format!("unknown size unit in '{s}'; use KiB, MiB or GiB")),
    };
    n.checked_mul(mult)
        .filter(|v| *v > 0)
        .ok_or_else(|| format!("size '{s}' is out of range"))
}

/// Human-readable bytes (binary units).
pub fn fmt_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// Folder to create the repository in (absent or empty).
    #[arg(short = 'r', long, env = "ENVARC_REPOSITORY", value_name = "DIR")]
    pub repo: PathBuf,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Content cipher of every message.
    #[arg(long, default_value = "aes-256-gcm", value_parser = ["aes-256-gcm", "chacha20-poly1305"])]
    pub cipher: String,
    /// Plaintext bytes per frame.
    #[arg(long, default_value_t = DEFAULT_FRAME_LENGTH, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..=(16 * 1024 * 1024)))]
    pub frame_length: u32,
    /// Target size of pack files (small files' messages are packed together).
    #[arg(long, default_value_t = DEFAULT_PACK_SIZE, value_name = "SIZE", value_parser = parse_size)]
    pub pack_size: u64,
    /// Files at least this large get a data file of their own.
    #[arg(long, default_value_t = DEFAULT_LARGE_FILE_SIZE, value_name = "SIZE", value_parser = parse_size)]
    pub large_file_size: u64,
}

pub fn init(out: &Output, g: &GlobalArgs, a: InitArgs) -> Result<i32> {
    let (key, provider) = init_key(&a.key, g)?;
    let opts = InitOptions {
        suite: Suite::from_cli_name(&a.cipher).expect("clap restricts the cipher names"),
        frame_length: a.frame_length,
        pack_size: a.pack_size,
        large_file_size: a.large_file_size,
    };
    let repo = Repository::init(&a.repo, key, provider, &opts)?;
    let c = repo.config();
    out.say(format!(
        "created repository {} at {} ({}, {})",
        c.id,
        a.repo.display(),
        crate::repo::describe_key(&c.key),
        c.suite
    ));
    out.json(&json!({
        "id": c.id,
        "path": a.repo,
        "key": c.key,
        "suite": c.suite,
        "frame_length": c.frame_length,
        "pack_size": c.pack_size,
        "large_file_size": c.large_file_size,
    }))?;
    Ok(crate::error::exit::OK)
}

#[derive(clap::Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn snapshot_json(id: &crate::repo::Id, m: &SnapshotMeta) -> serde_json::Value {
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": m.time.to_rfc3339(),
        "time_ns": m.time.as_nanos().to_string(),
        "host": m.host,
        "paths": m.paths.iter().map(|p| lossy(p)).collect::<Vec<_>>(),
        "tags": m.tags,
        "parent": m.parent.map(|p| p.to_hex()),
        "files": m.summary.files,
        "size": m.summary.total_bytes,
        "summary": m.summary,
    })
}

pub fn snapshots(out: &Output, g: &GlobalArgs, a: SnapshotsArgs) -> Result<i32> {
    let repo = a.repo.open(g)?;
    let (all, failed) = repo.snapshots_lenient()?;
    for (id, e) in &failed {
        out.warn(format!("snapshot {id} cannot be read: {e}"));
    }
    let code = if failed.is_empty() {
        crate::error::exit::OK
    } else {
        crate::error::exit::INTEGRITY
    };
    if out.json {
        let list: Vec<_> = all.iter().map(|(id, m)| snapshot_json(id, m)).collect();
        out.json(&list)?;
        return Ok(code);
    }
    out.say(format!(
        "{:<8}  {:<20}  {:<16}  {:<12}  {:>8}  {:>10}  Paths",
        "ID", "Time", "Host", "Tags", "Files", "Size"
    ));
    for (id, m) in &all {
        let paths: Vec<String> = m.paths.iter().map(|p| lossy(p)).collect();
        out.say(format!(
            "{:<8}  {:<20}  {:<16}  {:<12}  {:>8}  {:>10}  {}",
            id.short(),
            m.time.to_rfc3339(),
            m.host,
            m.tags.join(","),
            m.summary.files,
            fmt_bytes(m.summary.total_bytes),
            paths.join(" ")
        ));
    }
    out.say(format!("{} snapshots", all.len()));
    Ok(code)
}

#[derive(clap::Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    /// Snapshot: `latest`, an ID or a unique ID prefix.
    pub snapshot: String,
    /// List only this path and what is below it (absolute, as backed up; a
    /// relative path is taken from the current folder).
    pub path: Option<PathBuf>,
}

fn mode_string(e: &Entry) -> String {
    let t = match e.kind {
        EntryKind::File => '-',
        EntryKind::Dir => 'd',
        EntryKind::Symlink => 'l',
    };
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if e.mode & (0o400 >> i) != 0 { c } else { '-' });
    }
    s
}

fn entry_json(e: &Entry) -> serde_json::Value {
    let mut v = json!({
        "path": lossy(&e.path),
        "type": match e.kind { EntryKind::File => "file", EntryKind::Dir => "dir", EntryKind::Symlink => "symlink" },
        "mode": format!("{:04o}", e.mode),
        "uid": e.uid,
        "gid": e.gid,
        "size": e.size,
        "mtime": e.mtime.to_rfc3339(),
        "mtime_ns": e.mtime.as_nanos().to_string(),
        "ctime_ns": e.ctime.as_nanos().to_string(),
        "inode": e.inode,
        "device": e.device,
        "nlink": e.nlink,
        "link_target": e.link_target.as_deref().map(lossy),
        "content": e.content.map(hex::encode),
    });
    if std::str::from_utf8(&e.path).is_err() {
        v["path_base64"] = base64::engine::general_purpose::STANDARD
            .encode(&e.path)
            .into();
    }
    v
}

pub fn ls(out: &Output, g: &GlobalArgs, a: LsArgs) -> Result<i32> {
    let repo = a.repo.open(g)?;
    let id = repo.resolve_snapshot(&a.snapshot)?;
    let prefix = match &a.path {
        Some(p) => Some(
            crate::backup::walk::clean_absolute(p)?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        ),
        None => None,
    };
    let selected = |e: &Entry| match &prefix {
        None => true,
        Some(p) if p.as_slice() == b"/" => true,
        Some(p) => e.path == *p || (e.path.starts_with(p) && e.path.get(p.len()) == Some(&b'/')),
    };
    let stdout = std::io::stdout();
    let mut o = std::io::BufWriter::new(stdout.lock());
    let io_err = |e| Error::io("writing to stdout", e);
    let mut json_entries = Vec::new();
    let mut shown = 0u64;
    repo.load_snapshot_with(&id, |e| {
        if !selected(&e) {
            return Ok(());
        }
        shown += 1;
        if out.json {
            json_entries.push(entry_json(&e));
        } else if !out.quiet {
            // Raw bytes: a non-UTF-8 name prints exactly as it is.
            write!(
                o,
                "{} {:>5}/{:<5} {:>12} {} ",
                mode_string(&e),
                e.uid,
                e.gid,
                e.size,
                e.mtime.to_rfc3339()
            )
            .map_err(io_err)?;
            o.write_all(&e.path).map_err(io_err)?;
            if let Some(t) = &e.link_target {
                o.write_all(b" -> ").map_err(io_err)?;
                o.write_all(t).map_err(io_err)?;
            }
            o.write_all(b"\n").map_err(io_err)?;
        }
        Ok(())
    })?;
    o.flush().map_err(io_err)?;
    drop(o);
    out.json(&json!({ "snapshot": id.to_hex(), "entries": json_entries }))?;
    if shown == 0 && prefix.is_some() {
        return Err(Error::Usage(format!(
            "snapshot {} has no entry at {}",
            id.short(),
            a.path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        )));
    }
    Ok(crate::error::exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units() {
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("MiB").is_err());
        assert_eq!(fmt_bytes(1536), "1.5 KiB");
        assert_eq!(fmt_bytes(12), "12 B");
    }
}
