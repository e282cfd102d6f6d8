//! Key providers that live outside envarc: remote key services reached over
//! the network. The local ones (raw AES key, CMK keyring) live beside the
//! message format and the keyring.
//!
//! - [`transit`]: the OpenBao / Vault transit engine (`--key transit:NAME`).
//! - [`aws_kms`]: AWS KMS (`--key arn:aws:kms:…`, `--key aws-kms:alias/NAME`),
//!   with the cargo feature `aws-kms` (on by default).
//! - [`multi`]: several of the above per message (`--key A --key B`).
//! - [`kind`]: the names of all four kinds (keyring, transit, AWS KMS, raw
//!   AES) as the repository config records them.

#[cfg(feature = "aws-kms")]
pub mod aws_kms;
#[cfg(feature = "aws-kms")]
pub mod aws_kms_client;
#[cfg(feature = "aws-kms")]
mod aws_kms_errors;
mod http;
pub mod kind;
pub mod multi;
pub mod transit;
mod transit_config;

pub use transit::{
    edk_key, edk_version, TransitKey, TransitKeyInfo, TransitProvider,
    PROVIDER_ID as TRANSIT_PROVIDER_ID,
};
pub use transit_config::{TransitConfig, DEFAULT_MOUNT as DEFAULT_TRANSIT_MOUNT};

pub use kind::ProviderKind;
pub use multi::MultiKeyProvider;
#[cfg(feature = "aws-kms")]
pub use {
    aws_kms::{AwsKmsProvider, KmsArn, PROVIDER_ID as AWS_KMS_PROVIDER_ID},
    aws_kms_client::{Kms, KmsConfig},
};
