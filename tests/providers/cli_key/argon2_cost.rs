//! The Argon2 cost a keyring file asks for is capped before Argon2 runs and
//! before any passphrase is asked for: a crafted preamble cannot make envarc
//! allocate gigabytes or spin for minutes (issue 13, item 7).

use std::fs;
use std::time::{Duration, Instant};

use crate::cli_key::ring::*;

/// A keyring preamble (Argon2id) with the given cost, then bytes that are
/// not a message: the cost check must come before anything reads them.
fn crafted(m_kib: u32, t: u32, p: u32) -> Vec<u8> {
    let mut v = b"ENVARC-KEYRING\x01\x01".to_vec();
    for x in [m_kib, t, p] {
        v.extend_from_slice(&x.to_be_bytes());
    }
    v.push(16);
    v.extend_from_slice(&[7u8; 16]);
    v.extend_from_slice(&[0u8; 64]);
    v
}

/// A crafted cost, and what the error must name.
struct Case {
    m_kib: u32,
    t: u32,
    p: u32,
    /// `ENVARC_ARGON2_MAX_MIB`.
    max_mib: Option<&'static str>,
    want: &'static [&'static str],
}

#[test]
fn a_crafted_cost_is_refused_before_argon2_and_before_the_passphrase() {
    let r = Ring::new();
    let asked = r.file("asked");
    let ask = format!("touch '{}'; echo pw", asked.display());
    // `key list` of the keyring at `path`, the passphrase from a command
    // that leaves `asked` behind.
    let list = |path: &str| {
        let mut c = r.cmd();
        c.env_remove("ENVARC_PASSPHRASE").args([
            "--keyring",
            path,
            "key",
            "list",
            "--passphrase-command",
            &ask,
        ]);
        c
    };
    let cases = [
        Case {
            m_kib: 4 * 1024 * 1024,
            t: 100,
            p: 1,
            max_mib: None,
            want: &[
                "400.0 GiB·passes",
                "never creates",
                "restore it from a backup",
            ],
        },
        Case {
            m_kib: 4 * 1024 * 1024,
            t: 5,
            p: 4,
            max_mib: None,
            want: &["20.0 GiB·passes", "16 GiB·passes"],
        },
        Case {
            m_kib: 1024 * 1024,
            t: 1,
            p: 1,
            max_mib: Some("64"),
            want: &["1 GiB of memory", "64 MiB", "envarc key passwd"],
        },
    ];
    for Case {
        m_kib: m,
        t,
        p,
        max_mib: limit,
        want,
    } in cases
    {
        let path = r.write("crafted", &crafted(m, t, p));
        let mut c = list(&path);
        if let Some(l) = limit {
            c.env("ENVARC_ARGON2_MAX_MIB", l);
        }
        let start = Instant::now();
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "m={m} t={t}: {err}");
        for w in want {
            assert!(err.contains(w), "m={m} t={t}: want {w}: {err}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "Argon2 did not run"
        );
        assert!(!asked.exists(), "no passphrase was asked for");
    }
    // Under the caps, the same preamble gets as far as the passphrase.
    let path = r.write("cheap", &crafted(8, 1, 1));
    let out = list(&path).output().unwrap();
    assert!(!out.status.success(), "the message is junk");
    assert!(asked.exists(), "a cheap cost gets as far as the passphrase");
}

#[test]
fn creating_or_relocking_above_the_cap_is_refused_up_front() {
    let r = Ring::new();
    let nested = r.file("new/deeper/keyring");
    let nested = nested.to_str().unwrap();
    for (params, limit, want) in [
        ("m=4194304,t=100,p=1", None, "GiB·passes"),
        ("m=131072,t=1,p=1", Some("64"), "128 MiB of memory"),
    ] {
        let mut c = r.cmd();
        c.env("ENVARC_ARGON2_PARAMS", params)
            .args(["--keyring", nested, "key", "create"]);
        if let Some(l) = limit {
            c.env("ENVARC_ARGON2_MAX_MIB", l);
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{params}: {err}");
        assert!(err.contains(want), "{params}: {err}");
        assert!(!r.file("new").exists(), "{params}: nothing is created");
    }
    r.create(&[]);
    let before = fs::read(r.path()).unwrap();
    let np = r.write("np", b"new passphrase\n");
    let out = r
        .cmd()
        .env("ENVARC_ARGON2_PARAMS", "m=131072,t=1,p=1")
        .env("ENVARC_ARGON2_MAX_MIB", "64")
        .args(["key", "passwd", "--new-passphrase-file", &np])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(fs::read(r.path()).unwrap(), before, "nothing was changed");
    r.ok(&["key", "list"]);
}
