//! `envarc copy`, and the source repository arguments it shares with
//! `envarc init --from-repo`.

use std::path::PathBuf;

use serde_json::json;

use envarc::copy::{copy as run_copy, CopyOptions};
use envarc::repo::Repository;
use envarc::{Error, Result};

use super::keyspec::KeyArgs;
use super::keyspec::KeyringCache;
use super::repo::{open_pinned, RepoArgs};
use super::{GlobalArgs, Output};

#[derive(clap::Args)]
pub struct CopyArgs {
    /// The repository to copy into (created with `envarc init --from-repo
    /// SRC`), and the keys of both.
    #[command(flatten)]
    pub repo: RepoArgs,
    /// The repository to copy from (a folder, s3:…, sftp:…).
    #[arg(long, env = "ENVARC_FROM_REPOSITORY", value_name = "LOCATION")]
    pub from_repo: String,
    /// The source's raw AES key file, when it is not the destination's
    /// (--raw-key-file). Keyring, transit and AWS KMS keys are found from
    /// the source's config.
    #[arg(long, value_name = "FILE")]
    pub from_raw_key_file: Option<PathBuf>,
    /// Snapshots to copy (`latest`, IDs, unique prefixes); all when none.
    pub snapshots: Vec<String>,
}

/// Opens the source repository `location` with the pin check, with the
/// destination's key arguments except for a raw key file of its own.
pub fn open_source(
    location: &str,
    from_raw_key_file: Option<&PathBuf>,
    key: &KeyArgs,
    g: &GlobalArgs,
    out: &Output,
    accept: bool,
    keyring: &mut KeyringCache,
) -> Result<Repository> {
    // The source's config names its keys: the destination's choice of keys
    // (--key, --key-name) says nothing about them.
    let mut key = key.clone();
    key.key.clear();
    key.key_name = None;
    if let Some(f) = from_raw_key_file {
        key.raw_key_file = Some(f.clone());
    }
    let mut repo = open_pinned(location, &key, g, out, accept, None, keyring)
        .map_err(|e| from_source(e, location))?;
    if let Some(w) = g.retry_lock {
        repo.set_lock_wait(w);
    }
    Ok(repo)
}

/// An error opening the source, saying that it is the source (and which
/// option passes its raw key); the kind, and so the exit code, is kept.
fn from_source(e: Error, location: &str) -> Error {
    let say = |m: String| {
        format!(
            "--from-repo {location}: {}",
            m.replace("--raw-key-file", "--from-raw-key-file")
        )
    };
    match e {
        Error::Usage(m) => Error::Usage(say(m)),
        Error::Key { message } => Error::Key {
            message: say(message),
        },
        Error::Locked(m) => Error::Locked(say(m)),
        Error::Integrity(m) => Error::Integrity(say(m)),
        Error::Other(m) => Error::Other(say(m)),
        Error::Io { context, source } => Error::Io {
            context: say(context),
            source,
        },
        e @ (Error::Envelope(_) | Error::Interrupted(_)) => e,
    }
}

pub fn copy(out: &Output, g: &GlobalArgs, a: CopyArgs) -> Result<i32> {
    let (dst, mut keyring) = a.repo.open_with_keyring(g, out)?;
    let src = open_source(
        &a.from_repo,
        a.from_raw_key_file.as_ref(),
        &a.repo.key,
        g,
        out,
        a.repo.trust_repository_keys,
        &mut keyring,
    )?;
    let progress = out.progress();
    let opts = CopyOptions {
        snapshots: a.snapshots,
    };
    let r = run_copy(&src, &dst, &opts, progress.as_ref())?;
    drop(progress);
    let (from, to) = (src.storage().location(), dst.storage().location());
    out.say(format!(
        "copied {} snapshots from {from} to {to} ({} already there): {} chunks, {} stored, {} data keys",
        r.copied.len(),
        r.present.len(),
        r.chunks,
        super::fmt::fmt_bytes(r.bytes_stored),
        r.data_keys
    ));
    out.json(&json!({
        "from": from,
        "to": to,
        "copied": r.copied.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "present": r.present.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
        "chunks": r.chunks,
        "bytes_stored": r.bytes_stored,
        "data_keys": r.data_keys,
    }))?;
    Ok(envarc::error::exit::OK)
}
