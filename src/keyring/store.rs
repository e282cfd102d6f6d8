//! The keyring file at rest: a small plaintext preamble, then one ESDK message.
//!
//! ```text
//! "ENVARC-KEYRING"        14 bytes, magic
//! format version          1 byte (1)
//! KDF kind                1 byte: 1 = Argon2id, 2 = key file
//! Argon2id only:          m (KiB), t, p as u32 big-endian; salt length (1 byte); salt
//! ESDK v2 message         to the end of the file
//! ```
//!
//! The message is written with suite 0x0478 under a raw AES key (namespace
//! `envarc-keyring`, name `argon2id` or `key-file`) whose 32 bytes are the
//! Argon2id output of the passphrase, or the key file's bytes. Its encryption
//! context is `{"envarc-kind": "keyring", "envarc-keyring-preamble": hex
//! SHA-256 of the preamble}`, so the preamble is authenticated too. A wrong
//! passphrase fails the data-key unwrap; any altered or missing byte fails the
//! message's authentication. Reads always use the parameters recorded in the
//! preamble; the parameters for a new keyring come from
//! [`Argon2Params`].

use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::cost;
use super::kdf::{derive_key, Argon2Params, Kdf, KdfKind, Secret, UnlockRequest, Unlocker};
use super::lockfile;
pub(crate) use super::lockfile::LockGuard;
use crate::envelope::{
    self, decrypt_to_vec, encrypt_to_vec, DecryptOptions, EncryptOptions, EncryptionContext,
    ProviderError, RawAesKey,
};
use crate::{Error, Result};

pub const MAGIC: &[u8; 14] = b"ENVARC-KEYRING";
pub const FORMAT_VERSION: u8 = 1;
const KDF_ARGON2ID: u8 = 1;
const KDF_KEY_FILE: u8 = 2;
const NAMESPACE: &str = "envarc-keyring";

pub fn encode_preamble(kdf: &Kdf) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    out.push(FORMAT_VERSION);
    match kdf {
        Kdf::Argon2id { params, salt } => {
            out.push(KDF_ARGON2ID);
            out.extend_from_slice(&params.m_kib.to_be_bytes());
            out.extend_from_slice(&params.t.to_be_bytes());
            out.extend_from_slice(&params.p.to_be_bytes());
            out.push(salt.len() as u8);
            out.extend_from_slice(salt);
        }
        Kdf::KeyFile => out.push(KDF_KEY_FILE),
    }
    out
}

fn damaged(path: &Path, what: &str) -> Error {
    Error::Integrity(format!(
        "the keyring {} is damaged ({what}); restore it from a backup",
        path.display()
    ))
}

/// A recorded Argon2 cost that envarc will not pay (see [`cost`]): exit 4,
/// since nothing in the file is authenticated before Argon2 has run.
/// `machine`: the bound is this machine's memory (another may open it), not
/// the work bound that holds everywhere.
fn too_costly(path: &Path, p: &Argon2Params, why: &str, machine: bool) -> Error {
    let what_to_do = if machine {
        "If you created this keyring with such an ENVARC_ARGON2_PARAMS, open it on a machine \
         with the memory and lower its cost there with `ENVARC_ARGON2_PARAMS=m=65536,t=3,p=4 \
         envarc key passwd`; otherwise the file was altered: restore it from a backup"
    } else {
        "envarc never creates a keyring with this cost, so the file was altered or damaged: \
         restore it from a backup"
    };
    Error::Integrity(format!(
        "the keyring {} asks for Argon2id m={} KiB, t={}, p={}: {why}. envarc refuses before \
         running it, since nothing in the file is authenticated until then. {what_to_do}",
        path.display(),
        p.m_kib,
        p.t,
        p.p
    ))
}

/// Splits a keyring file into its KDF, the preamble's length, and the message
/// (`path` only names the file in errors). Pure, so it can be fuzzed.
pub fn parse_preamble(path: &Path, bytes: &[u8]) -> Result<(Kdf, usize)> {
    if bytes.len() < MAGIC.len() + 2 {
        if MAGIC.starts_with(bytes) || bytes.starts_with(MAGIC) {
            return Err(damaged(path, "it is truncated"));
        }
        return Err(damaged(
            path,
            "it does not start with ENVARC-KEYRING: not an envarc keyring",
        ));
    }
    if &bytes[..MAGIC.len()] != MAGIC {
        return Err(damaged(
            path,
            "it does not start with ENVARC-KEYRING: not an envarc keyring",
        ));
    }
    let version = bytes[MAGIC.len()];
    if version != FORMAT_VERSION {
        return Err(Error::Other(format!(
            "the keyring {} has format version {version}, which this envarc does not know \
             (it reads version {FORMAT_VERSION}); use the envarc release that wrote it, or a newer one",
            path.display()
        )));
    }
    let mut at = MAGIC.len() + 2;
    let kdf = match bytes[MAGIC.len() + 1] {
        KDF_KEY_FILE => Kdf::KeyFile,
        KDF_ARGON2ID => {
            let fixed = bytes
                .get(at..at + 13)
                .ok_or_else(|| damaged(path, "it is truncated"))?;
            let u = |i: usize| u32::from_be_bytes(fixed[i..i + 4].try_into().expect("4 bytes"));
            let params = Argon2Params {
                m_kib: u(0),
                t: u(4),
                p: u(8),
            };
            params.check().map_err(|e| damaged(path, &e))?;
            if let Some(why) = cost::work_problem(&params) {
                return Err(too_costly(path, &params, &why, false));
            }
            let salt_len = fixed[12] as usize;
            if !(16..=64).contains(&salt_len) {
                return Err(damaged(path, "its salt length is out of range"));
            }
            at += 13;
            let salt = bytes
                .get(at..at + salt_len)
                .ok_or_else(|| damaged(path, "it is truncated"))?;
            at += salt_len;
            Kdf::Argon2id {
                params,
                salt: salt.to_vec(),
            }
        }
        k => return Err(damaged(path, &format!("unknown key-derivation kind {k}"))),
    };
    Ok((kdf, at))
}

fn wrapping_key(kdf: &Kdf, key: &[u8; 32]) -> RawAesKey {
    let name = match kdf {
        Kdf::Argon2id { .. } => "argon2id",
        Kdf::KeyFile => "key-file",
    };
    RawAesKey::new(NAMESPACE, name, key).expect("32 bytes and non-empty names")
}

fn context_for(preamble: &[u8]) -> EncryptionContext {
    let mut ctx = EncryptionContext::new();
    ctx.insert("envarc-kind".into(), "keyring".into());
    ctx.insert(
        "envarc-keyring-preamble".into(),
        hex::encode(Sha256::digest(preamble)),
    );
    ctx
}

/// A derived key together with the preamble it belongs to.
struct Unlocked {
    preamble: Vec<u8>,
    kdf: Kdf,
    key: Zeroizing<[u8; 32]>,
}

/// The keyring file: where it is, how to unlock it, and how to lock it.
pub(crate) struct Store {
    pub path: PathBuf,
    unlocker: Arc<dyn Unlocker>,
    create_params: Argon2Params,
    lock_timeout: Duration,
    /// `ENVARC_ARGON2_MAX_MIB`: a lower memory cap than the machine's.
    memory_limit_mib: Option<u64>,
    /// The key derived at the first read, reused while the preamble is the same
    /// (Argon2 runs once per process, not once per read).
    unlocked: Mutex<Option<Unlocked>>,
}

impl Store {
    pub fn new(
        path: PathBuf,
        unlocker: Arc<dyn Unlocker>,
        create_params: Argon2Params,
        lock_timeout: Duration,
    ) -> Store {
        Store {
            path,
            unlocker,
            create_params,
            lock_timeout,
            memory_limit_mib: None,
            unlocked: Mutex::new(None),
        }
    }

    fn ensure_dir(&self) -> Result<()> {
        match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() && !dir.exists() => fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| {
                    Error::io(format!("creating the keyring folder {}", dir.display()), e)
                }),
            _ => Ok(()),
        }
    }

    /// Takes the sidecar lock, waiting up to the lock timeout (see
    /// [`lockfile`](super::lockfile)). A shared lock on a keyring whose folder
    /// cannot be written goes without: nobody can be writing it, and readers
    /// never see a partial file (writes are renames).
    pub fn lock(&self, exclusive: bool) -> Result<LockGuard> {
        if exclusive {
            self.ensure_dir()?;
        }
        lockfile::acquire(&self.path, exclusive, self.lock_timeout)
    }

    /// Lowers (never raises) the memory Argon2 may use here, in MiB.
    pub fn set_memory_limit(&mut self, mib: Option<u64>) {
        self.memory_limit_mib = mib;
    }

    /// Refuses a recorded cost that needs more memory than this machine can
    /// give, before anything runs or is asked for.
    fn check_recorded_cost(&self, kdf: &Kdf) -> Result<()> {
        if let Kdf::Argon2id { params, .. } = kdf {
            let cap = cost::memory_cap_kib(self.memory_limit_mib);
            if let Some(why) = cost::memory_problem(params, cap) {
                return Err(too_costly(&self.path, params, &why, true));
            }
        }
        Ok(())
    }

    /// Refuses to lock a keyring with a cost that could not be paid here: it
    /// would be written, and then not open.
    pub fn check_new_cost(&self, params: &Argon2Params) -> Result<()> {
        let cap = cost::memory_cap_kib(self.memory_limit_mib);
        match cost::memory_problem(params, cap) {
            Some(why) => Err(Error::Usage(format!(
                "the Argon2id cost m={},t={},p={} (the default, or ENVARC_ARGON2_PARAMS) asks for \
                 {why}: a keyring locked with it could not be opened here; choose a smaller m \
                 (the default is m=65536,t=3,p=4); nothing was changed",
                params.m_kib, params.t, params.p
            ))),
            None => Ok(()),
        }
    }

    /// The cost a new keyring gets.
    pub fn create_params(&self) -> Argon2Params {
        self.create_params
    }

    /// Reads and decrypts the keyring; `None` when the file does not exist.
    /// The caller holds a lock.
    pub fn read(&self) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::io(
                    format!("reading the keyring {}", self.path.display()),
                    e,
                ))
            }
        };
        let (kdf, at) = parse_preamble(&self.path, &bytes)?;
        let preamble = &bytes[..at];
        let mut cache = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        let reuse = cache.as_ref().is_some_and(|u| u.preamble == preamble);
        let fresh = if reuse {
            None
        } else {
            self.check_recorded_cost(&kdf)?;
            let secret = self.unlocker.secret(&UnlockRequest {
                path: &self.path,
                kind: Some(kdf.kind()),
            })?;
            self.check_kind(&kdf, &secret)?;
            Some(derive_key(&kdf, &secret)?)
        };
        let key: &[u8; 32] = match &fresh {
            Some(k) => k,
            None => &cache.as_ref().expect("reuse checked it").key,
        };
        let opts = DecryptOptions {
            expected_context: context_for(preamble),
            ..DecryptOptions::default()
        };
        let plain = match decrypt_to_vec(&wrapping_key(&kdf, key), &opts, &bytes[at..]) {
            Ok((_, plain)) => Zeroizing::new(plain),
            Err(envelope::Error::Provider(ProviderError::UnwrapFailed { .. })) => {
                return Err(Error::Key {
                    message: format!(
                        "cannot unlock the keyring {}: wrong passphrase or key file (if it is \
                         right, the keyring file is damaged: restore it from a backup)",
                        self.path.display()
                    ),
                })
            }
            Err(envelope::Error::Io(e)) => {
                return Err(Error::io(
                    format!("reading the keyring {}", self.path.display()),
                    e,
                ))
            }
            Err(e) => return Err(damaged(&self.path, &e.to_string())),
        };
        if let Some(key) = fresh {
            *cache = Some(Unlocked {
                preamble: preamble.to_vec(),
                kdf,
                key,
            });
        }
        Ok(Some(plain))
    }

    fn check_kind(&self, kdf: &Kdf, secret: &Secret) -> Result<()> {
        match (kdf.kind(), secret.kind()) {
            (a, b) if a == b => Ok(()),
            (KdfKind::KeyFile, _) => Err(Error::Key {
                message: format!(
                    "the keyring {} is locked with a key file, not a passphrase: pass --keyring-key-file FILE",
                    self.path.display()
                ),
            }),
            (KdfKind::Passphrase, _) => Err(Error::Key {
                message: format!(
                    "the keyring {} is locked with a passphrase, not a key file: drop \
                     --keyring-key-file and give the passphrase (ENVARC_PASSPHRASE, \
                     --passphrase-file, --passphrase-command, or the terminal prompt)",
                    self.path.display()
                ),
            }),
        }
    }

    /// Encrypts and atomically replaces the keyring (mode 0600). A new keyring
    /// asks the unlocker for its secret here. The caller holds the exclusive lock.
    pub fn write(&self, plaintext: &[u8]) -> Result<()> {
        let mut cache = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        if cache.is_none() {
            self.check_new_cost(&self.create_params)?;
            let secret = self.unlocker.secret(&UnlockRequest {
                path: &self.path,
                kind: None,
            })?;
            *cache = Some(self.new_lock(&secret, self.create_params)?);
        }
        self.seal_and_replace(cache.as_ref().expect("set above"), plaintext)
    }

    /// Locks the keyring with `secret` from now on: a fresh salt (or the key
    /// file), the same atomic replacement as every write. A passphrase gets
    /// `params`, else the cost the file records, else the cost for new
    /// keyrings. The caller holds the exclusive lock and has just read the
    /// file (so the current secret was checked). Returns what locked it
    /// before, and the new KDF.
    pub fn rekey(
        &self,
        plaintext: &[u8],
        secret: &Secret,
        params: Option<Argon2Params>,
    ) -> Result<(KdfKind, Kdf)> {
        let mut cache = self.unlocked.lock().unwrap_or_else(|p| p.into_inner());
        let old = &cache
            .as_ref()
            .ok_or_else(|| Error::Other("the keyring must be read before it is re-keyed".into()))?
            .kdf;
        let before = old.kind();
        let recorded = match old {
            Kdf::Argon2id { params, .. } => Some(*params),
            Kdf::KeyFile => None,
        };
        let params = params.or(recorded).unwrap_or(self.create_params);
        if secret.kind() == KdfKind::Passphrase {
            self.check_new_cost(&params)?;
        }
        let new = self.new_lock(secret, params)?;
        self.seal_and_replace(&new, plaintext)?;
        let kdf = new.kdf.clone();
        *cache = Some(new);
        Ok((before, kdf))
    }

    /// A fresh KDF for `secret` and the key it derives.
    fn new_lock(&self, secret: &Secret, params: Argon2Params) -> Result<Unlocked> {
        let kdf = match secret.kind() {
            KdfKind::Passphrase => {
                let mut salt = vec![0u8; 32];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut salt);
                Kdf::Argon2id { params, salt }
            }
            KdfKind::KeyFile => Kdf::KeyFile,
        };
        let key = derive_key(&kdf, secret)?;
        Ok(Unlocked {
            preamble: encode_preamble(&kdf),
            kdf,
            key,
        })
    }

    fn seal_and_replace(&self, u: &Unlocked, plaintext: &[u8]) -> Result<()> {
        let opts = EncryptOptions {
            context: context_for(&u.preamble),
            ..EncryptOptions::default()
        };
        let message = encrypt_to_vec(&wrapping_key(&u.kdf, &u.key), &opts, plaintext)?;
        let mut file = Vec::with_capacity(u.preamble.len() + message.len());
        file.extend_from_slice(&u.preamble);
        file.extend_from_slice(&message);
        self.ensure_dir()?;
        self.remove_stale_temporaries();
        crate::fsutil::atomic_write(&self.path, &file, Some(0o600))
            .map_err(|e| Error::io(format!("writing the keyring {}", self.path.display()), e))
    }

    /// Removes the temporary files of writers killed before their rename.
    /// They are old copies of the keyring, which may hold keys deleted since,
    /// so they must not outlive the next write. Safe only under the exclusive
    /// lock (no other writer is running), which [`write`](Self::write) has.
    fn remove_stale_temporaries(&self) {
        let (Some(dir), Some(name)) = (self.path.parent(), self.path.file_name()) else {
            return;
        };
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        let prefix = format!(".{}.", name.to_string_lossy());
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let n = e.file_name();
            let n = n.to_string_lossy();
            if n.starts_with(&prefix) && n.ends_with(".envarc-tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyring::kdf::FixedSecret;

    const CHEAP: Argon2Params = Argon2Params {
        m_kib: 8,
        t: 1,
        p: 1,
    };

    fn store(dir: &Path, pw: &str) -> Store {
        Store::new(
            dir.join("kr"),
            Arc::new(FixedSecret(Secret::Passphrase(Zeroizing::new(
                pw.as_bytes().to_vec(),
            )))),
            CHEAP,
            Duration::from_secs(5),
        )
    }

    #[test]
    fn round_trip_and_wrong_passphrase() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), "right");
        assert!(s.read().unwrap().is_none());
        s.write(b"{\"hello\":1}").unwrap();
        let bytes = fs::read(d.path().join("kr")).unwrap();
        assert!(bytes.starts_with(MAGIC));
        assert!(
            !bytes.windows(5).any(|w| w == b"hello"),
            "encrypted at rest"
        );
        let again = store(d.path(), "right");
        assert_eq!(&again.read().unwrap().unwrap()[..], b"{\"hello\":1}");
        let wrong = store(d.path(), "wrong");
        let e = wrong.read().err().unwrap();
        assert!(e.to_string().contains("wrong passphrase"), "{e}");
        assert_eq!(e.exit_code(), crate::error::exit::KEY);
    }

    #[test]
    fn preamble_is_authenticated_and_parsed_strictly() {
        let d = tempfile::tempdir().unwrap();
        let s = store(d.path(), "pw");
        s.write(b"x").unwrap();
        let good = fs::read(&s.path).unwrap();
        let check = |bytes: &[u8], want: &str, code: i32| {
            fs::write(&s.path, bytes).unwrap();
            let e = store(d.path(), "pw").read().expect_err("must fail");
            assert!(e.to_string().contains(want), "{e}");
            assert_eq!(e.exit_code(), code, "{e}");
        };
        let mut v = good.clone();
        v[14] = 9;
        check(&v, "format version 9", crate::error::exit::FAILURE);
        check(&good[..10], "truncated", crate::error::exit::INTEGRITY);
        check(
            &good[..good.len() - 1],
            "damaged",
            crate::error::exit::INTEGRITY,
        );
        check(
            b"not a keyring at all",
            "not an envarc keyring",
            crate::error::exit::INTEGRITY,
        );
        let mut v = good.clone();
        let last = v.len() - 1;
        v[last] ^= 1;
        check(&v, "damaged", crate::error::exit::INTEGRITY);
        assert!(Argon2Params::parse("m=8,t=1,p=1").is_ok());
        assert!(Argon2Params::parse("m=4,t=1,p=1").is_err());
        assert!(Argon2Params::parse("m=8,t=1").is_err());
    }

    #[test]
    fn a_held_lock_makes_writers_wait_then_give_up() {
        let d = tempfile::tempdir().unwrap();
        let mut s = store(d.path(), "pw");
        s.lock_timeout = Duration::from_millis(50);
        let held = s.lock(true).unwrap();
        let e = s.lock(true).err().expect("locked");
        assert_eq!(e.exit_code(), crate::error::exit::LOCKED, "{e}");
        assert!(s.lock(false).is_err(), "readers wait for writers too");
        drop(held);
        let _shared = s.lock(false).unwrap();
        assert!(s.lock(false).is_ok(), "readers share");
        assert!(s.lock(true).is_err());
    }
}
