//! The keyring file: a locked read-modify-write around the in-memory
//! [`Keyring`], with due maintenance carried out on every open that can write.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use super::kdf::{Kdf, KdfKind};
use super::lockfile::{FirstWrite, LockGuard};
use super::{
    store, Argon2Params, Clock, Keyring, MaintenanceReport, Secret, SystemClock, Unlocker,
};
use crate::{Error, Result};

/// How to find, unlock and lock a keyring file.
pub struct KeyringOptions {
    pub path: PathBuf,
    pub unlocker: Arc<dyn Unlocker>,
    pub clock: Arc<dyn Clock>,
    /// Argon2id cost for a keyring created by this handle (reads always use
    /// the cost recorded in the file).
    pub argon2: Argon2Params,
    /// How long to wait for another process's lock before giving up.
    pub lock_timeout: Duration,
}

impl KeyringOptions {
    /// System clock, interactive Argon2id cost, 60 s lock timeout.
    pub fn new(path: PathBuf, unlocker: Arc<dyn Unlocker>) -> KeyringOptions {
        KeyringOptions {
            path,
            unlocker,
            clock: Arc::new(SystemClock),
            argon2: Argon2Params::INTERACTIVE,
            lock_timeout: Duration::from_secs(60),
        }
    }
}

/// A keyring file. Construction does no I/O and asks for no secret.
pub struct KeyringFile {
    store: store::Store,
    clock: Arc<dyn Clock>,
}

impl KeyringFile {
    pub fn new(opts: KeyringOptions) -> KeyringFile {
        KeyringFile {
            store: store::Store::new(opts.path, opts.unlocker, opts.argon2, opts.lock_timeout),
            clock: opts.clock,
        }
    }

    /// Lowers (never raises) the memory Argon2 may use to open or lock this
    /// keyring, in MiB (`ENVARC_ARGON2_MAX_MIB`); see [`cost`](super::cost).
    pub fn with_argon2_memory_limit(mut self, mib: Option<u64>) -> KeyringFile {
        self.store.set_memory_limit(mib);
        self
    }

    pub fn path(&self) -> &Path {
        &self.store.path
    }

    pub fn exists(&self) -> bool {
        self.store.path.exists()
    }

    fn missing(&self) -> Error {
        Error::Key {
            message: format!(
                "there is no keyring at {}; create it and its first key with `envarc key create`, \
                 or point --keyring (or ENVARC_KEYRING) at an existing keyring",
                self.store.path.display()
            ),
        }
    }

    /// Reads the keyring under a shared lock. If a rotation or deletion is
    /// due, carries it out under the exclusive lock; when the keyring cannot
    /// be written, uses it as it is and says so in [`Keyring::report`].
    pub fn load(&self) -> Result<Keyring> {
        let kr = {
            let _lock = self.store.lock(false)?;
            let plain = self.store.read()?.ok_or_else(|| self.missing())?;
            Keyring::from_json(&plain, self.clock.clone(), &self.store.path)?
        };
        if !kr.maintenance_due(self.clock.now()) {
            return Ok(kr);
        }
        match self.transact(false, None, |_| Ok(())) {
            Ok((kr, ())) => Ok(kr),
            Err(e) => {
                let mut kr = kr;
                kr.report.not_written = Some(e.to_string());
                Ok(kr)
            }
        }
    }

    /// A locked read-modify-write of an existing keyring: `f` runs after due
    /// maintenance; the file is replaced only if something changed and `f`
    /// succeeded.
    pub fn update<T>(&self, f: impl FnOnce(&mut Keyring) -> Result<T>) -> Result<T> {
        self.transact(false, None, f).map(|(_, t)| t)
    }

    /// Like [`update`](Self::update), but creates the keyring (asking the
    /// unlocker for a new secret) when the file does not exist.
    pub fn create_or_update<T>(&self, f: impl FnOnce(&mut Keyring) -> Result<T>) -> Result<T> {
        self.transact(true, None, f).map(|(_, t)| t)
    }

    /// Carries out what is due at `as_of` (never earlier than now): the
    /// `key rotate-due` command.
    pub fn run_due(&self, as_of: Option<OffsetDateTime>) -> Result<MaintenanceReport> {
        self.transact(false, as_of, |kr| Ok(kr.report.clone()))
            .map(|(_, r)| r)
    }

    /// Locks the keyring with `secret` from now on (`key passwd`): under the
    /// exclusive lock, reads it with the current secret, carries out due
    /// maintenance, and replaces it atomically, re-encrypted under the new
    /// secret. A passphrase gets `params`, else the cost the file records.
    /// Returns what locked it before, the new KDF, and what maintenance did.
    pub fn change_secret(
        &self,
        secret: &Secret,
        params: Option<Argon2Params>,
    ) -> Result<(KdfKind, Kdf, MaintenanceReport)> {
        if !self.exists() {
            return Err(self.missing());
        }
        let _lock = self.store.lock(true)?;
        let plain = self.store.read()?.ok_or_else(|| self.missing())?;
        let mut kr = Keyring::from_json(&plain, self.clock.clone(), &self.store.path)?;
        let report = kr.maintain(self.clock.now());
        let (before, kdf) = self.store.rekey(&kr.to_json()?, secret, params)?;
        Ok((before, kdf, report))
    }

    fn transact<T>(
        &self,
        create: bool,
        as_of: Option<OffsetDateTime>,
        f: impl FnOnce(&mut Keyring) -> Result<T>,
    ) -> Result<(Keyring, T)> {
        if self.exists() {
            let lock = self.store.lock(true)?;
            return self.with_lock(&lock, create, as_of, f);
        }
        if !create {
            return Err(self.missing());
        }
        // Refused before a folder or a lock file exists, or a passphrase is
        // asked for; and whatever fails later takes back what it made.
        self.store.check_new_cost(&self.store.create_params())?;
        let first = FirstWrite::before(&self.store.path);
        let lock = self.store.lock(true)?;
        let r = self.with_lock(&lock, create, as_of, f);
        if r.is_err() {
            first.undo(&lock);
        }
        r
    }

    fn with_lock<T>(
        &self,
        _lock: &LockGuard,
        create: bool,
        as_of: Option<OffsetDateTime>,
        f: impl FnOnce(&mut Keyring) -> Result<T>,
    ) -> Result<(Keyring, T)> {
        let mut kr = match self.store.read()? {
            Some(plain) => Keyring::from_json(&plain, self.clock.clone(), &self.store.path)?,
            None if create => {
                let mut kr = Keyring::in_memory(self.clock.clone());
                kr.label = Arc::from(self.store.path.display().to_string());
                kr.dirty = true;
                kr
            }
            None => return Err(self.missing()),
        };
        let now = self.clock.now();
        kr.report = kr.maintain(as_of.map_or(now, |t| t.max(now)));
        let t = f(&mut kr)?;
        if kr.dirty {
            self.store.write(&kr.to_json()?)?;
            kr.dirty = false;
        }
        Ok((kr, t))
    }
}
