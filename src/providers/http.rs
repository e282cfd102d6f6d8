//! A small JSON-over-HTTP(S) client for the OpenBao / Vault API, over `ureq`
//! (blocking, rustls). One `ureq::Agent` holds the connection pool and is
//! shared by every thread; requests run concurrently up to a bound, with
//! bounded retries for the failures that are worth retrying.
//!
//! Secrets: the token lives in a `Zeroizing` string, is sent as a header
//! marked sensitive, and is never formatted into an error. Response bodies
//! (which carry plaintext data keys) are returned in zeroizing buffers.

use std::io;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use ureq::http::HeaderValue;
use zeroize::Zeroizing;

/// Largest response body read; transit answers are a few hundred bytes.
const MAX_BODY: u64 = 1024 * 1024;

/// Everything the client needs; built by the transit provider's configuration.
pub(crate) struct ClientConfig<'a> {
    /// `http(s)://host:port`, no trailing slash.
    pub base: &'a str,
    pub token: &'a str,
    pub namespace: Option<&'a str>,
    pub ca_file: Option<&'a Path>,
    pub timeout: Duration,
    /// Attempts per request, the first included.
    pub tries: u32,
    /// Requests in flight at once, across all threads.
    pub max_in_flight: usize,
}

/// Why a request failed, before the caller phrases it for the user.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The server answered with an error status; `errors` is its `errors` list.
    Status { code: u16, errors: Vec<String> },
    /// The server answered with a redirect, which is not followed (the token
    /// would travel to wherever it points).
    Redirect { code: u16, location: String },
    /// Could not connect, or the connection broke (after `tries` attempts).
    Network { detail: String, tries: u32 },
    /// No complete answer within the timeout.
    Timeout { secs: u64 },
    /// The TLS handshake failed (untrusted certificate, wrong host name, …).
    Tls { detail: String },
    /// A 2xx answer that is not the JSON we expect.
    BadResponse(String),
}

pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    token: Zeroizing<String>,
    namespace: Option<String>,
    timeout: Duration,
    tries: u32,
    gate: Gate,
}

impl Client {
    pub fn new(cfg: &ClientConfig<'_>) -> Result<Client, String> {
        let mut tls = ureq::tls::TlsConfig::builder();
        if let Some(path) = cfg.ca_file {
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&read_ca_file(path)?));
        }
        let config = ureq::Agent::config_builder()
            // Status codes are data here: the body says what went wrong.
            .http_status_as_error(false)
            // A redirect would carry the token to another host; report it instead.
            .max_redirects(0)
            .timeout_global(Some(cfg.timeout))
            .max_idle_connections(cfg.max_in_flight.max(1))
            .max_idle_connections_per_host(cfg.max_in_flight.max(1))
            .user_agent(concat!("envarc/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls.build())
            .build();
        Ok(Client {
            agent: config.new_agent(),
            base: cfg.base.trim_end_matches('/').to_string(),
            token: Zeroizing::new(cfg.token.to_string()),
            namespace: cfg.namespace.map(str::to_string),
            timeout: cfg.timeout,
            tries: cfg.tries.max(1),
            gate: Gate::new(cfg.max_in_flight.max(1)),
        })
    }

    /// The server address as given (for messages).
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Requests this client lets through at once.
    pub fn max_in_flight(&self) -> usize {
        self.gate.max
    }

    /// `GET /v1/{path}`; returns the response body of a 2xx answer.
    pub fn get(&self, path: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
        self.with_retries(|| {
            let req = self.agent.get(self.url(path));
            let req = self.auth(req);
            req.call()
        })
    }

    /// `POST /v1/{path}` with a JSON body; returns the body of a 2xx answer.
    /// The serialized request is zeroized after use (it may hold a data key).
    pub fn post<T: serde::Serialize>(
        &self,
        path: &str,
        body: &T,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let bytes = Zeroizing::new(
            serde_json::to_vec(body)
                .map_err(|e| Failure::BadResponse(format!("cannot serialize the request: {e}")))?,
        );
        self.with_retries(|| {
            let req = self
                .agent
                .post(self.url(path))
                .header("Content-Type", "application/json");
            let req = self.auth(req);
            req.send(&bytes[..])
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/{}", self.base, path)
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        let mut token = HeaderValue::from_str(&self.token)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid-token-characters"));
        token.set_sensitive(true);
        let req = req.header("X-Vault-Token", token);
        match &self.namespace {
            Some(ns) => req.header("X-Vault-Namespace", ns.as_str()),
            None => req,
        }
    }

    /// Runs one request up to `tries` times: connection failures, 429 and 5xx
    /// (except "sealed", which waits for a human) are retried with backoff.
    fn with_retries(
        &self,
        send: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Zeroizing<Vec<u8>>, Failure> {
        let _permit = self.gate.enter();
        let mut attempt = 1;
        loop {
            let outcome = match send() {
                Ok(mut resp) => {
                    let code = resp.status().as_u16();
                    match resp.body_mut().with_config().limit(MAX_BODY).read_to_vec() {
                        Ok(body) => Answer::Body(code, Zeroizing::new(body), location(&resp)),
                        Err(e) => Answer::Transport(e),
                    }
                }
                Err(e) => Answer::Transport(e),
            };
            let failure = match outcome {
                Answer::Body(code, body, _) if (200..300).contains(&code) => return Ok(body),
                Answer::Body(code, _, Some(location)) if (300..400).contains(&code) => {
                    return Err(Failure::Redirect { code, location })
                }
                Answer::Body(code, body, _) => {
                    let errors = error_list(&body);
                    let sealed = errors.iter().any(|e| e.contains("sealed"));
                    let retry = code == 429 || (code >= 500 && !sealed);
                    (Failure::Status { code, errors }, retry)
                }
                Answer::Transport(e) => classify(e, self.timeout, attempt),
            };
            match failure {
                (f, true) if attempt < self.tries => {
                    drop(f);
                    std::thread::sleep(backoff(attempt));
                    attempt += 1;
                }
                (Failure::Network { detail, .. }, _) => {
                    return Err(Failure::Network {
                        detail,
                        tries: attempt,
                    })
                }
                (f, _) => return Err(f),
            }
        }
    }
}

enum Answer {
    Body(u16, Zeroizing<Vec<u8>>, Option<String>),
    Transport(ureq::Error),
}

fn location(resp: &ureq::http::Response<ureq::Body>) -> Option<String> {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The server's `{"errors": [...]}` list; empty when the body has none.
fn error_list(body: &[u8]) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Errors {
        #[serde(default)]
        errors: Vec<String>,
    }
    serde_json::from_slice::<Errors>(body)
        .map(|e| e.errors)
        .unwrap_or_default()
}

/// Maps a transport error to a failure and whether it is worth another try.
/// Timeouts are not retried: the timeout already is the user's patience.
fn classify(e: ureq::Error, timeout: Duration, attempt: u32) -> (Failure, bool) {
    let network = |detail: String| Failure::Network {
        detail,
        tries: attempt,
    };
    match e {
        ureq::Error::Timeout(_) => (
            Failure::Timeout {
                secs: timeout.as_secs().max(1),
            },
            false,
        ),
        ureq::Error::Io(e) if e.kind() == io::ErrorKind::TimedOut => (
            Failure::Timeout {
                secs: timeout.as_secs().max(1),
            },
            false,
        ),
        // rustls reports handshake failures (untrusted issuer, wrong name) as
        // InvalidData I/O errors on the stream.
        ureq::Error::Io(e) if e.kind() == io::ErrorKind::InvalidData => (
            Failure::Tls {
                detail: e.to_string(),
            },
            false,
        ),
        ureq::Error::Io(e) => (network(io_detail(&e)), true),
        ureq::Error::ConnectionFailed => (network("connection failed".into()), true),
        ureq::Error::HostNotFound => (network("host name not found".into()), true),
        ureq::Error::Protocol(e) => (network(format!("HTTP protocol error: {e}")), true),
        ureq::Error::Tls(e) => (Failure::Tls { detail: e.into() }, false),
        ureq::Error::Rustls(e) => (
            Failure::Tls {
                detail: e.to_string(),
            },
            false,
        ),
        ureq::Error::Pem(e) => (
            Failure::Tls {
                detail: e.to_string(),
            },
            false,
        ),
        ureq::Error::BodyExceedsLimit(n) => (
            Failure::BadResponse(format!("response larger than {n} bytes")),
            false,
        ),
        other => (network(other.to_string()), false),
    }
}

fn io_detail(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset by the server".into(),
        io::ErrorKind::ConnectionAborted => "connection aborted".into(),
        io::ErrorKind::UnexpectedEof => "the server closed the connection early".into(),
        _ => e.to_string(),
    }
}

/// 100 ms, then 400 ms, … with ±50 % jitter so that many threads that failed
/// together do not retry together.
fn backoff(attempt: u32) -> Duration {
    let base = 100u64.saturating_mul(4u64.saturating_pow(attempt.saturating_sub(1)));
    let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.5..1.5);
    Duration::from_millis((base as f64 * jitter) as u64)
}

fn read_ca_file(path: &Path) -> Result<Vec<ureq::tls::Certificate<'static>>, String> {
    let pem = std::fs::read(path)
        .map_err(|e| format!("cannot read the CA file {}: {e}", path.display()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => certs.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(format!(
                    "the CA file {} is not valid PEM: {e}",
                    path.display()
                ))
            }
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "the CA file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        ));
    }
    Ok(certs)
}

/// A counting semaphore: at most `max` requests in flight. Not a lock around
/// requests: the mutex is held only to count.
struct Gate {
    max: usize,
    busy: Mutex<usize>,
    freed: Condvar,
}

struct Permit<'a>(&'a Gate);

impl Gate {
    fn new(max: usize) -> Gate {
        Gate {
            max,
            busy: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    fn enter(&self) -> Permit<'_> {
        let mut busy = self.busy.lock().unwrap_or_else(|p| p.into_inner());
        while *busy >= self.max {
            busy = self.freed.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy += 1;
        Permit(self)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.busy.lock().unwrap_or_else(|p| p.into_inner());
        *busy -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    /// A one-thread HTTP server that answers each request with the next of
    /// `answers` (status, body) and counts the requests it saw.
    fn fake_server(answers: Vec<(u16, &'static str)>) -> (String, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let count = seen.clone();
        std::thread::spawn(move || {
            for (stream, (code, body)) in listener.incoming().zip(answers) {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                }
                let mut req_body = vec![0; len];
                reader.read_exact(&mut req_body).unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {code} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        (addr, seen)
    }

    fn client(base: &str) -> Client {
        Client::new(&ClientConfig {
            base,
            token: "t",
            namespace: None,
            ca_file: None,
            timeout: Duration::from_secs(5),
            tries: 3,
            max_in_flight: 4,
        })
        .unwrap()
    }

    #[test]
    fn retries_5xx_and_429_then_succeeds() {
        let (addr, seen) = fake_server(vec![
            (500, r#"{"errors":["internal"]}"#),
            (429, r#"{"errors":["rate limited"]}"#),
            (200, r#"{"data":{}}"#),
        ]);
        let body = client(&addr).post("x", &serde_json::json!({})).unwrap();
        assert_eq!(&body[..], br#"{"data":{}}"#);
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn gives_up_after_three_tries() {
        let (addr, seen) = fake_server(vec![(502, "{}"); 5]);
        match client(&addr).get("x") {
            Err(Failure::Status { code: 502, .. }) => {}
            other => panic!("expected a 502 failure, got {other:?}"),
        }
        assert_eq!(seen.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn sealed_and_4xx_are_not_retried() {
        let (addr, seen) = fake_server(vec![(503, r#"{"errors":["Vault is sealed"]}"#); 3]);
        match client(&addr).get("x") {
            Err(Failure::Status { code: 503, errors }) => assert_eq!(errors, ["Vault is sealed"]),
            other => panic!("expected a sealed failure, got {other:?}"),
        }
        assert_eq!(seen.load(Ordering::SeqCst), 1);
        let (addr, seen) = fake_server(vec![(403, r#"{"errors":["permission denied"]}"#); 3]);
        assert!(matches!(
            client(&addr).get("x"),
            Err(Failure::Status { code: 403, .. })
        ));
        assert_eq!(seen.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn connection_refused_is_retried_then_reported() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        match client(&format!("http://127.0.0.1:{port}")).get("x") {
            Err(Failure::Network { detail, tries }) => {
                assert_eq!(tries, 3);
                assert!(detail.contains("refused"), "{detail}");
            }
            other => panic!("expected a network failure, got {other:?}"),
        }
    }

    #[test]
    fn gate_bounds_concurrency() {
        let gate = Arc::new(Gate::new(2));
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (gate, now, peak) = (gate.clone(), now.clone(), peak.clone());
                std::thread::spawn(move || {
                    let _p = gate.enter();
                    let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(n, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(10));
                    now.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(peak.load(Ordering::SeqCst), 2);
    }
}
