//! Several envarc processes at once on one keyring and on one repository:
//! every change each of them made is there afterwards, and what was read
//! while others wrote is complete and authentic.

use crate::{fault_support, repo_support, util};

use std::path::Path;
use std::process::Command;

use envarc::progress::Silent;
use envarc::repo::LockKind;
use fault_support::{check_repo, has_command, iterations, stderr};
use repo_support::{many_files, verify_all, TestRepo};

use crate::kill::backup_cmd;

fn key_cmd(keyring: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(util::envarc_path());
    c.env("ENVARC_KEYRING", keyring)
        .env("ENVARC_PASSPHRASE", "concurrent")
        .env("ENVARC_ARGON2_PARAMS", "m=8,t=1,p=1")
        .args(["-q", "--json", "key"])
        .args(args);
    c
}

#[test]
fn four_processes_create_and_rotate_keys_in_one_keyring() {
    let d = util::tempdir();
    let keyring = d.path().join("keyring");
    let out = key_cmd(&keyring, &["create", "--alias", "alias/first"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let per = iterations(3, 25);
    let workers: Vec<_> = (0..4)
        .map(|p| {
            let keyring = keyring.clone();
            std::thread::spawn(move || {
                for j in 0..per {
                    let alias = format!("alias/p{p}-{j}");
                    let mut steps = vec![
                        vec!["create", "--alias", &alias],
                        vec!["rotate-on-demand", &alias],
                    ];
                    // The shared key too, within its 10 on-demand rotations.
                    if j < 2 {
                        steps.push(vec!["rotate-on-demand", "alias/first"]);
                    }
                    for args in steps {
                        let out = key_cmd(&keyring, &args).output().unwrap();
                        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
                    }
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker failed");
    }
    let list = key_cmd(&keyring, &["list"]).output().unwrap();
    let list = util::stdout_json(&list);
    assert_eq!(list["Keys"].as_array().unwrap().len(), 1 + 4 * per);
    let rotations = |alias: &str| {
        let all = [
            "rotations",
            alias,
            "--include-key-material",
            "ALL_KEY_MATERIAL",
        ];
        let out = key_cmd(&keyring, &all).output().unwrap();
        util::stdout_json(&out)["Rotations"]
            .as_array()
            .unwrap()
            .len()
    };
    for p in 0..4 {
        for j in 0..per {
            assert_eq!(rotations(&format!("alias/p{p}-{j}")), 2, "p{p}-{j}");
        }
    }
    // Every one of the shared key's concurrent rotations is kept.
    let shared = rotations("alias/first");
    assert_eq!(shared, 1 + 4 * per.min(2));
    eprintln!(
        "4 processes × {per} rounds: {} keys, alias/first has {shared} backing keys",
        1 + 4 * per
    );
}

#[test]
fn two_backups_and_a_restore_at_once_on_one_repository() {
    let r = TestRepo::init(&["--pack-size", "128KiB"]);
    let (a, b, c) = (
        r.dir.path().join("a"),
        r.dir.path().join("b"),
        r.dir.path().join("c"),
    );
    many_files(&a, 150, 16, 11);
    many_files(&b, 150, 16, 12);
    many_files(&c, 60, 16, 13);
    let out = fault_support::backup(&r, "c", &[&c]);
    assert!(out.status.success(), "{}", stderr(&out));
    let restore = has_command("restore");
    let target = r.dir.path().join("restored");
    let rounds = iterations(2, 20);
    for round in 0..rounds {
        let mut children = vec![
            r.process("backup")
                .args(["-q", "--host", &format!("a{round}")])
                .arg(&a)
                .spawn()
                .unwrap(),
            r.process("backup")
                .args(["-q", "--host", &format!("b{round}")])
                .arg(&b)
                .spawn()
                .unwrap(),
        ];
        if restore {
            let t = target.join(round.to_string());
            children.push(
                r.process("restore")
                    .args(["-q", "--target"])
                    .arg(&t)
                    .arg("latest")
                    .spawn()
                    .unwrap(),
            );
        }
        for mut ch in children {
            assert!(ch.wait().unwrap().success(), "a concurrent run failed");
        }
    }
    let (snapshots, messages) = check_repo(&r);
    assert_eq!(snapshots, 1 + 2 * rounds);
    assert_eq!(messages, 60 + 2 * rounds * 150);
    if restore {
        // Each restore saw a complete snapshot: whichever was the latest when
        // it started, its files are byte for byte those of a, b or c.
        for round in 0..rounds {
            let root = target.join(round.to_string());
            let mut files = 0;
            for src in [&a, &b, &c] {
                let there = root.join(src.strip_prefix("/").unwrap());
                if there.is_dir() {
                    assert_eq!(
                        std::process::Command::new("diff")
                            .arg("-r")
                            .arg(src)
                            .arg(&there)
                            .status()
                            .unwrap()
                            .code(),
                        Some(0),
                        "restore {round} of {} differs",
                        src.display()
                    );
                    files += 1;
                }
            }
            assert_eq!(files, 1, "restore {round} restored one snapshot");
        }
    } else {
        eprintln!("restore is not in this build: two backups at once only");
    }
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
        crate::util::assert_success(&out);
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
