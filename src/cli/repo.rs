//! `envarc init`, `envarc snapshots`, `envarc ls` and `envarc trust`, and
//! the repository arguments every repository command shares: the one place
//! the CLI turns a location into a storage ([`open_storage`]) and checks the
//! repository's pin before using any key.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use base64::Engine;
use serde_json::json;

use envarc::envelope::{Suite, DEFAULT_FRAME_LENGTH};
use envarc::repo::storage::Location;
use envarc::repo::{
    ChunkerParams, Compression, Entry, EntryKind, InitOptions, PinStatus, Pins, Repository,
    SnapshotMeta, Storage, Unopened, DEFAULT_PACK_SIZE,
};
use envarc::{Error, Result};

use super::fmt::{fmt_bytes, lossy, parse_size};
use super::keyspec::repo_keys::{init_keys, repo_provider, KeyringCache};
use super::keyspec::KeyArgs;
use super::{GlobalArgs, Output};

/// The storage at a repository location (a folder, `s3:…`, `sftp:…`, as
/// restic spells them; see [`envarc::repo::storage::url`]): the only place
/// the CLI makes one. Its `location()` is what pins record.
pub fn open_storage(location: impl AsRef<std::ffi::OsStr>) -> Result<Box<dyn Storage>> {
    let l = location.as_ref();
    match l.to_str() {
        Some(url) => envarc::repo::storage::open(url),
        // Not UTF-8, so no URL: a folder.
        None => envarc::repo::storage::url::open_local(std::path::Path::new(l)),
    }
}

/// The repository and the key that opens it.
#[derive(clap::Args, Clone, Debug)]
pub struct RepoArgs {
    /// Repository location: a folder, s3:https://HOST/BUCKET/PREFIX,
    /// s3:s3.amazonaws.com/BUCKET/PREFIX or sftp:USER@HOST:/PATH.
    #[arg(
        help_heading = "Repository",
        short = 'r',
        long,
        env = "ENVARC_REPOSITORY",
        value_name = "LOCATION"
    )]
    pub repo: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Accept a repository whose key set, config generation or location
    /// differs from what this machine pinned (see `envarc trust`).
    #[arg(help_heading = "Repository", long)]
    pub trust_repository_keys: bool,
}

impl RepoArgs {
    /// Opens the repository: pin check of the claimed config, then the
    /// providers for its keys, then the sealed config; records the pin.
    pub fn open(&self, g: &GlobalArgs, out: &Output) -> Result<Repository> {
        Ok(self.open_with_keyring(g, out)?.0)
    }

    /// [`RepoArgs::open`], also handing back the keyring when a key of the
    /// repository is in it (opened once, so a passphrase is asked once).
    pub fn open_with_keyring(
        &self,
        g: &GlobalArgs,
        out: &Output,
    ) -> Result<(Repository, KeyringCache)> {
        let mut keyring = None;
        let mut repo = open_pinned(
            &self.repo,
            &self.key,
            g,
            out,
            self.trust_repository_keys,
            None,
            &mut keyring,
        )?;
        if let Some(w) = g.retry_lock {
            repo.set_lock_wait(w);
        }
        // Past the prompts: from here a Ctrl-C stops the run between steps,
        // so it removes its lock and temporary files (see envarc::interrupt).
        envarc::interrupt::install();
        Ok((repo, keyring))
    }

    /// (device, inode) of a local repository folder, which backups leave
    /// out; `None` for a remote one.
    pub fn local_dir_id(&self) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        match envarc::repo::storage::url::parse(&self.repo).ok()? {
            Location::Local(p) => std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())),
            _ => None,
        }
    }
}

/// Opens with the pin check; `fingerprint`, when given, must be the key
/// set's (`envarc trust --fingerprint`).
pub(super) fn open_pinned(
    location: &str,
    key: &KeyArgs,
    g: &GlobalArgs,
    out: &Output,
    accept: bool,
    fingerprint: Option<&str>,
    keyring: &mut KeyringCache,
) -> Result<Repository> {
    let unopened = Unopened::read(open_storage(location)?)?;
    let pins = Pins::default_location()?;
    let at = unopened.location();
    let claimed = unopened.claimed();
    if let Some(f) = fingerprint {
        if f != claimed.fingerprint() {
            return Err(Error::Integrity(format!(
                "the key set of repository {} at {at} has fingerprint {}, not {f}: do not trust it",
                claimed.id,
                claimed.fingerprint()
            )));
        }
    }
    let status = pins.check(&at, claimed, accept)?;
    let provider = repo_provider(key, g, claimed, keyring)?;
    let repo = unopened.open(provider)?;
    let c = repo.config();
    warn_foreign_keys(key, c, keyring.as_ref(), out);
    pins.record(&at, c, status == PinStatus::Accepted)?;
    match status {
        PinStatus::New => out.warn(format!(
            "first use of repository {} at {at} on this machine: pinned its key set {} (generation {}) in {}; \
             check the fingerprint against `envarc trust` where the repository was created",
            c.id,
            c.fingerprint(),
            c.generation,
            pins.path().display()
        )),
        PinStatus::Accepted => out.warn(format!(
            "accepted repository {} at {at} with key set {} (generation {}) as pinned from now on",
            c.id,
            c.fingerprint(),
            c.generation
        )),
        PinStatus::Known => {}
    }
    Ok(repo)
}

/// `--key` on a command of an existing repository selects nothing: the
/// config fixes the key set at init. A key given that is not in that set
/// is a no-op the user should hear about, even under `-q`.
fn warn_foreign_keys(
    key: &KeyArgs,
    c: &envarc::repo::Config,
    keyring: Option<&envarc::keyring::Keyring>,
    out: &Output,
) {
    for spec in &key.key {
        let ours = super::keyspec::source_for_spec(spec).is_one_of(spec, &c.keys, keyring);
        if !ours {
            out.alert(format!(
                "--key {spec} is not a key of this repository, so it does nothing here: the \
                 repository's own key set ({}) is used, as it was fixed at `envarc init`; to keep \
                 backups under {spec}, create a repository with `envarc init --key {spec}` (and \
                 `envarc copy` snapshots into it)",
                c.describe_keys()
            ));
        }
    }
}

#[derive(clap::Args)]
pub struct InitArgs {
    /// Location to create the repository in: an absent or empty folder, or
    /// an empty prefix of an existing S3 bucket (s3:https://HOST/BUCKET/PREFIX),
    /// or an SFTP folder (sftp:USER@HOST:/PATH).
    #[arg(short = 'r', long, env = "ENVARC_REPOSITORY", value_name = "LOCATION")]
    pub repo: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Content cipher of every message.
    #[arg(long, default_value = "aes-256-gcm", value_parser = ["aes-256-gcm", "chacha20-poly1305"])]
    pub cipher: String,
    /// Plaintext bytes per frame.
    #[arg(long, default_value_t = DEFAULT_FRAME_LENGTH, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..=(16 * 1024 * 1024)))]
    pub frame_length: u32,
    /// Target size of packs (chunk messages are packed together).
    #[arg(long, default_value_t = DEFAULT_PACK_SIZE, value_name = "SIZE", value_parser = parse_size)]
    pub pack_size: u64,
    /// Default compression of backups: off, auto (zstd where it pays) or max.
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub compression: Compression,
    /// Average chunk size (content-defined chunking); min and max follow as
    /// a quarter and four times it unless given.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub chunk_size: Option<u64>,
    #[arg(long, value_name = "SIZE", value_parser = parse_size, hide = true)]
    pub chunk_min: Option<u64>,
    #[arg(long, value_name = "SIZE", value_parser = parse_size, hide = true)]
    pub chunk_max: Option<u64>,
    /// Share this repository's chunk secrets and chunker (not its keys or
    /// ID), so that `envarc copy --from-repo SRC` moves only missing chunks.
    #[arg(long, value_name = "LOCATION", conflicts_with_all = ["chunk_size", "chunk_min", "chunk_max"])]
    pub from_repo: Option<String>,
    /// The raw AES key file of --from-repo, when it is not --raw-key-file.
    #[arg(long, value_name = "FILE", requires = "from_repo")]
    pub from_raw_key_file: Option<PathBuf>,
    /// Accept --from-repo even if its keys or location differ from the pin.
    #[arg(long, requires = "from_repo")]
    pub trust_repository_keys: bool,
}

fn chunker_params(a: &InitArgs) -> Result<ChunkerParams> {
    let d = ChunkerParams::default();
    let avg = a.chunk_size.unwrap_or(u64::from(d.avg));
    let small =
        |v: u64| u32::try_from(v).map_err(|_| Error::Usage(format!("chunk size {v} is too large")));
    let p = ChunkerParams {
        min: small(a.chunk_min.unwrap_or(if a.chunk_size.is_some() {
            avg / 4
        } else {
            u64::from(d.min)
        }))?,
        avg: small(avg)?,
        max: small(a.chunk_max.unwrap_or(if a.chunk_size.is_some() {
            avg * 4
        } else {
            u64::from(d.max)
        }))?,
    };
    p.check().map_err(Error::Usage)?;
    Ok(p)
}

pub fn init(out: &Output, g: &GlobalArgs, a: InitArgs) -> Result<i32> {
    let opts = InitOptions {
        suite: Suite::from_cli_name(&a.cipher).expect("clap restricts the cipher names"),
        frame_length: a.frame_length,
        pack_size: a.pack_size,
        chunker: chunker_params(&a)?,
        compression: a.compression,
    };
    let source = match &a.from_repo {
        Some(from) => Some(super::copy::open_source(
            from,
            a.from_raw_key_file.as_ref(),
            &a.key,
            g,
            out,
            a.trust_repository_keys,
            &mut None,
        )?),
        None => None,
    };
    let (keys, provider) = init_keys(&a.key, g)?;
    let storage = open_storage(&a.repo)?;
    let at = storage.location();
    let repo = match &source {
        Some(src) => Repository::init_like(storage, keys, provider, &opts, src)?,
        None => Repository::init(storage, keys, provider, &opts)?,
    };
    let c = repo.config();
    let pins = Pins::default_location()?;
    pins.record(&at, c, true)?;
    out.say(format!(
        "created repository {} at {at} ({}, {}); key set {} pinned in {}",
        c.id,
        c.describe_keys(),
        c.suite,
        c.fingerprint(),
        pins.path().display()
    ));
    out.json(&json!({
        "id": c.id,
        "path": at,
        "keys": c.keys,
        "fingerprint": c.fingerprint(),
        "generation": c.generation,
        "suite": c.suite,
        "frame_length": c.frame_length,
        "pack_size": c.pack_size,
        "chunker": c.chunker,
        "compression": c.compression,
        "chunk_secrets_of": source.as_ref().map(|s| s.config().id.clone()),
    }))?;
    if let Some(src) = &source {
        out.say(format!(
            "it shares the chunk secrets and chunker of repository {} at {}: `envarc copy \
             --from-repo {} --repo {at}` moves only the chunks it lacks",
            src.config().id,
            src.storage().location(),
            src.storage().location()
        ));
    }
    Ok(envarc::error::exit::OK)
}

#[derive(clap::Args)]
pub struct TrustArgs {
    /// Repository location (a folder, s3:…, sftp:…).
    #[arg(short = 'r', long, env = "ENVARC_REPOSITORY", value_name = "LOCATION")]
    pub repo: String,
    #[command(flatten)]
    pub key: KeyArgs,
    /// Trust only if the key set has this fingerprint (as `envarc trust`
    /// printed on a machine that already trusts the repository).
    #[arg(long, value_name = "sha256:HEX")]
    pub fingerprint: Option<String>,
}

/// `envarc trust`: accepts the repository's current config (key set,
/// generation, location) as pinned, after opening it with its keys.
pub fn trust(out: &Output, g: &GlobalArgs, a: TrustArgs) -> Result<i32> {
    let repo = open_pinned(
        &a.repo,
        &a.key,
        g,
        out,
        true,
        a.fingerprint.as_deref(),
        &mut None,
    )?;
    let c = repo.config();
    out.say(format!(
        "repository {} at {}: key set {} ({}), generation {}, pinned",
        c.id,
        repo.storage().location(),
        c.fingerprint(),
        c.describe_keys(),
        c.generation
    ));
    out.json(&json!({
        "id": c.id,
        "fingerprint": c.fingerprint(),
        "generation": c.generation,
        "keys": c.keys,
    }))?;
    Ok(envarc::error::exit::OK)
}

#[derive(clap::Args)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub repo: RepoArgs,
    #[command(flatten)]
    pub filter: super::filter::SnapshotFilter,
}

fn snapshot_json(id: &envarc::repo::Id, m: &SnapshotMeta) -> serde_json::Value {
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
    let filter = a.filter.build()?;
    let repo = a.repo.open(g, out)?;
    let (all, failed) = repo.snapshots_lenient()?;
    let any = !all.is_empty();
    let all = filter.apply(all);
    if any && all.is_empty() && !filter.is_empty() {
        out.alert(format!("no snapshot matches {}", filter.describe()));
    }
    for (id, e) in &failed {
        out.warn(format!("snapshot {id} cannot be read: {e}"));
    }
    let code = if failed.is_empty() {
        envarc::error::exit::OK
    } else {
        envarc::error::exit::INTEGRITY
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
    out.say(super::fmt::plural(
        all.len() as u64,
        "snapshot",
        "snapshots",
    ));
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
        "chunks": e.chunks.iter().map(|c| c.to_hex()).collect::<Vec<_>>(),
    });
    if std::str::from_utf8(&e.path).is_err() {
        v["path_base64"] = base64::engine::general_purpose::STANDARD
            .encode(&e.path)
            .into();
    }
    v
}

pub fn ls(out: &Output, g: &GlobalArgs, a: LsArgs) -> Result<i32> {
    let repo = a.repo.open(g, out)?;
    let id = repo.resolve_snapshot(&a.snapshot)?;
    let prefix = match &a.path {
        Some(p) => Some(
            envarc::backup::walk::clean_absolute(p)?
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
    Ok(envarc::error::exit::OK)
}
