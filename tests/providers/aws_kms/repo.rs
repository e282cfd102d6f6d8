//! A repository under a KMS key: init records the key ARN, backups before
//! and after a rotation, and both snapshots verify and restore.
//! (moto records the rotation but keeps one key material per key, so this
//! checks the plumbing; with real KMS, old ciphertexts name their backing
//! key inside the blob and decrypt the same way.)

use envarc::providers::{AwsKmsProvider, Kms, KmsConfig};
use envarc::repo::{LocalStorage, Repository, Unopened};

use super::{s, server, Scratch};
use crate::repo_support::verify_all;
use crate::util::stdout_json;

/// The test process's own AWS settings, for library calls (the children get
/// theirs from [`super::aws_env`]). Set once, before any library KMS call.
fn library_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let mut probe = std::process::Command::new("true");
        super::aws_env(&mut probe);
        for (k, v) in probe.get_envs() {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
    });
}

/// The repository opened through the library with its KMS key.
fn open(repo: &std::path::Path, endpoint: &str) -> Repository {
    library_env();
    let unopened = Unopened::read(Box::new(LocalStorage::new(repo))).unwrap();
    let kms = Kms::new(KmsConfig {
        endpoint: Some(endpoint.into()),
        ..Default::default()
    });
    let p = AwsKmsProvider::new(kms, Some(&unopened.claimed().keys[0].key));
    unopened.open(Box::new(p)).unwrap()
}

#[test]
fn backup_rotate_backup_and_read_both() {
    let Some(moto) = server("backup_rotate_backup_and_read_both") else {
        return;
    };
    let sc = Scratch::new(moto);
    let arn = moto.create_key("backups");
    moto.create_alias("alias/backups", &arn);
    moto.enable_rotation(&arn);
    let repo = sc.path("repo");
    let src = sc.path("src");
    crate::repo_support::many_files(&src, 12, 3, 1);

    // By alias: the config records the key ARN, not the alias.
    let out = sc
        .kms(&[
            "--json",
            "init",
            "-r",
            s(&repo),
            "--key",
            "aws-kms:alias/backups",
        ])
        .output()
        .unwrap();
    crate::util::assert_success(&out);
    let j = stdout_json(&out);
    let one = serde_json::json!([{"provider": "aws-kms", "key": arn}]);
    assert_eq!(j["keys"], one, "{j}");
    // The config's readable part names the key (the sealed part too).
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("config")).unwrap()).unwrap();
    assert_eq!(cfg["keys"], one);

    sc.kms(&["backup", "-r", s(&repo), s(&src)])
        .assert()
        .success();
    // The tree as the first snapshot saw it.
    let first = sc.path("first");
    // Keeps the mtimes the comparison looks at.
    crate::util::tree::copy(&src, &first);
    assert_eq!(
        moto.rotate_now(&arn),
        1,
        "moto records the on-demand rotation"
    );
    std::fs::write(src.join("d0/f0000"), b"changed after the rotation").unwrap();
    std::fs::write(src.join("new.txt"), b"new after the rotation").unwrap();
    sc.kms(&["backup", "-r", s(&repo), s(&src)])
        .assert()
        .success();

    let r = open(&repo, &moto.url);
    let (snapshots, messages) = verify_all(&r);
    assert_eq!(snapshots, 2);
    // 12 files, then 12 + 1 (the unchanged ones reuse their chunks).
    assert_eq!(messages, 25);
    // Every chunk's EDK is the KMS key's.
    let snaps = r.snapshots().unwrap();
    let (_, entries) = r.load_snapshot(&snaps[0].0).unwrap();
    let index = r.load_index().unwrap();
    let file = entries.iter().find(|e| !e.chunks.is_empty()).unwrap();
    let loc = index.get(&file.chunks[0]).unwrap();
    let pack = std::fs::read(repo.join(envarc::repo::pack_name(&loc.pack))).unwrap();
    let header = r
        .chunk_header(&pack[loc.offset as usize..(loc.offset + loc.length) as usize])
        .unwrap();
    let edks = &header.edks;
    assert_eq!(edks.len(), 1);
    assert_eq!(edks[0].provider_id, "aws-kms");
    assert_eq!(edks[0].provider_info, arn.as_bytes());

    // Through the binary: verify reads every message, restore both snapshots.
    sc.kms(&["verify", "-r", s(&repo), "--read-data"])
        .assert()
        .success();
    let list = sc
        .kms(&["--json", "snapshots", "-r", s(&repo)])
        .output()
        .unwrap();
    let list = stdout_json(&list);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    for (id, want) in [(ids[0], &first), (ids[1], &src)] {
        let target = sc.path(&format!("restore-{id}"));
        sc.kms(&["restore", "-r", s(&repo), id, "--target", s(&target)])
            .assert()
            .success();
        let got = target.join(src.strip_prefix("/").unwrap());
        crate::util::tree::assert_same_tree(want, &got, false);
    }
    // (stats and rewrap on KMS come back with the maintenance commands on
    // format 2.)
}

#[test]
fn kms_repository_with_kms_down_is_a_network_error() {
    let Some(moto) = server("kms_repository_with_kms_down_is_a_network_error") else {
        return;
    };
    let sc = Scratch::new(moto);
    let arn = moto.create_key("down");
    let repo = sc.path("repo");
    sc.kms(&["init", "-r", s(&repo), "--key", &arn])
        .assert()
        .success();
    let down = format!("http://127.0.0.1:{}", super::moto::free_port());
    let mut ls = sc.envarc();
    ls.args(["snapshots", "-r", s(&repo), "--kms-endpoint", &down]);
    let err = super::expect_exit(&mut ls, 1);
    assert!(err.contains("cannot reach"), "{err}");
}
