//! Finding and unlocking the keyring from the global options: the path
//! (`--keyring`, `ENVARC_KEYRING`, the per-user default) and the secret
//! (`--keyring-key-file`, `--passphrase-file`, `--passphrase-command`,
//! `ENVARC_PASSPHRASE`, else the terminal), asked for only when needed.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::super::Output;
use super::GlobalArgs;
use envarc::keyring::{
    Argon2Params, KdfKind, Keyring, KeyringFile, KeyringOptions, Secret, UnlockRequest, Unlocker,
};
use envarc::{Error, Result};

/// Environment variable holding the keyring passphrase.
pub const PASSPHRASE_ENV: &str = "ENVARC_PASSPHRASE";
/// Environment variable with the Argon2id cost (`m=KIB,t=N,p=N`) of keyrings
/// created from now on; the cost is recorded in the file and used to read it.
pub const ARGON2_ENV: &str = "ENVARC_ARGON2_PARAMS";
/// Environment variable that lowers (never raises) the memory, in MiB, that
/// Argon2 may use to open a keyring (see `keyring::cost`).
pub const ARGON2_MAX_ENV: &str = "ENVARC_ARGON2_MAX_MIB";

/// `ENVARC_ARGON2_PARAMS`, when set.
pub fn argon2_params() -> Result<Option<Argon2Params>> {
    std::env::var_os(ARGON2_ENV)
        .map(|p| Argon2Params::parse(&p.to_string_lossy()))
        .transpose()
}

fn argon2_memory_limit() -> Result<Option<u64>> {
    let Some(v) = std::env::var_os(ARGON2_MAX_ENV) else {
        return Ok(None);
    };
    let v = v.to_string_lossy();
    match v.trim().parse::<u64>() {
        Ok(mib) if mib > 0 => Ok(Some(mib)),
        _ => Err(Error::Usage(format!(
            "{ARGON2_MAX_ENV}='{v}' is not a number of MiB (for example 256)"
        ))),
    }
}

/// The keyring path: `--keyring`/`ENVARC_KEYRING`, else
/// `$XDG_CONFIG_HOME/envarc/keyring`, else `~/.config/envarc/keyring`.
pub fn keyring_path(g: &GlobalArgs) -> Result<PathBuf> {
    if let Some(p) = &g.keyring {
        return Ok(p.clone());
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .ok_or_else(|| {
            Error::Usage(
                "cannot find the keyring: HOME and XDG_CONFIG_HOME are unset; pass --keyring PATH \
                 or set ENVARC_KEYRING"
                    .into(),
            )
        })?;
    Ok(config.join("envarc").join("keyring"))
}

/// The keyring file the global options name. No I/O, no prompt yet.
pub fn keyring_file(g: &GlobalArgs) -> Result<KeyringFile> {
    let given = [
        g.keyring_key_file.is_some(),
        g.passphrase_file.is_some(),
        g.passphrase_command.is_some(),
    ];
    if given.iter().filter(|x| **x).count() > 1 {
        return Err(Error::Usage(
            "give only one of --keyring-key-file, --passphrase-file and --passphrase-command"
                .into(),
        ));
    }
    let mut opts = KeyringOptions::new(
        keyring_path(g)?,
        Arc::new(CliUnlocker {
            key_file: g.keyring_key_file.clone(),
            passphrase_file: g.passphrase_file.clone(),
            passphrase_command: g.passphrase_command.clone(),
        }),
    );
    if let Some(p) = argon2_params()? {
        opts.argon2 = p;
    }
    Ok(KeyringFile::new(opts).with_argon2_memory_limit(argon2_memory_limit()?))
}

/// Opens the keyring for reading (carrying out due rotations when it can)
/// and warns when due work could not be written.
pub fn load_keyring(g: &GlobalArgs) -> Result<Keyring> {
    let kr = keyring_file(g)?.load()?;
    if let Some(why) = &kr.report().not_written {
        Output::new(g).warn(format!(
            "a scheduled rotation or deletion is due, but the keyring could not be written \
             ({why}); using it as it is"
        ));
    }
    Ok(kr)
}

struct CliUnlocker {
    key_file: Option<PathBuf>,
    passphrase_file: Option<PathBuf>,
    passphrase_command: Option<String>,
}

fn key_err(message: String) -> Error {
    Error::Key { message }
}

/// Strips one trailing newline (`\n` or `\r\n`), as files and commands end.
fn strip_newline(mut v: Zeroizing<Vec<u8>>) -> Zeroizing<Vec<u8>> {
    if v.last() == Some(&b'\n') {
        v.pop();
        if v.last() == Some(&b'\r') {
            v.pop();
        }
    }
    v
}

/// Reads a file holding a secret. A missing or unreadable one is a key
/// problem (exit 5): without it the keyring cannot be unlocked.
fn read_secret_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let mut buf = Zeroizing::new(Vec::with_capacity(4096));
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut buf))
        .map_err(|e| {
            key_err(format!(
                "cannot read the {what} {}: {e}; check the path and its permissions",
                path.display()
            ))
        })?;
    Ok(buf)
}

/// Where a passphrase comes from, in the order they are tried: a file, a
/// command, an environment variable, else the terminal.
pub struct PassphraseSource<'a> {
    pub file: Option<&'a Path>,
    pub command: Option<&'a str>,
    pub env: &'a str,
    /// The terminal prompt: "Passphrase for …" or, creating, "New passphrase
    /// for …" asked twice.
    pub prompt_new: bool,
    /// The options that give it, for the error when there is no terminal.
    pub options: &'a str,
}

/// The options that give the current secret.
pub const SECRET_OPTIONS: &str =
    "pass --passphrase-file FILE, --passphrase-command CMD or --keyring-key-file FILE";

/// A non-empty passphrase from `src` for the keyring at `path`.
pub fn passphrase_from(src: &PassphraseSource<'_>, path: &Path) -> Result<Zeroizing<Vec<u8>>> {
    let (pw, source) = if let Some(f) = src.file {
        let pw = strip_newline(read_secret_file(f, "passphrase file")?);
        (pw, format!("the passphrase file {}", f.display()))
    } else if let Some(cmd) = src.command {
        (
            run_passphrase_command(cmd)?,
            "the passphrase command".into(),
        )
    } else if let Some(v) = std::env::var_os(src.env) {
        (Zeroizing::new(v.into_encoded_bytes()), src.env.to_string())
    } else {
        (prompt(path, src)?, "the terminal".to_string())
    };
    if pw.is_empty() {
        return Err(key_err(format!(
            "the passphrase from {source} is empty; the keyring needs a non-empty passphrase"
        )));
    }
    Ok(pw)
}

/// A 32-byte key file that locks a keyring.
pub fn read_key_file(f: &Path) -> Result<Secret> {
    let bytes = read_secret_file(f, "keyring key file")?;
    if bytes.len() != 32 {
        return Err(Error::Usage(format!(
            "the keyring key file {} holds {} bytes; it must hold exactly 32 random bytes \
             (create one with: head -c 32 /dev/urandom > FILE; chmod 600 FILE)",
            f.display(),
            bytes.len()
        )));
    }
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(&bytes);
    Ok(Secret::KeyFile(k))
}

impl Unlocker for CliUnlocker {
    fn secret(&self, req: &UnlockRequest<'_>) -> Result<Secret> {
        if let Some(f) = &self.key_file {
            return read_key_file(f);
        }
        if req.kind == Some(KdfKind::KeyFile) {
            return Err(key_err(format!(
                "the keyring {} is locked with a key file: pass --keyring-key-file FILE",
                req.path.display()
            )));
        }
        let src = PassphraseSource {
            file: self.passphrase_file.as_deref(),
            command: self.passphrase_command.as_deref(),
            env: PASSPHRASE_ENV,
            prompt_new: req.kind.is_none(),
            options: SECRET_OPTIONS,
        };
        Ok(Secret::Passphrase(passphrase_from(&src, req.path)?))
    }
}

fn run_passphrase_command(cmd: &str) -> Result<Zeroizing<Vec<u8>>> {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stderr(Stdio::inherit())
        .stdout(Stdio::piped())
        .output()
        .map_err(|e| Error::io("running --passphrase-command", e))?;
    let pw = strip_newline(Zeroizing::new(out.stdout));
    if !out.status.success() {
        return Err(key_err(format!(
            "--passphrase-command failed ({}); it must print the passphrase and exit 0",
            out.status
        )));
    }
    Ok(pw)
}

/// Asks on the terminal; a new passphrase is asked twice.
fn prompt(path: &Path, src: &PassphraseSource<'_>) -> Result<Zeroizing<Vec<u8>>> {
    let creating = src.prompt_new;
    let no_terminal = |_| {
        key_err(format!(
            "no passphrase for the keyring {} and no terminal to ask on: set {}, or {}",
            path.display(),
            src.env,
            src.options
        ))
    };
    let ask = |p: &str| {
        rpassword::prompt_password(p)
            .map(|s| Zeroizing::new(s.into_bytes()))
            .map_err(no_terminal)
    };
    if !creating {
        return ask(&format!("Passphrase for the keyring {}: ", path.display()));
    }
    let first = ask(&format!(
        "New passphrase for the keyring {}: ",
        path.display()
    ))?;
    let second = ask("Repeat the passphrase: ")?;
    if *first != *second {
        return Err(Error::Usage(
            "the two passphrases differ; nothing was changed".into(),
        ));
    }
    Ok(first)
}
