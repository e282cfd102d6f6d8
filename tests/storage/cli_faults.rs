//! Faults under whole commands, through the built binary: SeaweedFS killed
//! (SIGKILL) in the middle of a backup and restarted; a backup through a
//! proxy that answers 500/503, stalls past the timeout and drops
//! connections, and one whose store goes fully down mid-run; two hosts
//! backing up beside forget + prune. Each time: a backup either completes
//! correctly or exits non-zero and leaves no snapshot, nothing stored
//! before is lost, and verify --read-data is clean afterwards.

use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use envarc::repo::storage::{open_with, Storage};

use crate::cli::{write_tree, Cli, ALIAS};
use crate::fault_proxy::{FaultProxy, Plan};
use crate::{test_options, util};

/// Waits until `store` holds at least `n` objects under `data/` (packs on
/// their way), or `child` ended; whether it did not end.
fn wait_for_packs(store: &dyn Storage, n: usize, child: &mut Child) -> bool {
    let until = Instant::now() + Duration::from_secs(120);
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        if store.list("data/").map_or(0, |l| l.len()) >= n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("no packs appeared in 120 s");
}

/// Waits for `child` at most `limit`; exit code and stderr.
fn finish(mut child: Child, limit: Duration) -> (i32, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.code().unwrap_or(-1), err);
        }
        if started.elapsed() > limit {
            child.kill().unwrap();
            panic!("the command ran past {limit:?}: its retries are not bounded");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn spawn_backup(c: &Cli, url: &str, host: &str, path: &std::path::Path) -> Child {
    c.process(&["backup", "-r", url, "--host", host, path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn seaweedfs_killed_mid_backup_then_the_rerun_completes() {
    crate::init_env();
    let Some(bin) = crate::seaweedfs::find_weed("SeaweedFS killed mid-backup") else {
        return;
    };
    let mut weed = crate::seaweedfs::SeaweedFs::start(&bin);
    weed.create_bucket("kill-backup");
    let url = format!("s3:{}/kill-backup/repo", weed.s3_endpoint());
    let mut c = Cli::new();
    c.env.push(("ENVARC_REMOTE_TIMEOUT".into(), "2".into()));
    // Against a dead server every request runs out of attempts; three keep
    // the wait short (the default bound is the retry tests' to show).
    c.env.push(("ENVARC_REMOTE_RETRIES".into(), "3".into()));
    // The killed backup's lock stays behind; prune goes on once it is stale.
    c.env.push(("ENVARC_LOCK_STALE_AFTER".into(), "10".into()));
    write_tree(&c.src, 3, 48 << 20);
    c.ok(&c.on("init", &url, &["--key", ALIAS, "--pack-size", "2M"]));
    let store = open_with(&url, &test_options()).unwrap();

    let mut child = spawn_backup(&c, &url, "h", &c.src);
    assert!(
        wait_for_packs(&*store, 3, &mut child),
        "the backup ended before the kill: give it more data"
    );
    weed.kill();
    let (code, err) = finish(child, Duration::from_secs(150));
    assert_ne!(code, 0, "a backup to a killed server succeeded: {err}");
    assert!(
        err.contains("after 3 attempts"),
        "ENVARC_REMOTE_RETRIES=3 not honoured: {err}"
    );
    assert!(!err.contains(crate::seaweedfs::SECRET_KEY), "{err}");
    eprintln!("backup to the killed server: exit {code}: {}", err.trim());

    // The rerun gets the default retries: a restarted server takes a few
    // seconds to answer again.
    c.env.retain(|(k, _)| k != "ENVARC_REMOTE_RETRIES");
    weed.restart();
    assert!(
        c.snapshot_ids(&url).is_empty(),
        "a snapshot after a failed backup"
    );
    let v = c.backup(&url, "h");
    assert_eq!(v["errors"], 0, "{v}");
    // The packs of the failed run that were whole are not stored twice.
    assert!(
        v["chunks_added"].as_u64().unwrap() > 0,
        "the rerun added nothing: {v}"
    );
    c.verify_clean(&url);
    c.restore_matches(&url, "latest");
    // What the failed run left without an index is prune's to remove.
    let p = c.json(&c.on("prune", &url, &[]));
    eprintln!("prune after the rerun: {p}");
    c.verify_clean(&url);
}

/// The snapshots the store lists, straight from the server.
fn snapshot_count(c: &Cli, direct: &str) -> usize {
    c.snapshot_ids(direct).len()
}

#[test]
fn backups_through_a_faulty_proxy_complete_or_leave_no_snapshot() {
    let Some(t) = crate::weed_target() else {
        return;
    };
    let port = crate::weed_server().unwrap().s3_port();
    let direct = t.url("cli-proxy");
    let mut c = Cli::new();
    c.env.push(("ENVARC_REMOTE_TIMEOUT".into(), "1.5".into()));
    write_tree(&c.src, 5, 3 << 20);
    c.ok(&c.on("init", &direct, &["--key", ALIAS, "--pack-size", "1M"]));
    let first = c.backup(&direct, "h")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    // Mixed faults: each run completes, or fails with no snapshot.
    let (mut done, mut failed) = (0, 0);
    for seed in 1..=3u64 {
        let proxy = FaultProxy::http(
            port,
            Plan {
                status_500: 4,
                status_503: 4,
                stall: 2,
                stall_for: Duration::from_millis(2500),
                drop: 3,
                drop_answer: 3,
                seed,
            },
        );
        let url = direct.replace(&port.to_string(), &proxy.port.to_string());
        let name = format!("round{seed}");
        std::fs::write(c.src.join(&name), util::random_bytes(seed, 2 << 20)).unwrap();
        let before = snapshot_count(&c, &direct);
        let child = spawn_backup(&c, &url, "h", &c.src);
        let (code, err) = finish(child, Duration::from_secs(300));
        let after = snapshot_count(&c, &direct);
        eprintln!("round {seed}: exit {code}, faults {:?}", proxy.counts);
        assert!(proxy.counts.faults() > 0, "no fault happened");
        if code == 0 {
            done += 1;
            assert_eq!(after, before + 1, "{err}");
        } else {
            failed += 1;
            assert_eq!(after, before, "a failed backup left a snapshot: {err}");
        }
    }
    eprintln!("{done} completed, {failed} failed");

    // The store goes down mid-run (every request 503): exit non-zero, no
    // snapshot, within the retry bound.
    let proxy = FaultProxy::http(
        port,
        Plan {
            status_500: 0,
            status_503: 100,
            stall: 0,
            stall_for: Duration::ZERO,
            drop: 0,
            drop_answer: 0,
            seed: 4,
        },
    );
    proxy.enabled.store(false, Ordering::SeqCst);
    let url = direct.replace(&port.to_string(), &proxy.port.to_string());
    // Every request fails from here on: fail after 3 attempts, not 8.
    c.env.push(("ENVARC_REMOTE_RETRIES".into(), "3".into()));
    std::fs::write(c.src.join("outage"), util::random_bytes(40, 24 << 20)).unwrap();
    let before = snapshot_count(&c, &direct);
    let store = open_with(&direct, &test_options()).unwrap();
    let packs = store.list("data/").unwrap().len();
    let mut child = spawn_backup(&c, &url, "h", &c.src);
    assert!(
        wait_for_packs(&*store, packs + 2, &mut child),
        "ended too soon"
    );
    proxy.enabled.store(true, Ordering::SeqCst);
    let (code, err) = finish(child, Duration::from_secs(300));
    assert_ne!(code, 0, "a backup through a dead store succeeded");
    assert_eq!(snapshot_count(&c, &direct), before, "{err}");
    assert!(
        err.contains("503") || err.to_lowercase().contains("unavailable"),
        "the error does not say what the store answered: {err}"
    );
    eprintln!("outage: exit {code}: {}", err.trim());

    // Nothing stored before is lost: every snapshot verifies and the
    // first one still restores; a direct backup then completes.
    c.verify_clean(&direct);
    assert!(c.snapshot_ids(&direct).contains(&first));
    c.backup(&direct, "h");
    c.verify_clean(&direct);
    c.restore_matches(&direct, "latest");
}

#[test]
fn two_hosts_back_up_beside_forget_and_prune() {
    let Some(t) = crate::weed_target() else {
        return;
    };
    let url = t.url("cli-two-hosts");
    let c = Cli::new();
    c.ok(&c.on("init", &url, &["--key", ALIAS, "--pack-size", "1M"]));
    let trees: Vec<_> = ["a", "b"]
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let d = c.dir.path().join(format!("host-{h}"));
            std::fs::create_dir_all(&d).unwrap();
            write_tree(&d, 20 + i as u64, 2 << 20);
            (h.to_string(), d)
        })
        .collect();
    let wait = ["--retry-lock", "120s"];
    std::thread::scope(|s| {
        for (host, dir) in &trees {
            let (c, url) = (&c, &url);
            s.spawn(move || {
                for round in 0..4u64 {
                    // Each round shares most data with the other host's.
                    std::fs::write(
                        dir.join(format!("r{round}")),
                        util::random_bytes(round, 600_000),
                    )
                    .unwrap();
                    let mut a = vec![wait[0], wait[1]];
                    a.extend([
                        "backup",
                        "-r",
                        url,
                        "--host",
                        host.as_str(),
                        dir.to_str().unwrap(),
                    ]);
                    c.ok(&a);
                }
            });
        }
        let (c, url) = (&c, &url);
        s.spawn(move || {
            for _ in 0..4 {
                std::thread::sleep(Duration::from_millis(300));
                let mut a = vec![wait[0], wait[1]];
                a.extend(["forget", "-r", url, "--keep-last", "2", "--prune"]);
                c.ok(&a);
            }
        });
    });
    let v = c.verify_clean(&url);
    eprintln!("after two hosts and prunes: {v}");
    // Each host's latest snapshot restores its tree as it is now.
    let snaps = c.json(&c.on("snapshots", &url, &[]));
    for (host, dir) in &trees {
        let latest = crate::cli::snapshots_of(&snaps)
            .iter()
            .rfind(|s| s["host"] == host.as_str())
            .unwrap_or_else(|| panic!("no snapshot of host {host}: {snaps}"));
        let target = c.dir.path().join(format!("restored-{host}"));
        let id = latest["id"].as_str().unwrap();
        c.ok(&c.on("restore", &url, &["--target", target.to_str().unwrap(), id]));
        util::tree::assert_same_tree(dir, &target.join(dir.strip_prefix("/").unwrap()), false);
    }
}
