//! The harness of these tests: a keyring in a temporary folder, cheap to open.

use std::fs;
use std::path::PathBuf;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::util::{envarc, stdout_json};

pub const PW: &str = "correct horse battery staple";
/// Cheap Argon2id for tests; it is recorded in the keyring like any cost.
pub const CHEAP: &str = "m=8,t=1,p=1";
pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub struct Ring {
    pub dir: tempfile::TempDir,
}

impl Ring {
    pub fn new() -> Ring {
        Ring {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("cfg/keyring")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        fs::write(self.file(name), bytes).unwrap();
        self.file(name).to_str().unwrap().to_string()
    }

    pub fn cmd(&self) -> assert_cmd::Command {
        let mut c = envarc();
        c.current_dir(self.dir.path())
            .env("ENVARC_KEYRING", self.path())
            .env("ENVARC_PASSPHRASE", PW)
            .env("ENVARC_ARGON2_PARAMS", CHEAP);
        c
    }

    /// Runs with --json, expects success, returns the JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        let out = self.cmd().arg("--json").args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout_json(&out)
    }

    /// Expects exit `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.cmd().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        err
    }

    /// Runs and returns the exit code.
    pub fn code(&self, args: &[&str]) -> Option<i32> {
        self.cmd().args(args).output().unwrap().status.code()
    }

    pub fn create(&self, args: &[&str]) -> String {
        let mut a = vec!["key", "create"];
        a.extend_from_slice(args);
        self.ok(&a)["KeyMetadata"]["KeyId"]
            .as_str()
            .unwrap()
            .to_string()
    }

    pub fn meta(&self, key: &str) -> Value {
        self.ok(&["key", "describe", key])["KeyMetadata"].clone()
    }

    /// Encrypts `plain` under `key` into a file; returns its path.
    pub fn encrypt(&self, key: &str, name: &str, plain: &[u8]) -> String {
        let input = self.write(&format!("{name}.plain"), plain);
        let out = self.file(name).to_str().unwrap().to_string();
        self.ok(&["encrypt", "--key", key, &input, "-o", &out, "--force"]);
        out
    }

    /// Decrypts a message file; returns the plaintext.
    pub fn decrypt(&self, msg: &str) -> Vec<u8> {
        let out = format!("{msg}.out");
        let j = self.ok(&["decrypt", msg, "-o", &out, "--force"]);
        assert_eq!(j["EncryptedDataKeys"].as_array().unwrap().len(), 1);
        fs::read(out).unwrap()
    }
}

pub fn date(s: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(s.as_str().unwrap(), &Rfc3339).unwrap()
}

pub fn fmt(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}
