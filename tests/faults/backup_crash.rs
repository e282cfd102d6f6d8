//! Crash safety and concurrency of `envarc backup`: SIGKILL at several points
//! of a run, then a backup that succeeds, with every snapshot's chunks
//! present and decrypting; two backups into one repository at once.

use crate::{repo_support, util};

use std::process::{Command, Stdio};
use std::time::Instant;

use envarc::progress::Silent;
use envarc::repo::LockKind;
use repo_support::{many_files, verify_all, TestRepo};

fn backup_cmd(r: &TestRepo, src: &std::path::Path, host: &str) -> Command {
    let mut c = Command::new(util::envarc_path());
    c.args(["backup", "-q", "-r"])
        .arg(&r.repo)
        .arg("--raw-key-file")
        .arg(&r.key)
        .args(["--host", host])
        .arg(src)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// A few hundred small files and a few large ones (stored alone).
/// A few hundred small files and a few large ones, all new for `seed`
/// (deduplication stores nothing for content the repository has).
fn tree(r: &TestRepo, seed: u64) -> std::path::PathBuf {
    let src = r.dir.path().join(format!("src{seed}"));
    many_files(&src, 300, 24, seed * 1000);
    for i in 0..3 {
        std::fs::write(
            src.join(format!("large{i}")),
            util::random_bytes(seed * 1000 + 100 + i, 1 << 20),
        )
        .unwrap();
    }
    src
}

#[test]
fn sigkill_at_several_points_then_backup_again() {
    let r = TestRepo::init(&["--pack-size", "256KiB"]);
    let src = tree(&r, 1);
    // A complete run first, to know how long one takes.
    let t0 = Instant::now();
    assert!(backup_cmd(&r, &src, "full").status().unwrap().success());
    let full = t0.elapsed();
    let mut killed = 0;
    for k in 1..=6u32 {
        // A new host name each time: no parent, so every run reads everything.
        let fresh = tree(&r, 1 + u64::from(k));
        let mut child = backup_cmd(&r, &fresh, &format!("kill{k}")).spawn().unwrap();
        std::thread::sleep(full * k / 7);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
    }
    eprintln!("one backup took {full:?}; {killed} of 6 runs were killed before they ended");
    assert!(
        killed >= 3,
        "most runs must be killed mid-way ({full:?} per run)"
    );

    let out = backup_cmd(&r, &src, "after").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let repo = r.open();
    // The killed runs left data behind that no index lists (prune's job)...
    let indexed: std::collections::HashSet<_> = repo
        .load_index()
        .unwrap()
        .packs()
        .iter()
        .map(|p| p.id)
        .collect();
    let stray = repo
        .list_packs()
        .unwrap()
        .iter()
        .filter(|p| !indexed.contains(&p.id))
        .count();
    eprintln!("{stray} packs of killed runs are not indexed");
    assert!(stray > 0, "some runs were killed after writing packs");
    // ...but every snapshot is complete.
    let (snapshots, messages) = verify_all(&repo);
    assert!(
        snapshots >= 2,
        "the first and the last runs saved snapshots"
    );
    assert!(messages >= 2 * 303);
    // Every lock of a killed run is recognised as stale: an exclusive lock
    // (as prune takes) can be had now.
    let lock = repo
        .lock(LockKind::Exclusive, &Silent)
        .expect("no live lock remains");
    drop(lock);
    // No lock object is left; a run killed while it wrote its lock may have
    // left the lock's temporary file, which is a leftover like any other.
    let (temps, locks): (Vec<_>, Vec<_>) = util::dir_names(&r.repo.join("locks"))
        .into_iter()
        .partition(|n| n.starts_with('.'));
    assert!(locks.is_empty(), "{locks:?}");
    let leftovers: Vec<_> = repo
        .storage()
        .leftovers()
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    for t in &temps {
        assert!(
            leftovers.contains(&format!("locks/{t}")),
            "{t}: {leftovers:?}"
        );
    }
    // Prune (exclusive lock, no grace) then removes what the killed runs
    // left, and the snapshots stay complete.
    let out = r
        .cmd("prune")
        .args(["--grace", "0", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = util::stdout_json(&out);
    assert_eq!(report["unindexed_packs_deleted"], stray as u64, "{report}");
    assert_eq!(
        report["temporary_files_deleted"],
        leftovers.len() as u64,
        "{report}"
    );
    let repo = r.open();
    assert!(repo.storage().leftovers().unwrap().is_empty());
    assert!(util::dir_names(&r.repo.join("locks")).is_empty());
    assert_eq!(
        repo.list_packs().unwrap().len(),
        repo.load_index().unwrap().packs().len()
    );
    assert_eq!(verify_all(&repo), (snapshots, messages));
}

#[test]
fn two_backups_at_once_both_complete() {
    let r = TestRepo::init(&["--pack-size", "256KiB"]);
    let a = r.dir.path().join("a");
    let b = r.dir.path().join("b");
    many_files(&a, 120, 24, 2);
    many_files(&b, 120, 24, 3);
    let ca = backup_cmd(&r, &a, "h").spawn().unwrap();
    let cb = backup_cmd(&r, &b, "h").spawn().unwrap();
    for c in [ca, cb] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let repo = r.open();
    assert_eq!(verify_all(&repo), (2, 240));
    let snaps = repo.snapshots().unwrap();
    let mut paths: Vec<_> = snaps.iter().map(|(_, m)| m.paths.clone()).collect();
    paths.sort();
    assert_eq!(paths.len(), 2);
    assert_ne!(paths[0], paths[1]);
    // While a shared lock is held, an exclusive one is refused (exit code 6 class).
    let shared = repo.lock(LockKind::Shared, &Silent).unwrap();
    let refused = repo.lock(LockKind::Exclusive, &Silent);
    assert!(matches!(refused, Err(envarc::Error::Locked(_))));
    drop(shared);
}
