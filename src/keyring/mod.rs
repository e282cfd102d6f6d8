//! The local CMK keyring: a small KMS in one encrypted file.
//!
//! - [`cmk`]: CMKs, backing keys, states, aliases;
//! - [`rotation`]: the automatic schedule and the on-demand limit;
//! - [`versions`]: retiring and destroying one backing-key version;
//! - [`kdf`]: what unlocks a keyring (Argon2id passphrase or key file), and
//!   [`cost`]: the Argon2 cost envarc agrees to pay;
//! - [`store`]: the file at rest (a preamble and one ESDK message), its lock
//!   and atomic replacement;
//! - [`provider`]: the [`KeyProvider`](crate::envelope::KeyProvider) that wraps
//!   data keys as raw-AES EDKs named `<cmk-uuid>/v<N>`;
//! - [`blob`]: the ciphertext format of the small-payload operations;
//! - [`clock`]: the injectable clock.
//!
//! [`KeyringFile`] is the handle on a keyring file: `load` for reading,
//! `update`/`create_or_update` for a locked read-modify-write. Both carry out
//! due rotations and expired deletions first (see [`Keyring::maintain`]).

mod admin;
pub mod blob;
pub mod clock;
pub mod cmk;
pub mod cost;
mod data;
mod file;
pub mod kdf;
mod lockfile;
pub mod provider;
mod resolve;
pub mod rotation;
pub mod store;
pub mod versions;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

pub use admin::{
    CreateKey, DEFAULT_PENDING_WINDOW_DAYS, MAX_PENDING_WINDOW_DAYS, MIN_PENDING_WINDOW_DAYS,
};
pub use clock::{Clock, FixedClock, SystemClock};
pub use cmk::{BackingKey, BackingKeyKind, Cmk, KeySpec, KeyState, Material, Origin, VersionState};
pub use data::{DataKeyResult, Decrypted, Encrypted};
pub use file::{KeyringFile, KeyringOptions};
pub use kdf::{Argon2Params, FixedSecret, KdfKind, Secret, UnlockRequest, Unlocker};
pub use provider::{KeyringProvider, PROVIDER_ID};

use crate::{Error, Result};

/// Version of the JSON document inside the encrypted keyring.
const DATA_FORMAT: u32 = 1;
/// The version a keyring is written with once one of its backing keys was
/// retired: an older envarc then refuses the file instead of ignoring the
/// states it does not know (and unwrapping with a retired version).
const DATA_FORMAT_VERSION_STATES: u32 = 2;

/// What the keyring holds (serialized as JSON inside the encrypted file).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct KeyringData {
    format: u32,
    /// In creation order.
    keys: Vec<Cmk>,
    /// `alias/NAME` → key id.
    aliases: BTreeMap<String, Uuid>,
}

impl KeyringData {
    fn empty() -> KeyringData {
        KeyringData {
            format: DATA_FORMAT,
            keys: Vec::new(),
            aliases: BTreeMap::new(),
        }
    }

    pub(crate) fn find(&self, id: &Uuid) -> Option<&Cmk> {
        self.keys.iter().find(|k| &k.key_id == id)
    }

    fn find_mut(&mut self, id: &Uuid) -> Option<&mut Cmk> {
        self.keys.iter_mut().find(|k| &k.key_id == id)
    }

    pub(crate) fn aliases_of(&self, id: &Uuid) -> Vec<&str> {
        self.aliases
            .iter()
            .filter(|(_, v)| *v == id)
            .map(|(a, _)| a.as_str())
            .collect()
    }

    /// "key <uuid> (alias/a)": how errors name a key.
    pub(crate) fn label(&self, id: &Uuid) -> String {
        let aliases = self.aliases_of(id);
        if aliases.is_empty() {
            format!("key {id}")
        } else {
            format!("key {id} ({})", aliases.join(", "))
        }
    }

    /// Why a key's state forbids cryptographic use, naming the undoing command.
    pub(crate) fn state_problem(&self, cmk: &Cmk) -> Option<String> {
        let id = cmk.key_id;
        let label = self.label(&id);
        match cmk.state {
            KeyState::Enabled => None,
            KeyState::Disabled => Some(format!(
                "{label} is Disabled, so it cannot be used; enable it with `envarc key enable {id}`"
            )),
            KeyState::PendingDeletion => Some(format!(
                "{label} is PendingDeletion (its material is destroyed after {}), so it cannot be \
                 used; keep it with `envarc key cancel-deletion {id}` and then `envarc key enable {id}`",
                cmk.deletion_date.map(fmt_date).unwrap_or_default()
            )),
            KeyState::PendingImport => Some(format!(
                "{label} is PendingImport: it has no key material yet; import it with \
                 `envarc key import-material {id} --material-file FILE`"
            )),
        }
    }

    fn spec_problem(&self, cmk: &Cmk, want: KeySpec) -> Option<String> {
        if cmk.key_spec == want {
            return None;
        }
        let label = self.label(&cmk.key_id);
        Some(match cmk.key_spec {
            KeySpec::Hmac256 => format!(
                "{label} is an HMAC_256 key (key usage GENERATE_VERIFY_MAC): it cannot encrypt, \
                 decrypt or wrap data keys; use a SYMMETRIC_DEFAULT key"
            ),
            KeySpec::SymmetricDefault => format!(
                "{label} is a SYMMETRIC_DEFAULT key (key usage ENCRYPT_DECRYPT): it cannot \
                 generate or verify MACs; use an HMAC_256 key"
            ),
        })
    }

    /// The newest backing key of a key that may be used with `spec` now.
    pub(crate) fn current_key(&self, id: &Uuid, spec: KeySpec) -> Result<(u32, &Material), String> {
        let cmk = self
            .find(id)
            .ok_or_else(|| format!("key {id} is not in this keyring"))?;
        if let Some(p) = self
            .spec_problem(cmk, spec)
            .or_else(|| self.state_problem(cmk))
        {
            return Err(p);
        }
        let current = cmk
            .current()
            .ok_or_else(|| format!("{} has no backing key", self.label(id)))?;
        let m = current.material.as_ref().ok_or_else(|| {
            format!(
                "the current backing key v{} of {} was destroyed; nothing can be encrypted under it",
                current.version,
                self.label(id)
            )
        })?;
        Ok((current.version, m))
    }

    /// Backing key `version` of a key, for decrypting what it wrapped.
    pub(crate) fn historical_key(
        &self,
        id: &Uuid,
        version: u32,
        spec: KeySpec,
    ) -> Result<&Material, String> {
        let cmk = self.find(id).ok_or_else(|| {
            format!(
                "key {id} is not in this keyring (it was deleted, or the data was written with \
                 another keyring)"
            )
        })?;
        if let Some(p) = self
            .spec_problem(cmk, spec)
            .or_else(|| self.state_problem(cmk))
        {
            return Err(p);
        }
        let label = self.label(id);
        let bk = cmk.version(version).ok_or_else(|| {
            format!(
                "{label} has no backing key v{version} (its newest is v{}): the data was written \
                 with a newer copy of this keyring; use that copy",
                cmk.current().map_or(0, |b| b.version)
            )
        })?;
        let undo = |cmd: &str| format!("`envarc key {cmd} {id} --version {version}`");
        match (bk.state(), bk.material.as_ref()) {
            (VersionState::Enabled, Some(m)) => Ok(m),
            (VersionState::Retired, _) => Err(format!(
                "backing key v{version} of {label} is retired, so it unwraps nothing; if this \
                 data still needs it, reinstate it with {}",
                undo("reinstate-version")
            )),
            (VersionState::PendingDeletion, _) => Err(format!(
                "backing key v{version} of {label} is pending deletion (its material is \
                 destroyed on {}), so it unwraps nothing; if this data still needs it, keep it \
                 with {} and then {}",
                bk.deletion_date.map(fmt_date).unwrap_or_default(),
                undo("cancel-version-deletion"),
                undo("reinstate-version")
            )),
            _ => Err(format!(
                "backing key v{version} of {label} was destroyed, so what it wrapped cannot be \
                 decrypted"
            )),
        }
    }

    /// Checks what serde cannot: the invariants the rest of the code relies on.
    fn validate(&self) -> std::result::Result<(), String> {
        if self.format != DATA_FORMAT && self.format != DATA_FORMAT_VERSION_STATES {
            return Err(format!("unknown keyring data format {}", self.format));
        }
        for (i, k) in self.keys.iter().enumerate() {
            if self.keys[..i].iter().any(|o| o.key_id == k.key_id) {
                return Err(format!("key {} appears twice", k.key_id));
            }
            for (j, b) in k.backing_keys.iter().enumerate() {
                if b.version as usize != j + 1 {
                    return Err(format!("key {} has a gap in its backing keys", k.key_id));
                }
                versions::check_state(b, j + 1 == k.backing_keys.len())
                    .map_err(|e| format!("backing key v{} of key {}: {e}", b.version, k.key_id))?;
            }
            // The schedule arithmetic divides by the period and adds it to the
            // anchor: both must be what `enable-rotation` can record.
            if let Some(s) = &k.rotation {
                let longest = time::Duration::days(
                    (rotation::MAX_PERIOD_DAYS + rotation::MAX_OFFSET_DAYS).into(),
                );
                if rotation::check_period(s.period_days).is_err()
                    || s.anchor.checked_add(longest).is_none()
                {
                    return Err(format!("key {} has an invalid rotation schedule", k.key_id));
                }
            }
        }
        for (a, id) in &self.aliases {
            admin::check_alias_name(a).map_err(|e| e.to_string())?;
            if self.find(id).is_none() {
                return Err(format!("alias {a} points at a missing key"));
            }
        }
        Ok(())
    }
}

/// RFC 3339, as every date of the keyring is shown.
pub fn fmt_date(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// What [`Keyring::maintain`] did.
#[derive(Clone, Debug, Default)]
pub struct MaintenanceReport {
    /// (key, new backing-key version, rotation date).
    pub rotated: Vec<(Uuid, u32, OffsetDateTime)>,
    /// Keys whose deletion window ended: gone, with their material and aliases.
    pub deleted: Vec<Uuid>,
    /// (key, version, date) of backing keys whose deletion window ended: their
    /// material is destroyed.
    pub destroyed_versions: Vec<(Uuid, u32, OffsetDateTime)>,
    /// Set by [`KeyringFile::load`] when work was due but the keyring could not
    /// be written (read-only file, lock held): it was used as it is.
    pub not_written: Option<String>,
}

impl MaintenanceReport {
    pub fn is_empty(&self) -> bool {
        self.rotated.is_empty() && self.deleted.is_empty() && self.destroyed_versions.is_empty()
    }
}

/// A keyring in memory. Changes made through `&mut Keyring` reach the file
/// only inside [`KeyringFile::update`] / [`KeyringFile::create_or_update`].
pub struct Keyring {
    data: Arc<KeyringData>,
    clock: Arc<dyn Clock>,
    label: Arc<str>,
    dirty: bool,
    report: MaintenanceReport,
}

impl Keyring {
    /// An empty keyring that lives only in memory (tests, benchmarks).
    pub fn in_memory(clock: Arc<dyn Clock>) -> Keyring {
        Keyring {
            data: Arc::new(KeyringData::empty()),
            clock,
            label: Arc::from("<in-memory keyring>"),
            dirty: false,
            report: MaintenanceReport::default(),
        }
    }

    fn from_json(bytes: &[u8], clock: Arc<dyn Clock>, path: &Path) -> Result<Keyring> {
        let damaged = |what: String| {
            Error::Integrity(format!(
                "the keyring {} is damaged ({what}); restore it from a backup",
                path.display()
            ))
        };
        let data: KeyringData = serde_json::from_slice(bytes)
            .map_err(|e| damaged(format!("unreadable contents: {e}")))?;
        data.validate().map_err(damaged)?;
        Ok(Keyring {
            data: Arc::new(data),
            clock,
            label: Arc::from(path.display().to_string()),
            dirty: false,
            report: MaintenanceReport::default(),
        })
    }

    /// An upper bound of the JSON's size. The buffer holding key material is
    /// sized up front so that it never reallocates (a reallocation would leave
    /// an unzeroized copy behind).
    fn json_capacity(&self) -> usize {
        // Worst case per key: fixed fields, a description of control characters
        // (6 bytes each once escaped), about 230 bytes per backing key (with
        // a state and a deletion date).
        let keys: usize = self
            .data
            .keys
            .iter()
            .map(|k| 1024 + 6 * k.description.len() + 384 * k.backing_keys.len())
            .sum();
        let aliases: usize = self.data.aliases.keys().map(|a| a.len() + 64).sum();
        4096 + keys + aliases
    }

    fn to_json(&self) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::with_capacity(self.json_capacity()));
        serde_json::to_writer(&mut *out, &*self.data)
            .map_err(|e| Error::Other(format!("serializing the keyring: {e}")))?;
        Ok(out)
    }

    fn data_mut(&mut self) -> &mut KeyringData {
        self.dirty = true;
        Arc::make_mut(&mut self.data)
    }

    /// Where this keyring came from (for messages).
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> &[Cmk] {
        &self.data.keys
    }

    /// Every alias and the key it names.
    pub fn aliases(&self) -> &BTreeMap<String, Uuid> {
        &self.data.aliases
    }

    pub fn aliases_of(&self, id: &Uuid) -> Vec<&str> {
        self.data.aliases_of(id)
    }

    /// What the last maintenance did when this keyring was opened.
    pub fn report(&self) -> &MaintenanceReport {
        &self.report
    }

    /// The key `key` (id or alias) names.
    pub fn get(&self, key: &str) -> Result<&Cmk> {
        let id = self.resolve(key)?;
        Ok(self.data.find(&id).expect("resolve checked it"))
    }

    /// When the key's next automatic rotation is due (`None`: not scheduled).
    pub fn next_rotation(&self, cmk: &Cmk) -> Option<OffsetDateTime> {
        cmk.rotation
            .as_ref()
            .map(|s| rotation::next_rotation(s, &cmk.key_id))
    }

    /// Whether [`maintain`](Self::maintain) would do anything at `now`.
    pub fn maintenance_due(&self, now: OffsetDateTime) -> bool {
        self.data.keys.iter().any(|k| {
            deletion_expired(k, now)
                || (can_rotate_automatically(k) && rotation_due(k, now))
                || versions::destruction_due(k, now)
        })
    }

    /// Carries out what is due at `now`: keys whose deletion window ended are
    /// removed with their aliases and material; enabled keys whose rotation
    /// date passed gain one backing key (dated `now`).
    pub fn maintain(&mut self, now: OffsetDateTime) -> MaintenanceReport {
        let mut rep = MaintenanceReport::default();
        if !self.maintenance_due(now) {
            return rep;
        }
        let data = self.data_mut();
        rep.deleted = data
            .keys
            .iter()
            .filter(|k| deletion_expired(k, now))
            .map(|k| k.key_id)
            .collect();
        data.keys.retain(|k| !rep.deleted.contains(&k.key_id));
        data.aliases.retain(|_, id| !rep.deleted.contains(id));
        for k in data.keys.iter_mut() {
            rep.destroyed_versions.extend(versions::destroy_due(k, now));
        }
        for k in data.keys.iter_mut().filter(|k| can_rotate_automatically(k)) {
            let id = k.key_id;
            let Some(anchor) = k.rotation.as_ref().and_then(|s| rotation::due(s, &id, now)) else {
                continue;
            };
            let v = k.push_backing_key(now, BackingKeyKind::Automatic, Material::generate());
            if let Some(s) = k.rotation.as_mut() {
                s.anchor = anchor;
            }
            rep.rotated.push((id, v, now));
        }
        rep
    }

    /// A provider that wraps new data keys under `key`'s current backing key
    /// and unwraps EDKs of any key in this keyring.
    pub fn provider(&self, key: &str) -> Result<KeyringProvider> {
        let id = self.resolve(key)?;
        KeyringProvider::bound(self.data.clone(), self.label.clone(), id)
    }

    /// A provider that only unwraps (any key in this keyring); generating a
    /// data key with it fails with a message that asks for `--key`.
    pub fn decrypt_provider(&self) -> KeyringProvider {
        KeyringProvider::unbound(self.data.clone(), self.label.clone())
    }

    /// Destroys the material of one backing key, keeping its entry in the
    /// history. Irreversible: everything it wrapped becomes undecryptable. For
    /// tests and for responding to a compromised key; no command exposes it.
    pub fn destroy_backing_material(&mut self, key: &str, version: u32) -> Result<()> {
        let id = self.resolve(key)?;
        let cmk = self.data_mut().find_mut(&id).expect("resolved");
        let bk = cmk
            .backing_keys
            .iter_mut()
            .find(|b| b.version == version)
            .ok_or_else(|| Error::Usage(format!("key {id} has no backing key v{version}")))?;
        bk.material = None;
        bk.state = VersionState::Destroyed;
        Ok(())
    }
}

fn deletion_expired(k: &Cmk, now: OffsetDateTime) -> bool {
    k.state == KeyState::PendingDeletion && k.deletion_date.is_some_and(|d| d <= now)
}

fn can_rotate_automatically(k: &Cmk) -> bool {
    k.state == KeyState::Enabled
        && k.key_spec == KeySpec::SymmetricDefault
        && k.origin == Origin::Generated
}

fn rotation_due(k: &Cmk, now: OffsetDateTime) -> bool {
    k.rotation
        .as_ref()
        .is_some_and(|s| rotation::due(s, &k.key_id, now).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_fits_its_preallocated_buffer() {
        let mut kr = Keyring::in_memory(Arc::new(SystemClock));
        for n in 0..5 {
            let id = kr
                .create_key(CreateKey {
                    description: "\u{1}".repeat(n * 1000),
                    alias: Some(format!("alias/{}", "x".repeat(200 + n))),
                    rotation_period_days: Some(90),
                    ..CreateKey::default()
                })
                .unwrap();
            for _ in 0..10 {
                kr.rotate_on_demand(&id.to_string()).unwrap();
            }
        }
        let json = kr.to_json().unwrap();
        assert!(json.len() <= kr.json_capacity());
        assert_eq!(json.capacity(), kr.json_capacity(), "no reallocation");
    }
}
