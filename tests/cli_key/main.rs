//! `envarc key …` and the keyring as the default provider, through the binary.

#[path = "../util/mod.rs"]
mod util;

mod argon2_cost;
mod data;
mod keyring_file;
mod lifecycle;
mod naming;
mod passwd;
mod ring;
mod rotation;
mod versions;
