//! AWS KMS errors as [`ProviderError`]s that name the operation, the key
//! and where KMS was asked, and choose the exit code: 5 for a key problem
//! (not found, disabled, pending deletion, access denied, refused
//! credentials, a ciphertext KMS will not decrypt), 1 for a service that
//! cannot be reached or keeps throttling after the SDK's retries.

use aws_sdk_kms::error::{ProvideErrorMetadata, SdkError};

use crate::envelope::ProviderError;

/// KMS error codes that mean the credentials, not the key, were refused.
const CREDENTIAL_ERRORS: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredToken",
    "ExpiredTokenException",
];

/// KMS error codes of a service that is (for now) unable to serve: the SDK
/// retried them already.
const BUSY_ERRORS: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "LimitExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "KeyUnavailableException",
    "DependencyTimeoutException",
    "KMSInternalException",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
];

/// One SDK error as a [`ProviderError`] that names the operation, the key and
/// where KMS was asked, never any key material.
pub fn map_error<E>(op: &str, key: &str, location: &str, err: SdkError<E>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let detail = causes(&err);
    match &err {
        SdkError::ServiceError(se) => {
            let e = se.err();
            let code = e.code().unwrap_or("UnknownError").to_string();
            let msg = e.message().unwrap_or("").to_string();
            let said = if msg.is_empty() {
                code.clone()
            } else {
                format!("{code}: {msg}")
            };
            service_error(op, key, location, &code, &said, se.raw().status().as_u16())
        }
        SdkError::TimeoutError(_) => ProviderError::Unavailable(format!(
            "{location} did not answer {op} for key {key} in time ({detail}); check the network, \
             or raise --kms-timeout"
        )),
        SdkError::DispatchFailure(d) if !d.is_io() && !d.is_timeout() && detail.contains("credential") => {
            ProviderError::KeyUnusable(format!(
                "no AWS credentials to call {op} for key {key}: {detail}. Set AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials, or run where an \
                 instance or task role is available"
            ))
        }
        SdkError::DispatchFailure(_) => ProviderError::Unavailable(format!(
            "cannot reach {location} for {op} with key {key}: {detail}; check the network and \
             proxy settings, or --kms-endpoint"
        )),
        SdkError::ResponseError(_) => ProviderError::Unavailable(format!(
            "{location} sent an unreadable answer to {op} for key {key}: {detail}"
        )),
        _ => ProviderError::Other(format!(
            "could not send {op} for key {key} to {location}: {detail}"
        )),
    }
}

/// An error and its sources, "outer: inner: innermost", each said once (the
/// SDK's own report adds a Debug dump that would bury the cause).
fn causes(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(err);
    while let Some(e) = next {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

fn service_error(
    op: &str,
    key: &str,
    location: &str,
    code: &str,
    said: &str,
    status: u16,
) -> ProviderError {
    use ProviderError::{KeyUnusable, Other, Unavailable, UnwrapFailed};
    match code {
        "NotFoundException" => KeyUnusable(format!(
            "AWS KMS key {key} was not found ({location}: {said}); check the key ARN or alias, \
             the region (AWS_REGION or the profile's) and the account"
        )),
        "DisabledException" => KeyUnusable(format!(
            "AWS KMS key {key} is disabled ({said}); enable it (aws kms enable-key) or use another key"
        )),
        "KMSInvalidStateException" => KeyUnusable(format!(
            "AWS KMS key {key} cannot be used in its current state, e.g. pending deletion or \
             pending import ({said}); cancel the deletion or use another key"
        )),
        "AccessDeniedException" => KeyUnusable(format!(
            "AWS KMS denied kms:{op} on key {key} ({said}); allow kms:{op} for these credentials \
             in the key policy or an IAM policy"
        )),
        "InvalidKeyUsageException" => KeyUnusable(format!(
            "AWS KMS key {key} cannot be used for {op} ({said}); envarc needs a symmetric \
             ENCRYPT_DECRYPT key"
        )),
        "InvalidCiphertextException" | "IncorrectKeyException" => UnwrapFailed {
            key: format!("AWS KMS key {key} ({said})"),
        },
        c if CREDENTIAL_ERRORS.contains(&c) => KeyUnusable(format!(
            "AWS rejected the credentials for kms:{op} on key {key} ({said}); check \
             AWS_ACCESS_KEY_ID / AWS_PROFILE and that the session has not expired"
        )),
        c if BUSY_ERRORS.contains(&c) || status >= 500 => Unavailable(format!(
            "{location} could not serve {op} for key {key}, even after retries ({said}); try \
             again later, or lower the request rate"
        )),
        _ => Other(format!(
            "AWS KMS refused {op} for key {key} ({location}: {said})"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_errors_map_to_exit_codes() {
        let unusable = |c: &str| {
            matches!(
                service_error("Decrypt", "k", "here", c, c, 400),
                ProviderError::KeyUnusable(_)
            )
        };
        for c in [
            "NotFoundException",
            "DisabledException",
            "KMSInvalidStateException",
            "AccessDeniedException",
            "UnrecognizedClientException",
        ] {
            assert!(unusable(c), "{c}");
        }
        let e = service_error(
            "Decrypt",
            "k",
            "here",
            "ThrottlingException",
            "slow down",
            400,
        );
        assert!(matches!(e, ProviderError::Unavailable(_)), "{e}");
        let e = service_error("Decrypt", "k", "here", "Whatever", "x", 503);
        assert!(matches!(e, ProviderError::Unavailable(_)), "{e}");
        let e = service_error(
            "Decrypt",
            "k",
            "here",
            "InvalidCiphertextException",
            "x",
            400,
        );
        assert!(matches!(e, ProviderError::UnwrapFailed { .. }), "{e}");
        assert!(e.to_string().contains("AWS KMS key k"), "{e}");
    }
}
