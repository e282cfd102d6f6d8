//! Key providers that live outside envarc: remote key services reached over
//! the network. The local ones (raw AES key, CMK keyring) live beside the
//! message format and the keyring.
//!
//! - [`transit`]: the OpenBao / Vault transit engine (`--key transit:NAME`).

mod http;
pub mod transit;
mod transit_config;

pub use transit::{
    edk_key, edk_version, KeyRef, TransitKeyInfo, TransitProvider,
    PROVIDER_ID as TRANSIT_PROVIDER_ID,
};
pub use transit_config::{TransitConfig, DEFAULT_MOUNT as DEFAULT_TRANSIT_MOUNT};
