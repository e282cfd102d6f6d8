//! SIGKILL during rewrap, reencrypt and prune of a keyring repository
//! whose key rotates: at seeded random points (verify clean after every
//! kill) and at points spread over a run; rerun to completion, nothing is
//! lost and every snapshot restores as it was backed up.

use crate::{fault_support, support, util};

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use fault_support::{iterations, seed, stderr};
use rand::{Rng, SeedableRng};
use support::{chunk_contents, Story};

use super::{kill_spread, run_and_kill};

/// A [`Story`] (keyring with `alias/t`, repository) in /dev/shm where there
/// is one: a SIGKILL test needs no fsync to reach the disk, and this one
/// makes hundreds of commits.
fn story_in_memory(extra: &[&str]) -> Story {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("envarc-test.")
            .tempdir_in(shm)
            .unwrap()
    } else {
        util::tempdir()
    };
    Story::in_folder(dir, extra)
}

/// Runs to the end and requires success.
fn must(s: &Story, args: &[&str]) {
    let out = s.process(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

/// Seeded kills of rewrap, reencrypt and prune on a keyring repository
/// whose key rotates: after every kill `verify --read-data` is clean; rerun
/// to completion, every snapshot restores as it was backed up.
#[test]
fn sigkill_during_rewrap_reencrypt_and_prune_loses_nothing() {
    if !["rewrap", "reencrypt", "prune", "verify", "restore"]
        .iter()
        .all(|c| fault_support::has_command(c))
    {
        eprintln!("SKIPPED kill/rewrite: this build has no rewrap/reencrypt/prune/verify/restore");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("kill/rewrite", 9));
    let s = story_in_memory(&["--pack-size", "16KiB", "--frame-length", "4096"]);
    let repo = s.repo.to_str().unwrap().to_string();
    s.files("a", 60, 8, 1);
    let mut snaps = vec![s.backup()];
    s.rotate();
    s.files("b", 20, 8, 2);
    snaps.push(s.backup());
    let mut version = 2; // the current backing key of alias/t
    let n = iterations(10, 150);
    let mut figures = Vec::new();
    for command in ["reencrypt", "rewrap", "prune"] {
        // Gives the command work to do: everything under an older version
        // (reencrypt, rewrap), or old copies no snapshot uses (prune).
        let make_work = |version: &mut u32| {
            // An automatic rotation, one year further on each time (on-demand
            // rotations are limited to 10 per key).
            let as_of = format!("{}-06-01", 2030 + *version);
            s.ok(&["key", "rotate-due", "-q", "--as-of", &as_of, "--force"]);
            *version += 1;
            if command == "prune" {
                let v = format!("alias/t/v{}", *version - 1);
                must(&s, &["reencrypt", "-q", "-r", &repo, "--key-version", &v]);
            }
        };
        make_work(&mut version);
        let args = |version: u32| -> Vec<String> {
            let mut a = vec![command.to_string(), "-q".into(), "-r".into(), repo.clone()];
            match command {
                "reencrypt" => {
                    a.extend(["--key-version".into(), format!("alias/t/v{}", version - 1)])
                }
                "prune" => a.extend(["--grace".into(), "0".into()]),
                _ => {}
            }
            a
        };
        let mut takes = Duration::from_millis(100);
        let (mut killed, mut runs) = (0, 0);
        for i in 0..4 * n {
            if killed == n {
                break;
            }
            runs += 1;
            let a = args(version);
            let argv: Vec<&str> = a.iter().map(String::as_str).collect();
            let at = (i % 4 != 0).then(|| takes.mul_f64(rng.gen_range(0.0..1.0)));
            let (k, status, err) = run_and_kill(s.process(&argv), at, &mut takes);
            assert!(k || status.success(), "{argv:?} failed by itself: {err}");
            killed += k as usize;
            if k {
                must(&s, &["verify", "-q", "-r", &repo, "--read-data"]);
            } else {
                make_work(&mut version);
            }
        }
        let a = args(version);
        must(&s, &a.iter().map(String::as_str).collect::<Vec<_>>());
        must(&s, &["verify", "-q", "-r", &repo, "--read-data"]);
        figures.push(format!(
            "{command}: {runs} runs, {killed} killed (a run takes {takes:?})"
        ));
        assert_eq!(killed, n, "{command}: {n} runs are killed mid-way");
    }
    s.restores_match(&snaps);
    eprintln!(
        "kill/rewrite: {}; every snapshot restores as backed up",
        figures.join("; ")
    );
}

/// Runs `args` to the end on a copy of the repository, to know how long a
/// whole run takes. The copy has the repository's ID, so it is opened with
/// pins of its own: its higher config generation must not reach the pins
/// the original is checked against (that would read as a rollback).
fn time_on_copy(s: &Story, sub: &str, more: &[&str]) -> Duration {
    let copy = s.dir.path().join(format!("copy-{sub}"));
    util::tree::copy(&s.repo, &copy);
    let mut args = vec![sub, "-q", "-r", copy.to_str().unwrap()];
    args.extend_from_slice(more);
    let t0 = Instant::now();
    let out = s
        .process(&args)
        .env("ENVARC_PINS", s.dir.path().join("pins-of-the-copy.json"))
        .output()
        .unwrap();
    crate::util::assert_success(&out);
    let took = t0.elapsed();
    std::fs::remove_dir_all(&copy).unwrap();
    took
}

/// Starts `args` five times, killing each run at a later point; returns how
/// many runs were killed before they ended.
fn kill_repeatedly(s: &Story, sub: &str, more: &[&str], full: Duration) -> u32 {
    let mut args = vec![sub, "-q", "-r", s.repo.to_str().unwrap()];
    args.extend_from_slice(more);
    let killed = kill_spread(5, full / 8, |_| s.process(&args));
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
