//! The SFTP session behind [`super::sftp::SftpStorage`]: the system's `ssh`
//! started as `ssh … -s HOST sftp` (as restic does), so the user's
//! `~/.ssh/config`, keys, agent and `known_hosts` apply exactly as for `ssh`
//! itself, and openssh-sftp-client speaking SFTP over its pipes, many
//! requests in flight on the one session.
//!
//! A session that dies (network loss, server restart, a request past its
//! timeout) is dropped, its `ssh` killed, and the request retried on a new
//! one with [`super::retry`]'s bounds. A protocol answer (no such file,
//! permission denied, failure) is final.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openssh_sftp_client::error::{Error as SftpError, SftpErrorKind};
use openssh_sftp_client::{Sftp, SftpOptions};
use tokio::io::AsyncReadExt;

use super::retry::{retry, Failure, RetryPolicy};
use super::runtime;
use super::url::SftpLocation;

/// Environment variable naming an ssh_config file used instead of
/// `~/.ssh/config` (ssh's `-F`).
pub const SSH_CONFIG_VAR: &str = "ENVARC_SSH_CONFIG";

/// One live session: the SFTP client and the `ssh` that carries it.
pub(crate) struct Session {
    pub sftp: Sftp,
    /// Killed when the session is dropped (kill_on_drop).
    _ssh: tokio::process::Child,
}

/// Connects on demand and reconnects after a failure.
pub(crate) struct Connector {
    loc: SftpLocation,
    location: String,
    timeout: Duration,
    retry: RetryPolicy,
    current: Mutex<Option<Arc<Session>>>,
}

/// What ssh printed last (its error when it could not connect).
type Stderr = Arc<Mutex<Vec<u8>>>;

impl Connector {
    pub(crate) fn new(
        loc: &SftpLocation,
        location: String,
        timeout: Duration,
        retry: RetryPolicy,
    ) -> Connector {
        Connector {
            loc: loc.clone(),
            location,
            timeout,
            retry,
            current: Mutex::new(None),
        }
    }

    fn ssh_command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new("ssh");
        if let Some(cfg) = std::env::var_os(SSH_CONFIG_VAR) {
            c.arg("-F").arg(PathBuf::from(cfg));
        }
        if let Some(port) = self.loc.port {
            c.arg("-p").arg(port.to_string());
        }
        if let Some(user) = &self.loc.user {
            c.arg("-l").arg(user);
        }
        // Notice a dead peer within about a minute even when idle.
        c.args([
            "-o",
            "ServerAliveInterval=15",
            "-o",
            "ServerAliveCountMax=4",
        ]);
        c.args(["-s", "--", &self.loc.host, "sftp"]);
        c.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c
    }

    /// Starts ssh and the SFTP handshake. `Final` when ssh says retrying
    /// cannot help (authentication, host key, unknown host).
    async fn connect(self: Arc<Self>) -> Result<Session, Failure> {
        let mut child = self.ssh_command().spawn().map_err(|e| {
            Failure::Final(io::Error::new(
                e.kind(),
                format!(
                    "cannot start `ssh` for {}: {e} (is OpenSSH's client installed?)",
                    self.location
                ),
            ))
        })?;
        let stderr: Stderr = Arc::default();
        if let Some(mut err) = child.stderr.take() {
            let keep = stderr.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = err.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let mut k = keep.lock().unwrap_or_else(|p| p.into_inner());
                    k.extend_from_slice(&buf[..n]);
                    let over = k.len().saturating_sub(4096);
                    k.drain(..over);
                }
            });
        }
        let (stdin, stdout) = (child.stdin.take(), child.stdout.take());
        let (Some(stdin), Some(stdout)) = (stdin, stdout) else {
            return Err(Failure::Final(io::Error::other("ssh without pipes")));
        };
        let hello =
            tokio::time::timeout(self.timeout, Sftp::new(stdin, stdout, SftpOptions::new())).await;
        match hello {
            Ok(Ok(sftp)) => Ok(Session { sftp, _ssh: child }),
            Ok(Err(e)) => {
                // Give ssh a moment to exit and say why.
                let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
                Err(self.ssh_failure(&stderr, &e.to_string()))
            }
            Err(_) => Err(Failure::Transient(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "connecting to {}: no SFTP session within {} s",
                    self.location,
                    self.timeout.as_secs()
                ),
            ))),
        }
    }

    fn ssh_failure(&self, stderr: &Stderr, fallback: &str) -> Failure {
        let text = String::from_utf8_lossy(&stderr.lock().unwrap_or_else(|p| p.into_inner()))
            .trim()
            .to_string();
        let said = if text.is_empty() {
            fallback.to_string()
        } else {
            text.replace('\n', "; ")
        };
        let fatal = [
            "Permission denied",
            "Host key verification failed",
            "Could not resolve hostname",
            "No such file or directory",
            "Bad configuration",
            "subsystem request failed",
        ];
        let e = |kind| io::Error::new(kind, format!("ssh to {} failed: {said}", self.location));
        if said.contains("Permission denied") {
            Failure::Final(e(io::ErrorKind::PermissionDenied))
        } else if fatal.iter().any(|f| said.contains(f)) {
            Failure::Final(e(io::ErrorKind::Other))
        } else {
            Failure::Transient(e(io::ErrorKind::ConnectionRefused))
        }
    }

    /// The live session, connecting if there is none.
    fn session(self: &Arc<Self>) -> Result<Arc<Session>, Failure> {
        if let Some(s) = self
            .current
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(s);
        }
        let me = self.clone();
        let s = match runtime::run(async move { Ok(me.connect().await) }) {
            Ok(r) => Arc::new(r?),
            Err(e) => return Err(Failure::Transient(e)),
        };
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread may have connected meanwhile: use one session.
        Ok(cur.get_or_insert(s).clone())
    }

    /// Forgets `s` (if still current), which kills its ssh once no request
    /// holds it any more.
    fn drop_session(&self, s: &Arc<Session>) {
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if cur.as_ref().is_some_and(|c| Arc::ptr_eq(c, s)) {
            *cur = None;
        }
    }

    /// Runs `op` on a session with retries: `op` gets the session and the
    /// attempt number (from 1) and returns the future to run. `what` names
    /// the request for errors.
    pub(crate) fn call<T, F, Fut>(self: &Arc<Self>, what: &str, op: F) -> io::Result<T>
    where
        F: Fn(Arc<Session>, usize) -> Fut,
        Fut: Future<Output = Result<T, SftpError>> + Send + 'static,
        T: Send + 'static,
    {
        let what = format!("{what} in {}", self.location);
        retry(&self.retry, &what, |n| {
            let s = self.session()?;
            let fut = op(s.clone(), n);
            let timeout = self.timeout;
            let r = runtime::run(async move { Ok(tokio::time::timeout(timeout, fut).await) });
            match r {
                Ok(Ok(Ok(v))) => Ok(v),
                Ok(Ok(Err(e))) => {
                    let f = classify(&what, e);
                    if matches!(f, Failure::Transient(_)) {
                        self.drop_session(&s);
                    }
                    Err(f)
                }
                Ok(Err(_)) => {
                    self.drop_session(&s);
                    Err(Failure::Transient(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("{what}: no answer within {} s", timeout.as_secs()),
                    )))
                }
                Err(e) => Err(Failure::Transient(e)),
            }
        })
    }
}

/// A status answer of the server is final (and keeps the session); any
/// other error means the session is broken.
fn classify(what: &str, e: SftpError) -> Failure {
    let status = |kind| Failure::Final(io::Error::new(kind, format!("{what}: {e}")));
    match &e {
        SftpError::SftpError(SftpErrorKind::NoSuchFile, _) => status(io::ErrorKind::NotFound),
        SftpError::SftpError(SftpErrorKind::PermDenied, _) => {
            status(io::ErrorKind::PermissionDenied)
        }
        SftpError::SftpError(SftpErrorKind::OpUnsupported, _)
        | SftpError::UnsupportedExtension(_) => status(io::ErrorKind::Unsupported),
        SftpError::SftpError(..) => status(io::ErrorKind::Other),
        _ => Failure::Transient(io::Error::new(
            io::ErrorKind::ConnectionReset,
            format!("{what}: {e}"),
        )),
    }
}

/// Whether `e` is the server's generic failure (what an existing target of
/// a hard link, or an existing folder, gets from OpenSSH).
pub(crate) fn is_failure(e: &SftpError) -> bool {
    matches!(e, SftpError::SftpError(SftpErrorKind::Failure, _))
}

pub(crate) fn is_not_found(e: &SftpError) -> bool {
    matches!(e, SftpError::SftpError(SftpErrorKind::NoSuchFile, _))
}
