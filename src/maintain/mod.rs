//! Maintenance of a repository after rotation and over time:
//!
//! - [`stats`]: the blast radius of each key version;
//! - [`rewrap`]: every message under an older version of a rotating key
//!   written anew with its data key wrapped by the current version;
//! - [`reencrypt`]: every message under one key version written anew under
//!   fresh data keys, then that version retired by the repository;
//! - [`retention`] and [`forget`]: restic's `forget` policy; [`prune`]:
//!   removing data no snapshot refers to.
//!
//! They share one picture of what each snapshot needs ([`refs`]), one
//! rewrite engine on the shared worker pool ([`rewrite`]), one driver for
//! rewrap and reencrypt ([`rekey`]), and one reader of the headers of
//! snapshots, index files and the config ([`messages`]). Each decides first
//! (a pure plan: `prune::plan`, `rekey::plan_chunks`) and then executes.

pub mod forget;
pub mod messages;
pub mod prune;
pub mod reencrypt;
pub mod refs;
pub mod rekey;
pub mod retention;
pub mod rewrap;
pub mod rewrite;
mod rewrite_write;
pub mod stats;

pub use crate::repo::KeyVersion;
