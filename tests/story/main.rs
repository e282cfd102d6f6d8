//! The rotation story through the built binary: stats, rewrap, reencrypt,
//! forget, prune and the demo, on repositories under a keyring CMK.

#[path = "../util/mod.rs"]
mod util;

mod demo;
mod first_week;
mod forget;
mod no_retag;
mod noops;
mod prune;
mod recipe;
mod restic_cmds;
mod rewrap;
mod support;
