//! Key providers: keyring rotation, the keyring against the official SDK, OpenBao transit, the rotation story on transit.
//! One binary for all of these: each test binary links the whole crate, so fewer build faster.

use crate::util::bao;
#[path = "../util/mod.rs"]
mod util;

mod cli_key;
mod keyring_interop;
mod keyring_rotation;
mod story_transit;
mod transit;
