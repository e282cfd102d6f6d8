//! Failures: nested trees refused, broken messages named (even with -q) and
//! never written, a SIGKILL mid-run and the rerun that completes it, and
//! memory bounded for a 1 GiB file.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{expect, files, make_tree, random_bytes, Fx, Spec};
use crate::util::tree::{assert_same_tree, temp_files};

#[test]
fn an_output_inside_the_input_or_the_reverse_is_refused() {
    let fx = Fx::new();
    make_tree(
        &fx.p("in"),
        &[Spec {
            rel: "sub/f",
            data: b"x".to_vec(),
            mode: 0o644,
            mtime: 1,
        }],
    );
    std::os::unix::fs::symlink(fx.p("in/sub"), fx.p("alias")).unwrap();
    for (input, output) in [
        ("in", "in/enc"),
        ("in", "in"),
        ("in/sub", "in"),
        ("in", "alias/enc"),
        ("in", "in/sub/../x"),
    ] {
        let out = fx.run(
            &[
                "encrypt",
                "--recursive",
                fx.p(input).to_str().unwrap(),
                "-o",
                fx.p(output).to_str().unwrap(),
            ],
            true,
        );
        expect(&out, 2);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("one inside the other"),
            "{input} -> {output}: {err}"
        );
    }
    assert_eq!(
        files(&fx.p("in")),
        ["sub/f"],
        "nothing was written into the input"
    );
    assert!(!fx.p("in/enc").exists() && !fx.p("in/x").exists());
    let out = fx.run(
        &[
            "encrypt",
            "--recursive",
            fx.p("in/sub/f").to_str().unwrap(),
            "-o",
            fx.p("o").to_str().unwrap(),
        ],
        true,
    );
    expect(&out, 2);
}

#[test]
fn broken_messages_are_named_with_quiet_and_leave_no_output() {
    let fx = Fx::new();
    let spec = |rel, n| Spec {
        rel,
        data: random_bytes(n, 3000 + n as usize),
        mode: 0o644,
        mtime: 1,
    };
    make_tree(
        &fx.p("in"),
        &[
            spec("good", 1),
            spec("flipped", 2),
            spec("cut", 3),
            spec("d/junk", 4),
        ],
    );
    fx.encrypt(
        "in",
        "out",
        &[
            "--algorithm",
            "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
        ],
        0,
    );
    let flip = fx.p("out/flipped.encrypted");
    let mut m = std::fs::read(&flip).unwrap();
    let mid = m.len() / 2;
    m[mid] ^= 0x40;
    std::fs::write(&flip, &m).unwrap();
    // A signed message whose footer lost its last bytes: every frame
    // authenticates, only the signature check can refuse it.
    let cut = fx.p("out/cut.encrypted");
    let m = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &m[..m.len() - 3]).unwrap();
    std::fs::write(fx.p("out/d/junk.encrypted"), b"not a message at all").unwrap();
    let out = fx.run(
        &[
            "-q",
            "decrypt",
            "--recursive",
            fx.p("out").to_str().unwrap(),
            "-o",
            fx.p("dec").to_str().unwrap(),
        ],
        true,
    );
    expect(&out, 3);
    let err = String::from_utf8_lossy(&out.stderr);
    for name in ["flipped.encrypted", "cut.encrypted", "d/junk.encrypted"] {
        assert!(
            err.contains(&format!("out/{name}: ")),
            "{name} not named: {err}"
        );
    }
    assert!(
        err.lines().last().unwrap().contains("3 files failed"),
        "{err}"
    );
    assert!(out.stdout.is_empty(), "-q prints no summary");
    assert_eq!(files(&fx.p("dec")), ["good"]);
    assert!(temp_files(&fx.p("dec")).is_empty());
}

/// Kills a run once some outputs exist, then checks that what it left is
/// complete and that a rerun finishes the tree.
#[test]
fn a_run_killed_midway_leaves_only_complete_outputs_and_a_rerun_completes_it() {
    let fx = Fx::new();
    let names: Vec<String> = (0..1200).map(|i| format!("d{}/f{i}", i % 7)).collect();
    let specs: Vec<Spec> = (0..1200u64)
        .map(|i| Spec {
            rel: &names[i as usize],
            data: random_bytes(i, 1024 + (i as usize * 37) % 16384),
            mode: 0o644,
            mtime: 1_600_000_000 + i,
        })
        .collect();
    make_tree(&fx.p("in"), &specs);
    for d in 0..7 {
        super::set_mtime(&fx.p(&format!("in/d{d}")), 1_500_000_000);
    }
    super::set_mtime(&fx.p("in"), 1_500_000_000);
    let mut c = Command::new(crate::util::BIN);
    c.args(["encrypt", "--recursive", "--jobs", "1"])
        .arg(fx.p("in"))
        .arg("-o")
        .arg(fx.p("out"))
        .args(fx.raw())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = c.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while count(&fx.p("out")) < 50 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    let done = count(&fx.p("out"));
    assert!(
        status.code().is_none() && done < 1200,
        "the run was killed midway ({done} of 1200 done)"
    );
    // What it wrote decrypts (temporary files are skipped as partial outputs).
    fx.decrypt("out", "partial", &[], 0);
    assert_eq!(files(&fx.p("partial")).len(), done);
    let j = fx.encrypt("in", "out", &[], 0);
    assert_eq!(j["KeptExisting"].as_u64(), Some(done as u64), "{j}");
    assert_eq!(j["Written"].as_u64(), Some(1200 - done as u64), "{j}");
    assert!(
        temp_files(&fx.p("out")).is_empty(),
        "the rerun removed the leftovers"
    );
    fx.decrypt("out", "dec", &[], 0);
    assert_same_tree(&fx.p("in"), &fx.p("dec"), false);
}

/// Finished outputs below `dir` (temporary files not counted).
fn count(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            if e.file_type().unwrap().is_dir() {
                count(&e.path())
            } else {
                usize::from(e.file_name().to_string_lossy().ends_with(".encrypted"))
            }
        })
        .sum()
}

/// Runs the command, sampling its peak resident set size (VmHWM) until it ends.
fn peak_rss_kib(mut c: Command) -> (std::process::ExitStatus, u64) {
    let mut child = c
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_file) {
            if let Some(kb) = s.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                peak = peak.max(
                    kb.trim()
                        .trim_end_matches(" kB")
                        .trim()
                        .parse()
                        .unwrap_or(0),
                );
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            return (st, peak);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_1_gib_file_is_encrypted_and_decrypted_in_under_64_mib() {
    let fx = Fx::new();
    std::fs::create_dir(fx.p("in")).unwrap();
    // Sparse: reading it costs no disk; the envelope sees 1 GiB all the same.
    let f = std::fs::File::create(fx.p("in/huge")).unwrap();
    f.set_len(1 << 30).unwrap();
    std::fs::write(fx.p("in/small"), b"s").unwrap();
    for (verb, from, to) in [("encrypt", "in", "out"), ("decrypt", "out", "dec")] {
        let mut c = Command::new(crate::util::BIN);
        c.args([verb, "--recursive"])
            .arg(fx.p(from))
            .arg("-o")
            .arg(fx.p(to))
            .args(fx.raw());
        let (st, kib) = peak_rss_kib(c);
        assert!(st.success(), "{verb} failed");
        assert!(kib > 0 && kib < 64 * 1024, "{verb}: peak RSS {kib} KiB");
        eprintln!("{verb} of 1 GiB: peak RSS {} MiB", kib / 1024);
        if verb == "encrypt" {
            std::fs::remove_file(fx.p("in/huge")).ok();
        }
    }
    let md = std::fs::metadata(fx.p("dec/huge")).unwrap();
    assert_eq!(md.len(), 1 << 30);
}
