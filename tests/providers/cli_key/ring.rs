//! The harness of these tests: a keyring in a temporary folder, cheap to open.

use std::path::PathBuf;

use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::util::sandbox::{Sandbox, CHEAP_ARGON2};

pub const PW: &str = "correct horse battery staple";
/// Cheap Argon2id for tests; it is recorded in the keyring like any cost.
pub const CHEAP: &str = CHEAP_ARGON2;
pub const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A keyring at `cfg/keyring` in a [`Sandbox`] whose commands run in its
/// folder (which it derefs to: `dir`, `cmd`, `fails`, `code`).
pub struct Ring {
    pub sb: Sandbox,
}

impl std::ops::Deref for Ring {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

impl Ring {
    pub fn new() -> Ring {
        Ring {
            sb: Sandbox::new().in_dir().keyring("cfg/keyring", PW, CHEAP),
        }
    }

    /// The keyring file.
    pub fn path(&self) -> PathBuf {
        self.sb.path("cfg/keyring")
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.sb.path(name)
    }

    /// Writes `dir/name`; its path as a string (for arguments).
    pub fn write(&self, name: &str, bytes: &[u8]) -> String {
        self.sb.write(name, bytes).to_str().unwrap().to_string()
    }

    /// Runs with --json, expects success, returns the JSON.
    pub fn ok(&self, args: &[&str]) -> Value {
        self.sb.json(args)
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
        std::fs::read(out).unwrap()
    }
}

pub fn date(s: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(s.as_str().unwrap(), &Rfc3339).unwrap()
}

pub fn fmt(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap()
}
