//! `envarc demo` from any folder: the story runs and every check passes.

use crate::util;

#[test]
fn demo_runs_and_passes_every_check() {
    let dir = util::tempdir();
    let kept = dir.path().join("kept");
    // Run from an unrelated folder: the sample tree is inside the binary.
    let out = util::envarc()
        .current_dir(dir.path())
        .args(["demo", "--dir"])
        .arg(&kept)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "$ envarc key rotate-on-demand alias/demo",
        "$ envarc key rotate-due --as-of",
        "$ envarc verify -r",
        "read and authenticated",
        // The real commands' own lines (verify, restore, backup).
        "(data read: all: ",
        "no problems found (",
        "restored 5 files (",
        "identical to the tree backed up in snapshot ",
        "(data keys wrapped by v1, v2, v3)",
        "4 of 4 stored chunk messages",
        "assets/blob.bin          new path, content already stored: nothing new",
        "added 0 B in 0 new chunks (0 B stored)",
        "0 fresh data keys under the current key version",
        "v3 (current)",
        "Result: every check passed.",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
    assert!(kept.join("repo/config").is_file(), "--dir keeps the folder");
    // A folder that is not empty is refused.
    util::envarc()
        .args(["demo", "--dir"])
        .arg(&kept)
        .assert()
        .code(2);
}
