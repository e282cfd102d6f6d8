//! `envarc key passwd`: a new passphrase, or a switch between passphrase and
//! key file both ways, under the keyring's lock and atomic replacement.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::cli_key::ring::*;
use crate::util::BIN;

const PW2: &str = "a new passphrase";

#[test]
fn passwd_changes_the_secret_both_ways_and_keeps_every_key() {
    let r = Ring::new();
    let k = r.create(&["--alias", "alias/p"]);
    let msg = r.encrypt(&k, "m", b"kept across passwd");
    let good = fs::read(r.path()).unwrap();
    let np = r.write("np", format!("{PW2}\n").as_bytes());
    let kf = r.write("kf", &[5u8; 32]);

    // The current secret must be right; nothing changes otherwise.
    let out = r
        .cmd()
        .env("ENVARC_PASSPHRASE", "wrong")
        .args(["key", "passwd", "--new-passphrase-file", &np])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    assert_eq!(fs::read(r.path()).unwrap(), good);
    r.fails(
        &["key", "passwd", "--new-passphrase-file", "/nonexistent"],
        5,
    );
    r.fails(
        &[
            "key",
            "passwd",
            "--new-passphrase-file",
            &np,
            "--new-key-file",
            &kf,
        ],
        2,
    );
    assert_eq!(fs::read(r.path()).unwrap(), good);

    // Passphrase → passphrase, with the cost from ENVARC_ARGON2_PARAMS.
    let out = r
        .cmd()
        .env("ENVARC_ARGON2_PARAMS", "m=16,t=2,p=1")
        .args(["key", "passwd", "--new-passphrase-file", &np])
        .output()
        .unwrap();
    crate::util::assert_success(&out);
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(warn.contains("copies of the keyring"), "{warn}");
    let bytes = fs::read(r.path()).unwrap();
    assert_eq!(&bytes[16..28], &[0, 0, 0, 16, 0, 0, 0, 2, 0, 0, 0, 1]);
    let e = r.fails(&["key", "list"], 5);
    assert!(e.contains("wrong passphrase"), "the old passphrase: {e}");
    let new = |c: &mut assert_cmd::Command| {
        c.env("ENVARC_PASSPHRASE", PW2);
    };
    let mut c = r.cmd();
    new(&mut c);
    c.args(["decrypt", &msg, "-o", "d1"]).assert().success();
    assert_eq!(fs::read(r.file("d1")).unwrap(), b"kept across passwd");

    // Passphrase → key file: the passphrase no longer opens it.
    let mut c = r.cmd();
    new(&mut c);
    c.args(["--json", "key", "passwd", "--new-key-file", &kf]);
    let j = crate::util::stdout_json(&c.output().unwrap());
    assert_eq!(j["LockedWith"], "KEY_FILE");
    assert_eq!(
        &fs::read(r.path()).unwrap()[..16],
        b"ENVARC-KEYRING\x01\x02"
    );
    let mut c = r.cmd();
    new(&mut c);
    c.args(["key", "list"]).assert().code(5);
    r.ok(&["--keyring-key-file", &kf, "key", "describe", "alias/p"]);

    // Key file → passphrase (from ENVARC_NEW_PASSPHRASE), the cost as given.
    let j = crate::util::stdout_json(
        &r.cmd()
            .env("ENVARC_NEW_PASSPHRASE", PW)
            .args(["--json", "--keyring-key-file", &kf, "key", "passwd"])
            .output()
            .unwrap(),
    );
    assert_eq!(j["LockedWith"], "PASSPHRASE");
    assert_eq!(j["Argon2Params"], CHEAP);
    r.fails(&["--keyring-key-file", &kf, "key", "list"], 5);
    assert_eq!(r.decrypt(&msg), b"kept across passwd");
    let empty = r.write("empty", b"\n");
    r.fails(&["key", "passwd", "--new-passphrase-file", &empty], 5);
    if fs::File::open("/dev/tty").is_err() {
        let e = r.fails(&["key", "passwd"], 5);
        assert!(
            e.contains("ENVARC_NEW_PASSPHRASE") && e.contains("--new-key-file"),
            "{e}"
        );
    }
    let names = crate::util::dir_names(r.path().parent().unwrap());
    assert_eq!(names, ["keyring", "keyring.lock"], "no temporary file left");
}

/// Readers running while the passphrase changes back and forth always find
/// a whole keyring, old or new: each exits 0 (old) or 5 with "wrong
/// passphrase" (new), and every version of the file they could have read
/// opens with exactly one of the two passphrases.
#[test]
fn a_reader_during_passwd_sees_the_old_or_the_new_keyring() {
    let r = Ring::new();
    r.create(&["--alias", "alias/c"]);
    let pws = [
        r.write("pw1", PW.as_bytes()),
        r.write("pw2", PW2.as_bytes()),
    ];
    let done = AtomicBool::new(false);
    let seen = Mutex::new(BTreeSet::new());
    let outcomes = Mutex::new((0usize, 0usize));
    let rounds = 12;
    std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                if let Ok(b) = fs::read(r.path()) {
                    seen.lock().unwrap().insert(b);
                }
            }
        });
        for _ in 0..2 {
            s.spawn(|| {
                while !done.load(Ordering::Relaxed) {
                    let out = Command::new(BIN)
                        .env("ENVARC_KEYRING", r.path())
                        .env("ENVARC_PASSPHRASE", PW)
                        .args(["key", "describe", "alias/c"])
                        .output()
                        .unwrap();
                    let err = String::from_utf8_lossy(&out.stderr);
                    let mut o = outcomes.lock().unwrap();
                    match out.status.code() {
                        Some(0) => o.0 += 1,
                        Some(5) if err.contains("wrong passphrase") => o.1 += 1,
                        c => panic!("a reader failed halfway ({c:?}): {err}"),
                    }
                }
            });
        }
        for i in 0..rounds {
            let (cur, next) = (&pws[i % 2], &pws[(i + 1) % 2]);
            let out = r
                .cmd()
                .env_remove("ENVARC_PASSPHRASE")
                .args(["key", "passwd", "--passphrase-file", cur])
                .args(["--new-passphrase-file", next])
                .output()
                .unwrap();
            crate::util::assert_success(&out);
        }
        done.store(true, Ordering::Relaxed);
    });
    let (old, new) = *outcomes.lock().unwrap();
    eprintln!("readers: {old} opened with the first passphrase, {new} found the other");
    let seen = seen.into_inner().unwrap();
    assert!(seen.len() >= 2, "the file changed under the readers");
    for (i, bytes) in seen.iter().enumerate() {
        let copy = r.write(&format!("copy{i}"), bytes);
        let opens: Vec<bool> = [PW, PW2]
            .iter()
            .map(|pw| {
                r.cmd()
                    .env("ENVARC_PASSPHRASE", pw)
                    .args(["--keyring", &copy, "key", "list"])
                    .output()
                    .unwrap()
                    .status
                    .success()
            })
            .collect();
        assert_eq!(
            opens.iter().filter(|o| **o).count(),
            1,
            "copy {i}: {opens:?}"
        );
    }
}
