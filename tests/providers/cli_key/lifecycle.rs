//! Keys, aliases, states and deletion; the keyring behind encrypt/decrypt.

use std::fs;
use std::os::unix::fs::PermissionsExt;

use time::{Duration, OffsetDateTime};

use crate::cli_key::ring::*;
use crate::util::stdout_json;

#[test]
fn create_list_describe_and_aliases() {
    let r = Ring::new();
    let a = r.create(&["--alias", "alias/app", "--description", "app data"]);
    let m = r.meta("alias/app");
    assert_eq!(m["KeyId"], a.as_str());
    for (k, v) in [
        ("KeyState", "Enabled"),
        ("KeySpec", "SYMMETRIC_DEFAULT"),
        ("Origin", "AWS_KMS"),
        ("KeyUsage", "ENCRYPT_DECRYPT"),
        ("Description", "app data"),
    ] {
        assert_eq!(m[k], v, "{k}");
    }
    assert_eq!(m["CurrentKeyVersion"], 1);
    assert_eq!(m["Aliases"][0], "alias/app");
    let bytes = fs::read(r.path()).unwrap();
    assert!(bytes.starts_with(b"ENVARC-KEYRING"));
    assert!(
        !bytes.windows(8).any(|w| w == b"app data"),
        "encrypted at rest"
    );
    assert_eq!(
        fs::metadata(r.path()).unwrap().permissions().mode() & 0o777,
        0o600
    );

    let b = r.create(&[]);
    let list = r.ok(&["key", "list"]);
    assert_eq!(list["Keys"].as_array().unwrap().len(), 2);
    assert_eq!(r.meta(&b)["KeyId"], b.as_str());

    r.ok(&["key", "create-alias", "alias/other", &b]);
    r.ok(&["key", "update-alias", "alias/app", &b]);
    assert_eq!(r.meta("alias/app")["KeyId"], b.as_str());
    r.ok(&["key", "delete-alias", "alias/other"]);
    let e = r.fails(&["key", "describe", "alias/other"], 5);
    assert!(e.contains("unknown alias alias/other"), "{e}");
    let e = r.fails(&["key", "create-alias", "alias/app", &a], 2);
    assert!(e.contains("already exists"), "{e}");
    r.fails(&["key", "create-alias", "app", &a], 2);
    r.fails(&["key", "create-alias", "alias/aws/x", &a], 2);
    let ghost = "8c3f8f3e-2d7b-4f1e-9a51-6a0f5e3b9d11";
    let e = r.fails(&["key", "describe", ghost], 5);
    assert!(e.contains(ghost), "{e}");
    let e = r.fails(&["key", "disable", "nope"], 5);
    assert!(e.contains("'nope'"), "{e}");
    let e = r.fails(&["key", "enable", "alias/nope"], 5);
    assert!(e.contains("alias/nope"), "{e}");
    let human = r
        .cmd()
        .args(["key", "describe", "alias/app"])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&human.stdout).contains(&b));
}

#[test]
fn encrypt_with_the_keyring_and_decrypt_any_key_without_naming_it() {
    let r = Ring::new();
    let a = r.create(&["--alias", "alias/a"]);
    let b = r.create(&[]);
    let ma = r.encrypt("alias/a", "a.msg", b"under a");
    let mb = r.encrypt(&b, "b.msg", b"under b");
    assert_eq!(r.decrypt(&ma), b"under a");
    assert_eq!(r.decrypt(&mb), b"under b");
    let j = r.ok(&["decrypt", &ma, "-o", "x"]);
    assert_eq!(j["EncryptedDataKeys"][0], format!("envarc:{a}/v1"));
    let e = r.fails(&["decrypt", "--key", &a, &mb, "-o", "y"], 5);
    assert!(e.contains(&b), "{e}");
    assert!(!r.file("y").exists());
    let e = r.fails(&["encrypt", &ma], 2);
    assert!(e.contains("--key"), "{e}");
}

#[test]
fn disabled_and_pending_deletion_keys_refuse_and_say_how_to_undo() {
    let r = Ring::new();
    let k = r.create(&["--alias", "alias/d"]);
    let msg = r.encrypt(&k, "m", b"payload");

    r.ok(&["key", "disable", "alias/d"]);
    let e = r.fails(&["encrypt", "--key", "alias/d", &msg, "-o", "n"], 5);
    assert!(
        e.contains(&k) && e.contains("Disabled") && e.contains(&format!("envarc key enable {k}")),
        "{e}"
    );
    let e = r.fails(&["decrypt", &msg, "-o", "out"], 5);
    assert!(
        e.contains("Disabled") && e.contains("envarc key enable"),
        "{e}"
    );
    assert!(!r.file("out").exists() && !r.file("n").exists());
    r.ok(&["key", "enable", &k]);
    assert_eq!(r.decrypt(&msg), b"payload");

    r.fails(
        &[
            "key",
            "schedule-deletion",
            &k,
            "--pending-window-in-days",
            "6",
        ],
        2,
    );
    r.fails(
        &[
            "key",
            "schedule-deletion",
            &k,
            "--pending-window-in-days",
            "31",
        ],
        2,
    );
    let out = r
        .cmd()
        .args(["--json", "key", "schedule-deletion", &k])
        .output()
        .unwrap();
    assert!(out.status.success());
    let j = stdout_json(&out);
    assert_eq!(j["PendingWindowInDays"], 30);
    assert_eq!(j["KeyState"], "PendingDeletion");
    let warn = String::from_utf8_lossy(&out.stderr);
    assert!(
        warn.contains("unrecoverable") && warn.contains("cancel-deletion"),
        "{warn}"
    );
    let e = r.fails(&["decrypt", &msg, "-o", "out"], 5);
    assert!(
        e.contains("PendingDeletion") && e.contains(&format!("envarc key cancel-deletion {k}")),
        "{e}"
    );
    r.fails(&["key", "enable", &k], 5);
    r.fails(&["key", "schedule-deletion", &k], 5);
    r.ok(&["key", "cancel-deletion", &k]);
    assert_eq!(r.meta(&k)["KeyState"], "Disabled");
    r.ok(&["key", "enable", &k]);
    assert_eq!(r.decrypt(&msg), b"payload");

    // After the window, the next write destroys the key.
    r.ok(&[
        "key",
        "schedule-deletion",
        &k,
        "--pending-window-in-days",
        "7",
    ]);
    let soon = fmt(OffsetDateTime::now_utc() + Duration::days(6));
    assert!(
        r.ok(&["key", "rotate-due", "--as-of", &soon, "--force"])["Deleted"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let later = fmt(OffsetDateTime::now_utc() + Duration::days(8));
    assert_eq!(
        r.ok(&["key", "rotate-due", "--as-of", &later, "--force"])["Deleted"][0],
        k.as_str()
    );
    r.fails(&["key", "describe", &k], 5);
    r.fails(&["key", "describe", "alias/d"], 5);
    let e = r.fails(&["decrypt", &msg, "-o", "out"], 5);
    assert!(e.contains("not in this keyring"), "{e}");
}
