//! Issue 19, a user's first week: `-q` still names every failed file, and a
//! signal stops a run cleanly (its lock and temporary files removed, exit
//! 130, a line saying what was saved); prune says what its grace kept.

use std::path::Path;
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use crate::support::Story;
use crate::util::tree;

/// Files below `dir` while a run may still add and remove some.
fn names_under(dir: &Path) -> Vec<String> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(dir).unwrap().display().to_string())
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Flips bytes inside the first pack: every file with a chunk there fails.
fn damage_a_pack(repo: &Path) {
    let packs = tree::files(&repo.join("data"));
    let p = repo.join("data").join(&packs[0]);
    let mut b = std::fs::read(&p).unwrap();
    for x in &mut b[200..232] {
        *x ^= 0xff;
    }
    std::fs::write(&p, b).unwrap();
}

#[test]
fn quiet_runs_still_name_each_failure_and_count_them() {
    let s = Story::new(&[]);
    std::fs::write(s.src.join("only"), crate::util::random_bytes(1, 50_000)).unwrap();
    s.backup();
    damage_a_pack(&s.repo);
    let target = s.dir.path().join("out");
    let o = s
        .cmd(&s.on_repo("restore", &["-q", "latest", "-t", target.to_str().unwrap()]))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(o.stdout.is_empty(), "-q printed on stdout");
    assert!(
        err.contains("/only: "),
        "the failed file is not named: {err}"
    );
    assert!(
        err.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("envarc: 1 entry failed"),
        "{err}"
    );

    let o = s
        .cmd(&s.on_repo("verify", &["-q", "--read-data"]))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(4), "{err}");
    assert!(err.contains("envarc: error: chunk "), "{err}");
    assert!(err.contains("1 entry failed verification"), "{err}");
    // Named once: not also as a warning before the error line.
    let id = &err.split("envarc: error: chunk ").nth(1).unwrap()[..8];
    assert_eq!(
        err.lines().filter(|l| l.contains(id)).count(),
        1,
        "chunk {id} named more than once: {err}"
    );
}

#[test]
fn include_that_matches_nothing_warns_and_exits_3() {
    let s = Story::new(&[]);
    s.files("a", 3, 4, 1);
    s.backup();
    let target = s.dir.path().join("out");
    let o = s
        .cmd(&s.on_repo(
            "restore",
            &[
                "-q",
                "latest",
                "-t",
                target.to_str().unwrap(),
                "-i",
                "/no/such/*",
            ],
        ))
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains("--include /no/such/* matched nothing"),
        "{err}"
    );
}

/// Starts `args` and waits until a pack is durable in the repository (the
/// run is mid-way) or it ended.
fn start_until_a_pack(s: &Story, args: &[&str], data: &Path) -> Child {
    let child = s.process(args).spawn().unwrap();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(60) {
        // Durable: renamed into place (a temporary pack may still be empty).
        let packs = names_under(data).iter().any(|n| !n.contains("envarc-tmp"));
        if packs {
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

fn signal(child: &Child, sig: &str) {
    let st = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
}

fn leftovers(repo: &Path) -> Vec<String> {
    names_under(repo)
        .into_iter()
        .filter(|p| p.starts_with("locks/") || p.contains("envarc-tmp"))
        .collect()
}

/// Enough data in small packs that a backup takes a while.
fn big_story() -> Story {
    let s = Story::new(&["--pack-size", "64KiB"]);
    s.files("big", 64, 512, 3);
    s
}

#[test]
fn sigint_stops_a_backup_cleanly_and_the_next_one_reuses_its_packs() {
    let s = big_story();
    let src = s.src.to_str().unwrap().to_string();
    let args = s.on_repo("backup", &["--host", "h", &src]);
    let child = start_until_a_pack(&s, &args, &s.repo.join("data"));
    signal(&child, "-INT");
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("envarc: interrupted: "), "{err}");
    assert!(err.contains("no snapshot saved"), "{err}");
    assert!(!err.contains("error"), "{err}");
    assert_eq!(leftovers(&s.repo), Vec::<String>::new());
    assert!(names_under(&s.repo.join("snapshots")).is_empty());

    // The packs it wrote are indexed: the next backup does not write them
    // again and finds no stale lock.
    let o = s.cmd(&args).arg("--json").output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("stale"), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["chunks_deduplicated"].as_u64().unwrap() > 0, "{v}");
    let p = s.json(&s.on_repo("prune", &["--dry-run", "--grace", "0"]));
    assert_eq!(p["chunks_unused"], 0, "{p}");
}

#[test]
fn sigterm_stops_a_restore_without_half_written_files() {
    let s = big_story();
    s.backup();
    let target = s.dir.path().join("out");
    let args = s.on_repo("restore", &["latest", "-t", target.to_str().unwrap()]);
    let child = s.process(&args).spawn().unwrap();
    let t0 = Instant::now();
    while !target.exists() && t0.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(2));
    }
    signal(&child, "-TERM");
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    if o.status.code() == Some(0) {
        eprintln!("the restore ended before the signal; nothing to check");
        return;
    }
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(err.contains("envarc: interrupted: "), "{err}");
    assert_eq!(leftovers(&s.repo), Vec::<String>::new());
    let temps: Vec<_> = names_under(&target)
        .into_iter()
        .filter(|p| p.ends_with(".envarc-tmp"))
        .collect();
    assert!(temps.is_empty(), "{temps:?}");
    // The same command continues.
    s.ok(&args);
}

#[test]
fn prune_says_what_the_grace_period_kept_and_when_it_is_freeable() {
    let s = big_story();
    let src = s.src.to_str().unwrap().to_string();
    let args = s.on_repo("backup", &["--host", "h", &src]);
    let mut child = start_until_a_pack(&s, &args, &s.repo.join("data"));
    // A killed run cannot clean up: what it left is young.
    child.kill().unwrap();
    child.wait().unwrap();
    for l in tree::files(&s.repo.join("locks")) {
        std::fs::remove_file(s.repo.join("locks").join(l)).unwrap();
    }
    let out = s.ok(&s.on_repo("prune", &["--dry-run"]));
    assert!(out.contains("younger than the grace period (1h)"), "{out}");
    assert!(
        out.contains("freeable in 6") || out.contains("freeable in 5"),
        "{out}"
    );
    let p = s.json(&s.on_repo("prune", &["--dry-run"]));
    assert!(p["bytes_kept_recent"].as_u64().unwrap() > 0, "{p}");
    let secs = p["kept_recent_freeable_in_s"].as_u64().unwrap();
    assert!(secs > 3000 && secs <= 3600, "{p}");
}
