//! Maintenance of a repository after rotation and over time:
//!
//! - [`stats`]: the blast radius of each key version (headers only);
//! - [`rewrap`]: data keys of old key versions wrapped anew under the current
//!   one, headers only (KMS ReEncrypt, Vault rewrap);
//! - [`reencrypt`]: every message under one key version re-encrypted under a
//!   fresh data key, for a compromised backing key;
//! - [`retention`] and [`prune`]: restic's `forget` policy, and removing
//!   data no snapshot refers to.
//!
//! [`rewrite`] is their shared engine; [`headers`] reads what wrapped every
//! message, [`keys`] names key versions.

pub mod forget;
pub mod headers;
pub mod keys;
pub mod prune;
pub mod reencrypt;
pub mod retention;
pub mod rewrap;
pub mod rewrite;
pub mod stats;

pub use keys::KeyVersion;
