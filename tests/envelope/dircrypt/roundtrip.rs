//! Trees in and out: layout, names, modes, mtimes, both suites, special files.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use super::{expect, files, make_tree, random_bytes, set_mtime, Fx, Spec};
use crate::util::tree::assert_same_tree;

const SIGNED: &str = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384";

fn sample(fx: &Fx) {
    let frame = 64 * 1024;
    let spec = |rel, data, mode, mtime| Spec {
        rel,
        data,
        mode,
        mtime,
    };
    make_tree(
        &fx.p("in"),
        &[
            spec("a.txt", b"hello\n".to_vec(), 0o644, 1_600_000_000),
            spec("empty", Vec::new(), 0o600, 1_600_000_001),
            spec("bin/tool", random_bytes(1, frame + 1), 0o755, 1_600_000_002),
            spec(
                "deep/er/x",
                random_bytes(2, frame - 1),
                0o640,
                1_600_000_003,
            ),
            spec("deep/er/y", random_bytes(3, frame), 0o604, 1_600_000_004),
            // Past the large-file threshold: through the parallel pipeline.
            spec("big.bin", random_bytes(4, 5 << 20), 0o640, 1_600_000_005),
        ],
    );
    // A name that is not UTF-8 keeps its bytes.
    let odd = fx.p("in").join(std::ffi::OsStr::from_bytes(b"caf\xe9"));
    std::fs::write(&odd, b"latin-1").unwrap();
    set_mtime(&odd, 1_600_000_006);
    std::fs::set_permissions(fx.p("in/deep"), PermissionsExt::from_mode(0o750)).unwrap();
    for (d, t) in [
        ("in/deep/er", 1_500_000_000),
        ("in/deep", 1_500_000_001),
        ("in/bin", 1_500_000_002),
        ("in", 1_500_000_003),
    ] {
        set_mtime(&fx.p(d), t);
    }
}

#[test]
fn a_tree_round_trips_with_layout_names_modes_and_mtimes_in_both_suites() {
    for suite in [None, Some(SIGNED)] {
        let fx = Fx::new();
        sample(&fx);
        let mut args = vec!["-c", "team=ops"];
        if let Some(s) = suite {
            args.extend(["--algorithm", s]);
        }
        let j = fx.encrypt("in", "out", &args, 0);
        assert_eq!(j["Files"], 7, "{j}");
        assert_eq!(j["Written"], 7, "{j}");
        assert_eq!(
            j["Suite"],
            if suite.is_some() { "0x0578" } else { "0x0478" }
        );
        let mut want: Vec<String> = files(&fx.p("in"))
            .iter()
            .map(|f| format!("{f}.encrypted"))
            .collect();
        want.sort();
        assert_eq!(files(&fx.p("out")), want);
        // Each output has its source's mode and mtime.
        for f in files(&fx.p("in"))
            .into_iter()
            .filter(|f| !f.contains('\u{fffd}'))
        {
            let (a, b) = (
                std::fs::metadata(fx.p("in").join(&f)).unwrap(),
                std::fs::metadata(fx.p("out").join(format!("{f}.encrypted"))).unwrap(),
            );
            assert_eq!(a.mode() & 0o777, b.mode() & 0o777, "{f}");
            assert_eq!(
                (a.mtime(), a.mtime_nsec()),
                (b.mtime(), b.mtime_nsec()),
                "{f}"
            );
        }
        let j = fx.decrypt("out", "dec", &["-c", "team=ops"], 0);
        assert_eq!(j["Written"], 7, "{j}");
        assert_same_tree(&fx.p("in"), &fx.p("dec"), false);
        // A required pair the messages do not carry fails every file.
        let j = fx.decrypt("out", "dec2", &["-c", "team=dev"], 3);
        assert_eq!(j["Failed"].as_array().unwrap().len(), 7, "{j}");
        assert!(files(&fx.p("dec2")).is_empty());
    }
}

#[test]
fn special_files_are_reported_and_skipped_and_symlinks_never_followed() {
    let fx = Fx::new();
    make_tree(
        &fx.p("in"),
        &[Spec {
            rel: "f",
            data: b"x".to_vec(),
            mode: 0o644,
            mtime: 1,
        }],
    );
    make_tree(
        &fx.p("elsewhere"),
        &[Spec {
            rel: "secret",
            data: b"s".to_vec(),
            mode: 0o644,
            mtime: 1,
        }],
    );
    std::os::unix::fs::symlink(fx.p("in/f"), fx.p("in/link")).unwrap();
    std::os::unix::fs::symlink(fx.p("elsewhere"), fx.p("in/dirlink")).unwrap();
    let fifo = fx.p("in/fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let _sock = std::os::unix::net::UnixListener::bind(fx.p("in/sock")).unwrap();
    let out = fx.run(
        &[
            "encrypt",
            "--recursive",
            fx.p("in").to_str().unwrap(),
            "-o",
            fx.p("out").to_str().unwrap(),
        ],
        true,
    );
    expect(&out, 0);
    let err = String::from_utf8_lossy(&out.stderr);
    for (name, kind) in [
        ("link", "a symlink"),
        ("dirlink", "a symlink"),
        ("fifo", "a FIFO"),
        ("sock", "a socket"),
    ] {
        assert!(
            err.contains(&format!("in/{name}: skipped: {kind} is not encrypted")),
            "{name}: {err}"
        );
    }
    assert_eq!(files(&fx.p("out")), ["f.encrypted"]);
    let j = fx.encrypt("in", "out", &[], 0);
    assert_eq!(j["Skipped"].as_array().unwrap().len(), 4, "{j}");
    assert_eq!(j["KeptExisting"], 1, "{j}");
}

#[test]
fn the_suffix_is_appended_and_removed_and_names_without_it_get_decrypted() {
    let fx = Fx::new();
    make_tree(
        &fx.p("in"),
        &[Spec {
            rel: "d/a",
            data: b"a".to_vec(),
            mode: 0o644,
            mtime: 5,
        }],
    );
    fx.encrypt("in", "out", &["--suffix", ".enc"], 0);
    assert_eq!(files(&fx.p("out")), ["d/a.enc"]);
    fx.decrypt("out", "dec", &["--suffix", ".enc"], 0);
    assert_eq!(files(&fx.p("dec")), ["d/a"]);
    // With the default suffix, `a.enc` does not carry it: `.decrypted` is appended.
    fx.decrypt("out", "dec2", &[], 0);
    assert_eq!(files(&fx.p("dec2")), ["d/a.enc.decrypted"]);
    let out = fx.run(
        &["encrypt", "--recursive", "in", "-o", "x", "--suffix", "a/b"],
        true,
    );
    expect(&out, 2);
}
