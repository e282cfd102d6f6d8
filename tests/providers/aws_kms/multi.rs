//! Several keys per message: `--key LOCAL --key KMS` wraps every data key
//! under both, and either one alone decrypts: the keyring with KMS out of
//! reach, KMS with no keyring on the host.

use super::moto::free_port;
use super::{expect_exit, s, server, Scratch};
use crate::util::stdout_json;

const PLAIN: &[u8] = b"the same bytes, two keys";

struct Setup {
    sc: Scratch,
    arn: String,
    msg: std::path::PathBuf,
    /// An endpoint where nothing listens.
    down: String,
}

fn setup(test: &str) -> Option<Setup> {
    let moto = server(test)?;
    let sc = Scratch::new(moto);
    sc.local_key("alias/local");
    let arn = moto.create_key(test);
    let input = sc.write("in.txt", PLAIN);
    let msg = sc.path("msg.enc");
    sc.kms(&[
        "encrypt",
        "--key",
        "alias/local",
        "--key",
        &arn,
        "-c",
        "t=1",
    ])
    .arg(&input)
    .arg("-o")
    .arg(&msg)
    .assert()
    .success();
    let down = format!("http://127.0.0.1:{}", free_port());
    Some(Setup { sc, arn, msg, down })
}

impl Setup {
    /// `envarc --json decrypt MSG -o OUT ARGS…`: the JSON, after checking OUT.
    fn decrypt_ok(&self, args: &[&str], no_keyring: bool) -> serde_json::Value {
        let out = self.sc.path("out.txt");
        let _ = std::fs::remove_file(&out);
        let mut c = self.sc.envarc();
        if no_keyring {
            c.env("ENVARC_KEYRING", self.sc.path("no-such-keyring"));
        }
        let o = c
            .args(["--json", "decrypt"])
            .args(args)
            .arg(&self.msg)
            .arg("-o")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "decrypt {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(std::fs::read(&out).unwrap(), PLAIN);
        stdout_json(&o)
    }
}

#[test]
fn each_key_alone_decrypts() {
    let Some(st) = setup("each_key_alone_decrypts") else {
        return;
    };
    let kms = st.sc.endpoint.clone();
    // Keyring only: KMS unreachable, with or without naming the key.
    let j = st.decrypt_ok(&["--kms-endpoint", &st.down], false);
    let edks: Vec<String> = serde_json::from_value(j["EncryptedDataKeys"].clone()).unwrap();
    assert_eq!(edks.len(), 2, "{edks:?}");
    assert!(edks[0].starts_with("envarc:"), "{edks:?}");
    assert_eq!(edks[1], format!("aws-kms:{}", st.arn));
    st.decrypt_ok(&["--key", "alias/local", "--kms-endpoint", &st.down], false);
    // KMS only: no keyring on this host.
    st.decrypt_ok(&["--kms-endpoint", &kms], true);
    st.decrypt_ok(&["--key", &st.arn, "--kms-endpoint", &kms], true);
}

#[test]
fn neither_key_usable_names_both() {
    let Some(st) = setup("neither_key_usable_names_both") else {
        return;
    };
    let out = st.sc.path("never.txt");
    let mut c = st.sc.envarc();
    c.env("ENVARC_KEYRING", st.sc.path("no-such-keyring"))
        .args(["decrypt", "--kms-endpoint", &st.down])
        .arg(&st.msg)
        .arg("-o")
        .arg(&out);
    // The keyring is simply absent; KMS is unreachable: a network failure.
    let err = expect_exit(&mut c, 1);
    assert!(err.contains("keyring"), "{err}");
    assert!(err.contains(&st.arn), "{err}");
    assert!(!out.exists());
    // Only a key the message does not hold: exit 5, saying what it tried.
    st.sc.local_key("alias/other");
    let mut c = st.sc.envarc();
    c.args(["decrypt", "--key", "alias/other"])
        .arg(&st.msg)
        .arg("-o")
        .arg(&out);
    let err = expect_exit(&mut c, 5);
    assert!(err.contains("aws-kms:"), "{err}");
    assert!(!out.exists());
}

#[test]
fn encrypt_needs_every_key() {
    let Some(st) = setup("encrypt_needs_every_key") else {
        return;
    };
    let out = st.sc.path("two.enc");
    let mut c = st.sc.envarc();
    c.args(["encrypt", "--key", "alias/local", "--key", &st.arn])
        .args(["--kms-endpoint", &st.down])
        .arg(st.sc.path("in.txt"))
        .arg("-o")
        .arg(&out);
    let err = expect_exit(&mut c, 1);
    assert!(err.contains(&st.arn), "{err}");
    assert!(
        !out.exists(),
        "a message with fewer keys than asked went out"
    );
    let mut twice = st.sc.envarc();
    twice.args(["encrypt", "--key", "alias/local", "--key", "alias/local"]);
    let err = expect_exit(&mut twice, 2);
    assert!(err.contains("twice"), "{err}");
}

#[test]
fn a_repository_under_two_keys_opens_with_either() {
    let Some(st) = setup("a_repository_under_two_keys_opens_with_either") else {
        return;
    };
    let sc = &st.sc;
    let repo = sc.path("repo");
    let src = sc.path("src");
    std::fs::create_dir(&src).unwrap();
    std::fs::write(src.join("a.txt"), b"alpha").unwrap();
    let init = sc
        .kms(&["--json", "init", "-r", s(&repo), "--key", "alias/local"])
        .args(["--key", &format!("aws-kms:{}", st.arn)])
        .output()
        .unwrap();
    crate::util::assert_success(&init);
    let j = stdout_json(&init);
    assert_eq!(j["keys"].as_array().unwrap().len(), 2, "{j}");
    assert_eq!(j["keys"][0]["provider"], "keyring");
    assert_eq!(j["keys"][1]["provider"], "aws-kms");
    assert_eq!(j["keys"][1]["key"], st.arn.as_str());
    sc.kms(&["backup", "-r", s(&repo), s(&src)])
        .assert()
        .success();
    // Keyring only (KMS down): reading works.
    sc.envarc()
        .args(["ls", "-r", s(&repo), "latest", "--kms-endpoint", &st.down])
        .assert()
        .success()
        .stdout(predicates::str::contains("a.txt"));
    // KMS only (no keyring): reading and restoring work; writing needs every key.
    let mut ls = sc.kms(&["ls", "-r", s(&repo), "latest"]);
    ls.env("ENVARC_KEYRING", sc.path("no-such-keyring"));
    ls.assert()
        .success()
        .stdout(predicates::str::contains("a.txt"));
    let target = sc.path("restored");
    let mut restore = sc.kms(&["restore", "-r", s(&repo), "latest", "--target", s(&target)]);
    restore.env("ENVARC_KEYRING", sc.path("no-such-keyring"));
    restore.assert().success();
    let got = target.join(src.strip_prefix("/").unwrap()).join("a.txt");
    assert_eq!(std::fs::read(got).unwrap(), b"alpha");
    std::fs::write(src.join("b.txt"), b"beta").unwrap();
    let mut backup = sc.kms(&["backup", "-r", s(&repo), s(&src)]);
    backup.env("ENVARC_KEYRING", sc.path("no-such-keyring"));
    let err = expect_exit(&mut backup, 5);
    assert!(err.contains("could not be opened"), "{err}");
    // (Rewrap and reencrypt of several-key repositories come back with the
    // maintenance commands on format 2.)
}
