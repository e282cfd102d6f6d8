//! `envarc unlock`: removes the locks of processes that are gone (restic's
//! `unlock`). Locks are plain objects (`locks/<id>`, no secrets), so this
//! needs no key; anyone who can delete objects in the store could remove
//! them anyway.

use serde_json::json;

use envarc::repo::storage::lock::remove_locks;
use envarc::{Error, Result};

use super::repo::open_storage;
use super::{GlobalArgs, Output};

#[derive(clap::Args)]
pub struct UnlockArgs {
    /// Repository location: a folder, s3:…, sftp:….
    #[arg(short = 'r', long, env = "ENVARC_REPOSITORY", value_name = "LOCATION")]
    pub repo: String,
    /// Remove every lock, also those whose holder looks alive: only when you
    /// know that no envarc process uses the repository (another host's lock
    /// is stale only after ENVARC_LOCK_STALE_AFTER, 30 minutes by default).
    #[arg(long)]
    pub remove_all: bool,
}

pub fn unlock(out: &Output, _g: &GlobalArgs, a: UnlockArgs) -> Result<i32> {
    let storage = open_storage(&a.repo)?;
    let at = storage.location();
    match storage.stat("config") {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::Usage(format!(
                "{at} is not an envarc repository (it has no config): nothing to unlock"
            )))
        }
        Err(e) => return Err(Error::io(format!("reading the config of {at}"), e)),
    }
    let progress = out.progress();
    let (removed, kept) = remove_locks(storage.as_ref(), a.remove_all, progress.as_ref())?;
    drop(progress);
    for l in &removed {
        out.say(format!("removed {}", l.describe()));
    }
    for l in &kept {
        out.say(format!(
            "kept {} (its holder may still run; --remove-all removes it)",
            l.describe()
        ));
    }
    out.say(format!(
        "{at}: {} locks removed, {} kept",
        removed.len(),
        kept.len()
    ));
    out.json(&json!({
        "repository": at,
        "removed": removed,
        "kept": kept,
    }))?;
    Ok(envarc::error::exit::OK)
}
