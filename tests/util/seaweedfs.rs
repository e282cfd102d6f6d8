//! A throwaway SeaweedFS (`weed server` with its S3 gateway) for tests: on
//! free loopback ports, with S3 authentication on (one test identity),
//! started and stopped by server.rs (killed when dropped or when the test
//! process ends). It can be killed (SIGKILL) and restarted on the same
//! folder and ports, for crash tests.
//!
//! `weed` is found through `ENVARC_WEED`, then `PATH`, then the
//! repository's `.venv` (`.ci/setup-seaweedfs.sh` installs it there). When it
//! is missing the tests skip with a line on stderr, except under `CI`, where
//! they fail.

#![allow(dead_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::server::{self, free_port, Stop, Watched};

/// The access key the test identity has (not a secret: loopback only).
pub const ACCESS_KEY: &str = "envarctestkey";
pub const SECRET_KEY: &str = "envarctestsecret";

pub fn find_weed(test: &str) -> Option<PathBuf> {
    let venv = server::in_venv_bin("weed");
    server::find_program(
        test,
        "ENVARC_WEED",
        "weed",
        ".ci/setup-seaweedfs.sh",
        Some(venv),
    )
}

/// A running (or killed) server.
pub struct SeaweedFs {
    bin: PathBuf,
    dir: PathBuf,
    /// master, master grpc, volume, volume grpc, filer, filer grpc, s3, s3 grpc
    ports: [u16; 8],
    /// `None` while killed (between [`SeaweedFs::kill`] and a restart).
    server: Option<Watched>,
}

impl SeaweedFs {
    /// Starts a server and waits until it serves S3. Panics with its log
    /// when it does not come up.
    pub fn start(bin: &Path) -> SeaweedFs {
        let dir = server::scratch("envarc-weed-");
        std::fs::create_dir(dir.join("data")).unwrap();
        let config = format!(
            r#"{{"identities":[{{"name":"envarc","credentials":[{{"accessKey":"{ACCESS_KEY}","secretKey":"{SECRET_KEY}"}}],"actions":["Admin","Read","Write","List","Tagging"]}}]}}"#
        );
        std::fs::write(dir.join("s3.json"), config).unwrap();
        let mut ports = [0u16; 8];
        for p in ports.iter_mut() {
            *p = free_port();
        }
        let mut s = SeaweedFs {
            bin: bin.to_path_buf(),
            dir,
            ports,
            server: None,
        };
        s.restart();
        s
    }

    /// `http://127.0.0.1:PORT` of the S3 gateway.
    pub fn s3_endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[6])
    }

    pub fn s3_port(&self) -> u16 {
        self.ports[6]
    }

    /// Starts the server (again, on the same folder and ports) and waits
    /// until its S3 gateway answers.
    pub fn restart(&mut self) {
        assert!(self.server.is_none(), "restart of a running server");
        let p = self.ports.map(|p| p.to_string());
        let d = self.dir.as_path();
        let args = [
            "server".to_string(),
            format!("-dir={}", d.join("data").display()),
            "-ip=127.0.0.1".into(),
            "-ip.bind=127.0.0.1".into(),
            format!("-master.port={}", p[0]),
            format!("-master.port.grpc={}", p[1]),
            format!("-volume.port={}", p[2]),
            format!("-volume.port.grpc={}", p[3]),
            format!("-filer.port={}", p[4]),
            format!("-filer.port.grpc={}", p[5]),
            "-s3".into(),
            format!("-s3.port={}", p[6]),
            format!("-s3.port.grpc={}", p[7]),
            format!("-s3.config={}", d.join("s3.json").display()),
            "-master.volumeSizeLimitMB=64".into(),
            "-volume.max=0".into(),
            "-master.telemetry=false".into(),
            // Catalog servers on fixed ports (8181, 9101): not needed, off.
            "-s3.port.iceberg=0".into(),
            "-s3.port.lance=0".into(),
        ];
        // SIGKILL: weed ignores SIGTERM for a while, and a crash is what
        // the tests want anyway.
        self.server = Some(Watched::spawn(
            "weed",
            d,
            Stop::Kill,
            &self.bin,
            &args,
            |_| {},
        ));
        let ready = || {
            TcpStream::connect(("127.0.0.1", self.ports[6])).is_ok()
                && self.shell("s3.bucket.list").is_ok()
        };
        let up = self.server.as_ref().expect("just started").wait_ready(
            Duration::from_secs(150),
            Duration::from_millis(200),
            ready,
        );
        if let Err(log) = up {
            panic!("weed did not start:\n{log}");
        }
    }

    /// Kills the server with SIGKILL and waits until it is gone; its data
    /// stays for [`SeaweedFs::restart`].
    pub fn kill(&mut self) {
        self.stop(true);
    }

    fn stop(&mut self, keep: bool) {
        if let Some(server) = self.server.take() {
            server.stop(keep);
        }
    }

    /// Runs one `weed shell` command against this server, for at most
    /// 60 s: a shell waits for the master to come up, which takes a while
    /// beside other servers starting, but after a restart it can wait
    /// forever.
    pub fn shell(&self, command: &str) -> Result<String, String> {
        let mut child = Command::new(&self.bin)
            .arg("shell")
            .arg(format!(
                "-master=127.0.0.1:{}.{}",
                self.ports[0], self.ports[1]
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| e.to_string())?;
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin
                .write_all(format!("{command}\n").as_bytes())
                .map_err(|e| e.to_string())?;
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().map_err(|e| e.to_string())?.is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("`weed shell` ({command}) did not answer in 60 s"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && !text.to_lowercase().contains("error") {
            Ok(text)
        } else {
            Err(text)
        }
    }

    /// Creates bucket `name` (at least three characters).
    pub fn create_bucket(&self, name: &str) {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            match self.shell(&format!("s3.bucket.create -name {name}")) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => {
                    panic!("creating bucket {name}: {e}\n{}", self.log())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    /// The last part of the server's log (for failure messages).
    pub fn log(&self) -> String {
        let bytes = std::fs::read(self.dir.join("weed.log")).unwrap_or_default();
        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(4000)..]).into_owned()
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        self.stop(false); // the watchdog removes the folder
    }
}
