//! `envarc prune`: deletes and repacks unreferenced chunks, keeps what is
//! younger than the grace period, and never robs a running backup.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::process::Stdio;

use envarc::progress::Silent;
use envarc::repo::{pack_name, Compression, IndexData, LockKind, PackWriter};

use crate::support::{chunk_contents, chunk_messages, Story};

/// A backup of 40 files (one chunk each) on one core, so that all 40 chunks
/// are in one pack, then one where `changed` of them changed; the first
/// snapshot removed. That pack then holds `changed` of 40 unused.
fn with_garbage(changed: usize) -> (Story, (String, crate::support::Tree)) {
    let s = Story::new(&["--pack-size", "1MiB"]);
    s.files("a", 40, 4, 1);
    let (first, _) = s.backup_on_one_core();
    assert_eq!(s.open().load_index().unwrap().packs().len(), 1);
    for i in 0..changed {
        std::fs::write(s.src.join(format!("a/f{i:03}")), format!("changed {i}")).unwrap();
    }
    let second = s.backup();
    let repo = s.open();
    repo.delete_snapshot(&repo.resolve_snapshot(&first).unwrap())
        .unwrap();
    (s, second)
}

fn chunk_copies(s: &Story) -> usize {
    s.open().load_index().unwrap().len()
}

#[test]
fn prune_repacks_a_mostly_unused_pack_after_the_grace_period() {
    let (s, second) = with_garbage(30);
    // Everything is younger than the default grace period of an hour.
    let r = s.json(&s.on_repo("prune", &[]));
    assert_eq!(r["chunks_unused"], 30);
    assert_eq!(r["packs_repacked"], 0);
    assert_eq!(r["packs_deleted"], 0);
    assert_eq!(r["packs_kept_recent"], 1);
    assert_eq!(chunk_copies(&s), 70);

    let dry = s.json(&s.on_repo("prune", &["--grace", "0", "--dry-run"]));
    assert_eq!(dry["packs_repacked"], 1);
    assert_eq!(chunk_copies(&s), 70, "a dry run changes nothing");

    let before = chunk_messages(&s.open());
    let contents = chunk_contents(&s.open());
    let r = s.json(&s.on_repo("prune", &["--grace", "0"]));
    assert_eq!(r["packs_repacked"], 1, "{r}");
    assert_eq!(r["packs_deleted"], 0);
    assert_eq!(r["chunks_used"], 40);
    assert!(r["bytes_repacked"].as_u64().unwrap() > 0);
    assert!(r["bytes_freed"].as_u64().unwrap() > 0);
    // The 30 old versions are gone; the chunks in use were copied byte for
    // byte (the same messages, the same message IDs).
    let after = chunk_messages(&s.open());
    assert_eq!(after.len(), 40);
    let before: BTreeSet<_> = before.into_iter().collect();
    assert!(after.iter().all(|c| before.contains(c)));
    let contents_after = chunk_contents(&s.open());
    assert!(contents_after
        .iter()
        .all(|(id, c)| contents.get(id) == Some(c)));
    s.restores_match(&[second]);
    s.ok(&s.on_repo("verify", &["--read-data"]));
    // Nothing left to do.
    let again = s.json(&s.on_repo("prune", &["--grace", "0"]));
    assert_eq!(again["chunks_unused"], 0);
    assert_eq!(again["packs_repacked"], 0);
    assert_eq!(again["bytes_freed"], 0);
}

#[test]
fn a_pack_mostly_in_use_is_left_alone() {
    let (s, second) = with_garbage(10);
    let r = s.json(&s.on_repo("prune", &["--grace", "0"]));
    assert_eq!(r["chunks_unused"], 10);
    assert_eq!(r["packs_kept_mostly_used"], 1);
    assert!(r["bytes_kept_mostly_used"].as_u64().unwrap() > 0);
    assert_eq!(r["packs_repacked"], 0);
    assert_eq!(r["bytes_freed"], 0);
    assert_eq!(chunk_copies(&s), 50);
    s.restores_match(&[second]);
}

/// A backup that runs where prune cannot see its lock (another host whose
/// lock was removed by hand) has written packs and their index file, not yet
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
    // The in-flight backup: new contents for every file, under one data key
    // per file, in packs and an index file.
    let mut contents = Vec::new();
    let mut writer = PackWriter::new(&repo);
    let mut sets = envarc::repo::KeySetTable::default();
    for (i, e) in entries
        .iter_mut()
        .enumerate()
        .filter(|(_, e)| !e.chunks.is_empty())
    {
        let data = format!("in flight {i}").into_bytes();
        let key = repo.file_key(Compression::Auto).unwrap();
        let id = repo.chunker().id(&data);
        let msg = repo.seal_chunk(&key, &data).unwrap();
        writer
            .add(id, &msg, data.len() as u32, sets.number(&key.key_set))
            .unwrap();
        e.chunks = vec![id];
        e.size = data.len() as u64;
        contents.push((e.path.clone(), data));
    }
    let packs = writer.finish().unwrap();
    assert!(!packs.is_empty());
    repo.save_index(IndexData::new(sets.into_sets(), packs.clone()))
        .unwrap();
    // And a committed pack no index lists yet.
    let mut lone = PackWriter::new(&repo);
    let key = repo.file_key(Compression::Off).unwrap();
    let data = b"unindexed".to_vec();
    lone.add(
        repo.chunker().id(&data),
        &repo.seal_chunk(&key, &data).unwrap(),
        9,
        0,
    )
    .unwrap();
    let lone = lone.finish().unwrap();
    let exists = |id: &envarc::repo::Id| repo.storage().stat(&pack_name(id)).is_ok();

    // With no grace period these would go: that is what the grace protects.
    let dry = s.json(&s.on_repo("prune", &["--grace", "0", "--dry-run"]));
    assert_eq!(dry["unindexed_packs_deleted"], 1);
    assert!(dry["packs_deleted"].as_u64().unwrap() >= 1);

    let r = s.json(&s.on_repo("prune", &[]));
    assert_eq!(r["packs_deleted"], 0);
    assert_eq!(r["unindexed_packs_deleted"], 0);
    assert!(exists(&lone[0].id));
    assert!(packs.iter().all(|p| exists(&p.id)));

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

/// A running backup holds a shared lock: prune exits 6 at once, or with
/// --retry-lock waits until the backup is done; a real backup and a waiting
/// prune both complete.
#[test]
fn prune_and_a_running_backup_never_overlap() {
    let (s, _) = with_garbage(30);
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
    crate::util::assert_success(&out);
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
    crate::util::assert_success(&prune);
    let latest = crate::util::tree::contents(&s.src);
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
