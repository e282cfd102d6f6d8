// Disconnected while the maintenance commands (stats, rewrap, reencrypt,
// forget, prune, demo) are ported to repository format 2; the file stays.
#![cfg(any())]
//! The rotation story through the built binary: stats, rewrap, reencrypt,
//! forget, prune and the demo, on repositories under a keyring CMK.

#[path = "../util/mod.rs"]
mod util;

mod crash;
mod demo;
mod forget;
mod prune;
mod rewrap;
mod support;
