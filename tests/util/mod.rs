//! Shared helpers for the integration tests: run the built binary in a temp
//! folder (sandbox.rs is the harness), write key files, make reproducible
//! test data; start servers (server.rs), capture trees (tree.rs). Generic on purpose;
//! each test file uses what it needs (hence `dead_code` is allowed).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use rand::{RngCore, SeedableRng};

pub mod bao;
pub mod fault_proxy;
pub mod moto;
pub mod peers;
pub mod sandbox;
pub mod seaweedfs;
pub mod server;
pub mod sshd;
pub mod tree;

/// The built `envarc` binary, with a clean environment for the variables that
/// could change its behaviour.
pub fn envarc() -> assert_cmd::Command {
    assert_cmd::Command::from_std(process())
}

/// The same as a plain process (pipes, signals, several at once).
pub fn process() -> std::process::Command {
    clean_command(BIN.as_ref())
}

/// `program` without the settings of the host that could change what
/// envarc does, and with this test process's pins.
fn clean_command(program: &std::ffi::OsStr) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    for var in [
        "RUST_LOG",
        "ENVARC_KEYRING",
        "ENVARC_PASSPHRASE",
        "ENVARC_ARGON2_PARAMS",
        "ENVARC_REPOSITORY",
        "XDG_CONFIG_HOME",
        "ENVARC_PINS",
        "ENVARC_SSH_CONFIG",
        "ENVARC_REMOTE_TIMEOUT",
        "ENVARC_LOCK_STALE_AFTER",
    ] {
        cmd.env_remove(var);
    }
    // No AWS or OpenBao/Vault setting of the host (credentials, profile,
    // region, endpoint, token) reaches a test; the tests that need one set
    // their own.
    for (var, _) in std::env::vars_os() {
        let name = var.to_string_lossy();
        if ["AWS_", "BAO_", "VAULT_"]
            .iter()
            .any(|p| name.starts_with(p))
        {
            cmd.env_remove(var);
        }
    }
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    // Repository pins of this test process, never the user's own.
    cmd.env("ENVARC_PINS", pins_file());
    cmd
}

/// Proxy settings: the tests talk to servers on loopback, never through a
/// proxy of the host.
pub const PROXY_VARS: [&str; 6] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// The pin file every command of this test process uses (tests of pins
/// override it with their own). Under cargo's scratch folder for tests in
/// target/, not the system's temporary folder: a process-wide file outlives
/// every `TempDir`, and `cargo clean` is what removes these.
pub fn pins_file() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("envarc-test-pins-{}.json", std::process::id()))
}

/// The `envarc` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_envarc");

/// Stdout parsed as JSON, with the command's output in the panic message.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// From `stats --json`: unique chunks per backing-key version, for the
/// versions that wrap at least one.
pub fn chunks_per_version(stats: &serde_json::Value) -> std::collections::BTreeMap<u64, u64> {
    chunk_versions(stats)
        .map(|v| {
            (
                v["key"]["version"].as_u64().unwrap(),
                v["chunks"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// From `stats --json`: the entries of the versions that wrap chunks.
pub fn chunk_versions(stats: &serde_json::Value) -> impl Iterator<Item = &serde_json::Value> {
    stats["versions"]
        .as_array()
        .expect("stats --json lists versions")
        .iter()
        .filter(|v| v["chunks"].as_u64().unwrap() > 0)
}

/// Asserts that a command succeeded, with its stderr in the message.
pub fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The path of the built binary, for tests that need `std::process::Command`
/// (pipes, signals).
pub fn envarc_path() -> PathBuf {
    assert_cmd::cargo::cargo_bin("envarc")
}

/// `len` bytes that depend only on `seed`: failures reproduce exactly.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Writes a raw wrapping key of `len` bytes (16, 24 or 32) derived from `seed`
/// to `dir/name` and returns its path and material.
pub fn write_key(dir: &Path, name: &str, len: usize, seed: u64) -> (PathBuf, Vec<u8>) {
    let material = random_bytes(seed, len);
    let path = dir.join(name);
    std::fs::write(&path, &material).expect("writing a key file");
    (path, material)
}

/// The arguments that select a raw key file for `envarc encrypt|decrypt`.
pub fn raw_key_args(key_file: &Path, key_name: &str) -> Vec<String> {
    vec![
        "--raw-key-file".into(),
        key_file.display().to_string(),
        "--key-name".into(),
        key_name.into(),
    ]
}

/// Names of the entries in `dir`, sorted (hidden files included), so a test
/// can assert that a failed command left nothing behind.
pub fn dir_names(dir: &Path) -> Vec<String> {
    // Object stores have no folders: one the repository never needed yet
    // is as empty as an empty one.
    let Ok(listing) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = listing
        .map(|e| {
            e.expect("a folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// A fresh temporary folder, removed when dropped.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("envarc-test.")
        .tempdir()
        .expect("creating a temporary folder")
}

/// The official ESDK test vectors, vendored in fixtures/esdk-vectors.
pub fn esdk_vectors_dir() -> PathBuf {
    std::env::var_os("ENVARC_ESDK_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/esdk-vectors"))
}
