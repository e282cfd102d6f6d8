//! AWS KMS as a key provider, through the built binary against a local moto
//! server (tests/util/moto.rs), and against the Python ESDK's KMS keyring.
//! One server is shared by the tests of this binary (each test makes its own
//! keys); error cases that moto cannot produce use a canned-answer server.
#![cfg(feature = "aws-kms")]

use crate::util;
use crate::util::moto;
use crate::util::sandbox::{Sandbox, CHEAP_ARGON2};

mod dircrypt;
mod errors;
mod fake;
mod interop;
mod multi;
mod repo;

use std::path::Path;
use std::sync::OnceLock;

use assert_cmd::Command;
use moto::{find_moto, Moto};

static SERVER: OnceLock<Option<Moto>> = OnceLock::new();

/// The shared moto server, or `None` to skip.
pub fn server(test: &str) -> Option<&'static Moto> {
    SERVER
        .get_or_init(|| Some(Moto::start(&find_moto(test)?)))
        .as_ref()
}

/// Environment of every child process: test credentials and region, no
/// ambient AWS settings, no shared config files, no instance metadata.
pub fn aws_env(cmd: &mut std::process::Command) {
    for v in [
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_KMS",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ]
    .into_iter()
    .chain(util::PROXY_VARS)
    {
        cmd.env_remove(v);
    }
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_CONFIG_FILE", "/nonexistent/envarc-test/config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/envarc-test/credentials",
        )
        .env("AWS_EC2_METADATA_DISABLED", "true")
        // Failures come back after 2 tries, not the default 3.
        .env("AWS_MAX_ATTEMPTS", "2");
}

/// A cheap keyring of its own (and HOME) in a [`Sandbox`], and `envarc`
/// commands set up for moto (`--kms-endpoint`) and the test credentials.
pub struct Scratch {
    pub sb: Sandbox,
    pub endpoint: String,
}

impl std::ops::Deref for Scratch {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

pub const PW: &str = "correct horse battery staple";

impl Scratch {
    pub fn new(moto: &Moto) -> Scratch {
        Scratch::for_endpoint(&moto.url)
    }

    /// KMS at `endpoint` (e.g. a canned-answer server, or nothing).
    pub fn for_endpoint(endpoint: &str) -> Scratch {
        let dir = util::tempdir();
        let home = dir.path().to_path_buf();
        Scratch {
            sb: Sandbox::at(dir)
                .keyring("keyring", PW, CHEAP_ARGON2)
                .env("HOME", home),
            endpoint: endpoint.to_string(),
        }
    }

    /// `envarc` with the keyring of this folder and the AWS test setup; KMS
    /// at `endpoint` (pass `--kms-endpoint` yourself with [`Scratch::kms`]).
    pub fn envarc(&self) -> Command {
        let mut std_cmd = self.sb.process();
        aws_env(&mut std_cmd);
        Command::from_std(std_cmd)
    }

    /// `envarc ARGS… --kms-endpoint URL`.
    pub fn kms(&self, args: &[&str]) -> Command {
        let mut c = self.envarc();
        c.args(args).args(["--kms-endpoint", &self.endpoint]);
        c
    }

    /// Creates a keyring key with `alias`.
    pub fn local_key(&self, alias: &str) {
        self.envarc()
            .args(["key", "create", "--alias", alias])
            .assert()
            .success();
    }
}

/// Runs a command, asserts its exit code, returns stderr.
pub fn expect_exit(cmd: &mut Command, code: i32) -> String {
    let out = cmd.output().expect("running envarc");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}; stderr: {stderr}"
    );
    stderr
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}
