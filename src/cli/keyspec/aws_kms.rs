//! `--key arn:aws:kms:…` / `--key aws-kms:alias/NAME`: AWS KMS keys on the
//! command line, and the flags that say how to reach KMS. The flags exist in
//! every build, so scripts parse the same; without the cargo feature `aws-kms`
//! a KMS key is a clear usage error. Recorded in a repository as
//! `{"provider": "aws-kms", "key": "<key ARN>"}`. KMS rotates its keys inside
//! the service, so they have no versions here.

use envarc::envelope::KeyProvider;
use envarc::keyring::Keyring;
use envarc::providers::ProviderKind;
use envarc::repo::KeyRef;
use envarc::{Error, Result};

use super::{GlobalArgs, KeyArgs, KeyEnv, KeySource, LazyProvider};

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
    use envarc::providers::aws_kms::parse_key_spec;
    use envarc::providers::{AwsKmsProvider, Kms, KmsConfig};

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

/// The provider for a KMS spec, in builds with or without KMS.
fn provider(spec: &str, args: &KmsArgs, only_key: bool) -> Result<Box<dyn KeyProvider>> {
    #[cfg(feature = "aws-kms")]
    {
        let p = imp::provider(spec, args)?;
        Ok(if only_key {
            Box::new(p.only_this_key())
        } else {
            Box::new(p)
        })
    }
    #[cfg(not(feature = "aws-kms"))]
    {
        let _ = (spec, args, only_key);
        Err(unsupported())
    }
}

pub struct AwsKmsSource;

impl KeySource for AwsKmsSource {
    fn kind(&self) -> ProviderKind {
        ProviderKind::AwsKms
    }

    fn claims(&self, spec: &str) -> bool {
        is_kms_spec(spec)
    }

    fn for_spec(
        &self,
        spec: &str,
        env: &mut KeyEnv<'_>,
        only_key: bool,
    ) -> Result<Box<dyn KeyProvider>> {
        provider(spec, &env.args.kms, only_key)
    }

    /// The KMS key to record is its ARN, from DescribeKey, which also checks
    /// that the key exists and is enabled.
    fn init(&self, spec: &str, env: &mut KeyEnv<'_>) -> Result<(KeyRef, Box<dyn KeyProvider>)> {
        #[cfg(feature = "aws-kms")]
        {
            let args = &env.args.kms;
            let arn = imp::provider(spec, args)?.describe_key()?;
            // Bind to the ARN, not an alias that may later move to another key.
            let p = provider(&arn, args, false)?;
            Ok((KeyRef::new(ProviderKind::AwsKms, arn), p))
        }
        #[cfg(not(feature = "aws-kms"))]
        {
            let _ = (spec, env);
            Err(unsupported())
        }
    }

    /// The config records the key's ARN.
    fn for_repo(&self, key: &KeyRef, env: &mut KeyEnv<'_>) -> Result<Box<dyn KeyProvider>> {
        if !is_kms_spec(&key.key) {
            return Err(Error::Integrity(format!(
                "the repository config names '{}' as its AWS KMS key, which is not a KMS key ARN",
                key.key
            )));
        }
        provider(&key.key, &env.args.kms, false)
    }

    /// Made on first use, so a message without KMS EDKs never loads the AWS
    /// configuration; before that, it plans for `--kms-max-in-flight`.
    fn any_key(&self, args: &KeyArgs, _g: &GlobalArgs) -> Option<LazyProvider> {
        let kms = args.kms.clone();
        let hint = kms.kms_max_in_flight as usize;
        let build = move || -> Result<Box<dyn KeyProvider>> {
            #[cfg(feature = "aws-kms")]
            return imp::any_key(&kms);
            #[cfg(not(feature = "aws-kms"))]
            {
                let _ = &kms;
                Err(unsupported())
            }
        };
        // AWS KMS EDKs carry the kind's name as their provider ID.
        let lazy = LazyProvider::new(|e| e.provider_id == ProviderKind::AwsKms.as_str(), build);
        Some(lazy.in_flight_hint(hint))
    }

    /// An AWS KMS alias resolves only with a call to KMS: taken as one of
    /// the keys without checking.
    fn is_one_of(&self, spec: &str, keys: &[KeyRef], _keyring: Option<&Keyring>) -> bool {
        let s = spec.trim_start_matches("aws-kms:");
        s.starts_with("alias/") || keys.iter().any(|k| k.key == s || k.key.ends_with(s))
    }
}
