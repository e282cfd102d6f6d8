//! Repositories through the built binary: backup, restore, verify, packs, path safety, attacks from the storage side, deduplication.
//! One binary for all of these: each test binary links the whole crate, so fewer build faster.

#[path = "../repo_support/mod.rs"]
mod repo_support;
#[path = "../util/mod.rs"]
mod util;

mod attacks;
mod backup;
mod dedup;
mod repo_pack;
mod restore;
mod restore_escape;
mod verify;
