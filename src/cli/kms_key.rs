//! `--key arn:aws:kms:…` / `--key aws-kms:alias/NAME`: AWS KMS keys on the
//! command line, and the flags that say how to reach KMS. The flags exist in
//! every build, so scripts parse the same; without the cargo feature `aws-kms`
//! a KMS key is a clear usage error.

use crate::envelope::{DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, ProviderError};
use crate::repo::KeyRef;
use crate::{Error, Result};

/// How to reach AWS KMS. Region, credentials and profile come from the usual
/// AWS environment variables and `~/.aws/config` / `~/.aws/credentials`.
#[derive(clap::Args, Clone, Debug)]
pub struct KmsArgs {
    /// AWS KMS endpoint URL for every region (a VPC endpoint, a test server)
    /// [default: $AWS_ENDPOINT_URL_KMS, $AWS_ENDPOINT_URL, the profile's, else AWS's].
    #[arg(help_heading = "AWS KMS", long, value_name = "URL")]
    pub kms_endpoint: Option<String>,
    /// Seconds one try of a request to AWS KMS may take.
    #[arg(help_heading = "AWS KMS", long, default_value_t = 30, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub kms_timeout: u64,
    /// Most requests to AWS KMS in flight at once (a backup of many small
    /// files makes one per file); lower it to leave request quota to others.
    #[arg(help_heading = "AWS KMS", long, default_value_t = 16, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub kms_max_in_flight: u32,
}

/// Whether `spec` names a KMS key (whether or not this build supports KMS).
pub fn is_kms_spec(spec: &str) -> bool {
    spec.starts_with("aws-kms:")
        || (spec.starts_with("arn:") && spec.split(':').nth(2) == Some("kms"))
}

#[cfg(not(feature = "aws-kms"))]
fn unsupported() -> Error {
    Error::Usage(
        "this envarc was built without AWS KMS support; rebuild it with the cargo feature aws-kms \
         (on by default)"
            .into(),
    )
}

#[cfg(feature = "aws-kms")]
mod imp {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::providers::aws_kms::parse_key_spec;
    use crate::providers::{AwsKmsProvider, Kms, KmsConfig};

    pub fn kms(args: &KmsArgs) -> Result<Arc<Kms>> {
        if let Some(url) = &args.kms_endpoint {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(Error::Usage(format!(
                    "--kms-endpoint {url}: give a URL that starts with https:// (or http:// for a local test server)"
                )));
            }
        }
        Ok(Kms::new(KmsConfig {
            endpoint: args.kms_endpoint.clone(),
            timeout: Duration::from_secs(args.kms_timeout),
            max_in_flight: args.kms_max_in_flight as usize,
        }))
    }

    /// The provider for a KMS spec; `key`: as [`parse_key_spec`] returned it.
    pub fn provider(spec: &str, args: &KmsArgs) -> Result<AwsKmsProvider> {
        let key = parse_key_spec(spec)
            .unwrap_or_else(|| Err(format!("'{spec}' is not an AWS KMS key")))
            .map_err(Error::Usage)?;
        Ok(AwsKmsProvider::new(kms(args)?, Some(&key)))
    }

    /// A provider that unwraps EDKs of any KMS key, for keyless decrypt.
    pub fn any_key(args: &KmsArgs) -> Result<Box<dyn KeyProvider>> {
        Ok(Box::new(AwsKmsProvider::new(kms(args)?, None)))
    }
}

/// The provider for a `--key` spec if it names a KMS key; `None` for specs
/// of other providers. `only_key`: decrypt accepts only that key's EDKs.
pub fn kms_from_spec(
    spec: &str,
    args: &KmsArgs,
    only_key: bool,
) -> Option<Result<Box<dyn KeyProvider>>> {
    if !is_kms_spec(spec) {
        return None;
    }
    #[cfg(feature = "aws-kms")]
    {
        Some(imp::provider(spec, args).map(|p| {
            if only_key {
                Box::new(p.only_this_key()) as Box<dyn KeyProvider>
            } else {
                Box::new(p)
            }
        }))
    }
    #[cfg(not(feature = "aws-kms"))]
    {
        let _ = (args, only_key);
        Some(Err(unsupported()))
    }
}

/// At `envarc init`: the KMS key to record (its ARN, from DescribeKey, which
/// also checks that the key exists and is enabled) and its provider.
pub fn init_kms_key(spec: &str, args: &KmsArgs) -> Result<(KeyRef, Box<dyn KeyProvider>)> {
    #[cfg(feature = "aws-kms")]
    {
        let p = imp::provider(spec, args)?;
        let arn = p.describe_key()?;
        let key = KeyRef {
            provider: crate::providers::ProviderKind::AwsKms.into(),
            key: arn.clone(),
            params: Default::default(),
        };
        // Bind to the ARN, not an alias that may later move to another key.
        Ok((key, Box::new(imp::provider(&arn, args)?)))
    }
    #[cfg(not(feature = "aws-kms"))]
    {
        let _ = (spec, args);
        Err(unsupported())
    }
}

/// For a repository whose config records a KMS key (its ARN).
pub fn repo_kms_provider(arn: &str, args: &KmsArgs) -> Result<Box<dyn KeyProvider>> {
    kms_from_spec(arn, args, false).unwrap_or_else(|| {
        Err(Error::Integrity(format!(
            "the repository config names '{arn}' as its AWS KMS key, which is not a KMS key ARN"
        )))
    })
}

/// Keyless decrypt's KMS part: made on first use, so a message without KMS
/// EDKs never loads the AWS configuration.
pub struct LazyKms {
    args: KmsArgs,
    inner: std::sync::OnceLock<std::result::Result<Box<dyn KeyProvider>, String>>,
}

impl LazyKms {
    pub fn new(args: &KmsArgs) -> LazyKms {
        LazyKms {
            args: args.clone(),
            inner: std::sync::OnceLock::new(),
        }
    }

    fn get(&self) -> std::result::Result<&dyn KeyProvider, ProviderError> {
        self.inner
            .get_or_init(|| {
                #[cfg(feature = "aws-kms")]
                let made = imp::any_key(&self.args);
                #[cfg(not(feature = "aws-kms"))]
                let made = {
                    let _ = &self.args;
                    Err(unsupported())
                };
                made.map_err(|e| e.to_string())
            })
            .as_ref()
            .map(|b| b.as_ref())
            .map_err(|e| ProviderError::Other(e.clone()))
    }
}

impl KeyProvider for LazyKms {
    fn generate_data_key(
        &self,
        _ctx: &EncryptionContext,
    ) -> std::result::Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        Err(ProviderError::Other(
            "no key given to encrypt with: pass --key arn:aws:kms:… or --key aws-kms:alias/NAME"
                .into(),
        ))
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> std::result::Result<DataKey, ProviderError> {
        self.get()?.decrypt_data_key(edks, ctx)
    }

    /// Before first use: what `--kms-max-in-flight` allows, so that a
    /// pipeline sizes its workers for KMS before knowing it will need it.
    fn max_in_flight(&self) -> usize {
        self.inner
            .get()
            .and_then(|r| r.as_ref().ok())
            .map_or(self.args.kms_max_in_flight as usize, |p| p.max_in_flight())
    }
}
