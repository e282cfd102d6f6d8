//! The one launcher for the servers the tests drive (OpenBao, moto,
//! SeaweedFS, sshd): find the program, run it in a scratch folder of its own
//! under a watchdog shell, wait until it answers, stop it.
//!
//! The watchdog is why a server never outlives the test process: it runs the
//! server in the background and blocks reading its stdin, the test process's
//! end of a pipe. When the test drops the server — or ends in any way, which
//! is the only end a server kept in a `static` gets — the pipe closes and the
//! watchdog kills the server and removes the folder.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::peers;

/// Finds a peer program: `$var`, then `PATH`, then `fallback` (where the
/// repository's set-up script installs it). `None` after a skip line when
/// missing; a panic when peers are required (see [`peers::required`]).
pub fn find_program(
    test: &str,
    var: &str,
    name: &str,
    setup: &str,
    fallback: Option<PathBuf>,
) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{test}: {var}={} is not a file", p.display());
        return Some(p);
    }
    let found = on_path(name).or_else(|| fallback.filter(|p| p.is_file()));
    if found.is_none() {
        let msg =
            format!("`{name}` was not found: set {var}, put it on PATH, or run `bash {setup}`");
        peers::missing(test, &msg);
    }
    found
}

/// `name` in a folder of `PATH`.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `name` in the repository's `.venv/bin` (the set-up scripts install there).
pub fn in_venv_bin(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(".venv/bin")
        .join(name)
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding a free loopback port")
        .port()
}

/// A fresh scratch folder for one server. It is not removed on drop: the
/// watchdog removes it when the server stops (a server in a `static` is
/// never dropped).
pub fn scratch(prefix: &str) -> PathBuf {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("creating a server's scratch folder")
        .keep()
}

/// Runs `start` up to three times (a free port can be taken between the
/// check and the server's bind); panics with the last log after that.
pub fn start_with_retries<T>(what: &str, mut start: impl FnMut() -> Result<T, String>) -> T {
    let mut last_log = String::new();
    for _ in 0..3 {
        match start() {
            Ok(server) => return server,
            Err(log) => last_log = log,
        }
    }
    panic!("{what} did not start:\n{last_log}");
}

/// How the watchdog stops a server.
#[derive(Clone, Copy)]
pub enum Stop {
    /// SIGTERM, then wait.
    Term,
    /// SIGKILL (a server that ignores SIGTERM for a while, or one whose
    /// crash is what the tests want).
    Kill,
}

/// Runs `$@` with its output appended to `$dir/$log`; on a line (or the end)
/// on stdin sends `$sig` and waits. The folder is removed then, unless the
/// line was `keep` (a kill before a restart on the same folder).
const WATCHDOG: &str = r#"dir="$1"; log="$2"; sig="$3"; shift 3
"$@" </dev/null >>"$dir/$log" 2>&1 &
pid=$!
read -r line || line=""
kill -"$sig" "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
[ "$line" = keep ] || rm -rf "$dir""#;

/// A server process under its watchdog. Dropping it stops the server and
/// removes its folder.
pub struct Watched {
    dir: PathBuf,
    log_name: String,
    /// In a mutex so that a readiness check can borrow the server that owns
    /// this while asking whether the process died.
    watchdog: Mutex<Option<Child>>,
}

impl Watched {
    /// Starts `program args` in `dir` (logging to `dir/NAME.log`);
    /// `setup` adjusts the command (environment) before it is spawned.
    pub fn spawn<I, S>(
        name: &str,
        dir: &Path,
        stop: Stop,
        program: &Path,
        args: I,
        setup: impl FnOnce(&mut Command),
    ) -> Watched
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let log_name = format!("{name}.log");
        let sig = match stop {
            Stop::Term => "TERM",
            Stop::Kill => "KILL",
        };
        let mut cmd = Command::new("sh");
        cmd.arg("-c")
            .arg(WATCHDOG)
            .arg(format!("{name}-watchdog"))
            .arg(dir)
            .arg(&log_name)
            .arg(sig)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        setup(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting sh for the {name} watchdog: {e}"));
        Watched {
            dir: dir.to_path_buf(),
            log_name,
            watchdog: Mutex::new(Some(child)),
        }
    }

    /// The server's scratch folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Polls `ready` every `poll` until it holds (`Ok`), the server exits or
    /// `timeout` passes (`Err` with the server's log).
    pub fn wait_ready(
        &self,
        timeout: Duration,
        poll: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if ready() {
                return Ok(());
            }
            if self.exited() {
                break;
            }
            std::thread::sleep(poll);
        }
        Err(self.log())
    }

    /// Whether the server (its watchdog) has ended.
    pub fn exited(&self) -> bool {
        let mut guard = self.watchdog.lock().unwrap_or_else(|e| e.into_inner());
        match guard.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(Some(_))),
            None => true,
        }
    }

    /// The last part of the server's log (for failure messages).
    pub fn log(&self) -> String {
        let bytes = std::fs::read(self.dir.join(&self.log_name)).unwrap_or_default();
        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(8000)..]).into_owned()
    }

    /// Stops the server and waits until it is gone; with `keep` its folder
    /// stays (for a restart on it), else the watchdog removes it.
    pub fn stop(&self, keep: bool) {
        let mut guard = self.watchdog.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(mut child) = guard.take() {
            if let Some(mut stdin) = child.stdin.take() {
                if keep {
                    let _ = stdin.write_all(b"keep\n");
                }
            }
            let _ = child.wait();
        }
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.stop(false);
    }
}
