//! OpenDAL's S3 errors as `io::Error`s a user can act on: the kind says
//! what happened (callers match on it), the text names the object and the
//! store, the server's error code and message (or the connection's
//! failure), and what to do. OpenDAL's own rendering carries the request
//! URI and every response header; that detail is left out.

use std::io;

use opendal::ErrorKind as K;

/// The `io::ErrorKind` of an OpenDAL error.
fn kind_of(e: &opendal::Error, text: &str) -> io::ErrorKind {
    match e.kind() {
        K::NotFound if text.contains("NoSuchBucket") => io::ErrorKind::Other,
        K::NotFound => io::ErrorKind::NotFound,
        K::PermissionDenied => io::ErrorKind::PermissionDenied,
        K::AlreadyExists | K::ConditionNotMatch => io::ErrorKind::AlreadyExists,
        K::RangeNotSatisfied => io::ErrorKind::UnexpectedEof,
        K::ConfigInvalid if text.contains("NoSuchBucket") => io::ErrorKind::Other,
        K::ConfigInvalid => io::ErrorKind::InvalidInput,
        K::Unsupported => io::ErrorKind::Unsupported,
        // Not QuotaExceeded: that reads as "disk full" (see error.rs).
        K::RateLimited => io::ErrorKind::ResourceBusy,
        _ if text.contains("timeout") || text.contains("timed out") => io::ErrorKind::TimedOut,
        _ => io::ErrorKind::Other,
    }
}

/// The value of `key: "VALUE"` in OpenDAL's rendering of an S3 error.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let start = text.find(&format!("{key}: \""))? + key.len() + 3;
    let len = text[start..].find('"')?;
    Some(&text[start..start + len])
}

/// The HTTP status of the answer, when there was one.
fn status(text: &str) -> Option<&str> {
    let at = text.find("status: ")? + 8;
    text.get(at..at + 3)
        .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
}

/// One line for the error: the server's code and message, else OpenDAL's
/// message and its cause.
fn summary(e: &opendal::Error) -> String {
    let text = e.to_string();
    let http = status(&text)
        .map(|s| format!("HTTP {s}: "))
        .unwrap_or_default();
    if let (Some(code), Some(msg)) = (field(&text, "code"), field(&text, "message")) {
        return format!("{http}{code}: {msg}");
    }
    let mut out = format!("{http}{}", e.kind());
    if !e.message().is_empty() {
        out.push_str(": ");
        out.push_str(e.message());
    }
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

/// What to do about it.
fn advice(e: &opendal::Error, text: &str, attempts: usize) -> String {
    if text.contains("NoSuchBucket") {
        return "; the bucket does not exist: create it first (for example `aws s3 mb \
                s3://BUCKET`, or in the store's console; envarc does not create buckets)"
            .into();
    }
    match e.kind() {
        K::PermissionDenied => "; check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, \
             AWS_PROFILE) and the bucket policy"
            .into(),
        // What the retry layer gave up on (timeouts, refused or dropped
        // connections, 5xx, throttling): it may pass.
        K::Unexpected | K::RateLimited => format!(
            " (gave up after {attempts} attempts); check that the store is reachable and \
             run the command again (what earlier runs stored is intact)"
        ),
        _ => String::new(),
    }
}

/// An OpenDAL error as an `io::Error` that names the object and the store;
/// `attempts` is how many tries a retried request gets.
pub(super) fn to_io(
    location: &str,
    what: &str,
    name: &str,
    attempts: usize,
    e: opendal::Error,
) -> io::Error {
    let text = e.to_string();
    let name = if name.is_empty() {
        String::new()
    } else {
        format!(" {name}")
    };
    io::Error::new(
        kind_of(&e, &text),
        format!(
            "{what}{name} in {location}: {}{}",
            summary(&e),
            advice(&e, &text, attempts)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_errors_read_as_code_and_message_without_headers() {
        let e = opendal::Error::new(
            K::ConfigInvalid,
            "S3Error { code: \"NoSuchBucket\", message: \"The specified bucket does not exist\", resource: \"/b\", request_id: \"1\" }",
        )
        .with_context("response", "Parts { status: 404, headers: {\"server\": \"x\"} }");
        let io = to_io("s3:http://h/b", "listing", "", 8, e);
        let text = io.to_string();
        assert!(text.starts_with("listing in s3:http://h/b: HTTP 404: NoSuchBucket: The specified bucket does not exist; the bucket does not exist: create it first"), "{text}");
        assert!(!text.contains("headers"), "{text}");
        assert_eq!(io.kind(), io::ErrorKind::Other);
    }

    #[test]
    fn transient_failures_say_they_were_retried() {
        let e = opendal::Error::new(K::Unexpected, "send http request")
            .set_source(io::Error::other("connection refused"));
        let text = to_io("s3:http://h/b", "reading", "config", 8, e).to_string();
        assert_eq!(
            text,
            "reading config in s3:http://h/b: Unexpected: send http request: connection refused \
             (gave up after 8 attempts); check that the store is reachable and run the command \
             again (what earlier runs stored is intact)"
        );
        let busy = to_io(
            "l",
            "w",
            "n",
            8,
            opendal::Error::new(K::RateLimited, "slow down"),
        );
        assert_eq!(busy.kind(), io::ErrorKind::ResourceBusy);
    }
}
