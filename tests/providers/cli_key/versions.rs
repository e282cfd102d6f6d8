//! Retiring and destroying one backing-key version (issue 13): the keyring
//! refuses to unwrap with it, naming the key, the version and the command
//! that undoes it; the current version can never be retired.

use std::fs;

use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::cli_key::ring::*;

/// Expects `args` to exit `code` with every one of `want` in stderr.
fn refused(r: &Ring, args: &[&str], code: i32, want: &[&str]) {
    let e = r.fails(args, code);
    for w in want {
        assert!(e.contains(w), "{args:?}: want {w:?} in: {e}");
    }
}

fn states(r: &Ring, k: &str) -> Vec<Value> {
    let all = r.ok(&[
        "key",
        "rotations",
        k,
        "--include-key-material",
        "ALL_KEY_MATERIAL",
    ]);
    all["Rotations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["VersionState"].clone())
        .collect()
}

#[test]
fn a_retired_version_unwraps_nothing_until_reinstated() {
    let r = Ring::new();
    let k = r.create(&["--alias", "alias/v"]);
    let m1 = r.encrypt(&k, "m1", b"under v1");
    let plain = r.write("small", b"small secret");
    let blob = r.file("b1").to_str().unwrap().to_string();
    r.ok(&[
        "key",
        "encrypt",
        &k,
        "--plaintext-file",
        &plain,
        "-o",
        &blob,
    ]);
    refused(
        &r,
        &["key", "retire-version", &k, "--version", "1"],
        2,
        &["current backing key", "rotate-on-demand"],
    );
    r.ok(&["key", "rotate-on-demand", &k]);
    let m2 = r.encrypt(&k, "m2", b"under v2");
    let retire_undo = format!("envarc key reinstate-version {k} --version 1");
    for (args, code, want) in [
        (
            vec!["key", "retire-version", &k, "--version", "2"],
            2,
            vec!["current backing key"],
        ),
        (
            vec!["key", "retire-version", &k, "--version", "9"],
            2,
            vec!["no backing key v9", "v1 to v2"],
        ),
        (
            vec!["key", "retire-version", &k, "--version", "x"],
            2,
            vec!["not a backing-key version"],
        ),
        (
            vec!["key", "cancel-version-deletion", &k, "--version", "1"],
            5,
            vec!["not pending deletion"],
        ),
    ] {
        refused(&r, &args, code, &want);
    }
    let j = r.ok(&["key", "retire-version", "alias/v", "--version", "v1"]);
    assert_eq!(j["VersionState"], "RETIRED");
    assert_eq!(j["Changed"], true);
    assert_eq!(
        r.ok(&["key", "retire-version", &k, "--version", "1"])["Changed"],
        false
    );
    let want = [k.as_str(), "v1", "retired", retire_undo.as_str()];
    refused(&r, &["decrypt", &m1, "-o", "out1"], 5, &want);
    assert!(!r.file("out1").exists());
    refused(
        &r,
        &["key", "decrypt", "--ciphertext-file", &blob],
        5,
        &want,
    );
    assert_eq!(r.decrypt(&m2), b"under v2");
    assert_eq!(states(&r, &k), ["RETIRED", "ENABLED"]);
    let meta = r.meta(&k);
    assert_eq!(meta["BackingKeys"][0]["VersionState"], "RETIRED");
    assert_eq!(meta["BackingKeys"][1]["KeyMaterialState"], "CURRENT");
    let human = r.cmd().args(["key", "describe", &k]).output().unwrap();
    let human = String::from_utf8_lossy(&human.stdout);
    assert!(human.contains("v1 retired, v2 current"), "{human}");

    r.ok(&["key", "reinstate-version", &k, "--version", "1"]);
    assert_eq!(r.decrypt(&m1), b"under v1");
    r.ok(&["key", "decrypt", "--ciphertext-file", &blob]);
    assert_eq!(states(&r, &k), ["ENABLED", "ENABLED"]);

    // An HMAC key has one version, always current.
    let h = r.create(&["--key-spec", "HMAC_256"]);
    refused(
        &r,
        &["key", "retire-version", &h, "--version", "1"],
        2,
        &["current"],
    );
}

#[test]
fn a_version_is_destroyed_after_its_window_unless_cancelled() {
    let r = Ring::new();
    let k = r.create(&["--alias", "alias/d"]);
    let m1 = r.encrypt(&k, "m1", b"under v1");
    r.ok(&["key", "rotate-on-demand", &k]);
    let m2 = r.encrypt(&k, "m2", b"under v2");
    // `key schedule-version-deletion K --version 1` with a window of DAYS.
    let schedule = |days: &'static str| {
        [
            "key",
            "schedule-version-deletion",
            k.as_str(),
            "--version",
            "1",
            "--pending-window-in-days",
            days,
        ]
    };
    refused(&r, &schedule("6"), 2, &["7 to 30"]);
    let out = r
        .cmd()
        .args([
            "--json",
            "key",
            "schedule-version-deletion",
            &k,
            "--version",
            "1",
        ])
        .args(["--pending-window-in-days", "7"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let warn = String::from_utf8_lossy(&out.stderr);
    let cancel = format!("envarc key cancel-version-deletion {k} --version 1");
    assert!(
        warn.contains("unrecoverable") && warn.contains(&cancel),
        "{warn}"
    );
    let j = crate::util::stdout_json(&out);
    assert_eq!(j["VersionState"], "PENDING_DELETION");
    let when = date(&j["DeletionDate"]);
    let now = OffsetDateTime::now_utc();
    assert!(when > now + Duration::days(6) && when <= now + Duration::days(7));
    refused(
        &r,
        &["decrypt", &m1, "-o", "o"],
        5,
        &["pending deletion", &cancel],
    );
    refused(
        &r,
        &["key", "reinstate-version", &k, "--version", "1"],
        5,
        &[&cancel],
    );
    refused(
        &r,
        &["key", "schedule-version-deletion", &k, "--version", "1"],
        5,
        &["already pending deletion"],
    );
    r.ok(&["key", "cancel-version-deletion", &k, "--version", "1"]);
    assert_eq!(states(&r, &k), ["RETIRED", "ENABLED"], "back retired");
    r.ok(&["key", "reinstate-version", &k, "--version", "1"]);
    assert_eq!(r.decrypt(&m1), b"under v1");

    r.ok(&schedule("7"));
    let soon = fmt(OffsetDateTime::now_utc() + Duration::days(6));
    let due = r.ok(&["key", "rotate-due", "--as-of", &soon, "--force"]);
    assert!(due["DestroyedKeyVersions"].as_array().unwrap().is_empty());
    let later = fmt(OffsetDateTime::now_utc() + Duration::days(8));
    let due = r.ok(&["key", "rotate-due", "--as-of", &later, "--force"]);
    assert_eq!(due["DestroyedKeyVersions"][0]["KeyId"], k.as_str());
    assert_eq!(due["DestroyedKeyVersions"][0]["Version"], 1);
    assert_eq!(states(&r, &k), ["DESTROYED", "ENABLED"]);
    refused(&r, &["decrypt", &m1, "-o", "o"], 5, &["v1", "destroyed"]);
    refused(
        &r,
        &["key", "cancel-version-deletion", &k, "--version", "1"],
        5,
        &["not pending"],
    );
    refused(
        &r,
        &["key", "reinstate-version", &k, "--version", "1"],
        5,
        &["destroyed"],
    );
    assert_eq!(
        r.decrypt(&m2),
        b"under v2",
        "the other versions are untouched"
    );
    assert!(fs::metadata(r.path()).is_ok());
}
