//! Rotation (scheduled, on demand, refused), HMAC keys and imported material.

use base64::Engine;
use serde_json::Value;
use time::{Duration, OffsetDateTime};

use crate::cli_key::ring::*;

#[test]
fn rotation_schedule_on_demand_and_history() {
    let r = Ring::new();
    let e = r.fails(
        &[
            "key",
            "create",
            "--enable-rotation",
            "--rotation-period-in-days",
            "30",
        ],
        2,
    );
    assert!(
        e.contains("out of range") && e.contains("90") && e.contains("2560"),
        "{e}"
    );
    r.fails(
        &[
            "key",
            "create",
            "--enable-rotation",
            "--rotation-period-in-days",
            "2561",
        ],
        2,
    );
    r.fails(&["key", "create", "--rotation-period-in-days", "100"], 2);
    let k = r.create(&["--alias", "alias/r", "--description", "rotating"]);
    assert_eq!(
        r.ok(&["key", "rotation-status", &k])["KeyRotationEnabled"],
        false
    );
    r.fails(
        &[
            "key",
            "enable-rotation",
            &k,
            "--rotation-period-in-days",
            "89",
        ],
        2,
    );
    let s = r.ok(&[
        "key",
        "enable-rotation",
        &k,
        "--rotation-period-in-days",
        "90",
    ]);
    assert_eq!(s["KeyRotationEnabled"], true);
    assert_eq!(s["RotationPeriodInDays"], 90);
    let next = date(&s["NextRotationDate"]);
    let now = OffsetDateTime::now_utc();
    assert!(
        next >= now + Duration::days(89) && next <= now + Duration::days(90 + 15),
        "{next}"
    );
    let before = r.meta(&k);

    let m1 = r.encrypt(&k, "m1", b"before rotation");
    assert!(r.ok(&["key", "rotate-due"])["Rotated"]
        .as_array()
        .unwrap()
        .is_empty());
    let due = r.ok(&[
        "key",
        "rotate-due",
        "--as-of",
        s["NextRotationDate"].as_str().unwrap(),
        "--force",
    ]);
    assert_eq!(due["Rotated"][0]["KeyId"], k.as_str());
    assert_eq!(due["Rotated"][0]["CurrentKeyVersion"], 2);
    let after = r.meta(&k);
    for f in [
        "KeyId",
        "Description",
        "KeyState",
        "KeySpec",
        "Origin",
        "Aliases",
        "CreationDate",
        "KeyUsage",
        "Enabled",
    ] {
        assert_eq!(before[f], after[f], "rotation changed {f}");
    }
    let s2 = r.ok(&["key", "rotation-status", &k]);
    assert_eq!(date(&s2["NextRotationDate"]), next + Duration::days(90));

    let m2 = r.encrypt(&k, "m2", b"after rotation");
    assert_eq!(
        r.ok(&["decrypt", &m2, "-o", "x"])["EncryptedDataKeys"][0],
        format!("envarc:{k}/v2")
    );
    assert_eq!(
        r.ok(&["key", "rotate-on-demand", "alias/r"])["CurrentKeyVersion"],
        3
    );
    let m3 = r.encrypt(&k, "m3", b"after on-demand");
    // As AWS KMS spells them: the initial material is not a rotation, and
    // is listed only with ALL_KEY_MATERIAL.
    let field = |rot: &Value, f: &str| -> Vec<Value> {
        rot["Rotations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x[f].clone())
            .collect()
    };
    let rot = r.ok(&["key", "rotations", &k]);
    assert_eq!(field(&rot, "RotationType"), ["AUTOMATIC", "ON_DEMAND"]);
    assert_eq!(field(&rot, "KeyMaterialState"), ["NON_CURRENT", "CURRENT"]);
    assert_eq!(field(&rot, "BackingKeyVersion"), [2, 3]);
    let all = r.ok(&[
        "key",
        "list-key-rotations",
        "--key-id",
        &k,
        "--include-key-material",
        "ALL_KEY_MATERIAL",
    ]);
    assert_eq!(
        field(&all, "RotationType"),
        [Value::Null, "AUTOMATIC".into(), "ON_DEMAND".into()]
    );
    assert_eq!(field(&all, "RotationDate")[0], Value::Null);
    assert_eq!(
        field(&all, "KeyMaterialState"),
        ["NON_CURRENT", "NON_CURRENT", "CURRENT"]
    );
    assert_eq!(field(&all, "VersionState"), ["ENABLED"; 3]);
    assert_eq!(r.decrypt(&m1), b"before rotation");
    assert_eq!(r.decrypt(&m2), b"after rotation");
    assert_eq!(r.decrypt(&m3), b"after on-demand");

    r.ok(&["key", "disable-rotation", &k]);
    assert_eq!(
        r.ok(&["key", "rotation-status", &k])["KeyRotationEnabled"],
        false
    );
    for _ in 2..=10 {
        r.ok(&["key", "rotate-on-demand", &k]);
    }
    let e = r.fails(&["key", "rotate-on-demand", &k], 1);
    assert!(e.contains("10 on-demand rotations"), "{e}");
    assert_eq!(r.meta(&k)["CurrentKeyVersion"], 12);
    assert_eq!(r.decrypt(&m1), b"before rotation");
}

#[test]
fn hmac_keys_mac_but_never_rotate() {
    let r = Ring::new();
    let e = r.fails(
        &[
            "key",
            "create",
            "--key-spec",
            "HMAC_256",
            "--enable-rotation",
        ],
        2,
    );
    assert!(e.contains("HMAC"), "{e}");
    let k = r.create(&["--key-spec", "HMAC_256", "--alias", "alias/mac"]);
    assert_eq!(r.meta(&k)["KeyUsage"], "GENERATE_VERIFY_MAC");
    let e = r.fails(&["key", "enable-rotation", "alias/mac"], 2);
    assert!(e.contains("HMAC") && e.contains("rotated by hand"), "{e}");
    r.fails(&["key", "rotate-on-demand", &k], 2);
    let msg = r.write("msg", b"sign me");
    let mac = r.ok(&["key", "generate-mac", &k, "--message-file", &msg])["Mac"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(B64.decode(&mac).unwrap().len(), 32);
    let v = r.ok(&[
        "key",
        "verify-mac",
        "alias/mac",
        "--message-file",
        &msg,
        "--mac",
        &mac,
    ]);
    assert_eq!(v["MacValid"], true);
    let other = r.write("other", b"sign me!");
    r.fails(
        &[
            "key",
            "verify-mac",
            &k,
            "--message-file",
            &other,
            "--mac",
            &mac,
        ],
        4,
    );
    let e = r.fails(&["encrypt", "--key", "alias/mac", &msg, "-o", "x"], 5);
    assert!(e.contains("HMAC_256"), "{e}");
    let sym = r.create(&[]);
    r.fails(&["key", "generate-mac", &sym, "--message-file", &msg], 5);
}

#[test]
fn external_keys_take_imported_material_as_versions() {
    let r = Ring::new();
    let k = r.create(&["--origin", "EXTERNAL"]);
    let m = r.meta(&k);
    assert_eq!(m["KeyState"], "PendingImport");
    assert_eq!(m["CurrentKeyVersion"], Value::Null);
    let e = r.fails(&["encrypt", "--key", &k, "/dev/null", "-o", "x"], 5);
    assert!(e.contains("import-material"), "{e}");
    let short = r.write("short", &[1u8; 31]);
    r.fails(
        &["key", "import-material", &k, "--material-file", &short],
        2,
    );
    let m1 = r.write("m1", &[1u8; 32]);
    assert_eq!(
        r.ok(&["key", "import-material", &k, "--material-file", &m1])["CurrentKeyVersion"],
        1
    );
    assert_eq!(r.meta(&k)["KeyState"], "Enabled");
    let e = r.fails(&["key", "import-material", &k, "--material-file", &m1], 2);
    assert!(e.contains("already backing key v1"), "{e}");
    let msg = r.encrypt(&k, "msg", b"byok");
    let m2 = r.write("m2", &[2u8; 32]);
    assert_eq!(
        r.ok(&["key", "import-material", &k, "--material-file", &m2])["CurrentKeyVersion"],
        2
    );
    assert_eq!(r.decrypt(&msg), b"byok");
    let e = r.fails(&["key", "enable-rotation", &k], 2);
    assert!(e.contains("EXTERNAL"), "{e}");
    let gen = r.create(&[]);
    r.fails(&["key", "import-material", &gen, "--material-file", &m2], 2);
    // The first import is the initial material; a later one is an on-demand
    // rotation of imported material, as in KMS.
    let rot = r.ok(&["key", "rotations", &k]);
    assert_eq!(rot["Rotations"].as_array().unwrap().len(), 1);
    assert_eq!(rot["Rotations"][0]["RotationType"], "ON_DEMAND");
    assert_eq!(rot["Rotations"][0]["ImportState"], "IMPORTED");
    assert_eq!(rot["Rotations"][0]["KeyMaterialState"], "CURRENT");
    // Material never appears in what the commands print.
    for args in [
        &["key", "describe", &k][..],
        &["key", "list"],
        &["key", "rotations", &k],
    ] {
        for json in [true, false] {
            let mut c = r.cmd();
            if json {
                c.arg("--json");
            }
            let out = c.args(args).output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).to_string();
            for m in [[1u8; 32], [2u8; 32]] {
                assert!(
                    !text.contains(&B64.encode(m)) && !text.contains(&hex::encode(m)),
                    "{args:?}"
                );
            }
        }
    }
}
