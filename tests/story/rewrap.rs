//! rewrap and reencrypt: what they change, what they keep, and that old
//! backing keys are no longer needed afterwards.

use std::collections::BTreeMap;

use crate::support::{bodies, Story, Tree, ALIAS};

/// Three backups across two rotations: 20 files under v1, 11 under v2 (one
/// changed, ten added), 5 under v3.
fn three_versions() -> (Story, Vec<(String, Tree)>) {
    let s = Story::new(&["--pack-size", "64KiB", "--frame-length", "4096"]);
    s.files("a", 20, 16, 1);
    let b1 = s.backup();
    s.rotate();
    s.files("b", 10, 16, 2);
    std::fs::write(s.src.join("a/f000"), b"changed after the first backup").unwrap();
    let b2 = s.backup();
    s.rotate();
    s.files("c", 5, 16, 3);
    let b3 = s.backup();
    assert_eq!(
        s.objects_per_version(),
        BTreeMap::from([(1, 20), (2, 11), (3, 5)])
    );
    (s, vec![b1, b2, b3])
}

fn destroy(s: &Story, version: u32) {
    s.keyring_file()
        .update(|kr| kr.destroy_backing_material(ALIAS, version))
        .unwrap();
}

#[test]
fn rewrap_moves_every_data_key_to_the_current_version_bodies_unchanged() {
    let (s, snaps) = three_versions();
    let before = bodies(&s.open());
    assert_eq!(before.len(), 36);

    let dry = s.json(&s.on_repo("rewrap", &["--dry-run"]));
    assert_eq!(dry["objects_rewrapped"], 31);
    assert_eq!(dry["objects_current"], 5);
    assert_eq!(
        s.objects_per_version().len(),
        3,
        "a dry run changes nothing"
    );

    let r = s.json(&s.on_repo("rewrap", &[]));
    assert_eq!(r["objects_rewrapped"], 31);
    assert_eq!(r["failed"].as_array().unwrap().len(), 0);
    assert!(r["key_check_rewrapped"].as_bool().unwrap());
    assert_eq!(s.objects_per_version(), BTreeMap::from([(3, 36)]));
    // Manifests, index files and the key check too: nothing is under v1 or v2.
    assert_eq!(s.versions_in_use(), [3]);
    // Same messages, same bodies: only headers changed.
    assert_eq!(bodies(&s.open()), before);

    // Done is done.
    let again = s.json(&s.on_repo("rewrap", &[]));
    assert_eq!(again["objects_rewrapped"], 0);
    assert_eq!(again["packs_written"], 0);

    // The old backing keys are no longer needed by this repository.
    destroy(&s, 1);
    destroy(&s, 2);
    s.restores_match(&snaps);
    s.ok(&s.on_repo("verify", &["--read-data"]));
}

#[test]
fn reencrypt_v1_leaves_nothing_under_it_and_survives_destroying_v1() {
    let (s, snaps) = three_versions();
    let ids_before: Vec<String> = snapshot_ids(&s);
    let index_before = s.open().load_index().unwrap();
    let v1_ids: Vec<_> = {
        let repo = s.open();
        let (_, entries) = repo
            .load_snapshot(&repo.resolve_snapshot(&snaps[0].0).unwrap())
            .unwrap();
        entries.iter().filter_map(|e| e.content).collect()
    };
    assert_eq!(v1_ids.len(), 20);

    let dry = s.json(&s.on_repo("reencrypt", &["--key-version", "alias/t/v1", "--dry-run"]));
    assert_eq!(dry["objects_reencrypted"], 20);
    assert_eq!(dry["snapshots_rewritten"], 3, "all three refer to v1 files");
    assert!(s.objects_per_version().contains_key(&1));

    let r = s.json(&s.on_repo("reencrypt", &["--key-version", "alias/t/v1"]));
    assert_eq!(r["objects_reencrypted"], 20);
    assert_eq!(r["remaining"], 0);
    assert!(
        !s.versions_in_use().contains(&1),
        "nothing is wrapped by v1"
    );
    // v2's messages stay v2: only v1 was named.
    assert_eq!(s.objects_per_version(), BTreeMap::from([(2, 11), (3, 25)]));
    // New messages: no v1 message ID is left in the index, and no snapshot
    // changed its ID.
    let index = s.open().load_index().unwrap();
    assert!(v1_ids
        .iter()
        .all(|m| index_before.contains(m) && !index.contains(m)));
    assert_eq!(snapshot_ids(&s), ids_before);

    // A keyring without v1's material still restores everything.
    destroy(&s, 1);
    s.restores_match(&snaps);
    s.ok(&s.on_repo("verify", &["--read-data"]));

    // Nothing left to do; the current version cannot be named.
    let again = s.json(&s.on_repo("reencrypt", &["--key-version", "alias/t/v1"]));
    assert_eq!(again["objects_reencrypted"], 0);
    let e = s
        .cmd(&s.on_repo("reencrypt", &["--key-version", "alias/t/v3"]))
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&e.get_output().stderr).into_owned();
    assert!(
        err.contains("current version") && err.contains("rotate"),
        "{err}"
    );
    s.cmd(&s.on_repo("reencrypt", &["--key-version", "alias/t/v9"]))
        .assert()
        .code(2);
    s.cmd(&s.on_repo("reencrypt", &["--key-version", "alias/t"]))
        .assert()
        .code(2);
}

fn snapshot_ids(s: &Story) -> Vec<String> {
    let v = s.json(&s.on_repo("snapshots", &[]));
    let mut ids: Vec<String> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

/// The state an interrupted rewrap can leave: new index file and packs
/// written, old ones not yet deleted, so every message is listed twice (once
/// wrapped by the old version, once by the current). Readers use either, and
/// the other when one is damaged; a rerun keeps one copy.
#[test]
fn every_message_listed_twice_reads_and_a_rerun_keeps_one_copy() {
    let (s, snaps) = three_versions();
    let before = bodies(&s.open());
    let saved = s.dir.path().join("saved");
    copy_tree(&s.repo.join("index"), &saved.join("index"));
    copy_tree(&s.repo.join("data"), &saved.join("data"));
    s.ok(&s.on_repo("rewrap", &[]));
    let kept: Vec<_> = files_under(&s.repo.join("data"));
    // Put the old index files and packs back: the interrupted state.
    copy_tree(&saved.join("index"), &s.repo.join("index"));
    copy_tree(&saved.join("data"), &s.repo.join("data"));
    let stats = s.json(&s.on_repo("stats", &[]));
    assert_eq!(stats["duplicated"], 31);
    s.restores_match(&snaps);

    // Damage every pack the rewrap had retired: readers fall back to the
    // rewrapped copies.
    let mut damaged = 0;
    for rel in files_under(&saved.join("data")) {
        if !kept.contains(&rel) {
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(s.repo.join("data").join(&rel))
                .unwrap();
            f.set_len(10).unwrap();
            damaged += 1;
        }
    }
    assert!(damaged > 0);
    s.restores_match(&snaps);

    let r = s.json(&s.on_repo("rewrap", &[]));
    assert_eq!(r["copies_dropped"], 31);
    assert_eq!(r["objects_rewrapped"], 0);
    let stats = s.json(&s.on_repo("stats", &[]));
    assert_eq!(stats["duplicated"], 0);
    assert!(stats["problems"].as_array().unwrap().is_empty());
    assert_eq!(s.objects_per_version(), BTreeMap::from([(3, 36)]));
    assert_eq!(bodies(&s.open()), before);
    s.restores_match(&snaps);
}

fn copy_tree(from: &std::path::Path, to: &std::path::Path) {
    for e in walkdir::WalkDir::new(from) {
        let e = e.unwrap();
        let dest = to.join(e.path().strip_prefix(from).unwrap());
        if e.file_type().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else {
            std::fs::copy(e.path(), &dest).unwrap();
        }
    }
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().to_path_buf())
        .collect()
}
