//! A repository or keyring that cannot be written (a read-only mount: root
//! bypasses permission bits, not a read-only file system), a repository
//! another live process holds exclusively, and stale locks of dead processes.

use crate::{fault_support, repo_support, util};

use std::path::{Path, PathBuf};
use std::process::Command;

use fault_support::{backup, check_repo, has_command, stderr, Mount};
use repo_support::{many_files, TestRepo};
use util::sandbox::Sandbox;

/// Every entry under `dir` with its size and modification time, to show
/// that a failed run changed nothing.
fn listing(dir: &Path) -> Vec<(PathBuf, u64, i128)> {
    util::tree::entries(dir)
        .into_iter()
        .map(|(rel, md)| {
            let t = md
                .modified()
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as i128;
            (rel, md.len(), t)
        })
        .collect()
}

/// The test repository seen through a read-only bind mount at `ro`.
fn read_only(r: &TestRepo, test: &str) -> Option<(TestRepo, Mount)> {
    let ro = r.dir.path().join("ro");
    match Mount::read_only_bind(&r.repo, &ro) {
        Ok(m) => Some((
            TestRepo {
                sb: Sandbox::new(),
                repo: ro,
                key: r.key.clone(),
            },
            m,
        )),
        Err(why) => {
            eprintln!("SKIPPED {test}: cannot make a read-only mount here ({why})");
            None
        }
    }
}

#[test]
fn a_read_only_repository_is_read_but_never_written() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    many_files(&src, 20, 8, 3);
    assert!(backup(&r, "h", &[&src]).status.success());
    let before = listing(&r.repo);
    let Some((ro, _mount)) = read_only(&r, "a_read_only_repository") else {
        return;
    };
    let out = backup(&ro, "h2", &[&src]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Read-only file system") && err.contains("remount"),
        "{err}"
    );
    assert!(
        err.contains("writing the lock"),
        "a backup stops at its lock: {err}"
    );
    eprintln!("backup into a read-only repository: {}", err.trim());
    // Reading commands work: listing, and (where it exists) verify.
    let out = ro.cmd("snapshots").output().unwrap();
    assert!(out.status.success(), "snapshots: {}", stderr(&out));
    let out = ro.cmd("ls").arg("latest").output().unwrap();
    assert!(out.status.success(), "ls: {}", stderr(&out));
    assert_eq!(
        check_repo(&ro),
        (1, 20),
        "verify --read-data works read-only"
    );
    if has_command("restore") {
        let target = r.dir.path().join("restored");
        let out = ro
            .cmd("restore")
            .arg("latest")
            .arg("--target")
            .arg(&target)
            .output()
            .unwrap();
        let err = stderr(&out);
        assert!(
            out.status.success(),
            "restore from a read-only repository: {err}"
        );
        assert!(
            err.contains("without one"),
            "the missing lock is said: {err}"
        );
        let there = target.join(src.strip_prefix("/").unwrap());
        let same = Command::new("diff")
            .arg("-r")
            .arg(&src)
            .arg(&there)
            .status()
            .unwrap();
        assert!(same.success(), "the restore matches the source");
    }
    assert_eq!(listing(&r.repo), before, "nothing changed");
}

#[test]
fn a_read_only_keyring_opens_and_refuses_changes_clearly() {
    let d = util::tempdir();
    let cfg = d.path().join("cfg");
    let key = |dir: &Path, args: &[&str]| {
        util::envarc()
            .env("ENVARC_KEYRING", dir.join("keyring"))
            .env("ENVARC_PASSPHRASE", "pw")
            .env("ENVARC_ARGON2_PARAMS", "m=8,t=1,p=1")
            .args(["--json", "key"])
            .args(args)
            .output()
            .unwrap()
    };
    assert!(key(&cfg, &["create", "--alias", "alias/a"])
        .status
        .success());
    let ro = d.path().join("ro");
    let _mount = match Mount::read_only_bind(&cfg, &ro) {
        Ok(m) => m,
        Err(why) => {
            eprintln!("SKIPPED a_read_only_keyring: cannot make a read-only mount here ({why})");
            return;
        }
    };
    let out = key(&ro, &["list"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list = util::stdout_json(&out);
    assert_eq!(list["Keys"].as_array().unwrap().len(), 1);
    let out = key(&ro, &["create", "--alias", "alias/b"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    eprintln!("key create on a read-only keyring: {}", err.trim());
}

/// A lock file in `repo` for `pid`, as a running envarc writes it.
fn lock_file(repo: &Path, kind: &str, pid: u32, host: &str) -> std::path::PathBuf {
    // Format 2 makes locks/ at the first lock.
    std::fs::create_dir_all(repo.join("locks")).unwrap();
    let path = repo
        .join("locks")
        .join(hex::encode(util::random_bytes(pid as u64, 32)));
    let json =
        serde_json::json!({"kind": kind, "pid": pid, "host": host, "time": "2026-01-01T00:00:00Z"});
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

fn hostname() -> String {
    envarc::repo::hostname()
}

/// Holds the flock on `path`, as a live envarc holds its lock file's, until
/// dropped. (This test process is the other process; flock(1) would leave
/// its child holding the lock after being killed.)
fn hold_flock(path: &Path) -> std::fs::File {
    use fs4::fs_std::FileExt;
    let f = std::fs::File::open(path).unwrap();
    assert!(
        FileExt::try_lock_exclusive(&f).unwrap(),
        "the flock is free"
    );
    f
}

#[test]
fn an_exclusive_lock_held_by_a_live_process_stops_a_backup_with_exit_6() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    many_files(&src, 5, 4, 1);
    let lock = lock_file(&r.repo, "exclusive", 4242, &hostname());
    let holder = hold_flock(&lock);
    let out = backup(&r, "h", &[&src]);
    let err = stderr(&out);
    drop(holder);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("an exclusive lock of pid 4242") && err.contains(&hostname()),
        "the message names the holder: {err}"
    );
    eprintln!(
        "backup while another process holds the lock: {}",
        err.trim()
    );
    assert!(util::dir_names(&r.repo.join("snapshots")).is_empty());
    // The holder is gone: its lock is stale now, removed with a warning.
    let out = backup(&r, "h", &[&src]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("removed a stale lock: an exclusive lock of pid 4242"),
        "{err}"
    );
    assert!(!lock.exists());
    assert!(util::dir_names(&r.repo.join("locks")).is_empty());
}

#[test]
fn a_stale_lock_of_a_dead_process_is_removed_with_a_warning() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    many_files(&src, 5, 4, 2);
    let mut dead = Command::new("true").spawn().unwrap();
    let pid = dead.id();
    dead.wait().unwrap();
    let stale = lock_file(&r.repo, "exclusive", pid, &hostname());
    // A lock from another host is never judged stale: it blocks, with a way out.
    let remote = lock_file(&r.repo, "exclusive", 1, "another-host");
    let out = backup(&r, "h", &[&src]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(6), "{err}");
    assert!(
        err.contains("another-host") && err.contains("envarc unlock"),
        "{err}"
    );
    // Whether the dead process's lock was cleaned up before the remote one
    // stopped the run depends on the order the lock files are listed in; the
    // second run below checks the clean-up itself.
    let _ = std::fs::remove_file(&stale);
    std::fs::remove_file(&remote).unwrap();
    let stale = lock_file(&r.repo, "shared", pid, &hostname());
    let out = backup(&r, "h", &[&src]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!("removed a stale lock: a shared lock of pid {pid}")),
        "{err}"
    );
    assert!(!stale.exists());
    assert_eq!(check_repo(&r), (1, 5));
}
