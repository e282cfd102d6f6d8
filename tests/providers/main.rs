//! Key providers, through the built binary: the keyring (`envarc key …`,
//! rotation, the official SDK reading what it wraps), OpenBao transit and
//! the rotation story on it, and AWS KMS against moto (aws_kms/).
//! One binary for all of these: each test binary links the whole crate with
//! the AWS SDK, so fewer binaries build faster.

use crate::util::bao;
#[path = "../repo_support/mod.rs"]
mod repo_support;
#[path = "../util/mod.rs"]
mod util;

mod aws_kms;
mod cli_key;
mod keyring_interop;
mod keyring_rotation;
mod story_transit;
mod transit;
