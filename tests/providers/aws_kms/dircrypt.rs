//! Directory mode against the official AWS Encryption CLI (PyPI
//! `aws-encryption-sdk-cli`, in a virtualenv of its own made by
//! .ci/setup-aws-encryption-cli.sh), both on the same moto KMS: a tree the
//! CLI encrypts with its defaults (suite 0x0578, 4 KiB frames) decrypts with
//! `envarc decrypt --recursive`, and trees envarc encrypts (0x0478 and
//! 0x0578) decrypt with `aws-encryption-cli --decrypt --recursive`.
//! The CLI is found through ENVARC_AWS_ENCRYPTION_CLI, else the repository's
//! .venv-esdk-cli; missing, the tests skip or fail as tests/util/peers.rs says.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::moto::Moto;
use super::{server, Scratch};

fn aws_cli(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVARC_AWS_ENCRYPTION_CLI") {
        return Some(PathBuf::from(p));
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-esdk-cli/bin/aws-encryption-cli");
    if venv.is_file() {
        return Some(venv);
    }
    crate::util::peers::missing(
        test,
        "the AWS Encryption CLI was not found: set ENVARC_AWS_ENCRYPTION_CLI=$(bash .ci/setup-aws-encryption-cli.sh)",
    );
    None
}

/// `aws-encryption-cli MODE --recursive -i IN -o OUT -w key=ARN -S`, asserting success.
fn run_cli(cli: &Path, moto: &Moto, mode: &str, arn: &str, input: &Path, output: &Path) {
    // The CLI wants an existing folder to write a tree into.
    std::fs::create_dir_all(output).unwrap();
    let mut c = Command::new(cli);
    super::aws_env(&mut c);
    c.env("AWS_ENDPOINT_URL_KMS", &moto.url)
        .args([mode, "--recursive", "-S", "-w"])
        .arg(format!("key={arn}"))
        .arg("-i")
        .arg(input)
        .arg("-o")
        .arg(output);
    let out = c.output().expect("running aws-encryption-cli");
    assert!(
        out.status.success(),
        "aws-encryption-cli {mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tree with sizes around and at multiples of the CLI's 4 KiB frames and
/// envarc's 64 KiB ones.
fn sample(root: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let files = vec![
        ("a.txt", b"hello from a tree\n".to_vec()),
        ("empty", Vec::new()),
        ("sub/b.bin", crate::util::random_bytes(1, 3 * 4096 + 17)),
        (
            "sub/deeper/c.bin",
            crate::util::random_bytes(2, 64 * 1024 + 1),
        ),
        (
            "sub/deeper/d.bin",
            crate::util::random_bytes(3, (5 << 20) + 3),
        ),
        // Exact multiples of both frame lengths: the final frame is empty,
        // the only layout the CLI's SDK (3.x) reads at such sizes.
        ("sub/exact.bin", crate::util::random_bytes(4, 2 * 65536)),
    ];
    for (rel, data) in &files {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, data).unwrap();
    }
    files
}

#[test]
fn a_tree_from_aws_encryption_cli_decrypts_with_envarc() {
    let test = "a_tree_from_aws_encryption_cli_decrypts_with_envarc";
    let Some(moto) = server(test) else { return };
    let Some(cli) = aws_cli(test) else { return };
    let sc = Scratch::new(moto);
    let arn = moto.create_key("dircrypt from the AWS CLI");
    let files = sample(&sc.path("in"));
    run_cli(
        &cli,
        moto,
        "--encrypt",
        &arn,
        &sc.path("in"),
        &sc.path("cli"),
    );
    // Keyless: the messages name their KMS key.
    sc.kms(&[
        "decrypt",
        "--recursive",
        super::s(&sc.path("cli")),
        "-o",
        super::s(&sc.path("dec")),
    ])
    .assert()
    .success();
    for (rel, data) in &files {
        let got = std::fs::read(sc.path("dec").join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
        assert!(got == *data, "{rel} differs");
    }
    // The CLI's default is the signed suite; stats names the KMS key.
    let out = sc
        .kms(&["--json", "stats", "--recursive", super::s(&sc.path("cli"))])
        .output()
        .unwrap();
    assert!(out.status.success());
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["suites"]["0x0578"], files.len(), "{s}");
    assert_eq!(s["versions"][0]["provider"], "aws-kms", "{s}");
    assert_eq!(s["versions"][0]["key"], arn.as_str(), "{s}");
}

#[test]
fn trees_from_envarc_in_both_suites_decrypt_with_aws_encryption_cli() {
    let test = "trees_from_envarc_in_both_suites_decrypt_with_aws_encryption_cli";
    let Some(moto) = server(test) else { return };
    let Some(cli) = aws_cli(test) else { return };
    let sc = Scratch::new(moto);
    let arn = moto.create_key("dircrypt to the AWS CLI");
    let files = sample(&sc.path("in"));
    for suite in [
        "AES_256_GCM_HKDF_SHA512_COMMIT_KEY",
        "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384",
    ] {
        let (enc, dec) = (
            sc.path(&format!("enc-{suite}")),
            sc.path(&format!("dec-{suite}")),
        );
        sc.kms(&[
            "encrypt",
            "--recursive",
            super::s(&sc.path("in")),
            "-o",
            super::s(&enc),
            "--key",
            &arn,
            "--algorithm",
            suite,
        ])
        .assert()
        .success();
        run_cli(&cli, moto, "--decrypt", &arn, &enc, &dec);
        for (rel, data) in &files {
            // The CLI appends `.decrypted` to whatever name it decrypts.
            let p = dec.join(format!("{rel}.encrypted.decrypted"));
            let got = std::fs::read(&p).unwrap_or_else(|e| panic!("{suite}: {}: {e}", p.display()));
            assert!(got == *data, "{suite}: {rel} differs");
        }
    }
}
