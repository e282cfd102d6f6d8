//! AWS KMS as a key provider, byte-compatible with the AWS Encryption SDK's
//! AWS KMS keyring, so the official SDKs decrypt envarc's messages with their
//! KMS keyring and the other way round.
//!
//! EDK layout (the ESDK's):
//! - provider ID: [`PROVIDER_ID`] (`aws-kms`);
//! - provider info: the key ARN that KMS returned (`KeyId` of
//!   GenerateDataKey / Encrypt), in UTF-8;
//! - ciphertext: the KMS `CiphertextBlob`.
//!
//! GenerateDataKey (`AES_256`) and Encrypt send the message's encryption
//! context, which KMS binds into the ciphertext; Decrypt sends it again with
//! `KeyId` = the ARN from the provider info, and checks that KMS answered for
//! that very key. Multi-Region key awareness and grant tokens are not
//! implemented: a message names one key in one region.

use std::sync::{Arc, OnceLock};

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use zeroize::Zeroizing;

use super::aws_kms_client::Kms;
use super::aws_kms_errors::map_error;
use crate::envelope::provider::unwrap_first;
use crate::envelope::{DataKey, EncryptedDataKey, EncryptionContext, KeyProvider, ProviderError};

/// ESDK provider ID of KMS-wrapped data keys.
pub const PROVIDER_ID: &str = "aws-kms";

/// The parts of a KMS ARN (`arn:PARTITION:kms:REGION:ACCOUNT:key/ID` or
/// `…:alias/NAME`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsArn {
    pub partition: String,
    pub region: String,
    pub account: String,
    /// `key` or `alias`.
    pub resource_type: String,
    pub resource: String,
}

impl KmsArn {
    pub fn parse(s: &str) -> Option<KmsArn> {
        let mut parts = s.splitn(6, ':');
        let (arn, partition, service) = (parts.next()?, parts.next()?, parts.next()?);
        let (region, account, resource) = (parts.next()?, parts.next()?, parts.next()?);
        if arn != "arn" || service != "kms" || partition.is_empty() || region.is_empty() {
            return None;
        }
        let (resource_type, id) = resource.split_once('/')?;
        if !matches!(resource_type, "key" | "alias") || id.is_empty() || account.is_empty() {
            return None;
        }
        Some(KmsArn {
            partition: partition.into(),
            region: region.into(),
            account: account.into(),
            resource_type: resource_type.into(),
            resource: id.into(),
        })
    }

    pub fn is_key(&self) -> bool {
        self.resource_type == "key"
    }
}

/// The KMS key a `--key` spec names, if it names one: `arn:…:kms:…`, or
/// `aws-kms:` followed by an ARN, `alias/NAME` or a key id. `Some(Err)` for a
/// KMS spec that is malformed.
pub fn parse_key_spec(spec: &str) -> Option<Result<String, String>> {
    let id = if let Some(rest) = spec.strip_prefix("aws-kms:") {
        rest
    } else if spec.starts_with("arn:") && spec.split(':').nth(2) == Some("kms") {
        spec
    } else {
        return None;
    };
    Some(check_key_id(spec, id).map(str::to_string))
}

fn check_key_id<'a>(spec: &str, id: &'a str) -> Result<&'a str, String> {
    let bad = |why: &str| {
        Err(format!(
            "'{spec}' is not an AWS KMS key: {why}; write arn:aws:kms:REGION:ACCOUNT:key/ID, \
             aws-kms:alias/NAME or aws-kms:KEY-ID"
        ))
    };
    if id.is_empty() || id.len() > 2048 || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return bad("the key id is empty or has spaces");
    }
    if id.starts_with("arn:") && KmsArn::parse(id).is_none() {
        return bad("the ARN is malformed");
    }
    if let Some(name) = id.strip_prefix("alias/") {
        if name.is_empty() || name.starts_with("aws/") {
            return bad("the alias name is empty or an AWS managed alias");
        }
    }
    Ok(id)
}

/// A KMS key provider. `Send + Sync`: one provider serves every worker thread.
pub struct AwsKmsProvider {
    kms: Arc<Kms>,
    /// The key new data keys are wrapped under, as given (ARN, alias, id).
    key: Option<String>,
    /// The key's ARN once known (given, or learnt from KMS).
    arn: OnceLock<String>,
    only_key: bool,
}

impl AwsKmsProvider {
    /// A provider that wraps under `key` (a key id, `alias/NAME` or ARN, as
    /// [`parse_key_spec`] returns it) and unwraps EDKs of any KMS key; with
    /// `None` it only unwraps. No request is made yet.
    pub fn new(kms: Arc<Kms>, key: Option<&str>) -> AwsKmsProvider {
        let arn = OnceLock::new();
        if let Some(k) = key.filter(|k| KmsArn::parse(k).is_some_and(|a| a.is_key())) {
            let _ = arn.set(k.to_string());
        }
        AwsKmsProvider {
            kms,
            key: key.map(str::to_string),
            arn,
            only_key: false,
        }
    }

    /// Restricts decryption to EDKs of the bound key (KMS Decrypt with KeyId).
    pub fn only_this_key(mut self) -> AwsKmsProvider {
        self.only_key = self.key.is_some();
        self
    }

    /// The key as given.
    pub fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    /// The ARN of the wrapping key: known when it was given as a key ARN,
    /// else asked of KMS once ([`AwsKmsProvider::describe_key`]).
    pub fn key_arn(&self) -> Result<String, ProviderError> {
        match self.arn.get() {
            Some(a) => Ok(a.clone()),
            None => self.describe_key(),
        }
    }

    /// Asks KMS about the wrapping key (DescribeKey): checks that it exists,
    /// is enabled and is a symmetric encryption key; returns its ARN.
    pub fn describe_key(&self) -> Result<String, ProviderError> {
        let key = self.bound()?;
        let client = self.kms.client(self.region_of(key).as_deref())?;
        let out = self
            .kms
            .call(client.describe_key().key_id(key).send())?
            .map_err(|e| self.error("DescribeKey", key, e))?;
        let meta = out
            .key_metadata
            .ok_or_else(|| incomplete("DescribeKey", key))?;
        if !meta.enabled {
            let state = meta.key_state.as_ref().map_or("Disabled", |s| s.as_str());
            return Err(ProviderError::KeyUnusable(format!(
                "AWS KMS key {key} is not enabled (state {state}): enable it (aws kms enable-key), \
                 cancel its deletion (aws kms cancel-key-deletion), or use another key"
            )));
        }
        let usage = meta.key_usage.as_ref().map(|u| u.as_str());
        let spec = meta.key_spec.as_ref().map(|s| s.as_str());
        if usage.is_some_and(|u| u != "ENCRYPT_DECRYPT")
            || spec.is_some_and(|s| s != "SYMMETRIC_DEFAULT")
        {
            return Err(ProviderError::KeyUnusable(format!(
                "AWS KMS key {key} is a {} key for {}; envarc needs a SYMMETRIC_DEFAULT key for \
                 ENCRYPT_DECRYPT",
                spec.unwrap_or("?"),
                usage.unwrap_or("?")
            )));
        }
        let arn = meta
            .arn
            .filter(|a| KmsArn::parse(a).is_some_and(|a| a.is_key()))
            .ok_or_else(|| incomplete("DescribeKey", key))?;
        Ok(self.arn.get_or_init(|| arn).clone())
    }

    fn bound(&self) -> Result<&str, ProviderError> {
        self.key.as_deref().ok_or_else(|| {
            ProviderError::Other(
                "no AWS KMS key given to encrypt with: pass --key arn:aws:kms:… or --key aws-kms:alias/NAME"
                    .into(),
            )
        })
    }

    /// The region of a key named by ARN; `None` (the configured region) else.
    fn region_of(&self, key: &str) -> Option<String> {
        KmsArn::parse(key).map(|a| a.region)
    }

    fn error<E>(&self, op: &str, key: &str, e: SdkError<E>) -> ProviderError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        map_error(
            op,
            key,
            &self.kms.location(self.region_of(key).as_deref()),
            e,
        )
    }

    /// An EDK from what KMS returned: the key ARN it used and the ciphertext.
    fn edk(
        &self,
        op: &str,
        key: &str,
        key_id: Option<String>,
        blob: Option<Blob>,
    ) -> Result<EncryptedDataKey, ProviderError> {
        let arn = key_id
            .filter(|a| KmsArn::parse(a).is_some_and(|a| a.is_key()))
            .ok_or_else(|| incomplete(op, key))?;
        let blob = blob.ok_or_else(|| incomplete(op, key))?.into_inner();
        if blob.is_empty() {
            return Err(incomplete(op, key));
        }
        let _ = self.arn.set(arn.clone());
        Ok(EncryptedDataKey {
            provider_id: PROVIDER_ID.into(),
            provider_info: arn.into_bytes(),
            ciphertext: blob,
        })
    }

    fn unwrap_one(
        &self,
        arn: &str,
        edk: &EncryptedDataKey,
        ctx: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let client = self.kms.client(self.region_of(arn).as_deref())?;
        let request = client
            .decrypt()
            .key_id(arn)
            .ciphertext_blob(Blob::new(edk.ciphertext.clone()))
            .set_encryption_context(context_map(ctx))
            .send();
        let out = self
            .kms
            .call(request)?
            .map_err(|e| self.error("Decrypt", arn, e))?;
        // The ESDK's check: KMS must have used the key the EDK names.
        if out.key_id.as_deref() != Some(arn) {
            return Err(ProviderError::UnwrapFailed {
                key: format!("AWS KMS key {arn} (KMS answered for another key)"),
            });
        }
        let plain = Zeroizing::new(out.plaintext.map(Blob::into_inner).unwrap_or_default());
        DataKey::from_slice(&plain).ok_or_else(|| ProviderError::UnwrapFailed {
            key: format!("AWS KMS key {arn} (the data key is not 32 bytes)"),
        })
    }
}

fn incomplete(op: &str, key: &str) -> ProviderError {
    ProviderError::Other(format!(
        "AWS KMS answered {op} for key {key} without a key ARN or ciphertext; is the endpoint a KMS service?"
    ))
}

fn context_map(ctx: &EncryptionContext) -> Option<std::collections::HashMap<String, String>> {
    (!ctx.is_empty()).then(|| ctx.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

impl KeyProvider for AwsKmsProvider {
    fn generate_data_key(
        &self,
        ctx: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        let key = self.bound()?;
        let client = self.kms.client(self.region_of(key).as_deref())?;
        let request = client
            .generate_data_key()
            .key_id(key)
            .key_spec(DataKeySpec::Aes256)
            .set_encryption_context(context_map(ctx))
            .send();
        let mut out = self
            .kms
            .call(request)?
            .map_err(|e| self.error("GenerateDataKey", key, e))?;
        let plain = Zeroizing::new(
            out.plaintext
                .take()
                .map(Blob::into_inner)
                .unwrap_or_default(),
        );
        let data_key = DataKey::from_slice(&plain).ok_or_else(|| {
            ProviderError::Other(format!(
                "AWS KMS returned a data key of {} bytes for key {key}, not 32",
                plain.len()
            ))
        })?;
        let edk = self.edk("GenerateDataKey", key, out.key_id, out.ciphertext_blob)?;
        Ok((data_key, vec![edk]))
    }

    fn decrypt_data_key(
        &self,
        edks: &[EncryptedDataKey],
        ctx: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        let wanted = if self.only_key {
            Some(self.key_arn()?)
        } else {
            None
        };
        let candidates = edks
            .iter()
            .filter(|e| e.provider_id == PROVIDER_ID)
            .filter_map(|edk| {
                // Only key ARNs: Decrypt by alias would follow the alias to
                // whatever key it names today.
                let arn = std::str::from_utf8(&edk.provider_info)
                    .ok()
                    .filter(|a| KmsArn::parse(a).is_some_and(|a| a.is_key()))?;
                Some((arn, edk))
            })
            .filter(|(arn, _)| wanted.as_deref().is_none_or(|w| w == *arn));
        unwrap_first(
            edks,
            candidates,
            |(arn, edk)| self.unwrap_one(arn, edk, ctx),
            || match &wanted {
                Some(arn) => format!("AWS KMS key {arn}"),
                None => "AWS KMS (the message has no EDK of a KMS key ARN)".into(),
            },
        )
    }

    fn wrap_data_key(
        &self,
        data_key: &DataKey,
        ctx: &EncryptionContext,
    ) -> Result<Vec<EncryptedDataKey>, ProviderError> {
        let key = self.bound()?;
        let client = self.kms.client(self.region_of(key).as_deref())?;
        // The SDK copies the plaintext into its request body; this copy at
        // least is ours to hand over.
        let request = client
            .encrypt()
            .key_id(key)
            .plaintext(Blob::new(data_key.expose().to_vec()))
            .set_encryption_context(context_map(ctx))
            .send();
        let out = self
            .kms
            .call(request)?
            .map_err(|e| self.error("Encrypt", key, e))?;
        Ok(vec![self.edk(
            "Encrypt",
            key,
            out.key_id,
            out.ciphertext_blob,
        )?])
    }

    fn max_in_flight(&self) -> usize {
        self.kms.max_in_flight()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str = "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

    #[test]
    fn arns_parse() {
        let a = KmsArn::parse(ARN).unwrap();
        assert_eq!(a.region, "eu-west-1");
        assert_eq!(a.account, "111122223333");
        assert!(a.is_key());
        let alias = KmsArn::parse("arn:aws-cn:kms:cn-north-1:1:alias/x/y").unwrap();
        assert_eq!(alias.partition, "aws-cn");
        assert_eq!(alias.resource, "x/y");
        assert!(!alias.is_key());
        for bad in [
            "arn:aws:s3:::bucket",
            "arn:aws:kms::1:key/x",
            "arn:aws:kms:r:1:key/",
            "arn:aws:kms:r:1:grant/x",
            "arn:aws:kms:r:1",
            "aws:kms:r:1:key/x",
        ] {
            assert_eq!(KmsArn::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn key_specs() {
        assert_eq!(parse_key_spec(ARN), Some(Ok(ARN.to_string())));
        assert_eq!(
            parse_key_spec("aws-kms:alias/backup"),
            Some(Ok("alias/backup".into()))
        );
        assert_eq!(parse_key_spec("aws-kms:mrk-1"), Some(Ok("mrk-1".into())));
        assert_eq!(
            parse_key_spec(&format!("aws-kms:{ARN}")),
            Some(Ok(ARN.into()))
        );
        // Keyring and transit specs are not KMS specs.
        for other in ["alias/backup", "transit:k", "0b0c…", "arn-like"] {
            assert_eq!(parse_key_spec(other), None, "{other}");
        }
        for bad in [
            "aws-kms:",
            "aws-kms:alias/",
            "aws-kms:alias/aws/ebs",
            "aws-kms:a b",
            "arn:aws:kms:r:1:nokey",
        ] {
            let e = parse_key_spec(bad).unwrap().unwrap_err();
            assert!(e.contains("arn:aws:kms:REGION"), "{e}");
        }
    }

    #[test]
    fn region_of_an_arn_key() {
        let p = AwsKmsProvider::new(Kms::new(Default::default()), Some(ARN));
        assert_eq!(p.region_of(ARN).as_deref(), Some("eu-west-1"));
        assert_eq!(p.region_of("alias/x"), None);
        // A key ARN needs no DescribeKey.
        assert_eq!(p.key_arn().unwrap(), ARN);
    }
}
