//! `envarc prune`: deletes and repacks unreferenced data, keeps what is
//! younger than the grace period, and never robs a running backup.

use std::io::Write;
use std::process::Stdio;

use envarc::envelope::Encryptor;
use envarc::progress::Silent;
use envarc::repo::{Kind, LockKind, PackWriter};

use crate::support::{bodies, Story};

/// A backup of 40 files, then one where 30 of them changed: backup 1's
/// packs hold 75% garbage once its snapshot is forgotten.
fn mostly_garbage() -> (Story, (String, crate::support::Tree)) {
    let s = Story::new(&["--pack-size", "1MiB"]);
    s.files("a", 40, 4, 1);
    let (first, _) = s.backup();
    for i in 0..30 {
        std::fs::write(s.src.join(format!("a/f{i:03}")), format!("changed {i}")).unwrap();
    }
    let second = s.backup();
    let repo = s.open();
    repo.delete_snapshot(&repo.resolve_snapshot(&first).unwrap())
        .unwrap();
    (s, second)
}

#[test]
fn prune_repacks_mostly_unused_packs_after_the_grace_period() {
    let (s, second) = mostly_garbage();
    // Everything is younger than the default grace period of an hour.
    let r = s.json(&s.on_repo("prune", &[]));
    assert_eq!(r["messages_unused"], 30);
    assert_eq!(r["packs_repacked"], 0);
    assert_eq!(r["packs_deleted"], 0);
    assert!(r["packs_kept_recent"].as_u64().unwrap() >= 1);
    assert_eq!(bodies(&s.open()).len(), 70);

    let dry = s.json(&s.on_repo("prune", &["--grace", "0", "--dry-run"]));
    assert!(dry["packs_repacked"].as_u64().unwrap() >= 1);
    assert_eq!(bodies(&s.open()).len(), 70, "a dry run changes nothing");

    let before = bodies(&s.open());
    let r = s.json(&s.on_repo("prune", &["--grace", "0"]));
    assert!(r["packs_repacked"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["bytes_repacked"].as_u64().unwrap() > 0);
    let after = bodies(&s.open());
    assert_eq!(after.len(), 40, "the 30 old versions are gone");
    // The messages in use were copied byte for byte.
    for (id, body) in &after {
        assert_eq!(before.get(id), Some(body));
    }
    s.restores_match(&[second]);
    s.ok(&s.on_repo("verify", &["--read-data"]));
    // Nothing left to do.
    let again = s.json(&s.on_repo("prune", &["--grace", "0"]));
    assert_eq!(again["messages_unused"], 0);
    assert_eq!(again["bytes_freed"], 0);
}

/// A backup that runs where prune cannot see its lock (another host whose
/// lock was removed by hand) has written packs and its index file, not yet
/// its snapshot; another left a pack no index lists yet. Prune leaves both
/// alone (they are younger than the grace period), and the backup then
/// completes with all its data.
#[test]
fn a_backup_in_flight_keeps_its_data_through_prune() {
    let s = Story::new(&["--pack-size", "64KiB"]);
    s.files("a", 10, 4, 1);
    s.backup();
    let repo = s.open();
    let (meta, mut entries) = repo
        .load_snapshot(&repo.resolve_snapshot("latest").unwrap())
        .unwrap();
    // The in-flight backup: new contents for every file, in two packs.
    let mut contents = Vec::new();
    let mut writer = PackWriter::new(&repo);
    for (i, e) in entries
        .iter_mut()
        .enumerate()
        .filter(|(_, e)| e.content.is_some())
    {
        let data = format!("in flight {i}").into_bytes();
        let (entry, ()) = writer
            .append(|w| -> envarc::Result<_> {
                let mut enc =
                    Encryptor::new(repo.provider(), &repo.encrypt_options(Kind::Object), w)?;
                enc.write_all(&data).unwrap();
                let (_, info) = enc.finish()?;
                Ok((info.message_id, data.len() as u64, ()))
            })
            .unwrap();
        e.content = Some(entry.id);
        e.size = data.len() as u64;
        contents.push((e.path.clone(), data));
    }
    let packs = writer.finish().unwrap();
    assert!(!packs.is_empty());
    repo.write_index_file(&packs).unwrap();
    // And a committed pack no index lists yet.
    let mut lone = PackWriter::new(&repo);
    lone.append(|w| -> envarc::Result<_> {
        let mut enc = Encryptor::new(repo.provider(), &repo.encrypt_options(Kind::Object), w)?;
        enc.write_all(b"unindexed").unwrap();
        let (_, info) = enc.finish()?;
        Ok((info.message_id, 9, ()))
    })
    .unwrap();
    let lone = lone.finish().unwrap();

    // With no grace period these would go: that is what the grace protects.
    let dry = s.json(&s.on_repo("prune", &["--grace", "0", "--dry-run"]));
    assert_eq!(dry["unindexed_packs_deleted"], 1);
    assert!(dry["packs_deleted"].as_u64().unwrap() >= 1);

    let r = s.json(&s.on_repo("prune", &[]));
    assert_eq!(r["packs_deleted"], 0);
    assert_eq!(r["unindexed_packs_deleted"], 0);
    assert!(repo.pack_path(&lone[0].id).exists());
    for p in &packs {
        assert!(repo.pack_path(&p.id).exists());
    }

    // The backup completes: its snapshot, then everything restores.
    let id = repo.save_snapshot(&meta, &entries).unwrap();
    let target = s.dir.path().join("restored");
    s.ok(&s.on_repo(
        "restore",
        &[&id.to_hex(), "--target", target.to_str().unwrap()],
    ));
    for (path, data) in contents {
        let rel = std::path::Path::new(std::ffi::OsStr::from_bytes(&path));
        let got = std::fs::read(target.join(rel.strip_prefix("/").unwrap())).unwrap();
        assert_eq!(got, data);
    }
}

use std::os::unix::ffi::OsStrExt;

/// A running backup holds a shared lock: prune exits 6 at once, or with
/// --retry-lock waits until the backup is done; a real backup and a waiting
/// prune both complete.
#[test]
fn prune_and_a_running_backup_never_overlap() {
    let (s, _) = mostly_garbage();
    let repo = s.open();
    let held = repo.lock(LockKind::Shared, &Silent).unwrap();
    let out = s
        .cmd(&s.on_repo("prune", &["--grace", "0"]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shared lock"));
    let started = std::time::Instant::now();
    let waiting = s
        .process(&[
            "--retry-lock",
            "30s",
            "prune",
            "-r",
            s.repo.to_str().unwrap(),
            "--grace",
            "0",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(700));
    drop(held);
    let out = waiting.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(started.elapsed() >= std::time::Duration::from_millis(700));

    // A real backup of a bigger tree while a prune waits for it.
    s.files("big", 400, 16, 9);
    let backup = s
        .process(&[
            "backup",
            "-q",
            "-r",
            s.repo.to_str().unwrap(),
            "--host",
            "h",
            s.src.to_str().unwrap(),
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(30));
    let prune = s
        .process(&[
            "--retry-lock",
            "60s",
            "prune",
            "-r",
            s.repo.to_str().unwrap(),
            "--grace",
            "0",
        ])
        .output()
        .unwrap();
    let b = backup.wait_with_output().unwrap();
    assert!(b.status.success(), "{}", String::from_utf8_lossy(&b.stderr));
    assert!(
        prune.status.success(),
        "{}",
        String::from_utf8_lossy(&prune.stderr)
    );
    let latest = crate::support::capture(&s.src);
    let id = s
        .json(&s.on_repo("snapshots", &[]))
        .as_array()
        .unwrap()
        .last()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    s.restores_match(&[(id, latest)]);
    s.ok(&s.on_repo("verify", &["--read-data"]));
}
