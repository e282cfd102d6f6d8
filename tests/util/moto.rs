//! A throwaway moto server (a local AWS KMS look-alike) for tests: on a free
//! loopback port, started and stopped by server.rs (killed when dropped or
//! when the test process ends).
//!
//! `moto_server` is found through `ENVARC_MOTO_SERVER`, then `PATH`, then the
//! repository's `.venv` (`.ci/setup-moto.sh` installs it there). When it is
//! missing the tests skip with a line on stderr, except under `CI`, where
//! they fail.
//!
//! moto speaks the KMS JSON protocol but keeps one key material per key
//! (rotation is only recorded) and lets disabled keys decrypt: the tests
//! check envarc's plumbing, not KMS's key semantics.

#![allow(dead_code)]

pub use super::server::free_port;
use super::server::{self, Stop, Watched};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

/// The `moto_server` program, or `None` (after a skip line) when there is
/// none. Panics under `CI`: a CI run must not skip these tests silently.
pub fn find_moto(test: &str) -> Option<PathBuf> {
    let venv = server::in_venv_bin("moto_server");
    server::find_program(
        test,
        "ENVARC_MOTO_SERVER",
        "moto_server",
        ".ci/setup-moto.sh",
        Some(venv),
    )
}

/// A running server.
pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    agent: ureq::Agent,
    server: Watched,
}

impl Moto {
    /// Starts a server and waits until it answers KMS requests. Panics with
    /// the server's log when it does not come up.
    pub fn start(bin: &Path) -> Moto {
        server::start_with_retries("moto_server", || Moto::try_start(bin))
    }

    fn try_start(bin: &Path) -> Result<Moto, String> {
        let dir = server::scratch("envarc-moto-");
        let port = free_port();
        let args = [
            "-H".to_string(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
        ];
        let moto = Moto {
            url: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .new_agent(),
            server: Watched::spawn("moto", &dir, Stop::Term, bin, &args, |_| {}),
        };
        let ready = || moto.try_kms("ListKeys", json!({})).is_ok();
        moto.server
            .wait_ready(Duration::from_secs(60), Duration::from_millis(100), ready)?;
        Ok(moto)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        self.server.log()
    }

    /// One KMS JSON request (`TrentService.<action>`) in us-east-1; the
    /// status and the JSON body. moto routes by the signature's credential
    /// scope and does not check the signature itself.
    pub fn try_kms(&self, action: &str, body: Value) -> Result<(u16, Value), String> {
        let mut resp = self
            .agent
            .post(&format!("{}/", self.url))
            .header("X-Amz-Target", &format!("TrentService.{action}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/kms/aws4_request, \
                 SignedHeaders=host, Signature=00",
            )
            .send(serde_json::to_vec(&body).unwrap())
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let json = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        Ok((status, json))
    }

    /// Like [`Moto::try_kms`], panicking unless the answer is 200.
    pub fn kms(&self, action: &str, body: Value) -> Value {
        let (status, json) = self
            .try_kms(action, body)
            .unwrap_or_else(|e| panic!("{action}: {e}"));
        assert_eq!(status, 200, "{action}: {json}");
        json
    }

    /// Creates a symmetric key; returns its ARN.
    pub fn create_key(&self, description: &str) -> String {
        let out = self.kms("CreateKey", json!({ "Description": description }));
        out["KeyMetadata"]["Arn"].as_str().unwrap().to_string()
    }

    pub fn create_alias(&self, alias: &str, key: &str) {
        self.kms(
            "CreateAlias",
            json!({ "AliasName": alias, "TargetKeyId": key }),
        );
    }

    pub fn enable_rotation(&self, key: &str) {
        self.kms("EnableKeyRotation", json!({ "KeyId": key }));
    }

    /// RotateKeyOnDemand; returns how many rotations the key has had.
    pub fn rotate_now(&self, key: &str) -> usize {
        self.kms("RotateKeyOnDemand", json!({ "KeyId": key }));
        let out = self.kms("ListKeyRotations", json!({ "KeyId": key }));
        out["Rotations"].as_array().map_or(0, Vec::len)
    }
}
