//! What a test does when a peer it drives (the Python SDK, OpenBao, moto,
//! SeaweedFS, sshd, the AWS Encryption CLI) cannot be found: print a skip
//! line naming how to get it — or fail, when the run promised the whole
//! suite. `.ci/test` (the README's test command) installs every peer and
//! sets ENVARC_REQUIRE_PEERS=1; CI sets CI. The one place that rule lives.

/// Whether a missing peer fails the test instead of skipping it.
pub fn required() -> bool {
    std::env::var_os("ENVARC_REQUIRE_PEERS").is_some() || std::env::var_os("CI").is_some()
}

/// Reports a missing peer: panics when [`required`], else prints
/// `SKIP test: msg` on stderr (and the caller returns without testing).
pub fn missing(test: &str, msg: &str) {
    if required() {
        panic!(
            "{test}: {msg} (ENVARC_REQUIRE_PEERS or CI is set, so a missing peer is a failure; \
             `bash .ci/test` installs every peer)"
        );
    }
    eprintln!("SKIP {test}: {msg}");
}

/// The official Python SDK: `(python, esdk_tool.py)` from ENVARC_ESDK_PYTHON
/// and ENVARC_ESDK_TOOL, checked to exist; `None` after [`missing`].
pub fn esdk_python(test: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let python = std::env::var_os("ENVARC_ESDK_PYTHON").map(std::path::PathBuf::from);
    let tool = std::env::var_os("ENVARC_ESDK_TOOL").map(std::path::PathBuf::from);
    match (python, tool) {
        (Some(python), Some(tool)) => {
            assert!(
                python.exists(),
                "{test}: ENVARC_ESDK_PYTHON={} does not exist; run .ci/setup-python.sh, which prints the path",
                python.display()
            );
            assert!(
                tool.is_file(),
                "{test}: ENVARC_ESDK_TOOL={} is not a file; point it at tests/interop/esdk_tool.py",
                tool.display()
            );
            Some((python, tool))
        }
        _ => {
            missing(
                test,
                "the Python SDK is not set up: export ENVARC_ESDK_PYTHON=$(bash .ci/setup-python.sh) \
                 ENVARC_ESDK_TOOL=$PWD/tests/interop/esdk_tool.py",
            );
            None
        }
    }
}
