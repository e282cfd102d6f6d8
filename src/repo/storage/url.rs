//! Repository locations as users write them (`-r`, `ENVARC_REPOSITORY`),
//! spelled as restic spells them:
//!
//! | written | means |
//! |---|---|
//! | `/srv/backup`, `./repo`, `repo` | a local folder |
//! | `local:/srv/backup` | the same, explicitly |
//! | `s3:https://HOST[:PORT]/BUCKET[/PREFIX]` | an S3-compatible store over HTTPS |
//! | `s3:http://127.0.0.1:9000/BUCKET[/PREFIX]` | the same over plain HTTP (a server on loopback) |
//! | `s3:s3.amazonaws.com/BUCKET[/PREFIX]` | no scheme: HTTPS |
//! | `sftp:[USER@]HOST:/PATH` | SFTP, absolute path (`HOST:PATH` is relative to the login folder) |
//! | `sftp://[USER@]HOST[:PORT]//PATH` | SFTP with a port; `//` makes the path absolute |
//!
//! Anything of the form `WORD:…` where WORD is not a known scheme is refused
//! with the list of known ones (before this, `-r s3:http://…` in a build
//! that did not know S3 made a local folder named `s3:http:`). A local folder
//! whose name has a colon is written `./name:with:colons`.
//!
//! Credentials never go in the location: an S3 URL with `user:password@` or
//! an SFTP URL with a password is refused, so a location can be printed.

use std::path::PathBuf;
use std::time::Duration;

use super::refresh_lock::LockTiming;
use super::retry::RetryPolicy;
use super::{LocalStorage, Storage};
use crate::{Error, Result};

/// The schemes `parse` accepts, for messages.
pub const KNOWN_SCHEMES: &str = "local:, s3:, sftp:";

/// Schemes restic knows that envarc does not (yet) serve; named so that the
/// refusal says "not supported" instead of "unknown".
const OTHER_SCHEMES: [&str; 8] = [
    "b2", "azure", "gs", "swift", "rest", "rclone", "smb", "webdav",
];

/// Where a repository lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3(S3Location),
    Sftp(SftpLocation),
}

/// An S3 bucket (and a prefix inside it) on some endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Location {
    /// `https://HOST[:PORT]` or `http://HOST[:PORT]`, no path.
    pub endpoint: String,
    pub bucket: String,
    /// Object name prefix inside the bucket, no leading or trailing `/`
    /// (empty: the bucket's root).
    pub prefix: String,
}

/// A folder on an SFTP server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftpLocation {
    /// `None`: ssh's own choice (the `User` of `~/.ssh/config`, else the
    /// local user name).
    pub user: Option<String>,
    pub host: String,
    /// `None`: ssh's own choice (`Port` of `~/.ssh/config`, else 22).
    pub port: Option<u16>,
    /// Absolute (`/srv/repo`) or relative to the login folder (`repo`).
    pub path: String,
}

impl std::fmt::Display for Location {
    /// The location as written back: no credentials can be in it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(p) => write!(f, "{}", p.display()),
            Location::S3(s) => {
                write!(f, "s3:{}/{}", s.endpoint, s.bucket)?;
                if !s.prefix.is_empty() {
                    write!(f, "/{}", s.prefix)?;
                }
                Ok(())
            }
            Location::Sftp(s) => {
                let user = s.user.as_ref().map(|u| format!("{u}@")).unwrap_or_default();
                let host = if s.host.contains(':') {
                    format!("[{}]", s.host)
                } else {
                    s.host.clone()
                };
                match s.port {
                    // "//PATH" is absolute, "/PATH" relative (restic's rule).
                    Some(port) => write!(f, "sftp://{user}{host}:{port}/{}", s.path),
                    None => write!(f, "sftp:{user}{host}:{}", s.path),
                }
            }
        }
    }
}

/// How remote stores behave; [`RemoteOptions::from_env`] is what the
/// command line uses.
#[derive(Clone, Debug)]
pub struct RemoteOptions {
    /// Bound of one attempt of one request (connecting included).
    pub timeout: Duration,
    pub retry: RetryPolicy,
    pub lock: LockTiming,
}

impl Default for RemoteOptions {
    fn default() -> Self {
        RemoteOptions {
            timeout: Duration::from_secs(60),
            retry: RetryPolicy::default(),
            lock: LockTiming::default(),
        }
    }
}

impl RemoteOptions {
    /// The defaults, changed by `ENVARC_REMOTE_TIMEOUT` (seconds per request
    /// attempt), `ENVARC_REMOTE_RETRIES` (attempts per request, the first
    /// included: more for a flaky link, fewer to fail fast in a script) and
    /// `ENVARC_LOCK_STALE_AFTER` (seconds after which a lock
    /// that was not refreshed is stale; it is refreshed six times as often;
    /// every host using the repository must use the same value).
    pub fn from_env() -> Result<RemoteOptions> {
        let mut o = RemoteOptions::default();
        if let Some(s) = secs_var("ENVARC_REMOTE_TIMEOUT")? {
            o.timeout = s;
        }
        if let Ok(v) = std::env::var("ENVARC_REMOTE_RETRIES") {
            o.retry.attempts = v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| {
                    Error::Usage(format!(
                        "ENVARC_REMOTE_RETRIES={v}: give a number of attempts from 1 to 100"
                    ))
                })?;
        }
        if let Some(s) = secs_var("ENVARC_LOCK_STALE_AFTER")? {
            o.lock = LockTiming::stale_after(s);
        }
        Ok(o)
    }
}

fn secs_var(var: &str) -> Result<Option<Duration>> {
    match std::env::var(var) {
        Err(_) => Ok(None),
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s > 0.0 && *s < 1e7)
            .map(|s| Some(Duration::from_secs_f64(s)))
            .ok_or_else(|| Error::Usage(format!("{var}={v}: give a number of seconds above 0"))),
    }
}

/// Opens the repository store at `url` (see the module documentation),
/// with [`RemoteOptions::from_env`]. Nothing is sent to a remote store yet:
/// the first request says whether it can be reached.
pub fn open(url: &str) -> Result<Box<dyn Storage>> {
    open_with(url, &RemoteOptions::from_env()?)
}

/// [`open`] with explicit options.
pub fn open_with(url: &str, opts: &RemoteOptions) -> Result<Box<dyn Storage>> {
    let loc = parse(url)?;
    match loc {
        Location::Local(p) => open_local(&p),
        #[cfg(feature = "remote")]
        Location::S3(s) => super::s3::S3Storage::new(&s, opts)
            .map(|s| Box::new(s) as Box<dyn Storage>)
            .map_err(|e| Error::io(format!("opening {url}"), e)),
        #[cfg(feature = "remote")]
        Location::Sftp(s) => Ok(Box::new(super::sftp::SftpStorage::new(&s, opts))),
        #[cfg(not(feature = "remote"))]
        _ => {
            let _ = opts;
            Err(Error::Usage(format!(
                "{loc}: this envarc was built without remote repositories (cargo feature \
                 `remote`); use a build with it, or a local folder"
            )))
        }
    }
}

/// The local folder `p` (a path, never parsed as a URL).
pub fn open_local(p: &std::path::Path) -> Result<Box<dyn Storage>> {
    Ok(Box::new(LocalStorage::new(absolute(p)?)))
}

/// `p` made absolute, symlinks resolved where it exists: one folder has one
/// location, whichever way it was written (pins record it).
fn absolute(p: &std::path::Path) -> Result<PathBuf> {
    let abs =
        std::path::absolute(p).map_err(|e| Error::io(format!("resolving {}", p.display()), e))?;
    Ok(std::fs::canonicalize(&abs).unwrap_or(abs))
}

fn usage(url: &str, why: impl std::fmt::Display) -> Error {
    Error::Usage(format!("repository location '{}': {why}", redact(url)))
}

/// `url` with the password of a `user:password@` part replaced by `***`,
/// so that refusing such a URL does not print the password.
fn redact(url: &str) -> String {
    if let Some(at) = url.rfind('@') {
        let before = &url[..at];
        let start = before
            .find("://")
            .map(|i| i + 3)
            .or_else(|| before.find(':').map(|i| i + 1))
            .unwrap_or(0);
        if let Some(c) = before[start..].find(':') {
            return format!("{}:***{}", &url[..start + c], &url[at..]);
        }
    }
    url.to_string()
}

/// Parses a repository location; see the module documentation.
pub fn parse(url: &str) -> Result<Location> {
    if url.is_empty() {
        return Err(usage(url, "empty; give a folder or an s3:/sftp: URL"));
    }
    let Some((scheme, rest)) = scheme_of(url) else {
        return Ok(Location::Local(PathBuf::from(url)));
    };
    match scheme.as_str() {
        "local" if !rest.is_empty() => Ok(Location::Local(PathBuf::from(rest))),
        "local" => Err(usage(url, "local: needs a folder after it")),
        "s3" => parse_s3(url, rest).map(Location::S3),
        "sftp" => parse_sftp(url, rest).map(Location::Sftp),
        other if OTHER_SCHEMES.contains(&other) => Err(usage(
            url,
            format!("'{other}:' repositories are not supported by envarc; known schemes: {KNOWN_SCHEMES} (a local folder whose name has a colon: write ./{url})"),
        )),
        other => Err(usage(
            url,
            format!("unknown scheme '{other}:'; known schemes: {KNOWN_SCHEMES} (a local folder whose name has a colon: write ./{url})"),
        )),
    }
}

/// `Some((scheme, rest))` when `url` starts with `WORD:` and WORD looks like
/// a scheme (a letter, then letters, digits, `+.-`), lower-cased (`S3:` is
/// `s3:`). `/abs/x:y`, `./x:y` and `x/y:z` are paths.
fn scheme_of(url: &str) -> Option<(String, &str)> {
    let (scheme, rest) = url.split_once(':')?;
    let mut bytes = scheme.bytes();
    let first = bytes.next()?;
    let ok = first.is_ascii_alphabetic()
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'.' | b'-'));
    ok.then(|| (scheme.to_ascii_lowercase(), rest))
}

fn parse_s3(url: &str, rest: &str) -> Result<S3Location> {
    let (scheme, after) = if let Some(r) = rest.strip_prefix("https://") {
        ("https", r)
    } else if let Some(r) = rest.strip_prefix("http://") {
        ("http", r)
    } else if rest.contains("://") {
        return Err(usage(url, "s3: takes http:// or https:// endpoints"));
    } else {
        ("https", rest)
    };
    let (host, path) = after.split_once('/').unwrap_or((after, ""));
    if host.contains('@') {
        return Err(usage(
            url,
            "credentials do not belong in the URL (it gets printed); set AWS_ACCESS_KEY_ID and \
             AWS_SECRET_ACCESS_KEY, or use an AWS profile",
        ));
    }
    check_host(url, host)?;
    let path = path.trim_matches('/');
    let (bucket, prefix) = path.split_once('/').unwrap_or((path, ""));
    if bucket.is_empty() {
        return Err(usage(
            url,
            "no bucket; write s3:https://HOST/BUCKET[/PREFIX]",
        ));
    }
    if !valid_bucket(bucket) {
        return Err(usage(
            url,
            format!("'{bucket}' is not a bucket name (3 to 63 characters: a-z, 0-9, '.', '-')"),
        ));
    }
    let prefix = prefix.trim_matches('/');
    if prefix
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
        && !prefix.is_empty()
    {
        return Err(usage(url, "the prefix has an empty, '.' or '..' part"));
    }
    Ok(S3Location {
        endpoint: format!("{scheme}://{host}"),
        bucket: bucket.to_string(),
        prefix: prefix.to_string(),
    })
}

/// S3's bucket naming rules (the ones every implementation shares).
fn valid_bucket(b: &str) -> bool {
    (3..=63).contains(&b.len())
        && b.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
        && b.as_bytes()[0].is_ascii_alphanumeric()
        && b.as_bytes()[b.len() - 1].is_ascii_alphanumeric()
}

/// `HOST` or `HOST:PORT` (IPv6 in brackets), non-empty, no spaces.
fn check_host(url: &str, hostport: &str) -> Result<()> {
    let (host, port) = split_port(hostport);
    if host.is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/' || c == '\\') {
        return Err(usage(url, "no host name"));
    }
    if let Some(p) = port {
        p.parse::<u16>()
            .ok()
            .filter(|&p| p != 0)
            .ok_or_else(|| usage(url, format!("'{p}' is not a port number")))?;
    }
    Ok(())
}

/// Splits `host:port` / `[v6]:port`; the port part is `None` when absent.
fn split_port(hostport: &str) -> (&str, Option<&str>) {
    if let Some(r) = hostport.strip_prefix('[') {
        return match r.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => (h, Some(p.strip_prefix(':').unwrap_or(p))),
            None => ("", None),
        };
    }
    match hostport.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (hostport, None),
    }
}

fn parse_sftp(url: &str, rest: &str) -> Result<SftpLocation> {
    let (user, host, port, path) = if let Some(r) = rest.strip_prefix("//") {
        // sftp://[USER@]HOST[:PORT]/PATH; "//PATH" is absolute, "/PATH" is
        // relative to the login folder (restic's rule).
        let (authority, path) = r.split_once('/').unwrap_or((r, ""));
        let (user, hostport) = split_user(authority);
        let (host, port) = split_port(hostport);
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .ok()
                    .filter(|&p| p != 0)
                    .ok_or_else(|| usage(url, format!("'{p}' is not a port number")))?,
            ),
            None => None,
        };
        (user, host, port, path.to_string())
    } else {
        // sftp:[USER@]HOST:PATH (scp style); an IPv6 host goes in brackets.
        let (user, hostpath) = split_user(rest);
        let (host, path) = if let Some(r) = hostpath.strip_prefix('[') {
            match r.split_once("]:") {
                Some((h, p)) => (h, p),
                None => return Err(usage(url, "write sftp:USER@[V6ADDR]:/PATH")),
            }
        } else {
            hostpath.split_once(':').ok_or_else(|| {
                usage(
                    url,
                    "write sftp:USER@HOST:/PATH (the colon after the host is needed)",
                )
            })?
        };
        (user, host, None, path.to_string())
    };
    if let Some(u) = user {
        if u.contains(':') {
            return Err(usage(
                url,
                "passwords do not belong in the URL (it gets printed); use an ssh key or the ssh agent",
            ));
        }
        if u.is_empty() || u.starts_with('-') {
            return Err(usage(url, "empty or invalid user name"));
        }
    }
    // ssh reads a leading '-' as an option: never let a host be one.
    if host.is_empty() || host.starts_with('-') || host.contains(char::is_whitespace) {
        return Err(usage(url, "no host name"));
    }
    let path = path.trim_end_matches('/');
    if path.is_empty() || path.split('/').any(|p| p == "..") {
        return Err(usage(
            url,
            "no folder, or a '..' in it; write sftp:USER@HOST:/PATH",
        ));
    }
    Ok(SftpLocation {
        user: user.map(str::to_string),
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// `USER@REST` → (Some(USER), REST); the last `@` before the host splits,
/// so a user name may hold one (`me@corp@host`).
fn split_user(s: &str) -> (Option<&str>, &str) {
    match s.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, s),
    }
}

#[cfg(test)]
#[path = "url_tests.rs"]
mod tests;
