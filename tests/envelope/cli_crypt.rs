//! `envarc encrypt` / `envarc decrypt` through the built binary, in temp
//! folders: files and pipes, contexts, suites, frame lengths, the exit codes of
//! the documented failures, and that a failed decrypt leaves nothing behind
//! (security invariant 4: no unauthenticated plaintext reaches a final path).

use crate::util;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine;
use predicates::prelude::*;
use util::sandbox::Sandbox;
use util::{dir_names, envarc, random_bytes, raw_key_args, tempdir, write_key};

const KEY_NAME: &str = "test/v1";

/// A raw wrapping key in a [`Sandbox`] whose commands run in its folder
/// (which it derefs to: `dir`, `path`, `write`, `read`).
struct Fixture {
    sb: Sandbox,
    key: PathBuf,
}

impl std::ops::Deref for Fixture {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

impl Fixture {
    fn new() -> Fixture {
        let sb = Sandbox::new().in_dir();
        let (key, _) = write_key(sb.dir.path(), "wrapping.key", 32, 1);
        Fixture { sb, key }
    }

    /// `envarc <verb> --raw-key-file KEY --key-name test/v1`, run in the folder.
    fn cmd(&self, verb: &str) -> assert_cmd::Command {
        let mut c = self.sb.cmd();
        c.arg(verb).args(raw_key_args(&self.key, KEY_NAME));
        c
    }

    /// `envarc decrypt NAME` to stdout, which must succeed; the plaintext.
    fn decrypted(&self, name: &str) -> Vec<u8> {
        self.cmd("decrypt")
            .arg(name)
            .assert()
            .success()
            .get_output()
            .stdout
            .clone()
    }

    /// Encrypts `plaintext` with the extra arguments into `name`; returns the message.
    fn encrypt(&self, name: &str, plaintext: &[u8], extra: &[&str]) -> Vec<u8> {
        let input = self.write(&format!("{name}.plain"), plaintext);
        self.cmd("encrypt")
            .args(extra)
            .arg("--force")
            .arg(&input)
            .arg("-o")
            .arg(self.path(name))
            .assert()
            .success();
        std::fs::remove_file(input).unwrap();
        self.read(name)
    }
}

/// Runs `cmd` with `x` on stdin and asserts exit `code` with `says` in
/// stderr.
fn refuses(cmd: &mut assert_cmd::Command, code: i32, says: &str) {
    cmd.write_stdin("x")
        .assert()
        .code(code)
        .stderr(predicate::str::contains(says));
}

fn suite_id(message: &[u8]) -> u16 {
    u16::from_be_bytes([message[1], message[2]])
}

/// Expected body length of a message: full regular frames, then a final frame
/// holding the rest, less than a frame (empty when the size is a multiple of the
/// frame length, as the official SDKs write).
fn body_len(size: u64, frame: u64) -> u64 {
    let regular = size / frame;
    let last = size - regular * frame;
    regular * (4 + 12 + frame + 16) + (4 + 4 + 12 + 4 + last + 16)
}

#[test]
fn file_round_trip_with_json_summary() {
    let f = Fixture::new();
    let plaintext = random_bytes(2, 200_000);
    let input = f.write("in.bin", &plaintext);
    let out = f
        .cmd("encrypt")
        .arg("--json")
        .arg(&input)
        .args(["-o", "msg.env"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let summary: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let message = f.read("msg.env");
    assert_eq!(message[0], 2, "message format 2");
    assert_eq!(
        suite_id(&message),
        0x0478,
        "committing AES-256-GCM by default"
    );
    assert_eq!(summary["Suite"], "0x0478");
    assert_eq!(summary["PlaintextBytes"], 200_000);
    assert_eq!(summary["CiphertextBytes"], message.len() as u64);
    assert_eq!(summary["MessageId"], hex::encode(&message[3..35]));

    let out = f
        .cmd("decrypt")
        .arg("--json")
        .args(["msg.env", "-o", "back.bin"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(f.read("back.bin"), plaintext);
    // Plaintext may be secret: outputs are created readable by their owner only.
    use std::os::unix::fs::PermissionsExt;
    for out in ["back.bin", "msg.env"] {
        let mode = std::fs::metadata(f.path(out)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{out}");
    }
    let summary: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(summary["PlaintextBytes"], 200_000);
    assert_eq!(
        summary["EncryptedDataKeys"][0],
        format!("envarc:{KEY_NAME}")
    );
    assert_eq!(
        dir_names(f.dir.path()),
        ["back.bin", "in.bin", "msg.env", "wrapping.key"],
        "no temporary files left"
    );
}

/// The JSON summary and the data cannot share stdout.
#[test]
fn json_needs_an_output_file() {
    let f = Fixture::new();
    for verb in ["encrypt", "decrypt"] {
        f.cmd(verb)
            .args(["--json", "-"])
            .write_stdin("x")
            .assert()
            .code(2)
            .stdout(predicate::str::is_empty())
            .stderr(predicate::str::contains("pass -o FILE"));
    }
}

#[test]
fn stdin_to_stdout_both_ways() {
    let f = Fixture::new();
    let plaintext = random_bytes(3, 70_000);
    let message = f
        .cmd("encrypt")
        .write_stdin(plaintext.clone())
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(suite_id(&message), 0x0478);
    // "-" names stdin and stdout explicitly.
    let back = f
        .cmd("decrypt")
        .args(["-", "-o", "-"])
        .write_stdin(message)
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    assert_eq!(back, plaintext);
}

#[test]
fn encryption_context_is_stored_and_required_pairs_are_checked() {
    let f = Fixture::new();
    let plaintext = b"context bound".to_vec();
    let message = f.encrypt(
        "msg",
        &plaintext,
        &["-c", "purpose=backup", "-c", "repo=r1"],
    );
    let text = String::from_utf8_lossy(&message);
    assert!(
        text.contains("purpose") && text.contains("backup"),
        "stored in clear"
    );

    // No pairs required, or pairs that match: decrypts.
    for required in [
        &[][..],
        &["-c", "purpose=backup"],
        &["-c", "repo=r1", "-c", "purpose=backup"],
    ] {
        let out = f
            .cmd("decrypt")
            .args(required)
            .arg("msg")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        assert_eq!(out, plaintext, "{required:?}");
    }

    // A pair with another value: refused before any output, nothing left behind.
    f.cmd("decrypt")
        .args(["-c", "purpose=other", "msg", "-o", "out"])
        .assert()
        .code(4)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains(
            "encryption context mismatch for key 'purpose'",
        ));
    // A pair the message does not hold: also a mismatch (the right key still
    // unwraps the data key without it, so the pair is what is wrong).
    f.cmd("decrypt")
        .args(["-c", "missing=1", "msg", "-o", "out"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "encryption context mismatch for key 'missing'",
        ));
    assert!(!f.path("out").exists());

    // Malformed and duplicate pairs are usage errors.
    refuses(
        f.cmd("encrypt").args(["-c", "novalue", "-"]),
        2,
        "KEY=VALUE",
    );
    refuses(
        f.cmd("encrypt").args(["-c", "a=1", "-c", "a=2", "-"]),
        2,
        "given twice",
    );
    refuses(
        f.cmd("encrypt").args(["-c", "aws-crypto-x=1", "-"]),
        2,
        "reserves",
    );
}

#[test]
fn chacha20_poly1305_suite() {
    let f = Fixture::new();
    let plaintext = random_bytes(4, 100_001);
    let message = f.encrypt("msg", &plaintext, &["--cipher", "chacha20-poly1305"]);
    assert_eq!(suite_id(&message), 0xCC20);
    let back = f.decrypted("msg");
    assert_eq!(back, plaintext);
    f.cmd("encrypt")
        .args(["--cipher", "des", "-"])
        .write_stdin("x")
        .assert()
        .code(2);
}

#[test]
fn frame_lengths_shape_the_body() {
    let f = Fixture::new();
    for (size, frame) in [
        (0u64, 1u64),
        (100, 1),
        (8192, 4096),
        (8193, 4096),
        (5, 16 << 20),
    ] {
        let plaintext = random_bytes(size + frame, size as usize);
        let fl = frame.to_string();
        let message = f.encrypt("msg", &plaintext, &["--frame-length", &fl]);
        let header_len = message.len() as u64 - body_len(size, frame);
        // The header ends with frame length (4), commitment (32), tag (16).
        let at = header_len as usize - 52;
        assert_eq!(
            u32::from_be_bytes(message[at..at + 4].try_into().unwrap()) as u64,
            frame,
            "size {size} frame {frame}: frame length field or body length off"
        );
        let back = f.decrypted("msg");
        assert_eq!(back, plaintext, "size {size} frame {frame}");
    }
    for bad in ["0", "16777217", "-1", "64k"] {
        f.cmd("encrypt")
            .args(["--frame-length", bad, "-"])
            .write_stdin("x")
            .assert()
            .code(2);
    }
}

#[test]
fn wrong_key_exits_5_and_writes_nothing() {
    let f = Fixture::new();
    f.encrypt("msg", b"secret", &[]);
    let (other, _) = write_key(f.dir.path(), "other.key", 32, 99);
    let before = dir_names(f.dir.path());
    // Same name, other material: the unwrap fails.
    envarc()
        .current_dir(f.dir.path())
        .arg("decrypt")
        .args(raw_key_args(&other, KEY_NAME))
        .args(["msg", "-o", "out"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("could not unwrap the data key"));
    // Another name (or namespace): no key matches, and the error says which were tried.
    envarc()
        .current_dir(f.dir.path())
        .arg("decrypt")
        .args(raw_key_args(&f.key, "test/v2"))
        .args(["msg", "-o", "out"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("no usable key").and(predicate::str::contains(KEY_NAME)));
    f.cmd("decrypt")
        .args(["--key-namespace", "elsewhere", "msg", "-o", "out"])
        .assert()
        .code(5);
    assert_eq!(
        dir_names(f.dir.path()),
        before,
        "no output, no temporary file"
    );
}

#[test]
fn key_arguments_are_checked() {
    let f = Fixture::new();
    refuses(envarc().args(["encrypt", "-"]), 2, "--raw-key-file");
    refuses(
        envarc()
            .args(["encrypt", "--raw-key-file"])
            .arg(&f.key)
            .arg("-"),
        2,
        "--key-name",
    );
    let short = f.write("short.key", &[1u8; 20]);
    envarc()
        .arg("encrypt")
        .args(raw_key_args(&short, KEY_NAME))
        .arg("-")
        .write_stdin("x")
        .assert()
        .failure()
        .stderr(predicate::str::contains("16, 24 or 32 bytes"));
    refuses(
        envarc()
            .arg("encrypt")
            .args(raw_key_args(&f.path("absent.key"), KEY_NAME))
            .arg("-"),
        1,
        "absent.key",
    );
}

#[test]
fn tampered_message_exits_4_and_leaves_target_untouched() {
    let f = Fixture::new();
    let mut message = f.encrypt("msg", &random_bytes(5, 300_000), &[]);
    // A byte in the second frame: the first frame has already been written to
    // the temporary file when the second fails.
    let at = message.len() - 100_000;
    message[at] ^= 0x40;
    f.write("msg", &message);
    f.write("out", b"previous content");
    let before = dir_names(f.dir.path());
    f.cmd("decrypt")
        .args(["msg", "-o", "out", "--force"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("failed authentication"));
    assert_eq!(f.read("out"), b"previous content", "invariant 4");
    assert_eq!(dir_names(f.dir.path()), before, "no stray temporary files");

    // Truncated (and empty) input: exit 4, nothing written.
    f.write("cut", &message[..message.len() / 2]);
    f.write("empty", b"");
    for input in ["cut", "empty"] {
        f.cmd("decrypt")
            .args([input, "-o", "new"])
            .assert()
            .code(4)
            .stderr(predicate::str::contains("truncated"));
    }
    assert!(!f.path("new").exists());
}

/// A non-committing 0x0178 message from the official Python SDK's vectors:
/// refused by default, read with --legacy-non-committing.
#[test]
fn legacy_non_committing_vector() {
    let set = util::esdk_vectors_dir().join("python-4.0.7");
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(set.join("manifest.json")).unwrap()).unwrap();
    let keys: serde_json::Value =
        serde_json::from_slice(&std::fs::read(set.join("keys.json")).unwrap()).unwrap();
    let file =
        |url: &serde_json::Value| set.join(url.as_str().unwrap().trim_start_matches("file://"));
    let mut tests: Vec<_> = manifest["tests"].as_object().unwrap().iter().collect();
    tests.sort_by_key(|(name, _)| name.as_str());
    let (name, t) = tests
        .into_iter()
        .find(|(_, t)| {
            let ct = std::fs::read(file(&t["ciphertext"])).unwrap();
            ct[0] == 1
                && u16::from_be_bytes([ct[2], ct[3]]) == 0x0178
                && t["result"]["output"]["plaintext"].is_string()
        })
        .expect("the python-4.0.7 set has 0x0178 messages");
    let mk = &t["master-keys"][0];
    let key = &keys["keys"][mk["key"].as_str().unwrap()];
    let material = base64::engine::general_purpose::STANDARD
        .decode(key["material"].as_str().unwrap())
        .unwrap();
    let dir = tempdir();
    let key_file = dir.path().join("vector.key");
    std::fs::write(&key_file, material).unwrap();
    let mut args = vec![
        "decrypt".to_string(),
        "--key-namespace".into(),
        mk["provider-id"].as_str().unwrap().into(),
    ];
    args.extend(raw_key_args(&key_file, key["key-id"].as_str().unwrap()));
    for (k, v) in t["encryption-context"].as_object().into_iter().flatten() {
        args.extend(["-c".into(), format!("{k}={}", v.as_str().unwrap())]);
    }
    args.push(file(&t["ciphertext"]).display().to_string());
    args.extend(["-o".into(), "out".into()]);

    envarc()
        .current_dir(dir.path())
        .args(&args)
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("0x0178")
                .and(predicate::str::contains("--legacy-non-committing")),
        );
    assert!(!dir.path().join("out").exists());
    envarc()
        .current_dir(dir.path())
        .args(&args)
        .arg("--legacy-non-committing")
        .assert()
        .success();
    let expected = std::fs::read(file(&t["result"]["output"]["plaintext"])).unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("out")).unwrap(),
        expected,
        "vector {name}"
    );
}

/// Runs `envarc ARGS` with stdout into a pipe that closes after one byte, like
/// `envarc decrypt msg | head -c 1`; returns the exit code and stderr.
fn run_into_closed_pipe(
    dir: &Path,
    args: &[String],
    stdin: Option<&Path>,
) -> (Option<i32>, String) {
    let mut cmd = std::process::Command::new(util::envarc_path());
    cmd.current_dir(dir)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd.stdin(match stdin {
        Some(p) => Stdio::from(std::fs::File::open(p).unwrap()),
        None => Stdio::null(),
    });
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut one = [0u8; 1];
    stdout.read_exact(&mut one).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn broken_pipe_exits_quietly() {
    let f = Fixture::new();
    let plaintext = random_bytes(6, 4 << 20);
    f.encrypt("msg", &plaintext, &[]);
    let mut key = raw_key_args(&f.key, KEY_NAME);
    key.insert(0, "decrypt".into());
    key.push("msg".into());
    let (code, stderr) = run_into_closed_pipe(f.dir.path(), &key, None);
    assert_eq!(
        (code, stderr.as_str()),
        (Some(0), ""),
        "decrypt | head -c 1"
    );

    let input = f.write("big.plain", &plaintext);
    let mut args = vec!["encrypt".to_string()];
    args.extend(raw_key_args(&f.key, KEY_NAME));
    let (code, stderr) = run_into_closed_pipe(f.dir.path(), &args, Some(&input));
    assert_eq!(
        (code, stderr.as_str()),
        (Some(0), ""),
        "encrypt | head -c 1"
    );
}

#[test]
fn read_limits_give_clear_errors() {
    let f = Fixture::new();
    f.encrypt(
        "msg",
        &random_bytes(7, 10_000),
        &["--frame-length", "4096", "-c", "a=b"],
    );
    let cases: [(&[&str], &str); 3] = [
        (&["--max-frame-length", "4095"], "raise --max-frame-length"),
        (&["--max-header-size", "100"], "raise --max-header-size"),
        (&["--max-edks", "0"], "raise --max-edks"),
    ];
    for (flags, message) in cases {
        f.cmd("decrypt")
            .args(flags)
            .args(["msg", "-o", "out"])
            .assert()
            .code(1)
            .stderr(predicate::str::contains(message));
        assert!(!f.path("out").exists(), "{flags:?}");
    }
    // At the limits exactly, it decrypts.
    f.cmd("decrypt")
        .args(["--max-frame-length", "4096", "--max-edks", "1", "msg"])
        .assert()
        .success();
}

#[test]
fn garbage_input_is_not_a_message() {
    let f = Fixture::new();
    f.cmd("decrypt")
        .write_stdin("this is not an encrypted message")
        .assert()
        .failure()
        .stderr(predicate::str::contains(
            "the input is not an encrypted message",
        ));
    // Writing the message to an unwritable place fails cleanly too.
    let mut stdin_msg = Vec::new();
    stdin_msg.write_all(&f.encrypt("msg", b"x", &[])).unwrap();
    f.cmd("decrypt")
        .args(["-", "-o", "no/such/dir/out"])
        .write_stdin(stdin_msg)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("no/such/dir/out"));
}

/// Issue 19: a plaintext given to decrypt is named as such; an existing
/// output is replaced only with --force.
#[test]
fn non_messages_and_existing_outputs_are_refused_clearly() {
    let f = Fixture::new();
    let notes = f.write("notes.txt", b"just some notes\n");
    f.cmd("decrypt")
        .arg(&notes)
        .args(["-o", "out.txt"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "notes.txt is not an encrypted message",
        ));
    assert!(!f.path("out.txt").exists());

    f.encrypt("notes.enc", b"secret notes\n", &[]);
    let before = f.read("notes.enc");
    f.cmd("encrypt")
        .arg(&notes)
        .args(["-o", "notes.enc"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("notes.enc exists; pass --force"));
    assert_eq!(f.read("notes.enc"), before, "refused, yet replaced");
    f.cmd("decrypt")
        .args(["notes.enc", "-o", "notes.txt"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("notes.txt exists; pass --force"));
    assert_eq!(f.read("notes.txt"), b"just some notes\n");
    f.cmd("decrypt")
        .args(["notes.enc", "-o", "notes.txt", "--force"])
        .assert()
        .success();
    assert_eq!(f.read("notes.txt"), b"secret notes\n");
}
