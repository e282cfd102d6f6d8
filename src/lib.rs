//! envarc: an envelope-encryption file archiver.
//!
//! Every file is encrypted under its own data key, obtained from a rotating
//! customer master key (CMK) and stored, wrapped, in the file's own header.
//! Every encrypted file is an AWS Encryption SDK message (format 2).
#![forbid(unsafe_code)]

pub mod backup;
pub mod dircrypt;
pub mod envelope;
pub mod error;
pub mod keyring;
pub mod maintain;
pub mod pathmatch;
pub mod pool;
pub mod progress;
pub mod providers;
pub mod repo;

pub use error::{Error, Result};
pub mod cli;
pub mod copy;
pub mod diff;
pub mod fsutil;
pub mod interrupt;
pub mod restore;
pub mod verify;
