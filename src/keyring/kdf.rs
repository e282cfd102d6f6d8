//! What unlocks a keyring: a passphrase stretched by Argon2id, or a 32-byte
//! key file; and the [`Unlocker`] seam through which the keyring asks for it
//! only when it needs it.

use std::path::Path;

use zeroize::Zeroizing;

use crate::{Error, Result};

/// Argon2id cost: memory in KiB, passes, lanes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Argon2Params {
    /// RFC 9106's second recommended setting (64 MiB, 3 passes, 4 lanes):
    /// a fraction of a second on a laptop, for a file opened once per command.
    pub const INTERACTIVE: Argon2Params = Argon2Params {
        m_kib: 64 * 1024,
        t: 3,
        p: 4,
    };

    /// Parses `m=KIB,t=N,p=N` (the `ENVARC_ARGON2_PARAMS` syntax).
    pub fn parse(s: &str) -> Result<Argon2Params> {
        let bad = || {
            Error::Usage(format!(
                "Argon2 parameters '{s}' are not of the form m=KIB,t=PASSES,p=LANES (for example m=65536,t=3,p=4)"
            ))
        };
        let (mut m, mut t, mut p) = (None, None, None);
        for part in s.split(',') {
            let (k, v) = part.trim().split_once('=').ok_or_else(bad)?;
            let v: u32 = v.trim().parse().map_err(|_| bad())?;
            match k.trim() {
                "m" => m = Some(v),
                "t" => t = Some(v),
                "p" => p = Some(v),
                _ => return Err(bad()),
            }
        }
        let params = Argon2Params {
            m_kib: m.ok_or_else(bad)?,
            t: t.ok_or_else(bad)?,
            p: p.ok_or_else(bad)?,
        };
        params.check().map_err(Error::Usage)?;
        if let Some(why) = super::cost::work_problem(&params) {
            return Err(Error::Usage(format!(
                "Argon2 parameters '{s}' ask for {why}: lower t or m (the default is \
                 m=65536,t=3,p=4; RFC 9106 also recommends m=2097152,t=1,p=4)"
            )));
        }
        Ok(params)
    }

    /// Bounds applied to new and recorded parameters alike, so that a damaged
    /// preamble cannot make a read allocate or spin without bound.
    pub(crate) fn check(&self) -> std::result::Result<(), String> {
        if !(1..=64).contains(&self.p)
            || !(1..=100).contains(&self.t)
            || self.m_kib < 8 * self.p
            || self.m_kib > 4 * 1024 * 1024
        {
            return Err(format!(
                "Argon2 parameters m={},t={},p={} are out of range (p 1..=64, t 1..=100, m 8×p KiB..=4 GiB)",
                self.m_kib, self.t, self.p
            ));
        }
        Ok(())
    }
}

/// How the keyring's wrapping key is obtained.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kdf {
    Argon2id { params: Argon2Params, salt: Vec<u8> },
    KeyFile,
}

impl Kdf {
    pub fn kind(&self) -> KdfKind {
        match self {
            Kdf::Argon2id { .. } => KdfKind::Passphrase,
            Kdf::KeyFile => KdfKind::KeyFile,
        }
    }
}

/// What unlocks a keyring: a passphrase or a 32-byte key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KdfKind {
    Passphrase,
    KeyFile,
}

/// A secret that unlocks a keyring. No `Debug`; zeroized on drop.
pub enum Secret {
    Passphrase(Zeroizing<Vec<u8>>),
    KeyFile(Zeroizing<[u8; 32]>),
}

impl Secret {
    pub fn kind(&self) -> KdfKind {
        match self {
            Secret::Passphrase(_) => KdfKind::Passphrase,
            Secret::KeyFile(_) => KdfKind::KeyFile,
        }
    }

    fn duplicate(&self) -> Secret {
        match self {
            Secret::Passphrase(p) => Secret::Passphrase(p.clone()),
            Secret::KeyFile(k) => Secret::KeyFile(k.clone()),
        }
    }
}

/// What the keyring asks for when it needs its secret.
pub struct UnlockRequest<'a> {
    pub path: &'a Path,
    /// `None` when the keyring is being created (the secret chooses the kind);
    /// else the kind the existing keyring records.
    pub kind: Option<KdfKind>,
}

/// Supplies the secret on demand, so that nobody is prompted for a keyring
/// that is never opened. The CLI resolves flags, environment and the terminal.
pub trait Unlocker: Send + Sync {
    fn secret(&self, req: &UnlockRequest<'_>) -> Result<Secret>;
}

/// An [`Unlocker`] that always hands out the same secret (tests, libraries).
pub struct FixedSecret(pub Secret);

impl Unlocker for FixedSecret {
    fn secret(&self, _req: &UnlockRequest<'_>) -> Result<Secret> {
        Ok(self.0.duplicate())
    }
}

/// Derives the keyring's 32-byte wrapping key.
pub(crate) fn derive_key(kdf: &Kdf, secret: &Secret) -> Result<Zeroizing<[u8; 32]>> {
    let mut out = Zeroizing::new([0u8; 32]);
    match (kdf, secret) {
        (Kdf::Argon2id { params, salt }, Secret::Passphrase(pw)) => {
            // Callers check the cost first, with messages that say whose cost
            // it is; this is the last line before the allocation.
            if let Some(why) = super::cost::work_problem(params) {
                return Err(Error::Integrity(format!("Argon2 refused: {why}")));
            }
            let p = argon2::Params::new(params.m_kib, params.t, params.p, Some(32))
                .map_err(|e| Error::Other(format!("Argon2 parameters rejected: {e}")))?;
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p)
                .hash_password_into(pw, salt, out.as_mut())
                .map_err(|e| Error::Other(format!("Argon2 failed: {e}")))?;
        }
        (Kdf::KeyFile, Secret::KeyFile(k)) => out.copy_from_slice(k.as_ref()),
        _ => {
            return Err(Error::Other(
                "the secret does not match the keyring's kind".into(),
            ))
        }
    }
    Ok(out)
}
