//! `envarc key …` and the keyring as the default provider, through the binary.

mod argon2_cost;
mod data;
mod keyring_file;
mod lifecycle;
mod naming;
mod passwd;
mod ring;
mod rotation;
mod versions;
