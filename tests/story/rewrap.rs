//! rewrap and reencrypt: new messages for everything an old version wraps,
//! contents unchanged, and old backing keys no longer needed afterwards.

use std::collections::{BTreeMap, BTreeSet};

use envarc::repo::ChunkId;

use crate::support::{chunk_contents, chunk_messages, Story, Tree, ALIAS};
use crate::util::tree;

/// Three backups across two rotations: 20 files under v1, 11 under v2 (one
/// changed, ten added), 5 under v3; every file is one chunk.
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
        s.chunks_per_version(),
        BTreeMap::from([(1, 20), (2, 11), (3, 5)])
    );
    (s, vec![b1, b2, b3])
}

fn destroy(s: &Story, version: u32) {
    s.keyring_file()
        .update(|kr| kr.destroy_backing_material(ALIAS, version))
        .unwrap();
}

fn message_ids(s: &Story) -> BTreeSet<[u8; 32]> {
    chunk_messages(&s.open())
        .into_iter()
        .map(|(_, m)| m)
        .collect()
}

#[test]
fn rewrap_writes_every_old_chunk_anew_under_the_current_version() {
    let (s, snaps) = three_versions();
    let contents = chunk_contents(&s.open());
    let before = message_ids(&s);
    assert_eq!(before.len(), 36);

    let dry = s.json(&s.on_repo("rewrap", &["--dry-run"]));
    assert_eq!(dry["chunks"], 31);
    assert_eq!(dry["chunks_current"], 5);
    assert_eq!(dry["snapshots_affected"], 3);
    assert_eq!(s.chunks_per_version().len(), 3, "a dry run changes nothing");
    assert_eq!(message_ids(&s), before);

    let r = s.json(&s.on_repo("rewrap", &[]));
    assert_eq!(r["chunks"], 31);
    // One data key per file that stored them, unwrapped and wrapped once.
    assert_eq!(r["data_keys"], 31);
    assert_eq!(r["failed"].as_array().unwrap().len(), 0);
    assert!(r["config_renewed"].as_bool().unwrap());
    assert_eq!(r["snapshots_rewritten"], 2, "the v1 and v2 snapshots");
    assert_eq!(s.chunks_per_version(), BTreeMap::from([(3, 36)]));
    // Snapshots, index files and the config too: nothing is under v1 or v2.
    assert_eq!(s.versions_in_use(), [3]);
    // Same contents in new messages: only the five v3 chunks keep theirs.
    assert_eq!(chunk_contents(&s.open()), contents);
    assert_eq!(message_ids(&s).intersection(&before).count(), 5);

    // Done is done.
    let again = s.json(&s.on_repo("rewrap", &[]));
    assert_eq!(again["chunks"], 0);
    assert_eq!(again["packs_written"], 0);
    assert!(!again["config_renewed"].as_bool().unwrap());

    // The old backing keys are no longer needed by this repository.
    destroy(&s, 1);
    destroy(&s, 2);
    s.restores_match(&snaps);
    s.ok(&s.on_repo("verify", &["--read-data"]));
}

#[test]
fn reencrypt_v1_leaves_nothing_under_it_retires_it_and_survives_destroying_v1() {
    let (s, snaps) = three_versions();
    let ids_before = snapshot_ids(&s);
    let before = chunk_messages(&s.open());
    let contents = chunk_contents(&s.open());

    let dry = s.json(&s.on_repo("reencrypt", &["--key-version", "alias/t/v1", "--dry-run"]));
    assert_eq!(dry["chunks"], 20);
    assert_eq!(dry["snapshots_affected"], 3, "all three need v1 chunks");
    assert_eq!(dry["retired"], false);
    assert!(s.chunks_per_version().contains_key(&1));

    let r = s.json(&s.on_repo("reencrypt", &["--key-version", "alias/t/v1"]));
    assert_eq!(r["chunks"], 20);
    assert_eq!(r["data_keys"], 20, "one fresh data key per old one");
    assert_eq!(r["remaining"], 0);
    assert_eq!(r["retired"], true);
    assert!(
        !s.versions_in_use().contains(&1),
        "nothing is wrapped by v1"
    );
    // v2's chunks stay v2: only v1 was named.
    assert_eq!(s.chunks_per_version(), BTreeMap::from([(2, 11), (3, 25)]));
    // stats names v1 as retired by the repository.
    let stats = s.json(&s.on_repo("stats", &[]));
    let v1 = stats["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["key"]["version"] == 1)
        .expect("a retired version is listed");
    assert_eq!(v1["retired"], serde_json::json!(["repository"]));
    // The same chunks (content identities) in new messages; snapshot IDs stay.
    let after = chunk_messages(&s.open());
    let chunk_ids = |v: &[(ChunkId, [u8; 32])]| v.iter().map(|c| c.0).collect::<BTreeSet<_>>();
    assert_eq!(chunk_ids(&before), chunk_ids(&after));
    let kept: BTreeSet<_> = after.iter().map(|c| c.1).collect();
    let moved = before.iter().filter(|c| !kept.contains(&c.1)).count();
    assert_eq!(moved, 20, "every v1 chunk got a new message ID");
    assert_eq!(chunk_contents(&s.open()), contents);
    assert_eq!(snapshot_ids(&s), ids_before);

    // A keyring without v1's material still restores everything.
    destroy(&s, 1);
    s.restores_match(&snaps);
    s.ok(&s.on_repo("verify", &["--read-data"]));

    // Nothing left to do; the current version cannot be named.
    let again = s.json(&s.on_repo("reencrypt", &["--key-version", "alias/t/v1"]));
    assert_eq!(again["chunks"], 0);
    let e = s
        .cmd(&s.on_repo("reencrypt", &["--key-version", "alias/t/v3"]))
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&e.get_output().stderr).into_owned();
    assert!(
        err.contains("current version") && err.contains("Rotate"),
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

/// The state an interrupted rewrap can leave: new index files and packs
/// written, old ones not yet deleted, so every old chunk is listed twice
/// (once under the old version, once under the current). Readers use
/// either, and the other when one is damaged; a rerun keeps one copy.
#[test]
fn every_chunk_listed_twice_reads_and_a_rerun_keeps_one_copy() {
    let (s, snaps) = three_versions();
    let contents = chunk_contents(&s.open());
    let saved = s.dir.path().join("saved");
    tree::copy(&s.repo.join("index"), &saved.join("index"));
    tree::copy(&s.repo.join("data"), &saved.join("data"));
    s.ok(&s.on_repo("rewrap", &[]));
    let kept: Vec<_> = tree::files(&s.repo.join("data"));
    // Put the old index files and packs back: the interrupted state.
    tree::copy(&saved.join("index"), &s.repo.join("index"));
    tree::copy(&saved.join("data"), &s.repo.join("data"));
    let stats = s.json(&s.on_repo("stats", &[]));
    assert_eq!(stats["duplicated"], 31);
    s.restores_match(&snaps);

    // Damage every pack the rewrap had retired: readers fall back to the
    // rewrapped copies.
    let mut damaged = 0;
    for rel in tree::files(&saved.join("data")) {
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
    assert_eq!(r["chunks"], 0);
    let stats = s.json(&s.on_repo("stats", &[]));
    assert_eq!(stats["duplicated"], 0);
    assert!(stats["problems"].as_array().unwrap().is_empty());
    assert_eq!(s.chunks_per_version(), BTreeMap::from([(3, 36)]));
    assert_eq!(chunk_contents(&s.open()), contents);
    s.restores_match(&snaps);
}
