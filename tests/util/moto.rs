//! A throwaway moto server (a local AWS KMS look-alike) for tests: on a free
//! loopback port, killed when dropped, and by a watchdog shell when the test
//! process ends in any way (a server kept in a `static` is never dropped).
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

use super::peers;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The `moto_server` program, or `None` (after a skip line) when there is
/// none. Panics under `CI`: a CI run must not skip these tests silently.
pub fn find_moto(test: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("ENVARC_MOTO_SERVER") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "{test}: ENVARC_MOTO_SERVER={} is not a file",
            p.display()
        );
        return Some(p);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|d| d.join("moto_server"))
        .find(|p| p.is_file())
        .or_else(|| venv.is_file().then_some(venv));
    if found.is_none() {
        let msg = "moto's `moto_server` was not found: set ENVARC_MOTO_SERVER, put it on PATH, or run `bash .ci/setup-moto.sh`";
        peers::missing(test, msg);
    }
    found
}

/// A running server.
pub struct Moto {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    agent: ureq::Agent,
    watchdog: Child,
    dir: PathBuf,
}

/// Runs the server in the background and kills it when stdin (the test
/// process's end of the pipe) closes; removes the scratch folder after.
const WATCHDOG: &str = r#"dir="$1"; shift
"$@" </dev/null >"$dir/moto.log" 2>&1 &
pid=$!
read -r _ || true
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir""#;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free loopback port")
        .port()
}

impl Moto {
    /// Starts a server and waits until it answers KMS requests. Panics with
    /// the server's log when it does not come up.
    pub fn start(bin: &Path) -> Moto {
        let mut last_log = String::new();
        for _ in 0..3 {
            match Moto::try_start(bin) {
                Ok(m) => return m,
                Err(log) => last_log = log,
            }
        }
        panic!("moto_server did not start:\n{last_log}");
    }

    fn try_start(bin: &Path) -> Result<Moto, String> {
        let dir = tempfile::Builder::new()
            .prefix("envarc-moto-")
            .tempdir()
            .unwrap()
            .keep();
        let port = free_port();
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("moto-watchdog")
            .arg(&dir)
            .arg(bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting sh for the moto watchdog");
        let mut moto = Moto {
            url: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .proxy(None)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .new_agent(),
            watchdog,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if moto.try_kms("ListKeys", json!({})).is_ok() {
                return Ok(moto);
            }
            if let Ok(Some(_)) = moto.watchdog.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(moto.log())
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join("moto.log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
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

impl Drop for Moto {
    fn drop(&mut self) {
        // Closing stdin makes the watchdog kill the server.
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}
