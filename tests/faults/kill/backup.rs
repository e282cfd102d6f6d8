//! SIGKILL during `envarc backup`: at seeded random points, and at points
//! spread over a run; then a backup that succeeds, every snapshot complete,
//! and prune removing what the killed runs left.

use crate::{fault_support, repo_support, util};

use std::time::Instant;

use envarc::progress::Silent;
use envarc::repo::LockKind;
use fault_support::{check_repo, iterations, seed, stderr};
use rand::{Rng, SeedableRng};
use repo_support::{many_files, verify_all, TestRepo};

use super::{backup_cmd, kill_spread, run_and_kill, time_of};

#[test]
fn sigkill_during_backups_leaves_a_repository_that_verifies() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("kill/backup", 8));
    let r = TestRepo::init(&["--pack-size", "128KiB", "--chunk-size", "256KiB"]);
    let src = r.dir.path().join("src");
    many_files(&src, 150, 12, 5);
    for i in 0..2 {
        std::fs::write(
            src.join(format!("large{i}")),
            util::random_bytes(90 + i, 600 << 10),
        )
        .unwrap();
    }
    let mut full = time_of(|| backup_cmd(&r, &src, "first"));
    let mut incremental = time_of(|| backup_cmd(&r, &src, "first"));
    // Runs until `n` were killed (a run may end before its kill point).
    let n = iterations(10, 300);
    let (mut killed, mut runs) = (0, 0);
    for i in 0..4 * n {
        if killed == n {
            break;
        }
        runs += 1;
        // Half the runs read everything (a new host: no parent), half are
        // incremental on the first snapshot (reading only what changed).
        let host = if i % 2 == 0 {
            format!("kill{i}")
        } else {
            "first".to_string()
        };
        if i % 2 == 1 {
            let f = src.join(format!("d{}/f{:04}", i % 7, i % 150 / 7 * 7 + i % 7));
            if f.exists() {
                std::fs::write(&f, util::random_bytes(1000 + i as u64, 2048)).unwrap();
            }
        }
        let takes = if i % 2 == 0 {
            &mut full
        } else {
            &mut incremental
        };
        // Every fifth run is not killed: it times a run, and shows that the
        // command completes after the kills before it.
        let at = (i % 5 != 4).then(|| takes.mul_f64(rng.gen_range(0.0..1.0)));
        let (k, status, err) = run_and_kill(backup_cmd(&r, &src, &host), at, takes);
        assert!(k || status.success(), "run {i} failed by itself: {err}");
        killed += k as usize;
        // Every snapshot present after a kill loads.
        r.open().snapshots().expect("snapshots load after a kill");
    }
    let out = backup_cmd(&r, &src, "after").output().unwrap();
    assert!(
        out.status.success(),
        "the backup after the kills: {}",
        stderr(&out)
    );
    let (snapshots, messages) = check_repo(&r);
    eprintln!(
        "kill/backup: {runs} runs, {killed} killed (a run takes {full:?}, an incremental one \
         {incremental:?}); then {snapshots} snapshots with {messages} files verify"
    );
    assert_eq!(killed, n, "{n} runs are killed mid-way");
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
    // A new host name each time: no parent, so every run reads everything.
    let killed = kill_spread(6, full / 7, |k| {
        let fresh = tree(&r, 1 + u64::from(k));
        backup_cmd(&r, &fresh, &format!("kill{k}"))
    });
    eprintln!("one backup took {full:?}; {killed} of 6 runs were killed before they ended");
    assert!(
        killed >= 3,
        "most runs must be killed mid-way ({full:?} per run)"
    );

    let out = backup_cmd(&r, &src, "after").output().unwrap();
    crate::util::assert_success(&out);
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
    crate::util::assert_success(&out);
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
