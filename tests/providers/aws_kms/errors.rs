//! KMS failures: each names the key, maps to the right exit code (5: a key
//! problem, 1: the service cannot be reached or is overloaded), never shows
//! a secret, and leaves no output file behind.

use super::fake::{Answer, Fake};
use super::moto::free_port;
use super::{expect_exit, server, Scratch};
use crate::util::dir_names;

const ARN: &str = "arn:aws:kms:us-east-1:123456789012:key/0b0b0b0b-1111-2222-3333-444455556666";
/// A recognisable secret: it must never appear in any output.
const SECRET: &str = "wJalrXUtnFEMI-SECRET-never-print-me";

/// `envarc encrypt --key ARN IN -o OUT` against `endpoint`; asserts the exit
/// code and that OUT was not created (nor any temporary file beside it).
fn encrypt_fails(sc: &Scratch, endpoint: &str, key: &str, code: i32) -> String {
    let input = sc.write("in.txt", b"some data");
    let out = sc.path("out.enc");
    let before = dir_names(sc.dir.path());
    let mut cmd = sc.envarc();
    cmd.args(["encrypt", "--key", key, "--kms-endpoint", endpoint])
        .arg(&input)
        .arg("-o")
        .arg(&out)
        .env("AWS_SECRET_ACCESS_KEY", SECRET);
    let err = expect_exit(&mut cmd, code);
    assert!(!out.exists(), "a failed encrypt left {}", out.display());
    assert_eq!(dir_names(sc.dir.path()), before, "files left behind");
    assert!(!err.contains(SECRET), "the secret key shows in: {err}");
    let id = key.trim_start_matches("aws-kms:");
    assert!(err.contains(id), "the error does not name the key: {err}");
    err
}

#[test]
fn unknown_key_and_alias_are_key_errors() {
    let Some(moto) = server("unknown_key_and_alias_are_key_errors") else {
        return;
    };
    let sc = Scratch::new(moto);
    let err = encrypt_fails(&sc, &moto.url, "aws-kms:alias/no-such-alias", 5);
    assert!(err.contains("not found"), "{err}");
    let err = encrypt_fails(&sc, &moto.url, ARN, 5);
    assert!(err.contains("not found"), "{err}");
    // init checks the key before it creates anything.
    let repo = sc.path("repo");
    let mut init = sc.kms(&["init", "-r", super::s(&repo), "--key", ARN]);
    expect_exit(&mut init, 5);
    assert!(!repo.exists());
}

#[test]
fn network_down_is_exit_1_after_retries() {
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let sc = Scratch::for_endpoint(&endpoint);
    let err = encrypt_fails(&sc, &endpoint, ARN, 1);
    assert!(err.contains("cannot reach AWS KMS at"), "{err}");
}

#[test]
fn a_server_that_never_answers_times_out() {
    let fake = Fake::start(Answer::Hang);
    let sc = Scratch::for_endpoint(&fake.url);
    let started = std::time::Instant::now();
    let input = sc.write("in.txt", b"x");
    let mut cmd = sc.envarc();
    cmd.args(["encrypt", "--key", ARN, "--kms-timeout", "1"])
        .args(["--kms-endpoint", &fake.url])
        .arg(&input)
        .arg("-o")
        .arg(sc.path("out"));
    let err = expect_exit(&mut cmd, 1);
    assert!(err.contains("in time"), "{err}");
    assert!(started.elapsed().as_secs() < 20, "{:?}", started.elapsed());
    assert!(!sc.path("out").exists());
}

#[test]
fn refusals_name_the_key_and_the_cause() {
    let cases = [
        (
            "AccessDeniedException",
            "User: arn:aws:iam::1:user/x is not authorized",
            5,
            "denied kms:GenerateDataKey",
        ),
        ("DisabledException", "the key is disabled", 5, "is disabled"),
        (
            "KMSInvalidStateException",
            "pending deletion",
            5,
            "current state",
        ),
        (
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
            5,
            "rejected the credentials",
        ),
    ];
    for (kind, message, code, expect) in cases {
        let fake = Fake::start(Answer::Error(400, kind, message));
        let sc = Scratch::for_endpoint(&fake.url);
        let err = encrypt_fails(&sc, &fake.url, ARN, code);
        assert!(err.contains(expect), "{kind}: {err}");
        assert!(err.contains(message), "{kind}: {err}");
        assert_eq!(fake.requests(), 1, "{kind} is not retried");
    }
}

#[test]
fn throttling_is_retried_then_exit_1() {
    let fake = Fake::start(Answer::Error(400, "ThrottlingException", "Rate exceeded"));
    let sc = Scratch::for_endpoint(&fake.url);
    let err = encrypt_fails(&sc, &fake.url, ARN, 1);
    assert!(err.contains("even after retries"), "{err}");
    // AWS_MAX_ATTEMPTS=2 in the test environment.
    assert_eq!(fake.requests(), 2);
}

#[test]
fn missing_credentials_say_where_to_put_them() {
    let fake = Fake::start(Answer::Error(500, "InternalFailure", "unused"));
    let sc = Scratch::for_endpoint(&fake.url);
    let input = sc.write("in.txt", b"x");
    let mut cmd = sc.envarc();
    cmd.env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args(["encrypt", "--key", ARN, "--kms-endpoint", &fake.url])
        .arg(&input)
        .arg("-o")
        .arg(sc.path("out"));
    let err = expect_exit(&mut cmd, 5);
    assert!(err.contains("no AWS credentials"), "{err}");
    assert_eq!(fake.requests(), 0, "nothing is sent unsigned");
}

#[test]
fn a_tampered_kms_edk_is_a_key_error() {
    let Some(moto) = server("a_tampered_kms_edk_is_a_key_error") else {
        return;
    };
    let sc = Scratch::new(moto);
    let arn = moto.create_key("tamper");
    let input = sc.write("in.txt", b"payload");
    let msg = sc.path("msg.enc");
    sc.kms(&["encrypt", "--key", &arn, "-c", "a=b"])
        .arg(&input)
        .arg("-o")
        .arg(&msg)
        .assert()
        .success();
    // Change the stored context a=b to a=c: the data key's unwrap comes
    // before the header check, and KMS refuses the ciphertext because the
    // context is bound into it (as it would refuse a tampered EDK).
    let mut bytes = std::fs::read(&msg).unwrap();
    let needle = b"\x00\x01a\x00\x01b";
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the context is in the header");
    bytes[at + needle.len() - 1] = b'c';
    let bad = sc.path("bad.enc");
    std::fs::write(&bad, bytes).unwrap();
    let out = sc.path("out.txt");
    let mut cmd = sc.kms(&["decrypt", "--key", &arn]);
    cmd.arg(&bad).arg("-o").arg(&out);
    let err = expect_exit(&mut cmd, 5);
    assert!(err.contains(&arn), "{err}");
    assert!(!out.exists());
}
