//! The keyring's rotation story with an injected clock: years pass in
//! milliseconds, and every message ever written still decrypts.

use std::sync::Arc;

use envarc::envelope::{
    decrypt_to_vec, encrypt_to_vec, open_header, DecryptOptions, EncryptOptions, KeyProvider,
    ProviderError, ReadLimits,
};
use envarc::keyring::{
    rotation, Argon2Params, BackingKeyKind, Clock, CreateKey, FixedClock, FixedSecret, KeySpec,
    Keyring, KeyringFile, KeyringOptions, Secret,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;
use zeroize::Zeroizing;

const T0: OffsetDateTime = datetime!(2030-01-01 0:00 UTC);
const TEN_YEARS_DAYS: i64 = 3653;

/// Everything about a key except its backing keys.
fn metadata(kr: &Keyring, key: &str) -> String {
    let k = kr.get(key).unwrap();
    format!(
        "{} {:?} {:?} {:?} {} {:?} {:?} {:?} {} {:?}",
        k.key_id,
        k.description,
        k.key_spec,
        k.origin,
        k.created,
        k.state,
        k.rotation.as_ref().map(|s| s.period_days),
        k.deletion_date,
        k.on_demand_rotations,
        kr.aliases_of(&k.key_id),
    )
}

/// The key name in a message's (single) EDK.
fn edk_name(message: &[u8]) -> String {
    let parsed = open_header(
        &mut &message[..],
        Default::default(),
        &ReadLimits::default(),
    )
    .unwrap();
    assert_eq!(parsed.header.edks.len(), 1);
    assert_eq!(parsed.header.edks[0].provider_id, "envarc");
    parsed.header.edks[0]
        .describe()
        .trim_start_matches("envarc:")
        .to_string()
}

struct Written {
    message: Vec<u8>,
    plaintext: Vec<u8>,
    version: u32,
}

fn write_message(kr: &Keyring, key: &str, day: i64) -> Written {
    let p = kr.provider(key).unwrap();
    let plaintext = format!("written on day {day} ").repeat(50).into_bytes();
    let message = encrypt_to_vec(&p, &EncryptOptions::default(), &plaintext).unwrap();
    let (id, version) = p.key().unwrap();
    assert_eq!(edk_name(&message), format!("{id}/v{version}"));
    Written {
        message,
        plaintext,
        version,
    }
}

fn rotation_over_ten_years(period: u32) {
    let clock = Arc::new(FixedClock::new(T0));
    let mut kr = Keyring::in_memory(clock.clone());
    let id = kr
        .create_key(CreateKey {
            description: "rotates".into(),
            alias: Some("alias/rot".into()),
            rotation_period_days: Some(period),
            ..CreateKey::default()
        })
        .unwrap();
    let still = kr.create_key(CreateKey::default()).unwrap();
    let mac = kr
        .create_key(CreateKey {
            key_spec: KeySpec::Hmac256,
            ..CreateKey::default()
        })
        .unwrap();
    kr.create_alias("alias/second", &id.to_string()).unwrap();
    let before = metadata(&kr, "alias/rot");
    let offset = rotation::offset_days(&id) as i64;

    let mut written = vec![write_message(&kr, "alias/rot", 0)];
    let mut rotation_days = Vec::new();
    for day in 1..=TEN_YEARS_DAYS {
        clock.set(T0 + Duration::days(day));
        let report = kr.maintain(clock.now());
        if !report.rotated.is_empty() {
            assert_eq!(report.rotated.len(), 1, "only the rotating key rotates");
            assert_eq!(report.rotated[0].0, id);
            rotation_days.push(day);
            // A message written the moment the rotation happened uses the new version.
            let w = write_message(&kr, "alias/rot", day);
            assert_eq!(
                w.version, report.rotated[0].1,
                "new data keys use the newest version"
            );
            written.push(w);
        }
        if day % 29 == 0 {
            written.push(write_message(&kr, "alias/rot", day));
        }
    }

    // Exactly one rotation per period: on the grid T0 + k·period + offset.
    let expected: Vec<i64> = (1..)
        .map(|k| k * period as i64 + offset)
        .take_while(|d| *d <= TEN_YEARS_DAYS)
        .collect();
    assert_eq!(rotation_days, expected, "period {period}, offset {offset}");
    let k = kr.get("alias/rot").unwrap();
    assert_eq!(k.backing_keys().len(), 1 + expected.len());
    for (b, day) in k.backing_keys()[1..].iter().zip(&expected) {
        assert_eq!(b.kind, BackingKeyKind::Automatic);
        assert_eq!(b.created, T0 + Duration::days(*day));
    }
    assert_eq!(
        metadata(&kr, "alias/rot"),
        before,
        "rotation changes nothing else"
    );
    assert_eq!(kr.get(&still.to_string()).unwrap().backing_keys().len(), 1);
    assert_eq!(kr.get(&mac.to_string()).unwrap().backing_keys().len(), 1);

    // Every message decrypts after all rotations, byte for byte, unchanged.
    let versions: std::collections::BTreeSet<u32> = written.iter().map(|w| w.version).collect();
    assert_eq!(
        versions.len(),
        1 + expected.len(),
        "messages under every version"
    );
    for p in [
        Box::new(kr.decrypt_provider()) as Box<dyn KeyProvider>,
        Box::new(kr.provider(&still.to_string()).unwrap()),
    ] {
        for w in &written {
            let (_, back) =
                decrypt_to_vec(p.as_ref(), &DecryptOptions::default(), &w.message).unwrap();
            assert_eq!(back, w.plaintext);
        }
    }
}

#[test]
fn one_backing_key_per_period_over_ten_years_365() {
    rotation_over_ten_years(365);
}

#[test]
fn one_backing_key_per_period_over_ten_years_90() {
    rotation_over_ten_years(90);
}

#[test]
fn late_maintenance_catches_up_once_and_keeps_the_grid() {
    let clock = Arc::new(FixedClock::new(T0));
    let mut kr = Keyring::in_memory(clock.clone());
    let id = kr
        .create_key(CreateKey {
            rotation_period_days: Some(100),
            ..CreateKey::default()
        })
        .unwrap();
    let off = rotation::offset_days(&id) as i64;
    // Nobody opens the keyring for 350 days: one rotation, not three.
    let r = kr.maintain(T0 + Duration::days(350 + off));
    assert_eq!(r.rotated.len(), 1);
    let k = kr.get(&id.to_string()).unwrap();
    assert_eq!(k.backing_keys().len(), 2);
    assert_eq!(kr.next_rotation(k), Some(T0 + Duration::days(400 + off)));
}

#[test]
fn disabled_keys_do_not_rotate_and_catch_up_when_enabled() {
    let clock = Arc::new(FixedClock::new(T0));
    let mut kr = Keyring::in_memory(clock.clone());
    let id = kr
        .create_key(CreateKey {
            rotation_period_days: Some(90),
            ..CreateKey::default()
        })
        .unwrap()
        .to_string();
    kr.disable_key(&id).unwrap();
    let later = T0 + Duration::days(120);
    assert!(kr.maintain(later).is_empty());
    kr.enable_key(&id).unwrap();
    assert_eq!(kr.maintain(later).rotated.len(), 1);
}

#[test]
fn on_demand_rotation_is_limited_and_leaves_the_schedule_alone() {
    let clock = Arc::new(FixedClock::new(T0));
    let mut kr = Keyring::in_memory(clock.clone());
    let id = kr
        .create_key(CreateKey {
            rotation_period_days: Some(365),
            ..CreateKey::default()
        })
        .unwrap()
        .to_string();
    let next = kr.next_rotation(kr.get(&id).unwrap());
    for n in 1..=rotation::ON_DEMAND_LIMIT {
        clock.advance(Duration::days(1));
        assert_eq!(kr.rotate_on_demand(&id).unwrap().1, n + 1);
    }
    let e = kr.rotate_on_demand(&id).err().unwrap();
    assert!(e.to_string().contains("all 10 on-demand rotations"), "{e}");
    assert_eq!(kr.next_rotation(kr.get(&id).unwrap()), next);
}

fn unusable(r: Result<envarc::envelope::DataKey, ProviderError>) -> String {
    match r {
        Err(ProviderError::KeyUnusable(m)) => m,
        Err(e) => panic!("expected KeyUnusable, got {e}"),
        Ok(_) => panic!("expected an error"),
    }
}

#[test]
fn disabled_pending_deletion_and_destroyed_keys_refuse_with_guidance() {
    let clock = Arc::new(FixedClock::new(T0));
    let mut kr = Keyring::in_memory(clock.clone());
    let id = kr
        .create_key(CreateKey {
            alias: Some("alias/k".into()),
            ..CreateKey::default()
        })
        .unwrap();
    let key = id.to_string();
    let p = kr.provider(&key).unwrap();
    let ctx = Default::default();
    let (_, edks) = p.generate_data_key(&ctx).unwrap();

    kr.disable_key(&key).unwrap();
    let m = unusable(kr.decrypt_provider().decrypt_data_key(&edks, &ctx));
    assert!(
        m.contains(&key) && m.contains("Disabled") && m.contains("envarc key enable"),
        "{m}"
    );
    let e = kr.provider("alias/k").err().unwrap();
    assert!(e.to_string().contains("Disabled"), "{e}");
    assert_eq!(e.exit_code(), envarc::error::exit::KEY);

    kr.enable_key(&key).unwrap();
    kr.schedule_deletion(&key, 7).unwrap();
    let m = unusable(kr.decrypt_provider().decrypt_data_key(&edks, &ctx));
    assert!(
        m.contains("PendingDeletion") && m.contains("envarc key cancel-deletion"),
        "{m}"
    );
    assert!(kr
        .maintain(T0 + Duration::days(7) - Duration::seconds(1))
        .is_empty());
    kr.cancel_deletion(&key).unwrap();
    assert_eq!(
        kr.get(&key).unwrap().state.as_str(),
        "Disabled",
        "as in KMS"
    );
    kr.enable_key(&key).unwrap();
    assert!(kr.decrypt_provider().decrypt_data_key(&edks, &ctx).is_ok());

    // A destroyed version: what it wrapped is gone, newer versions still work.
    kr.rotate_on_demand(&key).unwrap();
    let (_, edks2) = kr.provider(&key).unwrap().generate_data_key(&ctx).unwrap();
    kr.destroy_backing_material(&key, 1).unwrap();
    let m = unusable(kr.decrypt_provider().decrypt_data_key(&edks, &ctx));
    assert!(m.contains("v1") && m.contains("destroyed"), "{m}");
    assert!(kr.decrypt_provider().decrypt_data_key(&edks2, &ctx).is_ok());

    // After the window, the key, its aliases and its material are gone.
    kr.schedule_deletion(&key, 7).unwrap();
    let r = kr.maintain(T0 + Duration::days(7));
    assert_eq!(r.deleted, vec![id]);
    assert!(kr.aliases().is_empty());
    let m = unusable(kr.decrypt_provider().decrypt_data_key(&edks2, &ctx));
    assert!(m.contains("not in this keyring"), "{m}");
}

fn cheap_file(path: std::path::PathBuf, clock: Arc<dyn Clock>, pw: &str) -> KeyringFile {
    let mut o = KeyringOptions::new(
        path,
        Arc::new(FixedSecret(Secret::Passphrase(Zeroizing::new(
            pw.as_bytes().to_vec(),
        )))),
    );
    o.clock = clock;
    o.argon2 = Argon2Params {
        m_kib: 8,
        t: 1,
        p: 1,
    };
    KeyringFile::new(o)
}

#[test]
fn file_backed_keyring_rotates_on_open_and_keeps_every_version() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/keyring");
    let clock = Arc::new(FixedClock::new(T0));
    let file = cheap_file(path.clone(), clock.clone(), "pw");
    assert!(file
        .load()
        .err()
        .unwrap()
        .to_string()
        .contains("envarc key create"));
    let id: Uuid = file
        .create_or_update(|kr| {
            kr.create_key(CreateKey {
                alias: Some("alias/f".into()),
                rotation_period_days: Some(90),
                ..CreateKey::default()
            })
        })
        .unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let mut written = Vec::new();
    for step in 0..=73 {
        clock.set(T0 + Duration::days(step * 10));
        let kr = file.load().unwrap();
        written.push(write_message(&kr, "alias/f", step * 10));
    }
    // A fresh handle (another process) reads what the loads wrote.
    let kr = cheap_file(path.clone(), clock.clone(), "pw")
        .load()
        .unwrap();
    let k = kr.get(&id.to_string()).unwrap();
    let off = rotation::offset_days(&id) as i64;
    let expected = (1..).take_while(|k| k * 90 + off <= 730).count();
    assert_eq!(k.backing_keys().len(), 1 + expected);
    let p = kr.decrypt_provider();
    for w in &written {
        assert_eq!(
            decrypt_to_vec(&p, &DecryptOptions::default(), &w.message)
                .unwrap()
                .1,
            w.plaintext
        );
    }
    let wrong = cheap_file(path, clock, "nope").load().err().unwrap();
    assert!(wrong.to_string().contains("wrong passphrase"), "{wrong}");
}

#[test]
fn run_due_as_of_rotates_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FixedClock::new(T0));
    let file = cheap_file(dir.path().join("kr"), clock.clone(), "pw");
    let (rot, del) = file
        .create_or_update(|kr| {
            let rot = kr.create_key(CreateKey {
                rotation_period_days: Some(90),
                ..CreateKey::default()
            })?;
            let del = kr.create_key(CreateKey::default())?;
            kr.schedule_deletion(&del.to_string(), 30)?;
            Ok((rot, del))
        })
        .unwrap();
    assert!(
        file.run_due(Some(T0 - Duration::days(5)))
            .unwrap()
            .is_empty(),
        "the past acts as now"
    );
    let r = file.run_due(Some(T0 + Duration::days(200))).unwrap();
    assert_eq!(r.rotated.len(), 1);
    assert_eq!(r.rotated[0].0, rot);
    assert_eq!(r.deleted, vec![del]);
    let kr = file.load().unwrap();
    assert_eq!(kr.keys().len(), 1);
    assert_eq!(kr.get(&rot.to_string()).unwrap().backing_keys().len(), 2);
}
