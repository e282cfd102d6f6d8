//! The keyring file: secrets, damage, default path, concurrent writers.

use std::fs;

use crate::cli_key::ring::*;
use crate::util::{envarc, BIN};

#[test]
fn wrong_passphrase_damage_and_unknown_versions_are_clear_errors() {
    let r = Ring::new();
    let e = r.fails(&["key", "list"], 5);
    assert!(
        e.contains("no keyring") && e.contains("envarc key create"),
        "{e}"
    );
    r.create(&[]);
    let good = fs::read(r.path()).unwrap();
    let out = r
        .cmd()
        .env("ENVARC_PASSPHRASE", "wrong")
        .args(["key", "create"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong passphrase"));
    assert_eq!(
        fs::read(r.path()).unwrap(),
        good,
        "a failed command changes nothing"
    );

    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 1;
    let mut version = good.clone();
    version[14] = 2;
    for (bytes, code, want) in [
        (flipped, 4, "damaged"),
        (good[..good.len() / 2].to_vec(), 4, "damaged"),
        (good[..8].to_vec(), 4, "truncated"),
        (version, 1, "format version 2"),
        (b"hello".to_vec(), 4, "not an envarc keyring"),
    ] {
        fs::write(r.path(), &bytes).unwrap();
        let e = r.fails(&["key", "list"], code);
        assert!(e.contains(want), "{want}: {e}");
    }
}

#[test]
fn passphrase_sources_key_files_and_default_path() {
    let r = Ring::new();
    let pwfile = r.write("pw", format!("{PW}\n").as_bytes());
    r.cmd()
        .env_remove("ENVARC_PASSPHRASE")
        .args(["key", "create", "--passphrase-file", &pwfile])
        .assert()
        .success();
    r.ok(&["key", "list"]);
    r.cmd()
        .env_remove("ENVARC_PASSPHRASE")
        .args([
            "key",
            "list",
            "--passphrase-command",
            &format!("printf '%s' '{PW}'"),
        ])
        .assert()
        .success();
    r.cmd()
        .env_remove("ENVARC_PASSPHRASE")
        .args(["key", "list", "--passphrase-command", "exit 3"])
        .assert()
        .code(5);
    r.fails(
        &[
            "key",
            "list",
            "--passphrase-file",
            &pwfile,
            "--passphrase-command",
            "true",
        ],
        2,
    );

    let kf = r.write("kf", &[9u8; 32]);
    let kr2 = r.file("kr2");
    let kr2 = kr2.to_str().unwrap();
    r.ok(&["--keyring", kr2, "--keyring-key-file", &kf, "key", "create"]);
    assert_eq!(&fs::read(kr2).unwrap()[..16], b"ENVARC-KEYRING\x01\x02");
    let e = r.fails(&["--keyring", kr2, "key", "list"], 5);
    assert!(e.contains("--keyring-key-file"), "{e}");
    r.ok(&["--keyring", kr2, "--keyring-key-file", &kf, "key", "list"]);
    let other = r.write("kf2", &[8u8; 32]);
    r.fails(
        &[
            "--keyring",
            kr2,
            "--keyring-key-file",
            &other,
            "key",
            "list",
        ],
        5,
    );
    let short = r.write("kf3", &[8u8; 31]);
    r.fails(
        &[
            "--keyring",
            kr2,
            "--keyring-key-file",
            &short,
            "key",
            "list",
        ],
        2,
    );
    let e = r.fails(&["--keyring-key-file", &kf, "key", "list"], 5);
    assert!(e.contains("passphrase"), "{e}");

    if fs::File::open("/dev/tty").is_err() {
        let e = r
            .cmd()
            .env_remove("ENVARC_PASSPHRASE")
            .args(["key", "list"])
            .output()
            .unwrap();
        assert_eq!(e.status.code(), Some(5));
        assert!(String::from_utf8_lossy(&e.stderr).contains("no terminal"));
    }

    let home = r.file("home");
    envarc()
        .env("HOME", &home)
        .env("ENVARC_PASSPHRASE", PW)
        .env("ENVARC_ARGON2_PARAMS", CHEAP)
        .args(["key", "create"])
        .assert()
        .success();
    assert!(home.join(".config/envarc/keyring").exists());
    let xdg = r.file("xdg");
    envarc()
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", &xdg)
        .env("ENVARC_PASSPHRASE", PW)
        .env("ENVARC_ARGON2_PARAMS", CHEAP)
        .args(["key", "create"])
        .assert()
        .success();
    assert!(xdg.join("envarc/keyring").exists());
}

#[test]
fn concurrent_processes_keep_every_change() {
    let r = Ring::new();
    let k = r.create(&[]);
    let spawn = |args: Vec<String>| {
        std::process::Command::new(BIN)
            .env("ENVARC_KEYRING", r.path())
            .env("ENVARC_PASSPHRASE", PW)
            .env("ENVARC_ARGON2_PARAMS", CHEAP)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut children = Vec::new();
    for i in 0..6 {
        children.push(spawn(vec![
            "key".into(),
            "create".into(),
            "--alias".into(),
            format!("alias/p{i}"),
        ]));
        children.push(spawn(vec![
            "key".into(),
            "rotate-on-demand".into(),
            k.clone(),
        ]));
    }
    for c in children {
        let out = c.wait_with_output().unwrap();
        crate::util::assert_success(&out);
    }
    let list = r.ok(&["key", "list"]);
    assert_eq!(list["Keys"].as_array().unwrap().len(), 7);
    let aliases: Vec<&str> = list["Aliases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["AliasName"].as_str().unwrap())
        .collect();
    assert_eq!(
        aliases,
        ["alias/p0", "alias/p1", "alias/p2", "alias/p3", "alias/p4", "alias/p5"]
    );
    assert_eq!(r.meta(&k)["CurrentKeyVersion"], 7);
    let leftovers: Vec<_> = fs::read_dir(r.path().parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "only the keyring and its lock file: {leftovers:?}"
    );
}
