//! A throwaway OpenSSH server for the SFTP tests: Debian's `sshd` on a free
//! loopback port, with a host key, a user key, `authorized_keys`, an
//! `ssh_config` and a `known_hosts` made for it in a temporary folder. No
//! system file is read or changed (`sshd -f` and `ssh -F` name ours); the
//! client side is handed to envarc through `ENVARC_SSH_CONFIG`. Killed when
//! dropped, and by a watchdog shell when the test process ends.
//!
//! `sshd` is found through `ENVARC_SSHD`, then `/usr/sbin/sshd`, then `PATH`
//! (`.ci/setup-sshd.sh` installs it). Missing: a skip line, or a failure
//! under `CI`. Same shape as moto.rs and seaweedfs.rs.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::moto::free_port;

/// The host key alias in known_hosts: the same entry serves the server's
/// port and a fault proxy's.
const HOST_ALIAS: &str = "envarc-test-sshd";

pub fn find_sshd(test: &str) -> Option<PathBuf> {
    if std::env::var_os("ENVARC_SSHD").is_none() && Path::new("/usr/sbin/sshd").is_file() {
        return Some(PathBuf::from("/usr/sbin/sshd"));
    }
    super::seaweedfs::find_program(test, "ENVARC_SSHD", "sshd", ".ci/setup-sshd.sh")
}

/// Runs sshd; kills it and removes the folder when stdin closes.
const WATCHDOG: &str = r#"dir="$1"; shift
"$@" </dev/null >>"$dir/sshd.log" 2>&1 &
pid=$!
read -r _ || true
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir""#;

/// A running server and the client files that reach it.
pub struct Sshd {
    pub port: u16,
    /// The login of the test (the user running the tests).
    pub user: String,
    dir: PathBuf,
    watchdog: Child,
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "envarc-test", "-f"])
        .arg(path)
        .status()
        .expect("running ssh-keygen (openssh-client)");
    assert!(st.success(), "ssh-keygen failed");
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().expect("id -un");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl Sshd {
    pub fn start(sshd: &Path) -> Sshd {
        let dir = tempfile::Builder::new()
            .prefix("envarc-sshd-")
            .tempdir()
            .unwrap()
            .keep();
        let d = dir.as_path();
        keygen(&d.join("host_key"));
        keygen(&d.join("user_key"));
        std::fs::copy(d.join("user_key.pub"), d.join("authorized_keys")).unwrap();
        let host_pub = std::fs::read_to_string(d.join("host_key.pub")).unwrap();
        let host_pub: Vec<&str> = host_pub.split_whitespace().take(2).collect();
        std::fs::write(
            d.join("known_hosts"),
            format!("{HOST_ALIAS} {}\n", host_pub.join(" ")),
        )
        .unwrap();
        let port = free_port();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {port}\nListenAddress 127.0.0.1\nHostKey {hk}\nPidFile {pid}\n\
                 AuthorizedKeysFile {ak}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
                 PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\n\
                 Subsystem sftp internal-sftp\n",
                hk = d.join("host_key").display(),
                pid = d.join("sshd.pid").display(),
                ak = d.join("authorized_keys").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("ssh_config"),
            format!(
                "Host *\n  IdentityFile {uk}\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
                 UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  HostKeyAlias {HOST_ALIAS}\n  \
                 StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 10\n",
                uk = d.join("user_key").display(),
                kh = d.join("known_hosts").display(),
            ),
        )
        .unwrap();
        // As root, sshd wants its privilege separation folder (Debian's
        // service makes it at boot; a container may not have it yet).
        if whoami() == "root" && !Path::new("/run/sshd").exists() {
            let _ = std::fs::create_dir_all("/run/sshd");
        }
        let watchdog = Command::new("sh")
            .arg("-c")
            .arg(WATCHDOG)
            .arg("sshd-watchdog")
            .arg(d)
            .arg(sshd)
            .args(["-D", "-e", "-f"])
            .arg(d.join("sshd_config"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting sh for the sshd watchdog");
        let s = Sshd {
            port,
            user: whoami(),
            dir,
            watchdog,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return s;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("sshd did not start:\n{}", s.log());
    }

    /// The ssh_config to put in `ENVARC_SSH_CONFIG`.
    pub fn ssh_config(&self) -> PathBuf {
        self.dir.join("ssh_config")
    }

    /// `sftp://USER@127.0.0.1:PORT//PATH` for an absolute `path`, through
    /// `port` (the server's, or a proxy's in front of it).
    pub fn url_via(&self, port: u16, path: &Path) -> String {
        format!("sftp://{}@127.0.0.1:{port}/{}", self.user, path.display())
    }

    pub fn url(&self, path: &Path) -> String {
        self.url_via(self.port, path)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sshd.log")).unwrap_or_default()
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        drop(self.watchdog.stdin.take());
        let _ = self.watchdog.wait();
    }
}
