//! A throwaway OpenSSH server for the SFTP tests: Debian's `sshd` on a free
//! loopback port, with a host key, a user key, `authorized_keys`, an
//! `ssh_config` and a `known_hosts` made for it in a temporary folder. No
//! system file is read or changed (`sshd -f` and `ssh -F` name ours); the
//! client side is handed to envarc through `ENVARC_SSH_CONFIG`. Started and
//! stopped by server.rs (killed when dropped or when the test process ends).
//!
//! `sshd` is found through `ENVARC_SSHD`, then `/usr/sbin/sshd`, then `PATH`
//! (`.ci/setup-sshd.sh` installs it). Missing: a skip line, or a failure
//! under `CI`.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::server::{self, free_port, Stop, Watched};

/// The host key alias in known_hosts: the same entry serves the server's
/// port and a fault proxy's.
const HOST_ALIAS: &str = "envarc-test-sshd";

pub fn find_sshd(test: &str) -> Option<PathBuf> {
    if std::env::var_os("ENVARC_SSHD").is_none() && Path::new("/usr/sbin/sshd").is_file() {
        return Some(PathBuf::from("/usr/sbin/sshd"));
    }
    server::find_program(test, "ENVARC_SSHD", "sshd", ".ci/setup-sshd.sh", None)
}

/// A running server and the client files that reach it.
pub struct Sshd {
    pub port: u16,
    /// The login of the test (the user running the tests).
    pub user: String,
    dir: PathBuf,
    server: Watched,
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
        let dir = server::scratch("envarc-sshd-");
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
        let config = d.join("sshd_config");
        let args = [
            OsStr::new("-D"),
            OsStr::new("-e"),
            OsStr::new("-f"),
            config.as_os_str(),
        ];
        let server = Watched::spawn("sshd", d, Stop::Term, sshd, args, |_| {});
        let up = server.wait_ready(Duration::from_secs(30), Duration::from_millis(50), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if let Err(log) = up {
            panic!("sshd did not start:\n{log}");
        }
        Sshd {
            port,
            user: whoami(),
            dir,
            server,
        }
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
        self.server.log()
    }
}
