//! The official AWS Encryption SDK for Python, with its AWS KMS keyring
//! pointed at the same moto server (tests/interop/esdk_tool.py
//! `--kms-key-arn`): envarc's KMS messages decrypt there, and Python's here.
//! Python is found as in tests/interop_python.rs: ENVARC_ESDK_PYTHON and
//! ENVARC_ESDK_TOOL, skipped with a note when unset outside CI.

use std::path::PathBuf;
use std::process::Command;

use super::{server, Scratch};

fn python() -> Option<(PathBuf, PathBuf)> {
    crate::util::peers::esdk_python("aws_kms::interop")
}

/// `esdk_tool.py CMD --kms-key-arn ARN --kms-endpoint URL ARGS…`, asserting success.
fn tool(py: &(PathBuf, PathBuf), endpoint: &str, cmd: &str, arn: &str, args: &[&str]) {
    let mut c = Command::new(&py.0);
    super::aws_env(&mut c);
    let out = c
        .arg(&py.1)
        .args([cmd, "--kms-key-arn", arn, "--kms-endpoint", endpoint])
        .args(args)
        .output()
        .expect("running esdk_tool.py");
    assert!(
        out.status.success(),
        "esdk_tool {cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn python_kms_keyring_reads_envarc_and_envarc_reads_python() {
    let Some(moto) = server("python_kms_keyring_reads_envarc_and_envarc_reads_python") else {
        return;
    };
    let Some(py) = python() else { return };
    let sc = Scratch::new(moto);
    let arn = moto.create_key("interop");
    // Several frames at the Python SDK's default frame length.
    let plain = crate::util::random_bytes(9, 3 * 4096 + 17);
    let input = sc.write("plain.bin", &plain);

    // envarc → Python
    let ours = sc.path("ours.enc");
    sc.kms(&[
        "encrypt",
        "--key",
        &arn,
        "-c",
        "repo=r-1",
        "-c",
        "kind=object",
    ])
    .arg(&input)
    .arg("-o")
    .arg(&ours)
    .assert()
    .success();
    let back = sc.path("ours.out");
    let header = sc.path("ours.json");
    tool(
        &py,
        &moto.url,
        "decrypt",
        &arn,
        &[
            "-c",
            "repo=r-1",
            "--header-json",
            super::s(&header),
            super::s(&ours),
            super::s(&back),
        ],
    );
    assert_eq!(std::fs::read(&back).unwrap(), plain);
    let h: serde_json::Value = serde_json::from_slice(&std::fs::read(&header).unwrap()).unwrap();
    let edk = &h["encrypted_data_keys"][0];
    assert_eq!(edk["provider_id"], "aws-kms");
    assert_eq!(edk["provider_info_hex"], hex::encode(&arn));

    // Python → envarc, without naming the key and naming it.
    let theirs = sc.path("theirs.enc");
    tool(
        &py,
        &moto.url,
        "encrypt",
        &arn,
        &["-c", "from=python", super::s(&input), super::s(&theirs)],
    );
    for key_args in [vec![], vec!["--key", arn.as_str()]] {
        let out = sc.path("theirs.out");
        let _ = std::fs::remove_file(&out);
        let mut c = sc.kms(&["decrypt", "-c", "from=python"]);
        c.args(&key_args).arg(&theirs).arg("-o").arg(&out);
        c.assert().success();
        assert_eq!(std::fs::read(&out).unwrap(), plain, "{key_args:?}");
    }
}
