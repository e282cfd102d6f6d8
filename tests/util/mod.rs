//! Small helpers shared by the integration tests that drive the built binary.
#![allow(dead_code)]

use std::process::Output;

/// The `envarc` binary cargo built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_envarc");

/// A command for the built binary with no envarc settings inherited from the
/// environment of whoever runs the tests.
pub fn envarc() -> assert_cmd::Command {
    let mut c = assert_cmd::Command::new(BIN);
    for var in [
        "ENVARC_KEYRING",
        "ENVARC_PASSPHRASE",
        "ENVARC_ARGON2_PARAMS",
        "XDG_CONFIG_HOME",
    ] {
        c.env_remove(var);
    }
    c
}

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
