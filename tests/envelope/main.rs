//! Message format: the CLI's encrypt/decrypt, the official vectors, tampering, round-trip properties, the fuzz corpus.
//! One binary for all of these: each test binary links the whole crate, so fewer build faster.

#[path = "../fuzz/seeds.rs"]
mod seeds;
#[path = "../fuzz/targets.rs"]
mod targets;
#[path = "../util/mod.rs"]
mod util;

mod cli_crypt;
mod esdk_vectors;
mod fuzz_replay;
mod python;
mod roundtrip_props;
mod tamper;
