//! Where the transit provider finds its server: address, token, namespace and
//! CA certificates, from flags and the environment variables that OpenBao and
//! Vault users already have set (`BAO_*` first, then `VAULT_*`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use zeroize::Zeroizing;

/// The transit mount used when none is given.
pub const DEFAULT_MOUNT: &str = "transit";

/// Connection settings for a transit server. No `Debug`: it holds the token.
pub struct TransitConfig {
    /// `http(s)://host:port`, no trailing slash.
    pub addr: String,
    pub(super) token: Zeroizing<String>,
    /// The transit mount. `None`: [`DEFAULT_MOUNT`] for new data keys, and the
    /// mount stored in each EDK for decrypt and rewrap.
    pub mount: Option<String>,
    /// OpenBao/Vault namespace (`X-Vault-Namespace`), if any.
    pub namespace: Option<String>,
    /// PEM file of CA certificates to trust instead of the Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// Limit for one request, connection and answer included.
    pub timeout: Duration,
    /// Attempts per request for retryable failures (connection errors, 429, 5xx).
    pub tries: u32,
    /// Requests in flight at once across all threads (also the pool size).
    pub max_in_flight: usize,
}

impl TransitConfig {
    /// Settings for `addr` with `token`; checks the address and mount syntax.
    pub fn new(
        addr: &str,
        token: Zeroizing<String>,
        mount: Option<&str>,
    ) -> Result<TransitConfig, String> {
        let addr = addr.trim().trim_end_matches('/');
        if !(addr.starts_with("http://") || addr.starts_with("https://")) {
            return Err(format!(
                "the OpenBao/Vault address '{addr}' must start with http:// or https:// (for example https://bao.example.com:8200)"
            ));
        }
        if token.trim().is_empty() {
            return Err(no_token(addr));
        }
        let mount = mount.map(normalize_mount).transpose()?;
        Ok(TransitConfig {
            addr: addr.to_string(),
            token: Zeroizing::new(token.trim().to_string()),
            mount,
            namespace: None,
            ca_file: None,
            timeout: Duration::from_secs(30),
            tries: 3,
            max_in_flight: 16,
        })
    }

    /// Settings from the environment, each overridable by the caller:
    /// address `addr` or `BAO_ADDR` / `VAULT_ADDR`; token `BAO_TOKEN` /
    /// `VAULT_TOKEN` or the file `~/.vault-token` that `bao login` writes;
    /// namespace `BAO_NAMESPACE` / `VAULT_NAMESPACE`; CA file `ca_file` or
    /// `BAO_CACERT` / `VAULT_CACERT`.
    pub fn from_env(
        addr: Option<&str>,
        mount: Option<&str>,
        ca_file: Option<&Path>,
    ) -> Result<TransitConfig, String> {
        let addr = match addr {
            Some(a) => a.to_string(),
            None => env_either("BAO_ADDR", "VAULT_ADDR").ok_or_else(|| {
                "no OpenBao/Vault address for the transit key: set BAO_ADDR (or VAULT_ADDR), or pass --transit-addr URL".to_string()
            })?,
        };
        let token = match env_either("BAO_TOKEN", "VAULT_TOKEN") {
            Some(t) => Zeroizing::new(t),
            None => token_file().ok_or_else(|| no_token(&addr))?,
        };
        let mut cfg = TransitConfig::new(&addr, token, mount)?;
        cfg.namespace = env_either("BAO_NAMESPACE", "VAULT_NAMESPACE");
        cfg.ca_file = ca_file
            .map(Path::to_path_buf)
            .or_else(|| env_either("BAO_CACERT", "VAULT_CACERT").map(PathBuf::from));
        Ok(cfg)
    }
}

fn no_token(addr: &str) -> String {
    format!(
        "no token for OpenBao/Vault at {addr}: set BAO_TOKEN (or VAULT_TOKEN), or log in with `bao login`"
    )
}

/// The first of two variables that is set and not empty.
fn env_either(first: &str, second: &str) -> Option<String> {
    [first, second]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
}

/// The token that `bao login` / `vault login` stored for the user.
fn token_file() -> Option<Zeroizing<String>> {
    let home = std::env::var_os("HOME")?;
    let t = Zeroizing::new(std::fs::read_to_string(Path::new(&home).join(".vault-token")).ok()?);
    (!t.trim().is_empty()).then(|| Zeroizing::new(t.trim().to_string()))
}

/// `/transit/` → `transit`; rejects empty, `.`/`..` and odd characters so a
/// mount can never address another API path.
pub(super) fn normalize_mount(m: &str) -> Result<String, String> {
    let m = m.trim().trim_matches('/');
    let ok = !m.is_empty()
        && m.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
        });
    if ok {
        Ok(m.to_string())
    } else {
        Err(format!(
            "'{m}' is not a transit mount path: use letters, digits, '_', '-', '.' and '/' (for example transit or team/transit)"
        ))
    }
}

/// Transit key names: a word character, then word characters, '-' or '.',
/// ending in a word character (the server's own rule).
pub(super) fn check_key_name(name: &str) -> Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = name.as_bytes();
    let ok = !bytes.is_empty()
        && word(bytes[0])
        && word(bytes[bytes.len() - 1])
        && bytes.iter().all(|&b| word(b) || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        let mount_hint = if name.contains('/') {
            " (give the mount with --transit-mount, not in the key name)"
        } else {
            ""
        };
        Err(format!(
            "'{name}' is not a transit key name: use letters, digits, '_', '-' and '.', starting and ending with a letter, digit or '_'{mount_hint}"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts() {
        assert_eq!(normalize_mount("/transit/").unwrap(), "transit");
        assert_eq!(normalize_mount("team/transit").unwrap(), "team/transit");
        for bad in ["", "/", "a//b", "../sys", "a/../b", "a b", "a?x"] {
            assert!(normalize_mount(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn key_names() {
        for good in ["k", "backup-key", "a.b_c", "K9"] {
            check_key_name(good).unwrap();
        }
        for bad in ["", "-k", "k-", "a/b", "a b", "../x", "k."] {
            assert!(check_key_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn address_needs_a_scheme_and_token() {
        let t = || Zeroizing::new("tok".to_string());
        assert!(TransitConfig::new("bao:8200", t(), None).is_err());
        let c = TransitConfig::new("https://bao:8200/", t(), Some("/t/")).unwrap();
        assert_eq!(c.addr, "https://bao:8200");
        assert_eq!(c.mount.as_deref(), Some("t"));
        let e = TransitConfig::new("http://x", Zeroizing::new(" ".into()), None)
            .err()
            .unwrap();
        assert!(e.contains("BAO_TOKEN"), "{e}");
    }
}
