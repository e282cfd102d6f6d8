//! `envarc forget` on snapshots with set times (made through the library),
//! against restic's documented outcomes.

use std::collections::BTreeSet;

use envarc::repo::{SnapshotMeta, Summary, Time, SNAPSHOT_VERSION};
use time::macros::datetime;
use time::OffsetDateTime;

use crate::support::Story;

/// A snapshot of `host` and `/home/user/work` at `t`, with no entries.
fn meta(t: OffsetDateTime, host: &str, tags: &[&str]) -> SnapshotMeta {
    SnapshotMeta {
        version: SNAPSHOT_VERSION,
        time: Time {
            sec: t.unix_timestamp(),
            nsec: 0,
        },
        host: host.into(),
        paths: vec![b"/home/user/work".to_vec()],
        tags: tags.iter().map(|s| s.to_string()).collect(),
        parent: None,
        summary: Summary::default(),
        entries: 0,
    }
}

/// Saves snapshots; returns their IDs (hex) in the order given.
fn save(s: &Story, metas: &[SnapshotMeta]) -> Vec<String> {
    let repo = s.open();
    metas
        .iter()
        .map(|m| repo.save_snapshot(m, &[]).unwrap().to_hex())
        .collect()
}

fn remaining(s: &Story) -> BTreeSet<String> {
    s.json(&s.on_repo("snapshots", &[]))
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect()
}

/// restic's documentation: a backup every Sunday for 12 weeks;
/// `forget --keep-daily 4` keeps the last four Sundays and removes 8.
#[test]
fn twelve_sundays_keep_daily_4_as_in_restics_documentation() {
    let s = Story::new(&[]);
    let first = datetime!(2019-09-01 11:00 UTC);
    let metas: Vec<_> = (0..12)
        .map(|w| meta(first + time::Duration::weeks(w), "mopped", &[]))
        .collect();
    let ids = save(&s, &metas);
    // Another host's snapshots form their own group; with --host they are
    // not even considered.
    let other = save(&s, &[meta(first, "luigi", &[]), meta(first, "luigi", &[])]);

    let dry = s.json(&s.on_repo(
        "forget",
        &["--keep-daily", "4", "--host", "mopped", "--dry-run"],
    ));
    assert_eq!(dry["forget"]["removed"], 8);
    assert_eq!(remaining(&s).len(), 14, "a dry run removes nothing");

    let r = s.json(&s.on_repo("forget", &["--keep-daily", "4", "--host", "mopped"]));
    let groups = r["forget"]["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1);
    let kept: BTreeSet<String> = ids[8..].iter().cloned().collect();
    let mut want = kept.clone();
    want.extend(other.iter().cloned());
    assert_eq!(remaining(&s), want);
    let mut kept_json = BTreeSet::new();
    for k in groups[0]["keep"].as_array().unwrap() {
        assert_eq!(k[1], serde_json::json!(["daily"]));
        kept_json.insert(k[0].as_str().expect("a snapshot ID in hex").to_string());
    }
    assert_eq!(
        kept_json, kept,
        "--json names the kept snapshots by their IDs"
    );
    for id in groups[0]["remove"].as_array().unwrap() {
        assert!(id
            .as_str()
            .is_some_and(|id| ids[..8].contains(&id.to_string())));
    }

    // Without --host, luigi's group keeps its newest (ties broken by ID).
    s.ok(&s.on_repo("forget", &["--keep-last", "1"]));
    assert_eq!(remaining(&s).len(), 1 + 1);
}

#[test]
fn tags_keep_and_refusals() {
    let s = Story::new(&[]);
    let t = datetime!(2024-05-01 2:00 UTC);
    let ids = save(
        &s,
        &[
            meta(t, "h", &["monthly", "db"]),
            meta(t + time::Duration::days(1), "h", &["db"]),
            meta(t + time::Duration::days(2), "h", &[]),
            meta(t + time::Duration::days(3), "h", &[]),
        ],
    );
    // No policy: refused, nothing removed.
    s.cmd(&s.on_repo("forget", &[])).assert().code(2);
    // A tag policy that would empty the group: refused.
    s.cmd(&s.on_repo("forget", &["--keep-tag", "nightly"]))
        .assert()
        .code(2);
    assert_eq!(remaining(&s).len(), 4);
    // --keep-tag monthly,db (both tags) plus the newest.
    s.ok(&s.on_repo("forget", &["--keep-tag", "monthly,db", "--keep-last", "1"]));
    assert_eq!(
        remaining(&s),
        BTreeSet::from([ids[0].clone(), ids[3].clone()])
    );
    // '' keeps the untagged one only; the tagged one goes.
    s.ok(&s.on_repo("forget", &["--keep-tag", ""]));
    assert_eq!(remaining(&s), BTreeSet::from([ids[3].clone()]));
}

#[test]
fn forget_with_prune_removes_the_data_only_forgotten_snapshots_used() {
    let s = Story::new(&["--pack-size", "32KiB"]);
    s.files("a", 20, 8, 1);
    let (first, _) = s.backup();
    for i in 0..20 {
        std::fs::write(
            s.src.join(format!("a/f{i:03}")),
            format!("version two of {i}"),
        )
        .unwrap();
    }
    let second = s.backup();
    let before = crate::support::chunk_messages(&s.open()).len();
    assert_eq!(before, 40);
    let r = s.json(&s.on_repo("forget", &["--keep-last", "1", "--prune", "--grace", "0"]));
    assert_eq!(r["forget"]["removed"], 1);
    assert_eq!(r["prune"]["chunks_unused"], 20);
    assert!(!remaining(&s).contains(&first));
    assert_eq!(crate::support::chunk_messages(&s.open()).len(), 20);
    s.restores_match(&[second]);
}
