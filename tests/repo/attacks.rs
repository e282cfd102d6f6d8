//! The storage attacks of the threat model, each refused: whoever can write
//! the repository but holds no key gains nothing. Through the built binary
//! except where no command exists yet (retiring a version is the
//! maintenance commands' job; it is driven through the library here).
use crate::{repo_support, util};

use std::path::Path;

use envarc::envelope::{
    encrypt_to_vec, DataKey, EncryptOptions, EncryptedDataKey, EncryptionContext, KeyProvider,
    ProviderError, RawAesKey,
};
use envarc::repo::{
    config::{seal, Secrets},
    encode_manifest, Config, InitOptions, KeyRef, KeyVersion, Kind, LocalStorage, OuterConfig,
    Repository, Unopened,
};
use repo_support::TestRepo;

fn run(r: &TestRepo, sub: &str, args: &[&str], pins: Option<&Path>) -> (i32, String, String) {
    let mut c = r.cmd(sub);
    c.args(args);
    if let Some(p) = pins {
        c.env("ENVARC_PINS", p);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn with_backup() -> (TestRepo, String) {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("pay"), b"PAY 100 USD TO ALICE").unwrap();
    let (code, sum, e) = r.backup(&[src.as_os_str()]);
    assert_eq!(code, 0, "{e}");
    (r, sum["snapshot_id"].as_str().unwrap().to_string())
}

#[test]
fn every_config_field_edit_is_refused_naming_the_field() {
    let (r, _) = with_backup();
    let path = r.repo.join("config");
    let original = std::fs::read(&path).unwrap();
    let doc: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&original).unwrap();
    let other_key =
        serde_json::json!([{"provider": "raw-aes", "key": "attacker", "namespace": "envarc"}]);
    let more_keys = {
        let mut k = doc["keys"].as_array().unwrap().clone();
        k.push(serde_json::json!({"provider": "keyring", "key": uuid::Uuid::new_v4().to_string()}));
        serde_json::Value::Array(k)
    };
    let edits: Vec<(&str, serde_json::Value)> = vec![
        ("id", uuid::Uuid::new_v4().to_string().into()),
        ("generation", 9.into()),
        ("keys", other_key),
        ("keys", more_keys),
        (
            "retired",
            serde_json::json!([{"provider": "raw-aes", "key": "test-key", "version": null}]),
        ),
        ("suite", "chacha20-poly1305".into()),
        ("frame_length", 1.into()),
        ("pack_size", 1.into()),
        (
            "chunker",
            serde_json::json!({"min": 64, "avg": 256, "max": 1024}),
        ),
        ("compression", "off".into()),
        ("format", 3.into()),
        ("sneaked_in", true.into()),
    ];
    for (field, value) in edits {
        let mut d = doc.clone();
        d.insert(field.into(), value.clone());
        std::fs::write(&path, serde_json::to_vec_pretty(&d).unwrap()).unwrap();
        // A machine that never saw the repository: the sealed copy refuses it.
        let fresh = r.dir.path().join(format!("pins-{field}.json"));
        let (code, _, err) = run(&r, "snapshots", &[], Some(&fresh));
        let want = if field == "format" { 1 } else { 4 };
        assert_eq!(code, want, "{field} = {value}: {err}");
        assert!(
            err.contains(field) || err.contains(&format!("`{field}`")),
            "{field}: {err}"
        );
        // This machine: the pin refuses what changes the key set, the ID or
        // the generation before any key is used.
        let (code, _, err) = run(&r, "snapshots", &[], None);
        assert_eq!(code, want, "{field} (pinned): {err}");
    }
    std::fs::write(&path, &original).unwrap();
    assert_eq!(run(&r, "snapshots", &[], None).0, 0);
}

/// A whole new config under the attacker's key, with the victim's ID.
#[test]
fn a_wholesale_config_replacement_is_refused_by_the_pin() {
    let (r, _) = with_backup();
    let victim = OuterConfig::parse(&std::fs::read(r.repo.join("config")).unwrap())
        .unwrap()
        .claimed;
    let attacker = RawAesKey::new("envarc", "attacker", &[9u8; 32]).unwrap();
    let kref = KeyRef {
        provider: "raw-aes".parse().unwrap(),
        key: "attacker".into(),
        params: [("namespace".to_string(), "envarc".to_string())].into(),
    };
    let mut forged = Config::new(vec![kref], &InitOptions::default()).unwrap();
    forged.id = victim.id.clone();
    forged.generation = victim.generation + 1;
    std::fs::write(
        r.repo.join("config"),
        seal(&forged, &Secrets::generate(), &attacker).unwrap(),
    )
    .unwrap();
    let attacker_key = r.dir.path().join("attacker.key");
    std::fs::write(&attacker_key, [9u8; 32]).unwrap();
    // Even with the attacker's key file at hand, the pinned key set refuses.
    let mut c = util::envarc();
    c.args(["snapshots", "-r"])
        .arg(&r.repo)
        .arg("--raw-key-file")
        .arg(&attacker_key);
    let out = c.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(
        err.contains("key set of repository") && err.contains("changed"),
        "{err}"
    );
    // Accepting it is an explicit act.
    let mut c = util::envarc();
    c.args(["trust", "-r"])
        .arg(&r.repo)
        .arg("--raw-key-file")
        .arg(&attacker_key);
    c.args(["--fingerprint", "sha256:00"]);
    assert_eq!(
        c.output().unwrap().status.code(),
        Some(4),
        "a wrong fingerprint is refused"
    );
}

#[test]
fn a_snapshot_copied_over_another_name_is_refused() {
    let (r, old) = with_backup();
    std::fs::write(r.dir.path().join("src/pay"), b"PAY 999 USD TO MALLO").unwrap();
    let (_, sum, _) = r.backup(&[r.dir.path().join("src").as_os_str()]);
    let new = sum["snapshot_id"].as_str().unwrap().to_string();
    let snaps = r.repo.join("snapshots");
    std::fs::copy(snaps.join(&old), snaps.join(&new)).unwrap();
    let (code, out, _) = run(&r, "verify", &["--json"], None);
    assert_eq!(code, 4, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let p = &report["problems"][0];
    assert_eq!(
        (p["kind"].as_str(), p["id"].as_str()),
        (Some("snapshot"), Some(new.as_str())),
        "{p}"
    );
    assert!(p["error"].as_str().unwrap().contains("envarc-id"), "{p}");
    let target = r.dir.path().join("t");
    let (code, _, err) = run(
        &r,
        "restore",
        &[&new, "--target", target.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 4, "{err}");
    assert!(!target
        .join(r.dir.path().strip_prefix("/").unwrap())
        .exists());
    let (code, out, _) = run(&r, "snapshots", &["--json"], None);
    assert_eq!(code, 4);
    let listed: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert_eq!(listed.len(), 1, "only the authentic snapshot is listed");
    assert_eq!(listed[0]["id"], old.as_str());
}

#[test]
fn a_snapshot_under_a_foreign_key_is_refused() {
    let (r, _) = with_backup();
    let repo = r.open();
    let (meta, entries) = repo
        .load_snapshot(&repo.resolve_snapshot("latest").unwrap())
        .unwrap();
    // The same manifest, under a key the repository does not use, with the
    // right context for its new name.
    let id = envarc::repo::Id::random();
    let foreign = RawAesKey::new("envarc", "unrelated", &[3u8; 32]).unwrap();
    let opts = EncryptOptions {
        context: repo.context(Kind::Snapshot, Some(&id)),
        ..Default::default()
    };
    let msg = encrypt_to_vec(&foreign, &opts, &encode_manifest(&meta, &entries)).unwrap();
    std::fs::write(r.repo.join("snapshots").join(id.to_hex()), msg).unwrap();
    let (code, out, _) = run(&r, "verify", &["--json"], None);
    assert_eq!(code, 4, "{out}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let p = &report["problems"][0];
    assert_eq!(p["id"], id.to_hex().as_str());
    assert!(
        p["error"]
            .as_str()
            .unwrap()
            .contains("not one of this repository's keys"),
        "{p}"
    );
    let (code, _, err) = run(
        &r,
        "restore",
        &[&id.to_hex(), "--target", "/nonexistent/t"],
        None,
    );
    assert_eq!(code, 4, "{err}");
    assert_eq!(run(&r, "snapshots", &[], None).0, 4);
}

#[test]
fn a_non_root_restore_drops_setuid_unless_asked() {
    use std::os::unix::fs::PermissionsExt;
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let prog = src.join("prog");
    std::fs::write(&prog, b"#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o6755)).unwrap();
    assert_eq!(r.backup(&[src.as_os_str()]).0, 0);
    let root = repo_support::is_root();
    if root && which("setpriv").is_none() {
        eprintln!("skipped: running as root without setpriv to restore as another user");
        return;
    }
    // As root, restore as `nobody` (who may read the repository and write
    // the target); otherwise as ourselves.
    let open = |p: &Path| {
        let _ = std::process::Command::new("chmod")
            .arg("-R")
            .arg("a+rwX")
            .arg(p)
            .status();
    };
    open(r.dir.path());
    for (flag, want) in [(None, 0o755), (Some("--keep-setuid"), 0o6755)] {
        let target = r.dir.path().join(format!("t{}", flag.is_some()));
        std::fs::create_dir_all(&target).unwrap();
        open(&target);
        let mut c = if root {
            let mut c = std::process::Command::new("setpriv");
            c.args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
                .arg(util::envarc_path());
            c
        } else {
            std::process::Command::new(util::envarc_path())
        };
        c.env("ENVARC_PINS", r.dir.path().join("nobody-pins.json"));
        c.args(["restore", "-r"])
            .arg(&r.repo)
            .arg("--raw-key-file")
            .arg(&r.key);
        c.args(["latest", "--target"]).arg(&target).args(flag);
        let out = c.output().unwrap();
        crate::util::assert_success(&out);
        let restored = target.join(prog.strip_prefix("/").unwrap());
        let mode = std::fs::metadata(&restored).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, want, "{flag:?}: {mode:o}");
    }
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Raw keys named `<cmk>/vN` are exactly what the keyring writes: they stand
/// in for a keyring CMK's versions (generate with the current, unwrap with any).
struct Versions {
    current: RawAesKey,
    all: Vec<RawAesKey>,
}

impl KeyProvider for Versions {
    fn generate_data_key(
        &self,
        c: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        self.current.generate_data_key(c)
    }
    fn decrypt_data_key(
        &self,
        e: &[EncryptedDataKey],
        c: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let mut last = None;
        for k in &self.all {
            match k.decrypt_data_key(e, c) {
                Ok(d) => return Ok(d),
                Err(x) => last = Some(x),
            }
        }
        Err(last.expect("a key"))
    }
}

#[test]
fn a_retired_versions_messages_are_refused() {
    let dir = util::tempdir();
    let cmk = uuid::Uuid::new_v4();
    let v = |n: u8| RawAesKey::new("envarc", &format!("{cmk}/v{n}"), &[n; 32]).unwrap();
    let kref = KeyRef {
        provider: "keyring".parse().unwrap(),
        key: cmk.to_string(),
        params: Default::default(),
    };
    let storage = || Box::new(LocalStorage::new(dir.path().join("repo")));
    let repo = Repository::init(
        storage(),
        vec![kref],
        Box::new(Versions {
            current: v(1),
            all: vec![v(1)],
        }),
        &InitOptions::default(),
    )
    .unwrap();
    let backup = |repo: &Repository, name: &str, seed: u64| {
        let src = dir.path().join(name);
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("f"), util::random_bytes(seed, 100_000)).unwrap();
        let opts = envarc::backup::BackupOptions {
            paths: vec![src],
            ..Default::default()
        };
        envarc::backup::backup(repo, &opts, &envarc::progress::Silent)
            .unwrap()
            .snapshot
            .unwrap()
    };
    let old = backup(&repo, "a", 1);
    drop(repo);
    // Rotated: new data under v2.
    let rotated = || Versions {
        current: v(2),
        all: vec![v(1), v(2)],
    };
    let mut repo = Unopened::read(storage())
        .unwrap()
        .open(Box::new(rotated()))
        .unwrap();
    let new = backup(&repo, "b", 2);
    repo.retire_version(KeyVersion {
        provider: "keyring".into(),
        key: cmk.to_string(),
        version: Some(1),
    })
    .unwrap();
    assert_eq!(repo.config().generation, 2);
    // Reopened from storage (the retirement is in the sealed config).
    let repo = Unopened::read(storage())
        .unwrap()
        .open(Box::new(rotated()))
        .unwrap();
    let err = repo.load_snapshot(&old).unwrap_err();
    assert_eq!(err.exit_code(), 4, "{err}");
    assert!(err.to_string().contains("retired"), "{err}");
    assert!(repo.load_snapshot(&new).is_ok());
    let report =
        envarc::verify::verify(&repo, &Default::default(), &envarc::progress::Silent).unwrap();
    assert!(!report.is_sound());
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.id == old.to_hex() && p.error.contains("retired")),
        "{:?}",
        report.problems
    );
    let target = dir.path().join("t");
    let opts = envarc::restore::RestoreOptions {
        target,
        ..Default::default()
    };
    assert!(envarc::restore::restore(&repo, &old, &opts, &envarc::progress::Silent).is_err());
    let _ = Config::clone(repo.config());
}
