//! Disk full: a repository and a keyring on a small tmpfs that fills up.
//! A run that hits ENOSPC must fail with a clear error and leave everything
//! written before it readable, with no snapshot pointing at missing data and
//! no temporary file behind; once space is freed, the next run succeeds.
//! Skipped, with the reason printed, where this process may not mount.

use crate::{fault_support, repo_support, util};

use std::path::Path;

use fault_support::{backup, check_repo, fill, free_bytes, stderr, Mount};
use repo_support::{many_files, TestRepo};

/// A mount point in its own temporary folder: declare the returned values
/// before anything stored on the mount, so the mount goes first.
fn small_fs(test: &str, size: &str) -> Option<(tempfile::TempDir, Mount)> {
    let dir = util::tempdir();
    match Mount::tmpfs(&dir.path().join("mnt"), size) {
        Ok(m) => Some((dir, m)),
        Err(why) => {
            eprintln!("SKIPPED {test}: cannot mount a small file system here ({why})");
            None
        }
    }
}

fn snapshot_count(repo: &Path) -> usize {
    util::dir_names(&repo.join("snapshots"))
        .iter()
        .filter(|n| !n.starts_with('.'))
        .count()
}

fn assert_enospc(out: &std::process::Output, what: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(
        err.contains("No space left on device"),
        "{what}: the error names the cause: {err}"
    );
    eprintln!("{what}: {}", err.trim());
}

/// Writes a filler that leaves about `leave` bytes free.
fn fill_leaving(dir: &Path, leave: u64) {
    let free = free_bytes(dir);
    let n = free.saturating_sub(leave);
    let f = std::fs::File::create(dir.join("filler")).unwrap();
    f.set_len(0).unwrap();
    std::io::Write::write_all(&mut &f, &vec![0x5Au8; n as usize]).unwrap();
    f.sync_all().unwrap();
}

#[test]
fn backup_into_a_full_disk_fails_cleanly_and_resumes_after_space_is_freed() {
    let Some((_mdir, mnt)) = small_fs("backup_into_a_full_disk", "16m") else {
        return;
    };
    let r = TestRepo::init_at(
        util::tempdir(),
        mnt.path.join("repo"),
        &["--pack-size", "256KiB", "--chunk-size", "256KiB"],
    );
    let a = r.dir.path().join("a");
    let b = r.dir.path().join("b");
    many_files(&a, 40, 16, 1);
    many_files(&b, 60, 24, 2);
    for i in 0..4 {
        std::fs::write(
            b.join(format!("large{i}")),
            util::random_bytes(50 + i, 1 << 20),
        )
        .unwrap();
    }
    // Files changed less than 50 ms before a backup are read again by the
    // next one; case 3 needs them unchanged.
    repo_support::settle();
    let first = backup(&r, "a", &[&a]);
    assert!(first.status.success(), "{}", stderr(&first));

    // 1. Space runs out in the middle of a run: packs written, then ENOSPC.
    fill_leaving(&mnt.path, 1536 * 1024);
    let out = backup(&r, "b", &[&b]);
    assert_enospc(&out, "a backup that fills the disk");
    assert_eq!(
        snapshot_count(&r.repo),
        1,
        "no snapshot from the failed run"
    );
    assert!(
        r.open().storage().leftovers().unwrap().is_empty(),
        "no temporary files left"
    );
    assert_eq!(check_repo(&r), (1, 40));

    // 2. The disk is already full: the run fails at its first write.
    std::fs::remove_file(mnt.path.join("filler")).unwrap();
    fill(&mnt.path);
    let out = backup(&r, "a-again", &[&a]);
    assert_enospc(&out, "a backup into a full disk");
    // 3. Nothing changed since the parent: the run writes only its lock file
    //    (one page, left free) and the snapshot, and the snapshot write fails.
    let filler = mnt.path.join("filler");
    let len = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&filler)
        .unwrap()
        .set_len(len - len % 4096 - 4096)
        .unwrap();
    let out = backup(&r, "a", &[&a]);
    assert!(
        stderr(&out).contains("snapshots/"),
        "the snapshot write is what fails: {}",
        stderr(&out)
    );
    assert_enospc(&out, "a snapshot write on a full disk");
    assert_eq!(snapshot_count(&r.repo), 1);
    assert!(r.open().storage().leftovers().unwrap().is_empty());
    assert_eq!(check_repo(&r), (1, 40));

    // Space freed: the same backups succeed, and everything verifies.
    std::fs::remove_file(mnt.path.join("filler")).unwrap();
    for (host, src) in [("b", &b), ("a", &a)] {
        let out = backup(&r, host, &[src]);
        assert!(
            out.status.success(),
            "after freeing space: {}",
            stderr(&out)
        );
    }
    assert_eq!(check_repo(&r), (3, 40 + 64 + 40));
}

#[test]
fn keyring_write_on_a_full_disk_keeps_every_earlier_change() {
    let Some((_mdir, mnt)) = small_fs("keyring_write_on_a_full_disk", "4m") else {
        return;
    };
    let home = util::tempdir();
    let keyring = mnt.path.join("cfg/keyring");
    let key = |args: &[&str]| {
        util::envarc()
            .current_dir(home.path())
            .env("ENVARC_KEYRING", &keyring)
            .env("ENVARC_PASSPHRASE", "pw")
            .env("ENVARC_ARGON2_PARAMS", "m=8,t=1,p=1")
            .arg("--json")
            .arg("key")
            .args(args)
            .output()
            .unwrap()
    };
    let ok = |args: &[&str]| {
        let out = key(args);
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        util::stdout_json(&out)
    };
    let a = ok(&["create", "--alias", "alias/a"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&["create", "--alias", "alias/b"]);
    ok(&["rotate-on-demand", &a]);

    fill(&mnt.path);
    assert_enospc(
        &key(&["create", "--alias", "alias/c"]),
        "key create on a full disk",
    );
    assert_enospc(
        &key(&["rotate-on-demand", &a]),
        "key rotation on a full disk",
    );
    // Still opens, with every change made before the disk filled.
    let list = ok(&["list"]);
    assert_eq!(list["Keys"].as_array().unwrap().len(), 2, "{list}");
    let rotations = ok(&[
        "rotations",
        "alias/a",
        "--include-key-material",
        "ALL_KEY_MATERIAL",
    ]);
    assert_eq!(
        rotations["Rotations"].as_array().unwrap().len(),
        2,
        "{rotations}"
    );
    let names = util::dir_names(&mnt.path.join("cfg"));
    assert_eq!(names, ["keyring", "keyring.lock"], "no temporary file left");

    std::fs::remove_file(mnt.path.join("filler")).unwrap();
    ok(&["create", "--alias", "alias/c"]);
    ok(&["rotate-on-demand", &a]);
    assert_eq!(ok(&["list"])["Keys"].as_array().unwrap().len(), 3);
    assert_eq!(
        ok(&[
            "rotations",
            "alias/a",
            "--include-key-material",
            "ALL_KEY_MATERIAL"
        ])["Rotations"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}
