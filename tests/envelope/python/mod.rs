//! Cross-checks with the official AWS Encryption SDK for Python (through
//! tests/interop/esdk_tool.py, raw AES keyring): messages Python writes decrypt
//! in envarc, and messages envarc writes decrypt in Python, for sizes 0, 1,
//! frame-1, frame, frame+1 and several MiB, with and without an encryption
//! context, under AES-128/192/256 wrapping keys. The same for the signed suite
//! 0x0578: Python's default messages (raw AES keyring, and its AWS KMS keyring
//! against a local moto) decrypt in envarc, and envarc's 0x0578 in Python.
//!
//! Each case is one command line of the tool. Importing the SDK costs about
//! half a second per Python start, so each test runs all its command lines in a
//! single Python process: a small driver loads the tool as a module and calls
//! its `main(argv)` once per case, exactly as the command line would.
//!
//! The tests find Python through ENVARC_ESDK_PYTHON (the virtualenv's python
//! with `aws-encryption-sdk[MPL]`) and ENVARC_ESDK_TOOL (the tool's path);
//! `.ci/run` sets both. Unset, the tests are skipped with a note, except under
//! CI (env `CI` set), where that is a failure.

use crate::util;

mod signed;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use envarc::envelope::{
    decrypt_to_vec, encrypt_to_vec, DecryptOptions, EncryptOptions, EncryptionContext, RawAesKey,
    Suite,
};

const KEY_NAME: &str = "interop/v1";
/// Frame length of the small cases (the Python SDK's default).
const FRAME: usize = 4096;
/// Several MiB, not a multiple of any frame length used here.
const BIG: usize = 3 * 1024 * 1024 + 17;

struct Python {
    python: PathBuf,
    tool: PathBuf,
}

/// The Python side, or `None` after a skip line (see tests/util/peers.rs).
fn python() -> Option<Python> {
    let (python, tool) = util::peers::esdk_python("interop_python")?;
    Some(Python { python, tool })
}

/// One message to move across: its size, frame length (0 = non-framed, only
/// Python writes those), whether it has a context, and the wrapping key.
struct Case {
    size: usize,
    frame: usize,
    with_context: bool,
    key_len: usize,
    namespace: &'static str,
}

impl Case {
    fn label(&self) -> String {
        format!(
            "size {} frame {} context {} AES-{} ns {}",
            self.size,
            self.frame,
            self.with_context,
            self.key_len * 8,
            self.namespace
        )
    }

    fn context(&self) -> EncryptionContext {
        if !self.with_context {
            return EncryptionContext::new();
        }
        // Keys whose order differs between insertion, code points of non-ASCII
        // text and ASCII: both sides must serialize them identically.
        [("repo", "r-1"), ("kind", "object"), ("é", "ü ☃"), ("Z", "")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn context_args(&self) -> Vec<String> {
        self.context()
            .iter()
            .flat_map(|(k, v)| ["-c".into(), format!("{k}={v}")])
            .collect()
    }
}

/// Sizes 0, 1, frame-1, frame, frame+1 at 4096 and a large one at 64 KiB
/// frames, each with and without a context; key sizes and namespaces rotate.
fn cases() -> Vec<Case> {
    let sizes = [
        (0, FRAME),
        (1, FRAME),
        (FRAME - 1, FRAME),
        (FRAME, FRAME),
        (FRAME + 1, FRAME),
        (BIG, 65536),
    ];
    let mut out = Vec::new();
    for (i, &(size, frame)) in sizes.iter().enumerate() {
        for with_context in [false, true] {
            let n = out.len();
            out.push(Case {
                size,
                frame,
                with_context,
                key_len: [16, 24, 32][n % 3],
                namespace: if i % 2 == 0 { "envarc" } else { "interop-ns" },
            });
        }
    }
    out
}

struct Workspace {
    dir: tempfile::TempDir,
}

impl Workspace {
    fn path(&self, name: String) -> PathBuf {
        self.dir.path().join(name)
    }

    fn key(&self, case: &Case) -> (PathBuf, RawAesKey) {
        let (path, material) = util::write_key(
            self.dir.path(),
            &format!("aes{}.key", case.key_len * 8),
            case.key_len,
            case.key_len as u64,
        );
        let key = RawAesKey::new(case.namespace, KEY_NAME, &material).unwrap();
        (path, key)
    }
}

fn key_args(key_file: &Path, case: &Case) -> Vec<String> {
    vec![
        "--key-file".into(),
        s(key_file),
        "--namespace".into(),
        case.namespace.into(),
        "--name".into(),
        KEY_NAME.into(),
    ]
}

fn s(p: &Path) -> String {
    p.to_str().expect("temporary paths are UTF-8").to_string()
}

/// Runs the tool once per command line (argv without the program name), all in
/// one Python process, and prints each run's exit status and output as JSON.
const DRIVER: &str = r#"
import contextlib, importlib.util, io, json, sys
spec = importlib.util.spec_from_file_location("esdk_tool", sys.argv[1])
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
results = []
for argv in json.load(sys.stdin):
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        try:
            rc = tool.main(argv)
        except SystemExit as e:
            rc = e.code if isinstance(e.code, int) else 1
    results.append({"rc": rc, "output": out.getvalue()})
json.dump(results, sys.stdout)
"#;

/// Runs `jobs` through the tool; returns (succeeded, output) for each.
fn run_tool(py: &Python, jobs: &[Vec<String>]) -> Vec<(bool, String)> {
    run_tool_env(py, jobs, &[])
}

fn run_tool_env(py: &Python, jobs: &[Vec<String>], env: &[(&str, &str)]) -> Vec<(bool, String)> {
    let mut child = Command::new(&py.python)
        .envs(env.iter().copied())
        .args(["-c", DRIVER])
        .arg(&py.tool)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the Python ESDK tool");
    let input = serde_json::to_vec(jobs).unwrap();
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Python driver around {} failed: {}",
        py.tool.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let results: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(results.len(), jobs.len());
    results
        .iter()
        .map(|r| {
            (
                r["rc"] == 0,
                r["output"].as_str().unwrap_or_default().into(),
            )
        })
        .collect()
}

#[test]
fn python_writes_envarc_reads() {
    let Some(py) = python() else { return };
    let ws = Workspace {
        dir: util::tempdir(),
    };
    let mut all = cases();
    // A non-framed message (content type 0x01), which envarc reads but never writes.
    all.push(Case {
        size: 1000,
        frame: 0,
        with_context: true,
        key_len: 32,
        namespace: "envarc",
    });
    let mut plaintexts = Vec::new();
    let mut jobs = Vec::new();
    for (i, case) in all.iter().enumerate() {
        let plaintext = util::random_bytes(i as u64, case.size);
        std::fs::write(ws.path(format!("{i}.plain")), &plaintext).unwrap();
        let (key_file, _) = ws.key(case);
        let mut args = vec!["encrypt".to_string()];
        args.extend(key_args(&key_file, case));
        args.extend(["--frame-length".into(), case.frame.to_string()]);
        args.extend(case.context_args());
        args.push(s(&ws.path(format!("{i}.plain"))));
        args.push(s(&ws.path(format!("{i}.msg"))));
        jobs.push(args);
        plaintexts.push(plaintext);
    }
    let results = run_tool(&py, &jobs);
    for (i, ((ok, text), plaintext)) in results.into_iter().zip(plaintexts).enumerate() {
        let case = &all[i];
        assert!(ok, "Python failed to encrypt {}: {text}", case.label());
        let message = std::fs::read(ws.path(format!("{i}.msg"))).unwrap();
        assert_eq!(
            &message[..3],
            b"\x02\x04\x78",
            "{}: format 2, suite 0x0478",
            case.label()
        );
        let (_, key) = ws.key(case);
        let opts = DecryptOptions {
            expected_context: case.context(),
            ..Default::default()
        };
        let (header, back) = decrypt_to_vec(&key, &opts, &message)
            .unwrap_or_else(|e| panic!("envarc cannot read Python's {}: {e}", case.label()));
        assert!(back == plaintext, "{}: plaintext differs", case.label());
        assert_eq!(header.context, case.context(), "{}", case.label());
        assert_eq!(header.frame_length as usize, case.frame, "{}", case.label());
        assert_eq!(
            header.edks[0].describe(),
            format!("{}:{KEY_NAME}", case.namespace)
        );

        // The large one also through the CLI, streaming from a file to a file.
        if case.size == BIG && case.with_context {
            let (key_file, _) = ws.key(case);
            util::envarc()
                .args(["decrypt", "--key-namespace", case.namespace])
                .args(util::raw_key_args(&key_file, KEY_NAME))
                .args(case.context_args())
                .arg(ws.path(format!("{i}.msg")))
                .arg("-o")
                .arg(ws.path(format!("{i}.back")))
                .assert()
                .success();
            assert!(std::fs::read(ws.path(format!("{i}.back"))).unwrap() == plaintext);
        }
    }
}

/// Writes case `i`'s message of `plaintext` (under `suite`, or the CLI's
/// default, the committing unsigned suite): through the CLI for the big
/// case, as a user would, else through the library. Returns the Python job
/// that decrypts it, checking the context pairs against the stored ones and
/// writing the header as JSON.
fn envarc_encrypts(
    ws: &Workspace,
    case: &Case,
    i: usize,
    suite: Option<Suite>,
    plaintext: &[u8],
) -> Vec<String> {
    let (key_file, key) = ws.key(case);
    let msg = ws.path(format!("{i}.msg"));
    if case.size == BIG {
        std::fs::write(ws.path(format!("{i}.plain")), plaintext).unwrap();
        let mut c = util::envarc();
        c.args(["encrypt", "--key-namespace", case.namespace])
            .args(util::raw_key_args(&key_file, KEY_NAME));
        if let Some(suite) = suite {
            c.args(["--algorithm", suite.sdk_name()]);
        }
        c.args(["--frame-length", &case.frame.to_string()])
            .args(case.context_args())
            .arg(ws.path(format!("{i}.plain")))
            .arg("-o")
            .arg(&msg)
            .assert()
            .success();
    } else {
        let opts = EncryptOptions {
            suite: suite.unwrap_or(Suite::Aes256GcmHkdfSha512Commit),
            frame_length: case.frame as u32,
            context: case.context(),
        };
        std::fs::write(&msg, encrypt_to_vec(&key, &opts, plaintext).unwrap()).unwrap();
    }
    let mut args = vec!["decrypt".to_string()];
    args.extend(key_args(&key_file, case));
    args.extend(case.context_args());
    args.extend(["--header-json".into(), s(&ws.path(format!("{i}.json")))]);
    args.extend([s(&msg), s(&ws.path(format!("{i}.back")))]);
    args
}

#[test]
fn envarc_writes_python_reads() {
    let Some(py) = python() else { return };
    let ws = Workspace {
        dir: util::tempdir(),
    };
    let all = cases();
    let mut plaintexts = Vec::new();
    let mut jobs = Vec::new();
    for (i, case) in all.iter().enumerate() {
        let plaintext = util::random_bytes(1000 + i as u64, case.size);
        jobs.push(envarc_encrypts(&ws, case, i, None, &plaintext));
        plaintexts.push(plaintext);
    }
    // And Python must refuse a pair the message does not have.
    let case = &all[1];
    let mut args = vec!["decrypt".to_string()];
    args.extend(key_args(&ws.key(case).0, case));
    args.extend(["-c".into(), "repo=another".into()]);
    args.extend([s(&ws.path("1.msg".into())), s(&ws.path("refused".into()))]);
    jobs.push(args);

    let mut results = run_tool(&py, &jobs);
    let (refused_ok, refused_text) = results.pop().unwrap();
    for (i, ((ok, text), plaintext)) in results.into_iter().zip(plaintexts).enumerate() {
        let case = &all[i];
        assert!(
            ok,
            "Python failed to decrypt envarc's {}: {text}",
            case.label()
        );
        assert!(
            std::fs::read(ws.path(format!("{i}.back"))).unwrap() == plaintext,
            "{}: plaintext differs",
            case.label()
        );
        let header: serde_json::Value =
            serde_json::from_slice(&std::fs::read(ws.path(format!("{i}.json"))).unwrap()).unwrap();
        assert_eq!(header["suite_id"], "0x0478", "{}", case.label());
        assert_eq!(header["frame_length"], case.frame, "{}", case.label());
        let ctx: BTreeMap<String, String> =
            serde_json::from_value(header["encryption_context"].clone()).unwrap();
        assert_eq!(ctx, case.context(), "{}", case.label());
        assert_eq!(
            header["encrypted_data_keys"][0]["provider_id"],
            case.namespace
        );
        assert_eq!(
            header["encrypted_data_keys"][0]["raw_aes_key_name"],
            KEY_NAME
        );
    }
    assert!(
        !refused_ok,
        "Python accepted a context pair the message does not have"
    );
    assert!(refused_text.contains("esdk_tool: error"), "{refused_text}");
    assert!(!ws.path("refused".into()).exists());
}
