//! Handlers of the control-plane `key` commands: lifecycle, aliases, rotation.

use std::path::Path;

use serde_json::{json, Value};
use time::OffsetDateTime;
use uuid::Uuid;

use super::super::keyspec::keyring_open::{keyring_file, load_keyring};
use super::super::{GlobalArgs, Output};
use super::CreateArgs;
use envarc::error::exit;
use envarc::keyring::{
    fmt_date, rotation, Clock, CreateKey, KeySpec, KeyState, Keyring, MaintenanceReport, Origin,
};
use envarc::{Error, Result};

/// What due maintenance did while the keyring was open, one line each.
pub(super) fn notes(r: &MaintenanceReport) -> Vec<String> {
    let mut v: Vec<String> = r
        .rotated
        .iter()
        .map(|(id, ver, at)| {
            format!(
                "Rotated key {id} to backing key v{ver} (scheduled, {})",
                fmt_date(*at)
            )
        })
        .collect();
    v.extend(r.deleted.iter().map(|id| {
        format!("Deleted key {id}: its deletion window ended; its material is destroyed")
    }));
    v.extend(r.destroyed_versions.iter().map(|(id, ver, _)| {
        format!(
            "Destroyed backing key v{ver} of key {id}: its deletion window ended; what it \
             wrapped is unrecoverable"
        )
    }));
    v
}

/// A locked read-modify-write; prints what due maintenance did.
pub(super) fn update<T>(
    out: &Output,
    g: &GlobalArgs,
    f: impl FnOnce(&mut Keyring) -> Result<T>,
) -> Result<T> {
    let (t, lines) = keyring_file(g)?.update(|kr| {
        let t = f(kr)?;
        Ok((t, notes(kr.report())))
    })?;
    for l in lines {
        out.say(l);
    }
    Ok(t)
}

/// KMS `KeyMetadata`, plus envarc's `Aliases`, `CurrentKeyVersion`,
/// `BackingKeyCount` and `KeyRotationEnabled`.
pub fn key_metadata(kr: &Keyring, id: &Uuid) -> Value {
    let k = kr.get(&id.to_string()).expect("an existing key");
    let mut m = json!({
        "KeyId": id.to_string(),
        "CreationDate": fmt_date(k.created),
        "Enabled": k.state == KeyState::Enabled,
        "Description": k.description,
        "KeyUsage": k.key_spec.key_usage(),
        "KeyState": k.state.as_str(),
        "Origin": k.origin.as_str(),
        "KeyManager": "CUSTOMER",
        "KeySpec": k.key_spec.as_str(),
        "CustomerMasterKeySpec": k.key_spec.as_str(),
        "MultiRegion": false,
        "Aliases": kr.aliases_of(id),
        "CurrentKeyVersion": k.current().map(|b| b.version),
        "BackingKeyCount": k.backing_keys().len(),
        "KeyRotationEnabled": k.rotation.is_some(),
        "BackingKeys": k.backing_keys().iter().map(|b| {
            let mut v = json!({
                "Version": b.version,
                "KeyMaterialState": super::versions::material_state(k, b),
                "VersionState": b.state().as_str(),
            });
            if let Some(d) = b.deletion_date {
                v["DeletionDate"] = json!(fmt_date(d));
            }
            v
        }).collect::<Vec<_>>(),
    });
    let o = m.as_object_mut().expect("an object");
    match k.key_spec {
        KeySpec::SymmetricDefault => {
            o.insert("EncryptionAlgorithms".into(), json!(["SYMMETRIC_DEFAULT"]))
        }
        KeySpec::Hmac256 => o.insert("MacAlgorithms".into(), json!(["HMAC_SHA_256"])),
    };
    if let Some(d) = k.deletion_date {
        o.insert("DeletionDate".into(), json!(fmt_date(d)));
        o.insert(
            "PendingDeletionWindowInDays".into(),
            json!(k.pending_window_days),
        );
    }
    m
}

fn rotation_line(kr: &Keyring, id: &Uuid) -> String {
    let k = kr.get(&id.to_string()).expect("an existing key");
    match (&k.rotation, kr.next_rotation(k)) {
        (Some(s), Some(next)) => {
            format!("every {} days, next on {}", s.period_days, fmt_date(next))
        }
        _ => "disabled".into(),
    }
}

/// The human description of a key: no material, ever.
fn key_summary(kr: &Keyring, id: &Uuid) -> String {
    let k = kr.get(&id.to_string()).expect("an existing key");
    let aliases = kr.aliases_of(id);
    let mut s = format!("Key {id}\n");
    let mut line = |name: &str, v: String| s.push_str(&format!("  {name:<14}{v}\n"));
    line(
        "Aliases:",
        if aliases.is_empty() {
            "-".into()
        } else {
            aliases.join(", ")
        },
    );
    line(
        "Description:",
        if k.description.is_empty() {
            "-".into()
        } else {
            k.description.clone()
        },
    );
    line("State:", k.state.to_string());
    line(
        "Spec:",
        format!(
            "{} ({}), origin {}",
            k.key_spec.as_str(),
            k.key_spec.key_usage(),
            k.origin.as_str()
        ),
    );
    line("Created:", fmt_date(k.created));
    line(
        "Backing keys:",
        match k.current() {
            Some(b) => format!("{} (current v{})", k.backing_keys().len(), b.version),
            None => "none yet (import material)".into(),
        },
    );
    line("Versions:", super::versions::versions_line(k));
    line("Rotation:", rotation_line(kr, id));
    if let Some(d) = k.deletion_date {
        line("Deletion:", format!("scheduled for {}", fmt_date(d)));
    }
    s.pop();
    s
}

pub fn create(out: &Output, g: &GlobalArgs, c: CreateArgs) -> Result<i32> {
    let file = keyring_file(g)?;
    let existed = file.exists();
    let req = CreateKey {
        description: c.description,
        key_spec: KeySpec::parse(&c.key_spec).expect("clap restricts the spec"),
        origin: Origin::parse(&c.origin).expect("clap restricts the origin"),
        alias: c.alias,
        rotation_period_days: c.enable_rotation.then_some(
            c.rotation_period_in_days
                .unwrap_or(rotation::DEFAULT_PERIOD_DAYS),
        ),
    };
    let (meta, summary) = file.create_or_update(|kr| {
        let id = kr.create_key(req)?;
        Ok((key_metadata(kr, &id), key_summary(kr, &id)))
    })?;
    if !existed {
        out.say(format!("Created the keyring {}", file.path().display()));
    }
    out.say(format!("Created {}", summary.replacen("Key ", "key ", 1)));
    out.json(&json!({ "KeyMetadata": meta }))?;
    Ok(exit::OK)
}

pub fn list(out: &Output, g: &GlobalArgs) -> Result<i32> {
    let kr = load_keyring(g)?;
    out.say(format!(
        "{:<36}  {:<15}  {:<17}  {:>7}  {:<9}  ALIASES",
        "KEY ID", "STATE", "SPEC", "VERSION", "ROTATION"
    ));
    for k in kr.keys() {
        out.say(format!(
            "{:<36}  {:<15}  {:<17}  {:>7}  {:<9}  {}",
            k.key_id,
            k.state.as_str(),
            k.key_spec.as_str(),
            k.current()
                .map_or("-".into(), |b| format!("v{}", b.version)),
            k.rotation
                .as_ref()
                .map_or("off".into(), |s| format!("{}d", s.period_days)),
            kr.aliases_of(&k.key_id).join(", ")
        ));
    }
    out.json(&json!({
        "Keys": kr.keys().iter().map(|k| key_metadata(&kr, &k.key_id)).collect::<Vec<_>>(),
        "Aliases": kr.aliases().iter().map(|(a, id)| json!({"AliasName": a, "TargetKeyId": id.to_string()})).collect::<Vec<_>>(),
    }))?;
    Ok(exit::OK)
}

/// KMS ListAliases: `{"Aliases": [{"AliasName", "TargetKeyId"}], "Truncated"}`.
/// A local keyring has no ARNs, so `AliasArn` (optional in KMS) is absent.
pub fn list_aliases(out: &Output, g: &GlobalArgs, key: Option<&str>) -> Result<i32> {
    let kr = load_keyring(g)?;
    let only = key.map(|k| kr.resolve(k)).transpose()?;
    let aliases: Vec<(&String, &Uuid)> = kr
        .aliases()
        .iter()
        .filter(|(_, id)| only.is_none_or(|o| o == **id))
        .collect();
    if aliases.is_empty() {
        out.say(match only {
            Some(id) => format!("Key {id} has no aliases"),
            None => "The keyring has no aliases".to_string(),
        });
    } else {
        let width = aliases
            .iter()
            .map(|(a, _)| a.len())
            .max()
            .unwrap_or(0)
            .max(5);
        out.say(format!("{:<width$}  TARGET KEY ID", "ALIAS"));
        for (a, id) in &aliases {
            out.say(format!("{a:<width$}  {id}"));
        }
    }
    out.json(&json!({
        "Aliases": aliases.iter().map(|(a, id)| json!({
            "AliasName": a,
            "TargetKeyId": id.to_string(),
        })).collect::<Vec<_>>(),
        "Truncated": false,
    }))?;
    Ok(exit::OK)
}

pub fn describe(out: &Output, g: &GlobalArgs, key: &str) -> Result<i32> {
    let kr = load_keyring(g)?;
    let id = kr.resolve(key)?;
    out.say(key_summary(&kr, &id));
    out.json(&json!({ "KeyMetadata": key_metadata(&kr, &id) }))?;
    Ok(exit::OK)
}

pub enum AliasOp {
    Create,
    Update,
    Delete,
}

pub fn alias(
    out: &Output,
    g: &GlobalArgs,
    op: AliasOp,
    alias: &str,
    key: Option<&str>,
) -> Result<i32> {
    let id = update(out, g, |kr| match op {
        AliasOp::Create => kr.create_alias(alias, key.expect("clap requires KEY")),
        AliasOp::Update => kr.update_alias(alias, key.expect("clap requires KEY")),
        AliasOp::Delete => kr.delete_alias(alias),
    })?;
    out.say(match op {
        AliasOp::Create => format!("Created alias {alias} for key {id}"),
        AliasOp::Update => format!("Alias {alias} now names key {id}"),
        AliasOp::Delete => format!("Deleted alias {alias} (it named key {id}; the key stays)"),
    });
    out.json(&json!({"AliasName": alias, "TargetKeyId": id.to_string()}))?;
    Ok(exit::OK)
}

pub fn set_enabled(out: &Output, g: &GlobalArgs, key: &str, enable: bool) -> Result<i32> {
    let meta = update(out, g, |kr| {
        let id = if enable {
            kr.enable_key(key)?
        } else {
            kr.disable_key(key)?
        };
        Ok(key_metadata(kr, &id))
    })?;
    let id = meta["KeyId"].as_str().unwrap_or_default();
    out.say(if enable {
        format!("Key {id} is Enabled")
    } else {
        format!("Key {id} is Disabled: it cannot encrypt or decrypt until `envarc key enable {id}`")
    });
    out.json(&json!({ "KeyMetadata": meta }))?;
    Ok(exit::OK)
}

pub fn schedule_deletion(out: &Output, g: &GlobalArgs, key: &str, window: u32) -> Result<i32> {
    let (id, date) = update(out, g, |kr| kr.schedule_deletion(key, window))?;
    out.warn(format!(
        "key {id} will be deleted on {}: after that, every archive and message encrypted under it \
         is unrecoverable. Until then, `envarc key cancel-deletion {id}` keeps it.",
        fmt_date(date)
    ));
    out.say(format!(
        "Key {id} is PendingDeletion; deletion on {} ({window} days)",
        fmt_date(date)
    ));
    out.json(&json!({
        "KeyId": id.to_string(),
        "DeletionDate": fmt_date(date),
        "KeyState": "PendingDeletion",
        "PendingWindowInDays": window,
    }))?;
    Ok(exit::OK)
}

pub fn cancel_deletion(out: &Output, g: &GlobalArgs, key: &str) -> Result<i32> {
    let id = update(out, g, |kr| kr.cancel_deletion(key))?;
    out.say(format!(
        "Deletion of key {id} cancelled; it is Disabled: enable it with `envarc key enable {id}`"
    ));
    out.json(&json!({"KeyId": id.to_string()}))?;
    Ok(exit::OK)
}

/// `enable`: `Some(period)` turns rotation on (period optional); `None` off.
pub fn set_rotation(
    out: &Output,
    g: &GlobalArgs,
    key: &str,
    enable: Option<Option<u32>>,
) -> Result<i32> {
    let (status, line) = update(out, g, |kr| {
        let id = match enable {
            Some(period) => kr.enable_rotation(key, period)?,
            None => kr.disable_rotation(key)?,
        };
        Ok((rotation_json(kr, &id), rotation_line(kr, &id)))
    })?;
    out.say(format!(
        "Automatic rotation of key {}: {line}",
        status["KeyId"].as_str().unwrap_or_default()
    ));
    out.json(&status)?;
    Ok(exit::OK)
}

pub fn rotate_on_demand(out: &Output, g: &GlobalArgs, key: &str) -> Result<i32> {
    let (id, v, used) = update(out, g, |kr| {
        let (id, v) = kr.rotate_on_demand(key)?;
        Ok((id, v, kr.get(&id.to_string())?.on_demand_rotations))
    })?;
    out.say(format!(
        "Rotated key {id}: backing key v{v} now wraps new data keys; older versions still decrypt \
         ({used} of {} on-demand rotations used)",
        rotation::ON_DEMAND_LIMIT
    ));
    out.json(
        &json!({"KeyId": id.to_string(), "CurrentKeyVersion": v, "OnDemandRotationsUsed": used}),
    )?;
    Ok(exit::OK)
}

fn rotation_json(kr: &Keyring, id: &Uuid) -> Value {
    let k = kr.get(&id.to_string()).expect("an existing key");
    let mut v = json!({
        "KeyId": id.to_string(),
        "KeyRotationEnabled": k.rotation.is_some(),
        "OnDemandRotationsUsed": k.on_demand_rotations,
        "OnDemandRotationLimit": rotation::ON_DEMAND_LIMIT,
    });
    if let (Some(s), Some(next)) = (&k.rotation, kr.next_rotation(k)) {
        v["RotationPeriodInDays"] = json!(s.period_days);
        v["NextRotationDate"] = json!(fmt_date(next));
    }
    v
}

pub fn rotation_status(out: &Output, g: &GlobalArgs, key: &str) -> Result<i32> {
    let kr = load_keyring(g)?;
    let id = kr.resolve(key)?;
    let k = kr.get(key)?;
    out.say(format!(
        "Key {id}: automatic rotation {}; on-demand rotations used: {} of {}",
        rotation_line(&kr, &id),
        k.on_demand_rotations,
        rotation::ON_DEMAND_LIMIT
    ));
    out.json(&rotation_json(&kr, &id))?;
    Ok(exit::OK)
}

/// RFC 3339, or a plain `YYYY-MM-DD` meaning midnight UTC.
fn parse_date(s: &str) -> Result<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t.to_offset(time::UtcOffset::UTC));
    }
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(s, &fmt)
        .map(|d| d.midnight().assume_utc())
        .map_err(|_| {
            Error::Usage(format!(
                "'{s}' is not a date: write YYYY-MM-DD or an RFC 3339 time such as 2030-01-31T12:00:00Z"
            ))
        })
}

/// An `--as-of` in the future dates new backing keys then and cuts pending
/// windows short, so it needs `--force`.
fn check_as_of(out: &Output, as_of: OffsetDateTime, force: bool) -> Result<()> {
    let now = envarc::keyring::SystemClock.now();
    if as_of <= now {
        return Ok(());
    }
    let what = format!(
        "--as-of {} is in the future: rotate-due would date the new backing keys then, and \
         destroy now the keys and versions whose deletion is scheduled before it (cutting their \
         pending window short)",
        fmt_date(as_of)
    );
    if !force {
        return Err(Error::Usage(format!(
            "{what}; nothing was changed. Drop --as-of to act as of now, or pass --force if that \
             is what you want"
        )));
    }
    out.warn(format!("{what}; doing it, as --force asks"));
    Ok(())
}

pub fn rotate_due(out: &Output, g: &GlobalArgs, as_of: Option<&str>, force: bool) -> Result<i32> {
    let as_of = as_of.map(parse_date).transpose()?;
    if let Some(t) = as_of {
        check_as_of(out, t, force)?;
    }
    let r = keyring_file(g)?.run_due(as_of)?;
    let lines = notes(&r);
    if lines.is_empty() {
        out.say("Nothing is due");
    }
    for l in lines {
        out.say(l);
    }
    out.json(&json!({
        "Rotated": r.rotated.iter().map(|(id, v, at)| json!({
            "KeyId": id.to_string(), "CurrentKeyVersion": v, "RotationDate": fmt_date(*at),
        })).collect::<Vec<_>>(),
        "Deleted": r.deleted.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        "DestroyedKeyVersions": r.destroyed_versions.iter().map(|(id, v, at)| json!({
            "KeyId": id.to_string(), "Version": v, "DeletionDate": fmt_date(*at),
        })).collect::<Vec<_>>(),
    }))?;
    Ok(exit::OK)
}

pub fn import_material(out: &Output, g: &GlobalArgs, key: &str, file: &Path) -> Result<i32> {
    let material = super::data::read_input(file, "material file")?;
    let (id, v) = update(out, g, |kr| kr.import_material(key, &material))?;
    out.say(format!(
        "Imported material into key {id} as backing key v{v}; it wraps new data keys from now on"
    ));
    out.json(&json!({"KeyId": id.to_string(), "CurrentKeyVersion": v}))?;
    Ok(exit::OK)
}
