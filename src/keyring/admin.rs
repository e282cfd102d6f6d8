//! The control plane: creating keys, aliases, state changes, deletion,
//! rotation settings and imports. Each method changes the keyring in memory;
//! [`KeyringFile::update`](super::KeyringFile::update) makes it durable.

use subtle::ConstantTimeEq;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use super::cmk::{BackingKeyKind, Cmk, KeySpec, KeyState, Material, Origin, RotationSchedule};
use super::rotation::{self, ON_DEMAND_LIMIT};
use super::Keyring;
use crate::{Error, Result};

/// Longest description, as in KMS.
const MAX_DESCRIPTION: usize = 8192;
pub const MIN_PENDING_WINDOW_DAYS: u32 = 7;
pub const MAX_PENDING_WINDOW_DAYS: u32 = 30;
pub const DEFAULT_PENDING_WINDOW_DAYS: u32 = 30;

/// Refuses a pending window outside 7..=30 days (KMS's range), for keys and
/// key versions alike.
pub(super) fn check_pending_window(window_days: u32) -> Result<()> {
    if !(MIN_PENDING_WINDOW_DAYS..=MAX_PENDING_WINDOW_DAYS).contains(&window_days) {
        return Err(Error::Usage(format!(
            "pending window {window_days} days is out of range: it must be \
             {MIN_PENDING_WINDOW_DAYS} to {MAX_PENDING_WINDOW_DAYS} days"
        )));
    }
    Ok(())
}

/// What `key create` asks for.
#[derive(Clone, Debug)]
pub struct CreateKey {
    pub description: String,
    pub key_spec: KeySpec,
    pub origin: Origin,
    pub alias: Option<String>,
    /// `Some(period)` enables automatic rotation with that period in days.
    pub rotation_period_days: Option<u32>,
}

impl Default for CreateKey {
    fn default() -> Self {
        CreateKey {
            description: String::new(),
            key_spec: KeySpec::SymmetricDefault,
            origin: Origin::Generated,
            alias: None,
            rotation_period_days: None,
        }
    }
}

/// KMS alias rules: `alias/` then letters, digits, `/`, `_`, `-`; at most 256
/// characters; `alias/aws/` is reserved.
pub(crate) fn check_alias_name(alias: &str) -> Result<()> {
    let name = alias.strip_prefix("alias/").unwrap_or("");
    let ok = !name.is_empty()
        && alias.len() <= 256
        && !alias.starts_with("alias/aws/")
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!(
            "'{alias}' is not a valid alias: write alias/NAME, where NAME has letters, digits, \
             '/', '_' and '-' (at most 256 characters in all; alias/aws/ is reserved)"
        )))
    }
}

fn key_error(message: String) -> Error {
    Error::Key { message }
}

impl Keyring {
    fn cmk_mut(&mut self, id: &Uuid) -> &mut Cmk {
        self.data_mut()
            .find_mut(id)
            .expect("callers resolve the key first")
    }

    fn cmk(&self, id: &Uuid) -> &Cmk {
        self.data.find(id).expect("callers resolve the key first")
    }

    /// Only generated SYMMETRIC_DEFAULT keys rotate, as in KMS.
    fn check_rotatable(&self, spec: KeySpec, origin: Origin, label: &str) -> Result<()> {
        if spec != KeySpec::SymmetricDefault {
            return Err(Error::Usage(format!(
                "{label} is an {} key, and only SYMMETRIC_DEFAULT keys can rotate: HMAC and \
                 signing keys must be rotated by hand (create a new key and move the alias to it \
                 with `envarc key update-alias`)",
                spec.as_str()
            )));
        }
        if origin == Origin::External {
            return Err(Error::Usage(format!(
                "{label} has imported key material (origin EXTERNAL), which envarc does not \
                 rotate; import new material with `envarc key import-material`, which adds a \
                 backing key version"
            )));
        }
        Ok(())
    }

    /// Creates a key; returns its id.
    pub fn create_key(&mut self, req: CreateKey) -> Result<Uuid> {
        if req.description.len() > MAX_DESCRIPTION {
            return Err(Error::Usage(format!(
                "the description is longer than {MAX_DESCRIPTION} bytes"
            )));
        }
        if req.key_spec == KeySpec::Hmac256 && req.origin == Origin::External {
            return Err(Error::Usage(
                "envarc imports material only into SYMMETRIC_DEFAULT keys; create the HMAC_256 \
                 key with origin AWS_KMS"
                    .into(),
            ));
        }
        if let Some(period) = req.rotation_period_days {
            self.check_rotatable(req.key_spec, req.origin, "the new key")?;
            rotation::check_period(period)?;
        }
        if let Some(a) = &req.alias {
            self.check_new_alias(a)?;
        }
        let now = self.now();
        let id = Uuid::new_v4();
        let mut cmk = Cmk {
            key_id: id,
            description: req.description,
            created: now,
            key_spec: req.key_spec,
            origin: req.origin,
            state: KeyState::Enabled,
            deletion_date: None,
            pending_window_days: None,
            rotation: req
                .rotation_period_days
                .map(|period_days| RotationSchedule {
                    period_days,
                    anchor: now,
                }),
            on_demand_rotations: 0,
            backing_keys: Vec::new(),
        };
        match req.origin {
            Origin::Generated => {
                cmk.push_backing_key(now, BackingKeyKind::Initial, Material::generate());
            }
            Origin::External => cmk.state = KeyState::PendingImport,
        }
        let data = self.data_mut();
        data.keys.push(cmk);
        if let Some(a) = req.alias {
            data.aliases.insert(a, id);
        }
        Ok(id)
    }

    fn check_new_alias(&self, alias: &str) -> Result<()> {
        check_alias_name(alias)?;
        if let Some(id) = self.data.aliases.get(alias) {
            return Err(Error::Usage(format!(
                "the alias {alias} already exists (it names key {id}); move it with \
                 `envarc key update-alias {alias} KEY`"
            )));
        }
        Ok(())
    }

    /// Points a new alias at a key.
    pub fn create_alias(&mut self, alias: &str, key: &str) -> Result<Uuid> {
        self.check_new_alias(alias)?;
        let id = self.resolve(key)?;
        self.data_mut().aliases.insert(alias.to_string(), id);
        Ok(id)
    }

    /// Moves an existing alias to another key of the same spec (as KMS does,
    /// so that what the alias can do does not change under its users).
    pub fn update_alias(&mut self, alias: &str, key: &str) -> Result<Uuid> {
        check_alias_name(alias)?;
        let old = self.resolve(alias)?;
        let id = self.resolve(key)?;
        let (was, now) = (self.cmk(&old).key_spec, self.cmk(&id).key_spec);
        if was != now {
            return Err(Error::Usage(format!(
                "{alias} names a {} key and {key} is a {} key; an alias can only move between \
                 keys of the same spec",
                was.as_str(),
                now.as_str()
            )));
        }
        self.data_mut().aliases.insert(alias.to_string(), id);
        Ok(id)
    }

    /// Deletes an alias (the key stays).
    pub fn delete_alias(&mut self, alias: &str) -> Result<Uuid> {
        check_alias_name(alias)?;
        let id = self.resolve(alias)?;
        self.data_mut().aliases.remove(alias);
        Ok(id)
    }

    pub fn enable_key(&mut self, key: &str) -> Result<Uuid> {
        let id = self.resolve(key)?;
        match self.cmk(&id).state {
            KeyState::Enabled => {}
            KeyState::Disabled => self.cmk_mut(&id).state = KeyState::Enabled,
            KeyState::PendingDeletion | KeyState::PendingImport => {
                return Err(key_error(
                    self.data.state_problem(self.cmk(&id)).expect("not enabled"),
                ))
            }
        }
        Ok(id)
    }

    pub fn disable_key(&mut self, key: &str) -> Result<Uuid> {
        let id = self.resolve(key)?;
        match self.cmk(&id).state {
            KeyState::Disabled => {}
            KeyState::Enabled => self.cmk_mut(&id).state = KeyState::Disabled,
            KeyState::PendingDeletion | KeyState::PendingImport => {
                return Err(key_error(
                    self.data.state_problem(self.cmk(&id)).expect("not enabled"),
                ))
            }
        }
        Ok(id)
    }

    /// Schedules deletion after `window_days` (7..=30); returns the date.
    pub fn schedule_deletion(
        &mut self,
        key: &str,
        window_days: u32,
    ) -> Result<(Uuid, OffsetDateTime)> {
        check_pending_window(window_days)?;
        let id = self.resolve(key)?;
        if let Some(d) = self.cmk(&id).deletion_date {
            return Err(key_error(format!(
                "{} is already pending deletion (on {}); cancel it with `envarc key cancel-deletion {id}`",
                self.data.label(&id),
                super::fmt_date(d)
            )));
        }
        let date = self.now() + Duration::days(window_days as i64);
        let k = self.cmk_mut(&id);
        k.state = KeyState::PendingDeletion;
        k.deletion_date = Some(date);
        k.pending_window_days = Some(window_days);
        Ok((id, date))
    }

    /// Cancels a scheduled deletion. As in KMS the key comes back Disabled.
    pub fn cancel_deletion(&mut self, key: &str) -> Result<Uuid> {
        let id = self.resolve(key)?;
        if self.cmk(&id).state != KeyState::PendingDeletion {
            return Err(key_error(format!(
                "{} is not pending deletion (it is {})",
                self.data.label(&id),
                self.cmk(&id).state
            )));
        }
        let k = self.cmk_mut(&id);
        k.state = KeyState::Disabled;
        k.deletion_date = None;
        k.pending_window_days = None;
        Ok(id)
    }

    pub(super) fn check_not_pending(&self, id: &Uuid) -> Result<()> {
        let k = self.cmk(id);
        match k.state {
            KeyState::PendingDeletion | KeyState::PendingImport => {
                Err(key_error(self.data.state_problem(k).expect("not enabled")))
            }
            _ => Ok(()),
        }
    }

    /// Enables automatic rotation, or changes the period of an enabled one
    /// (default 365 days). Enabling starts the schedule now.
    pub fn enable_rotation(&mut self, key: &str, period_days: Option<u32>) -> Result<Uuid> {
        let id = self.resolve(key)?;
        let k = self.cmk(&id);
        self.check_rotatable(k.key_spec, k.origin, &self.data.label(&id))?;
        self.check_not_pending(&id)?;
        let now = self.now();
        let k = self.cmk_mut(&id);
        let period = rotation::check_period(
            period_days.unwrap_or(
                k.rotation
                    .as_ref()
                    .map_or(rotation::DEFAULT_PERIOD_DAYS, |s| s.period_days),
            ),
        )?;
        match k.rotation.as_mut() {
            Some(s) => s.period_days = period,
            None => {
                k.rotation = Some(RotationSchedule {
                    period_days: period,
                    anchor: now,
                })
            }
        }
        Ok(id)
    }

    pub fn disable_rotation(&mut self, key: &str) -> Result<Uuid> {
        let id = self.resolve(key)?;
        let k = self.cmk(&id);
        self.check_rotatable(k.key_spec, k.origin, &self.data.label(&id))?;
        self.check_not_pending(&id)?;
        self.cmk_mut(&id).rotation = None;
        Ok(id)
    }

    /// Rotates at once, independent of the schedule (which it does not move).
    /// Limited to [`ON_DEMAND_LIMIT`] per key, as in KMS. Returns the new version.
    pub fn rotate_on_demand(&mut self, key: &str) -> Result<(Uuid, u32)> {
        let id = self.resolve(key)?;
        let k = self.cmk(&id);
        self.check_rotatable(k.key_spec, k.origin, &self.data.label(&id))?;
        if let Some(p) = self.data.state_problem(k) {
            return Err(key_error(p));
        }
        if k.on_demand_rotations >= ON_DEMAND_LIMIT {
            return Err(Error::Other(format!(
                "{} has used all {ON_DEMAND_LIMIT} on-demand rotations (the per-key limit, as in \
                 AWS KMS); enable automatic rotation with `envarc key enable-rotation {id}`, or \
                 create a new key and move the alias with `envarc key update-alias`",
                self.data.label(&id)
            )));
        }
        let now = self.now();
        let k = self.cmk_mut(&id);
        k.on_demand_rotations += 1;
        let v = k.push_backing_key(now, BackingKeyKind::OnDemand, Material::generate());
        Ok((id, v))
    }

    /// Imports 32 bytes of material into an EXTERNAL key as a new backing-key
    /// version (the first import enables a PendingImport key).
    pub fn import_material(&mut self, key: &str, material: &[u8]) -> Result<(Uuid, u32)> {
        let id = self.resolve(key)?;
        let label = self.data.label(&id);
        let k = self.cmk(&id);
        if k.origin != Origin::External {
            return Err(Error::Usage(format!(
                "{label} has origin AWS_KMS; only keys created with --origin EXTERNAL take \
                 imported material"
            )));
        }
        if k.state == KeyState::PendingDeletion {
            return Err(key_error(self.data.state_problem(k).expect("pending")));
        }
        let m = Material::from_slice(material).ok_or_else(|| {
            Error::Usage(format!(
                "key material must be exactly 32 bytes (AES-256), this is {} bytes; create it \
                 with: head -c 32 /dev/urandom > material.bin",
                material.len()
            ))
        })?;
        if let Some(b) = k.backing_keys().iter().find(|b| {
            b.material
                .as_ref()
                .is_some_and(|old| bool::from(old.expose().ct_eq(m.expose())))
        }) {
            return Err(Error::Usage(format!(
                "this material is already backing key v{} of {label}",
                b.version
            )));
        }
        let now = self.now();
        let k = self.cmk_mut(&id);
        let v = k.push_backing_key(now, BackingKeyKind::Imported, m);
        if k.state == KeyState::PendingImport {
            k.state = KeyState::Enabled;
        }
        Ok((id, v))
    }
}
