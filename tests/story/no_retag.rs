//! Security invariant 2 across the maintenance commands (issue 13): a
//! header is tagged exactly once per (data key, message ID). Copies of a
//! repository are kept before and after rewrap, reencrypt, prune and a
//! config renewal; every message of every object of every copy is scanned
//! (packs message by message, without the index), and no message ID may
//! appear with two different headers or bodies: two tags under one data key
//! and message ID (the derived key and IVs are the same) would give away the
//! GHASH key, and two bodies the keystream. Then a message of the version
//! reencrypt retired, put back by someone who kept a copy, is refused.

use std::collections::BTreeMap;
use std::path::Path;

use base64::Engine;
use envarc::envelope::{open_header, CommitmentPolicy, ContentType, ReadLimits};

use crate::support::Story;
use crate::util::tree;

/// Length of the framed body that starts at `body` (frames as the format
/// defines them: sequence number, IV, content, tag; the final frame also
/// has its content length). The repositories here use unsigned suites.
fn body_len(body: &[u8], frame_length: usize) -> usize {
    const IV: usize = 12;
    const TAG: usize = 16;
    let mut at = 0;
    loop {
        let seq = u32::from_be_bytes(body[at..at + 4].try_into().unwrap());
        if seq == u32::MAX {
            let len_at = at + 8 + IV;
            let len = u32::from_be_bytes(body[len_at..len_at + 4].try_into().unwrap()) as usize;
            return len_at + 4 + len + TAG;
        }
        at += 4 + IV + frame_length + TAG;
    }
}

/// A message as stored: its ID, header bytes, body bytes and where it is.
struct Stored {
    id: Vec<u8>,
    header: Vec<u8>,
    body: Vec<u8>,
    whence: String,
}

/// Every message in `bytes`, one after another.
fn messages_in(bytes: &[u8], whence: &str, out: &mut Vec<Stored>) {
    let mut at = 0;
    while at < bytes.len() {
        let p = open_header(
            &mut &bytes[at..],
            CommitmentPolicy::RequireCommitment,
            &ReadLimits::default(),
        )
        .unwrap_or_else(|e| panic!("{whence} at {at}: {e}"));
        assert_eq!(p.header.content_type, ContentType::Framed, "{whence}");
        let header = bytes[at..at + p.total_len].to_vec();
        let body_at = at + p.total_len;
        let body = body_len(&bytes[body_at..], p.header.frame_length as usize);
        out.push(Stored {
            id: p.header.message_id,
            header,
            body: bytes[body_at..body_at + body].to_vec(),
            whence: format!("{whence} at {at}"),
        });
        at = body_at + body;
    }
}

/// Every message of every object of the repository at `dir`.
fn all_messages(dir: &Path) -> Vec<Stored> {
    let mut out = Vec::new();
    for rel in tree::files(dir) {
        let name = rel.to_str().unwrap().to_string();
        let bytes = std::fs::read(dir.join(&rel)).unwrap();
        if name == "config" {
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            let sealed = base64::engine::general_purpose::STANDARD
                .decode(v["sealed"].as_str().unwrap())
                .unwrap();
            messages_in(&sealed, "config", &mut out);
        } else if !name.starts_with("locks/") {
            messages_in(&bytes, &name, &mut out);
        }
    }
    out
}

#[test]
fn no_message_id_is_ever_used_for_two_different_messages() {
    let s = Story::new(&["--pack-size", "64KiB", "--frame-length", "4096"]);
    // Every step that writes packs runs on one core, so that which pack
    // holds which chunk, and so what prune finds to do, follows the walk
    // order instead of how the workers split the work.
    s.files("a", 12, 40, 1);
    s.backup_on_one_core();
    s.rotate();
    s.files("b", 8, 40, 2);
    for i in 0..8 {
        std::fs::write(s.src.join(format!("a/f{i:03}")), format!("changed {i}")).unwrap();
    }
    s.backup_on_one_core();
    s.rotate();
    s.files("c", 4, 40, 3);
    s.backup_on_one_core();
    let mut copies = Vec::new();
    let mut keep = |s: &Story, step: &str| {
        let to = s.dir.path().join(format!("copy-{}-{step}", copies.len()));
        tree::copy(&s.repo, &to);
        copies.push(to);
    };
    keep(&s, "before");
    s.json_on_one_core(&s.on_repo("rewrap", &[]));
    keep(&s, "rewrap");
    s.rotate();
    s.json_on_one_core(&s.on_repo("reencrypt", &["--key-version", "alias/t/v3"]));
    keep(&s, "reencrypt");
    s.ok(&s.on_repo("forget", &["--keep-last", "2"]));
    let pruned = s.json(&s.on_repo("prune", &["--grace", "0"]));
    assert!(
        pruned["packs_repacked"].as_u64().unwrap() + pruned["packs_deleted"].as_u64().unwrap() > 0
    );
    keep(&s, "prune");
    s.rotate();
    s.ok(&s.on_repo("rewrap", &[]));
    keep(&s, "config renewal");

    let mut seen: BTreeMap<Vec<u8>, Stored> = BTreeMap::new();
    let (mut scanned, mut repeated) = (0, 0);
    for copy in &copies {
        let name = copy.file_name().unwrap().to_string_lossy().into_owned();
        for mut m in all_messages(copy) {
            scanned += 1;
            m.whence = format!("{name}: {}", m.whence);
            match seen.get(&m.id) {
                Some(first) => {
                    let id = hex::encode(&m.id);
                    assert!(
                        first.header == m.header,
                        "message {id} has two different headers: {} and {}",
                        first.whence,
                        m.whence
                    );
                    assert!(
                        first.body == m.body,
                        "message {id} has two different bodies: {} and {}",
                        first.whence,
                        m.whence
                    );
                    repeated += 1;
                }
                None => {
                    seen.insert(m.id.clone(), m);
                }
            }
        }
    }
    eprintln!(
        "{scanned} messages in {} copies, {} distinct message IDs, {repeated} seen again, byte for byte the same",
        copies.len(),
        seen.len()
    );
    // The check is not empty: messages copied unchanged (chunks prune
    // repacked, chunks under the current version) are seen again.
    assert!(repeated > 0 && seen.len() > 40, "{scanned} {repeated}");
}

/// After `reencrypt --key-version alias/t/v1` (which retires v1), someone
/// who kept a copy puts back the v1 message of a snapshot under its own name
/// and a v1 index file: the repository refuses both (exit 4, "retired").
#[test]
fn a_retired_versions_message_put_back_is_refused() {
    let s = Story::new(&[]);
    s.files("a", 5, 8, 1);
    let (id, tree) = s.backup();
    let kept = s.dir.path().join("kept");
    tree::copy(&s.repo, &kept);
    s.rotate();
    let r = s.json(&s.on_repo("reencrypt", &["--key-version", "alias/t/v1"]));
    assert_eq!(r["retired"], true, "{r}");
    s.restores_match(&[(id.clone(), tree)]);

    let name = format!("snapshots/{id}");
    std::fs::copy(kept.join(&name), s.repo.join(&name)).unwrap();
    let target = s.dir.path().join("t");
    let out = s
        .cmd(&s.on_repo("restore", &[&id, "--target", target.to_str().unwrap()]))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(4));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("retired"), "{err}");
    let out = s.cmd(&s.on_repo("ls", &[&id])).output().unwrap();
    assert_eq!(out.status.code(), Some(4));

    // An old index file back beside the new ones.
    for rel in tree::files(&kept.join("index")) {
        std::fs::copy(
            kept.join("index").join(&rel),
            s.repo.join("index").join(&rel),
        )
        .unwrap();
    }
    let out = s.cmd(&s.on_repo("verify", &[])).output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(all.matches("retired").count() >= 2, "{all}");
}
