//! `--overwrite never|if-changed|always`, and the rotation story: after a
//! rotation, `if-changed` encrypts only new and changed files, under the new
//! backing key, and `stats --recursive` shows what each version wraps.

use std::os::unix::fs::MetadataExt;

use super::{expect, make_tree, stdout_json, Fx, Spec};
use crate::util::tree::assert_same_tree;

/// The signing suite (a change of suite from the default one).
const SIGNED: &str = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384";

fn inode(fx: &Fx, rel: &str) -> u64 {
    std::fs::metadata(fx.p(rel)).unwrap().ino()
}

fn four(fx: &Fx) {
    let spec = |rel, data: &[u8]| Spec {
        rel,
        data: data.to_vec(),
        mode: 0o644,
        mtime: 1_700_000_000,
    };
    make_tree(
        &fx.p("in"),
        &[
            spec("a", b"a"),
            spec("b", b"b"),
            spec("s/c", b"c"),
            spec("s/d", b"d"),
        ],
    );
    fix_dirs(fx);
}

/// Folder mtimes as they were made (adding a file changes its folder's).
fn fix_dirs(fx: &Fx) {
    super::set_mtime(&fx.p("in/s"), 1_600_000_000);
    super::set_mtime(&fx.p("in"), 1_600_000_000);
}

#[test]
fn never_keeps_every_output_and_always_rewrites_them() {
    let fx = Fx::new();
    four(&fx);
    fx.encrypt("in", "out", &[], 0);
    let before = inode(&fx, "out/s/c.encrypted");
    let j = fx.encrypt("in", "out", &[], 0);
    assert_eq!(
        (j["Written"].as_u64(), j["KeptExisting"].as_u64()),
        (Some(0), Some(4)),
        "{j}"
    );
    assert_eq!(inode(&fx, "out/s/c.encrypted"), before);
    let j = fx.encrypt("in", "out", &["--overwrite", "always"], 0);
    assert_eq!(j["Written"], 4, "{j}");
    assert_ne!(inode(&fx, "out/s/c.encrypted"), before);
    fx.decrypt("out", "dec", &[], 0);
    assert_same_tree(&fx.p("in"), &fx.p("dec"), false);
}

/// `envarc ARGS…` with this folder's keyring, asserting success; its JSON.
fn keyring(fx: &Fx, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = fx.run(&all, false);
    expect(&out, 0);
    stdout_json(&out)
}

#[test]
fn after_a_rotation_if_changed_encrypts_only_new_and_changed_files_under_the_new_version() {
    let fx = Fx::new();
    four(&fx);
    keyring(&fx, &["key", "create", "--alias", "alias/tree"]);
    let (input, out) = (fx.p("in"), fx.p("out"));
    let enc = |extra: &[&str]| {
        let mut a = vec![
            "encrypt",
            "--recursive",
            input.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--key",
            "alias/tree",
            "--overwrite",
            "if-changed",
        ];
        a.extend_from_slice(extra);
        keyring(&fx, &a)
    };
    assert_eq!(enc(&[])["Written"], 4);
    keyring(&fx, &["key", "rotate-on-demand", "alias/tree"]);
    // b changes (same mtime, other size), s/c is only touched, e is new.
    std::fs::write(fx.p("in/b"), b"bb").unwrap();
    super::set_mtime(&fx.p("in/b"), 1_700_000_000);
    super::set_mtime(&fx.p("in/s/c"), 1_700_000_100);
    make_tree(
        &fx.p("in"),
        &[Spec {
            rel: "e",
            data: b"e".to_vec(),
            mode: 0o600,
            mtime: 9,
        }],
    );
    fix_dirs(&fx);
    let a_before = inode(&fx, "out/a.encrypted");
    let j = enc(&[]);
    assert_eq!(
        (j["Written"].as_u64(), j["KeptCurrent"].as_u64()),
        (Some(3), Some(2)),
        "{j}"
    );
    assert_eq!(
        inode(&fx, "out/a.encrypted"),
        a_before,
        "an unchanged file is left alone"
    );
    // What each backing-key version wraps, from the headers alone.
    let s = keyring(&fx, &["stats", "--recursive", out.to_str().unwrap()]);
    let versions: Vec<(u64, u64)> = s["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["version"].as_u64().unwrap(), v["files"].as_u64().unwrap()))
        .collect();
    assert_eq!(versions, [(1, 2), (2, 3)], "{s}");
    assert_eq!(s["messages"], 5);
    // Everything decrypts (keyless: the messages name their key and version).
    keyring(
        &fx,
        &[
            "decrypt",
            "--recursive",
            out.to_str().unwrap(),
            "-o",
            fx.p("dec").to_str().unwrap(),
        ],
    );
    assert_same_tree(&fx.p("in"), &fx.p("dec"), false);
    // Another suite or context is a change too.
    let j = enc(&["--algorithm", SIGNED]);
    assert_eq!(j["Written"], 5, "{j}");
    let j = enc(&["--algorithm", SIGNED, "-c", "k=v"]);
    assert_eq!(j["Written"], 5, "{j}");
    let j = enc(&["--algorithm", SIGNED, "-c", "k=v"]);
    assert_eq!(j["KeptCurrent"], 5, "{j}");
}

#[test]
fn if_changed_keeps_an_output_only_once_its_header_authenticated() {
    let fx = Fx::new();
    four(&fx);
    fx.encrypt("in", "out", &[], 0);
    // Flip a byte of the message ID: the record (the size and mtime in the
    // context) still matches the source, but the header no longer authenticates.
    let p = fx.p("out/a.encrypted");
    let mut m = std::fs::read(&p).unwrap();
    m[10] ^= 1;
    std::fs::write(&p, &m).unwrap();
    let j = fx.encrypt("in", "out", &["--overwrite", "if-changed"], 0);
    assert_eq!(
        (j["Written"].as_u64(), j["KeptCurrent"].as_u64()),
        (Some(1), Some(3)),
        "{j}"
    );
    fx.decrypt("out", "dec", &[], 0);
    assert_same_tree(&fx.p("in"), &fx.p("dec"), false);
}

#[test]
fn decrypting_if_changed_refreshes_only_outputs_whose_message_changed() {
    let fx = Fx::new();
    four(&fx);
    fx.encrypt("in", "out", &[], 0);
    fx.decrypt("out", "dec", &[], 0);
    let j = fx.decrypt("out", "dec", &["--overwrite", "if-changed"], 0);
    assert_eq!(
        (j["Written"].as_u64(), j["KeptCurrent"].as_u64()),
        (Some(0), Some(4)),
        "{j}"
    );
    std::fs::write(fx.p("in/s/d"), b"new d").unwrap();
    fx.encrypt("in", "out", &["--overwrite", "if-changed"], 0);
    let j = fx.decrypt("out", "dec", &["--overwrite", "if-changed"], 0);
    assert_eq!(
        (j["Written"].as_u64(), j["KeptCurrent"].as_u64()),
        (Some(1), Some(3)),
        "{j}"
    );
    assert_same_tree(&fx.p("in"), &fx.p("dec"), false);
}
