//! `envarc key …` and the keyring as the default provider, through the binary.

#[path = "../util/mod.rs"]
mod util;

mod data;
mod keyring_file;
mod lifecycle;
mod ring;
mod rotation;
