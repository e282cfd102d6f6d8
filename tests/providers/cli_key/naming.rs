//! Naming keys as a KMS user would (issue 19): `--key-id` and the AWS CLI's
//! command names, unique id prefixes, suggestions for unknown aliases,
//! `list-aliases`; and the small things: help for every argument, a missing
//! passphrase file is a key problem, a failed `key create` leaves nothing,
//! `rotate-due --as-of` in the future needs `--force`.

use std::fs;

use time::{Duration, OffsetDateTime};

use crate::cli_key::ring::*;

#[test]
fn key_id_and_the_aws_command_names_work_wherever_a_key_is_named() {
    let r = Ring::new();
    let k = r.create(&["--alias", "alias/n"]);
    let plain = r.write("p", b"x");
    // Each command, once with KEY and once with --key-id KEY.
    let cases: &[&[&str]] = &[
        &["describe"],
        &["describe-key"],
        &["disable"],
        &["enable-key"],
        &["enable-rotation"],
        &["get-key-rotation-status"],
        &["disable-key-rotation"],
        &["rotate-key-on-demand"],
        &["list-key-rotations"],
        &["retire-version", "--version", "1"],
        &["reinstate-version", "--version", "1"],
        &["generate-data-key"],
        &["generate-data-key-without-plaintext"],
        &["encrypt", "--plaintext-file", &plain],
    ];
    for case in cases {
        for by_flag in [false, true] {
            let mut args = vec!["key", case[0]];
            if by_flag {
                args.extend(["--key-id", &k]);
            } else {
                args.push(&k);
            }
            args.extend(&case[1..]);
            let j = r.ok(&args);
            assert!(j.to_string().contains(&k), "{args:?}: {j}");
        }
    }
    r.ok(&["key", "create-alias", "alias/m", "--key-id", &k]);
    r.ok(&["key", "schedule-key-deletion", "--key-id", &k]);
    r.ok(&["key", "cancel-key-deletion", "--key-id", &k]);
    assert_eq!(r.meta(&k)["KeyState"], "Disabled");
    let e = r.fails(&["key", "describe", &k, "--key-id", &k], 2);
    assert!(e.contains("cannot be used with"), "{e}");
    r.fails(&["key", "describe"], 2);
    assert_eq!(
        r.ok(&["key", "list-keys"])["Keys"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn prefixes_ambiguity_and_near_aliases() {
    let r = Ring::new();
    // Keys until two share a first hex digit (at most 17, by pigeonhole).
    let mut ids: Vec<String> = Vec::new();
    let (a, b) = loop {
        let id = r.create(&[]);
        if let Some(o) = ids.iter().find(|o| o.as_bytes()[0] == id.as_bytes()[0]) {
            break (o.clone(), id);
        }
        ids.push(id);
    };
    r.ok(&["key", "create-alias", "alias/backup", &a]);
    let first = &a[..1];
    let e = r.fails(&["key", "describe", first], 2);
    assert!(
        e.contains(&a) && e.contains(&b) && e.contains("alias/backup"),
        "{e}"
    );
    assert!(e.contains("give more of the id"), "{e}");
    // A unique prefix, in any case, with or without its hyphens.
    let common = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    for prefix in [
        a[..common + 1].to_string(),
        a[..common + 1].to_uppercase(),
        a[..14].to_string(),
        a[..14].replace('-', ""),
    ] {
        let m = r.meta(&prefix);
        assert_eq!(m["KeyId"], a.as_str(), "{prefix}");
    }
    r.ok(&["encrypt", "--key", &a[..common + 1], "/dev/null", "-o", "m"]);
    let j = r.ok(&["decrypt", "m", "-o", "m.out"]);
    assert_eq!(j["EncryptedDataKeys"][0], format!("envarc:{a}/v1"));
    // Unknown: a prefix that starts no id, a near alias, a bare alias name.
    let unused = (0..16u8)
        .map(|d| format!("{d:x}"))
        .map(|d| format!("{d}{d}{d}{d}{d}{d}{d}{d}"))
        .find(|p| r.code(&["key", "describe", p]) == Some(5))
        .expect("some 8-digit prefix starts no id");
    let e = r.fails(&["key", "describe", &unused], 5);
    assert!(e.contains("no key id starts with"), "{e}");
    for (given, want) in [
        ("alias/bakup", "did you mean alias/backup?"),
        ("alias/backups", "did you mean alias/backup?"),
        ("backup", "did you mean alias/backup?"),
    ] {
        let e = r.fails(&["key", "describe", given], 5);
        assert!(e.contains(want), "{given}: {e}");
    }
    let e = r.fails(&["key", "describe", "alias/zzzzzzzz"], 5);
    assert!(!e.contains("did you mean"), "{e}");
}

#[test]
fn list_aliases_has_the_kms_shape() {
    let r = Ring::new();
    let a = r.create(&["--alias", "alias/one"]);
    let b = r.create(&["--alias", "alias/two"]);
    r.ok(&["key", "create-alias", "alias/three", &a]);
    let j = r.ok(&["key", "list-aliases"]);
    assert_eq!(j["Truncated"], false);
    let all = j["Aliases"].as_array().unwrap();
    assert_eq!(all.len(), 3);
    for e in all {
        let mut keys: Vec<&String> = e.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(keys, ["AliasName", "TargetKeyId"], "{e}");
    }
    let only = r.ok(&["key", "list-aliases", "--key-id", "alias/two"]);
    assert_eq!(only["Aliases"][0]["AliasName"], "alias/two");
    assert_eq!(only["Aliases"][0]["TargetKeyId"], b.as_str());
    assert_eq!(only["Aliases"].as_array().unwrap().len(), 1);
    let of_a = r.ok(&["key", "list-aliases", "--key-id", &a]);
    assert_eq!(of_a["Aliases"].as_array().unwrap().len(), 2);
    let human = r.cmd().args(["key", "list-aliases"]).output().unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(
        human.contains("alias/three") && human.contains(&a),
        "{human}"
    );
}

#[test]
fn rotate_due_in_the_future_needs_force() {
    let r = Ring::new();
    let k = r.create(&["--enable-rotation", "--rotation-period-in-days", "90"]);
    let before = fs::read(r.path()).unwrap();
    let future = fmt(OffsetDateTime::now_utc() + Duration::days(200));
    let e = r.fails(&["key", "rotate-due", "--as-of", &future], 2);
    assert!(e.contains("in the future") && e.contains("--force"), "{e}");
    assert_eq!(fs::read(r.path()).unwrap(), before, "nothing was recorded");
    let past = fmt(OffsetDateTime::now_utc() - Duration::days(1));
    let out = r
        .cmd()
        .args(["key", "rotate-due", "--as-of", &past])
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty());
    let out = r
        .cmd()
        .args(["--json", "key", "rotate-due", "--as-of", &future, "--force"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("in the future"));
    assert_eq!(
        crate::util::stdout_json(&out)["Rotated"][0]["KeyId"],
        k.as_str()
    );
}

#[test]
fn a_failed_create_leaves_nothing_and_secret_files_are_key_problems() {
    let r = Ring::new();
    let nested = r.file("a/b/keyring");
    let nested = nested.to_str().unwrap();
    let empty = r.write("empty", b"");
    let short = r.write("short", &[1u8; 31]);
    // (extra arguments, exit code)
    let cases: &[(&[&str], i32)] = &[
        (&["--alias", "not-an-alias"], 2),
        (&["--enable-rotation", "--rotation-period-in-days", "30"], 2),
        (&["--passphrase-file", "/nonexistent/pw"], 5),
        (&["--passphrase-file", &empty], 5),
        (&["--keyring-key-file", "/nonexistent/kf"], 5),
        (&["--keyring-key-file", &short], 2),
    ];
    for (extra, code) in cases {
        let mut args = vec!["--keyring", nested, "key", "create"];
        args.extend(*extra);
        r.fails(&args, *code);
        assert!(!r.file("a").exists(), "{extra:?} left a folder behind");
    }
    // In a folder that exists: no lock file left either, the folder stays.
    fs::create_dir(r.file("cfg")).unwrap();
    r.fails(&["key", "create", "--alias", "x"], 2);
    r.fails(&["key", "list"], 5);
    r.fails(&["key", "rotate-on-demand", "alias/x"], 5);
    assert!(crate::util::dir_names(&r.file("cfg")).is_empty());
    // With a keyring, a missing secret file is a key problem too (exit 5).
    r.create(&[]);
    let e = r.fails(&["key", "list", "--passphrase-file", "/nonexistent/pw"], 5);
    assert!(e.contains("/nonexistent/pw"), "{e}");
}

/// Every argument of every `key` command has help text.
#[test]
fn every_key_argument_is_documented() {
    let r = Ring::new();
    let help = |args: &[&str]| {
        let out = r.cmd().env("COLUMNS", "100").args(args).output().unwrap();
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let top = help(&["key", "--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 25, "{commands:?}");
    for c in &commands {
        let text = help(&["key", c, "--help"]);
        let lines: Vec<&str> = text.lines().collect();
        let mut in_section = false;
        for (i, l) in lines.iter().enumerate() {
            if *l == "Arguments:" || *l == "Options:" {
                in_section = true;
                continue;
            }
            if l.is_empty() {
                in_section = false;
            }
            // An argument's own line: "  <KEY>", "  -q, --quiet", "      --json";
            // its help follows on it or, more indented, on the next line.
            let spec = l.trim_start();
            if !in_section || l.len() - spec.len() > 6 {
                continue;
            }
            let same_line = spec
                .split_once("  ")
                .is_some_and(|(_, d)| !d.trim().is_empty());
            let next_line = lines.get(i + 1).is_some_and(|n| {
                let text = n.trim_start();
                n.len() - text.len() > 6 && !text.starts_with('[')
            });
            assert!(same_line || next_line, "key {c}: {l:?} has no help text");
        }
    }
}
