//! Handlers of the backing-key version commands: `rotations` (KMS
//! ListKeyRotations) and retiring or destroying one version.

use serde_json::json;

use super::super::keyspec::keyring_open::load_keyring;
use super::super::{GlobalArgs, Output};
use super::manage::update;
use envarc::error::exit;
use envarc::keyring::versions::Change;
use envarc::keyring::{fmt_date, BackingKey, Cmk, Origin, VersionState};
use envarc::Result;

/// KMS `KeyMaterialState`: `CURRENT` (wraps and unwraps) or `NON_CURRENT`
/// (only unwraps, in KMS). envarc's own `VersionState` says more.
pub fn material_state(k: &Cmk, b: &BackingKey) -> &'static str {
    if k.current().map(|c| c.version) == Some(b.version) {
        "CURRENT"
    } else {
        "NON_CURRENT"
    }
}

/// "v1 retired, v2 pending deletion (2030-…), v3 current": a key's versions
/// for `describe`.
pub fn versions_line(k: &Cmk) -> String {
    if k.backing_keys().is_empty() {
        return "none yet (import material)".into();
    }
    let one = |b: &BackingKey| {
        let what = match b.state() {
            VersionState::Enabled if material_state(k, b) == "CURRENT" => "current".to_string(),
            VersionState::Enabled => "enabled".to_string(),
            VersionState::Retired => "retired".to_string(),
            VersionState::PendingDeletion => format!(
                "pending deletion (destroyed on {})",
                b.deletion_date.map(fmt_date).unwrap_or_default()
            ),
            VersionState::Destroyed => "destroyed".to_string(),
        };
        format!("v{} {what}", b.version)
    };
    k.backing_keys()
        .iter()
        .map(one)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every backing key of a key, with its date, how it came, and its state;
/// `--json` gives KMS ListKeyRotations' shape, where the initial material is
/// not a rotation and appears only with `all_material`.
pub fn rotations(out: &Output, g: &GlobalArgs, key: &str, all_material: bool) -> Result<i32> {
    let kr = load_keyring(g)?;
    let k = kr.get(key)?;
    let id = k.key_id.to_string();
    out.say(format!("Backing keys of key {id}:"));
    for b in k.backing_keys() {
        let state = match (b.state(), material_state(k, b)) {
            (VersionState::Enabled, "CURRENT") => "CURRENT".to_string(),
            (VersionState::PendingDeletion, _) => format!(
                "PENDING_DELETION until {}",
                b.deletion_date.map(fmt_date).unwrap_or_default()
            ),
            (s, _) => s.as_str().to_string(),
        };
        out.say(format!(
            "  v{:<4} {}  {:<10} {state}",
            b.version,
            fmt_date(b.created),
            b.kind.as_str()
        ));
    }
    let entries: Vec<_> = k
        .backing_keys()
        .iter()
        .filter(|b| all_material || b.kind.rotation_type(b.version).is_some())
        .map(|b| {
            let mut v = json!({
                "KeyId": id,
                "KeyMaterialState": material_state(k, b),
                "BackingKeyVersion": b.version,
                "VersionState": b.state().as_str(),
            });
            if let Some(t) = b.kind.rotation_type(b.version) {
                v["RotationType"] = json!(t);
                v["RotationDate"] = json!(fmt_date(b.created));
            }
            if k.origin == Origin::External {
                v["ImportState"] = json!(if b.has_material() {
                    "IMPORTED"
                } else {
                    "PENDING_IMPORT"
                });
            }
            if let Some(d) = b.deletion_date {
                v["DeletionDate"] = json!(fmt_date(d));
            }
            v
        })
        .collect();
    out.json(&json!({ "Rotations": entries, "Truncated": false }))?;
    Ok(exit::OK)
}

/// `retire-version` (`retire`) and `reinstate-version`.
pub fn retire(out: &Output, g: &GlobalArgs, key: &str, version: u32, retire: bool) -> Result<i32> {
    let (id, change) = update(out, g, |kr| {
        if retire {
            kr.retire_version(key, version)
        } else {
            kr.reinstate_version(key, version)
        }
    })?;
    let undo = format!("envarc key reinstate-version {id} --version {version}");
    match (retire, change) {
        (true, Change::Changed) => out.say(format!(
            "Retired backing key v{version} of key {id}: it unwraps nothing from now on; \
             whatever it still wraps fails to decrypt (exit 5) until `{undo}`"
        )),
        (true, Change::Unchanged) => out.say(format!(
            "Backing key v{version} of key {id} was already retired (undo: `{undo}`)"
        )),
        (false, Change::Changed) => out.say(format!(
            "Reinstated backing key v{version} of key {id}: it unwraps again"
        )),
        (false, Change::Unchanged) => out.say(format!(
            "Backing key v{version} of key {id} is not retired; nothing to do"
        )),
    }
    let state = if retire {
        VersionState::Retired
    } else {
        VersionState::Enabled
    };
    out.json(&json!({
        "KeyId": id.to_string(),
        "BackingKeyVersion": version,
        "VersionState": state.as_str(),
        "Changed": change == Change::Changed,
    }))?;
    Ok(exit::OK)
}

pub fn schedule_deletion(
    out: &Output,
    g: &GlobalArgs,
    key: &str,
    version: u32,
    window: u32,
) -> Result<i32> {
    let (id, date) = update(out, g, |kr| {
        kr.schedule_version_deletion(key, version, window)
    })?;
    out.warn(format!(
        "the material of backing key v{version} of key {id} will be destroyed on {}: after \
         that, whatever it still wraps (messages, backups, blobs) is unrecoverable. Move it to \
         the current version first (`envarc reencrypt --key-version {id}/v{version}` on each \
         repository). Until then it unwraps nothing, and `envarc key cancel-version-deletion \
         {id} --version {version}` keeps it.",
        fmt_date(date)
    ));
    out.say(format!(
        "Backing key v{version} of key {id} is PENDING_DELETION; its material is destroyed on \
         {} ({window} days)",
        fmt_date(date)
    ));
    out.json(&json!({
        "KeyId": id.to_string(),
        "BackingKeyVersion": version,
        "VersionState": VersionState::PendingDeletion.as_str(),
        "DeletionDate": fmt_date(date),
        "PendingWindowInDays": window,
    }))?;
    Ok(exit::OK)
}

pub fn cancel_deletion(out: &Output, g: &GlobalArgs, key: &str, version: u32) -> Result<i32> {
    let id = update(out, g, |kr| kr.cancel_version_deletion(key, version))?;
    out.say(format!(
        "Deletion of backing key v{version} of key {id} cancelled; it is retired: reinstate it \
         with `envarc key reinstate-version {id} --version {version}`"
    ));
    out.json(&json!({
        "KeyId": id.to_string(),
        "BackingKeyVersion": version,
        "VersionState": VersionState::Retired.as_str(),
    }))?;
    Ok(exit::OK)
}
