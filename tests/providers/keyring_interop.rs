//! Interop with the official AWS Encryption SDK for Python: a keyring EDK is
//! exactly a raw-AES keyring EDK (namespace `envarc`, name `<cmk-uuid>/v<N>`).
//!
//! Needs ENVARC_ESDK_PYTHON (a python with `aws-encryption-sdk[MPL]`) and
//! ENVARC_ESDK_TOOL (tests/interop/esdk_tool.py). Without them the test is
//! skipped with a message, unless CI is set, where it fails.

use crate::util;

use std::fs;
use std::path::Path;
use std::process::Command;

use util::sandbox::{Sandbox, CHEAP_ARGON2};

fn esdk_tool() -> Option<(String, String)> {
    let (py, tool) = util::peers::esdk_python("keyring_interop")?;
    Some((
        py.to_string_lossy().into_owned(),
        tool.to_string_lossy().into_owned(),
    ))
}

/// `esdk_tool.py OP --key-file KEY --namespace envarc --name NAME REST…`:
/// the Python SDK with a raw AES keyring of envarc's naming.
fn python_raw(
    py: &str,
    tool: &str,
    op: &str,
    key_file: &str,
    name: &str,
    rest: &[&str],
) -> std::process::Output {
    Command::new(py)
        .arg(tool)
        .args([
            op,
            "--key-file",
            key_file,
            "--namespace",
            "envarc",
            "--name",
            name,
        ])
        .args(rest)
        .output()
        .unwrap()
}

#[test]
fn python_sdk_and_envarc_read_each_others_keyring_messages() {
    let Some((py, tool)) = esdk_tool() else {
        return;
    };
    let sb = Sandbox::new()
        .in_dir()
        .keyring("keyring", "interop", CHEAP_ARGON2);
    let p = |n: &str| sb.path(n).to_str().unwrap().to_string();
    let run = |args: &[&str]| sb.json(args);
    let key = run(&["key", "create", "--origin", "EXTERNAL"])["KeyMetadata"]["KeyId"]
        .as_str()
        .unwrap()
        .to_string();
    let (m1, m2): (Vec<u8>, Vec<u8>) = ((0..32).collect(), (100..132).collect());
    fs::write(p("m1"), &m1).unwrap();
    fs::write(p("m2"), &m2).unwrap();
    run(&["key", "import-material", &key, "--material-file", &p("m1")]);
    run(&["key", "import-material", &key, "--material-file", &p("m2")]);

    // envarc writes under v2; Python's raw AES keyring named <uuid>/v2 reads it.
    let plain: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(p("plain"), &plain).unwrap();
    run(&[
        "encrypt",
        "--key",
        &key,
        "-c",
        "purpose=interop",
        &p("plain"),
        "-o",
        &p("msg"),
    ]);
    let v2 = format!("{key}/v2");
    let out = python_raw(
        &py,
        &tool,
        "decrypt",
        &p("m2"),
        &v2,
        &["-c", "purpose=interop", &p("msg"), &p("py.out")],
    );
    crate::util::assert_success(&out);
    assert_eq!(fs::read(p("py.out")).unwrap(), plain);
    let v1 = format!("{key}/v1");
    let out = python_raw(
        &py,
        &tool,
        "decrypt",
        &p("m1"),
        &v1,
        &[&p("msg"), &p("py.bad")],
    );
    assert!(!out.status.success(), "v1 must not unwrap a v2 EDK");
    assert!(!Path::new(&p("py.bad")).exists());

    // Python writes under the historical v1; envarc finds v1 from the EDK.
    let out = python_raw(
        &py,
        &tool,
        "encrypt",
        &p("m1"),
        &v1,
        &["-c", "from=python", &p("plain"), &p("py.msg")],
    );
    crate::util::assert_success(&out);
    let j = run(&[
        "decrypt",
        "-c",
        "from=python",
        &p("py.msg"),
        "-o",
        &p("back"),
    ]);
    assert_eq!(j["EncryptedDataKeys"][0], format!("envarc:{v1}"));
    assert_eq!(fs::read(p("back")).unwrap(), plain);
}
