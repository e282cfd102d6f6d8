//! `envarc key passwd`: change what unlocks the keyring. The current secret
//! is checked first (before the new one is asked for); the change itself is a
//! locked read-modify-write with an atomic replacement, like every keyring
//! change, so a reader sees the old file or the new one, never a mix.

use std::path::PathBuf;

use serde_json::json;

use super::super::keyspec::keyring_open::{
    argon2_params, keyring_file, passphrase_from, read_key_file, PassphraseSource,
};
use super::super::{GlobalArgs, Output};
use super::manage::notes;
use envarc::error::exit;
use envarc::keyring::kdf::Kdf;
use envarc::keyring::{KdfKind, Secret};
use envarc::Result;

/// Environment variable with the new passphrase of `key passwd`.
pub const NEW_PASSPHRASE_ENV: &str = "ENVARC_NEW_PASSPHRASE";

#[derive(clap::Args)]
pub struct PasswdArgs {
    /// Read the new passphrase from FILE (one trailing newline is ignored).
    #[arg(long, value_name = "FILE", group = "new_secret")]
    pub new_passphrase_file: Option<PathBuf>,
    /// Run CMD with `sh -c` and use what it prints as the new passphrase.
    #[arg(long, value_name = "CMD", group = "new_secret")]
    pub new_passphrase_command: Option<String>,
    /// Lock the keyring with this 32-byte key file from now on, instead of a
    /// passphrase (create one with: head -c 32 /dev/urandom > FILE).
    #[arg(long, value_name = "FILE", group = "new_secret")]
    pub new_key_file: Option<PathBuf>,
}

fn new_secret(a: &PasswdArgs, path: &std::path::Path) -> Result<Secret> {
    if let Some(f) = &a.new_key_file {
        return read_key_file(f);
    }
    let src = PassphraseSource {
        file: a.new_passphrase_file.as_deref(),
        command: a.new_passphrase_command.as_deref(),
        env: NEW_PASSPHRASE_ENV,
        prompt_new: true,
        options: "pass --new-passphrase-file FILE, --new-passphrase-command CMD or \
                  --new-key-file FILE",
    };
    Ok(Secret::Passphrase(passphrase_from(&src, path)?))
}

pub fn run(out: &Output, g: &GlobalArgs, a: PasswdArgs) -> Result<i32> {
    let file = keyring_file(g)?;
    // Opening checks the current secret now, and keeps the key it derives
    // for the locked re-read below.
    drop(file.load()?);
    let secret = new_secret(&a, file.path())?;
    let (before, kdf, report) = file.change_secret(&secret, argon2_params()?)?;
    let was_key_file = before == KdfKind::KeyFile;
    for l in notes(&report) {
        out.say(l);
    }
    let path = file.path().display();
    let (locked_with, cost) = match &kdf {
        Kdf::Argon2id { params, .. } => {
            let cost = format!("m={},t={},p={}", params.m_kib, params.t, params.p);
            out.say(if was_key_file {
                format!(
                    "The keyring {path} is now locked by a passphrase (Argon2id {cost}); the \
                     key file no longer opens it"
                )
            } else {
                format!(
                    "Changed the passphrase of the keyring {path} (Argon2id {cost}); the old \
                     one no longer opens it"
                )
            });
            ("PASSPHRASE", Some(cost))
        }
        Kdf::KeyFile => {
            out.say(format!(
                "The keyring {path} is now locked by the key file {}; {} no longer opens it",
                a.new_key_file
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""))
                    .display(),
                if was_key_file {
                    "the old key file"
                } else {
                    "the passphrase"
                }
            ));
            ("KEY_FILE", None)
        }
    };
    out.warn(
        "copies of the keyring made before this change (backups of the file) still open with \
         the old secret and hold the same keys: this protects the file, it re-keys nothing",
    );
    out.json(&json!({
        "Keyring": file.path().display().to_string(),
        "LockedWith": locked_with,
        "Argon2Params": cost,
    }))?;
    Ok(exit::OK)
}
