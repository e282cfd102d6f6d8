//! Messages and the CLI that makes them: `envarc encrypt|decrypt` of files
//! and of directory trees (dircrypt/), the official vectors and the Python
//! SDK, tampering, round-trip properties, and the fuzz corpus replayed.
//! One binary for all of these: each test binary links the whole crate with
//! the AWS SDK, so fewer binaries build faster.

#[path = "../fuzz/seeds.rs"]
mod seeds;
#[path = "../fuzz/targets.rs"]
mod targets;
#[path = "../util/mod.rs"]
mod util;

mod cli_crypt;
mod dircrypt;
mod esdk_vectors;
mod fuzz_replay;
mod python;
mod roundtrip_props;
mod tamper;
