//! SIGKILL in the middle of reencrypt and rewrap, at several points; a rerun
//! completes and nothing is lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::support::{chunk_contents, Story};

/// Runs `args` to the end on a copy of the repository, to know how long a
/// whole run takes. The copy has the repository's ID, so it is opened with
/// pins of its own: its higher config generation must not reach the pins
/// the original is checked against (that would read as a rollback).
fn time_on_copy(s: &Story, sub: &str, more: &[&str]) -> Duration {
    let copy = s.dir.path().join(format!("copy-{sub}"));
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&s.repo)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    let mut args = vec![sub, "-q", "-r", copy.to_str().unwrap()];
    args.extend_from_slice(more);
    let t0 = Instant::now();
    let out = s
        .process(&args)
        .env("ENVARC_PINS", s.dir.path().join("pins-of-the-copy.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let took = t0.elapsed();
    std::fs::remove_dir_all(&copy).unwrap();
    took
}

/// Starts `args` five times, killing each run at a later point; returns how
/// many runs were killed before they ended.
fn kill_repeatedly(s: &Story, sub: &str, more: &[&str], full: Duration) -> u32 {
    let mut args = vec![sub, "-q", "-r", s.repo.to_str().unwrap()];
    args.extend_from_slice(more);
    let mut killed = 0;
    for k in 1..=5u32 {
        let mut child = s.process(&args).spawn().unwrap();
        std::thread::sleep(full * k / 8);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
    }
    eprintln!("{sub}: a whole run takes {full:?}; {killed} of 5 runs were killed mid-way");
    killed
}

#[test]
fn killed_reencrypt_and_rewrap_rerun_to_completion() {
    let s = Story::new(&["--pack-size", "16KiB", "--frame-length", "4096"]);
    s.files("a", 200, 8, 1);
    let b1 = s.backup();
    s.rotate();
    s.files("b", 60, 8, 2);
    let b2 = s.backup();
    s.rotate();
    let snaps = vec![b1, b2];
    assert_eq!(s.chunks_per_version(), BTreeMap::from([(1, 200), (2, 60)]));
    let contents = chunk_contents(&s.open());

    let reencrypt = ["--key-version", "alias/t/v1"];
    let full = time_on_copy(&s, "reencrypt", &reencrypt);
    let killed = kill_repeatedly(&s, "reencrypt", &reencrypt, full);
    let r = s.json(&s.on_repo("reencrypt", &reencrypt));
    assert_eq!(r["remaining"], 0, "{r}");
    assert_eq!(r["retired"], true, "{r}");
    assert!(!s.versions_in_use().contains(&1));
    s.restores_match(&snaps);
    // Chunk IDs are content identities: whatever the kills left, each chunk
    // counts once, under v3 now.
    assert_eq!(s.chunks_per_version(), BTreeMap::from([(2, 60), (3, 200)]));
    // Copies that killed runs wrote and nothing indexed go at prune.
    s.ok(&s.on_repo("prune", &["--grace", "0"]));
    let stats = s.json(&s.on_repo("stats", &[]));
    assert_eq!(stats["duplicated"], 0);

    let full = time_on_copy(&s, "rewrap", &[]);
    let killed_rewrap = kill_repeatedly(&s, "rewrap", &[], full);
    s.ok(&s.on_repo("rewrap", &[]));
    assert_eq!(s.chunks_per_version(), BTreeMap::from([(3, 260)]));
    assert_eq!(s.versions_in_use(), [3]);
    s.ok(&s.on_repo("prune", &["--grace", "0"]));
    let stats = s.json(&s.on_repo("stats", &[]));
    assert_eq!(stats["duplicated"], 0);
    assert_eq!(chunk_contents(&s.open()), contents, "contents unchanged");
    s.restores_match(&snaps);
    s.ok(&s.on_repo("verify", &["--read-data"]));
    assert!(
        killed + killed_rewrap >= 4,
        "most runs must be killed mid-way ({killed} reencrypt, {killed_rewrap} rewrap)"
    );
}
