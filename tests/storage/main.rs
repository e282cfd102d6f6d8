//! `trait Storage` conformance: the same cases against a local folder,
//! SeaweedFS's S3 gateway, moto's S3 and OpenSSH's SFTP server, all real and
//! on loopback (started here; see tests/util/), then the fault cases (a
//! fault proxy in front of each server, SeaweedFS killed mid-write).
//!
//! Servers are found as tests/util/ says; missing ones skip with a line,
//! or fail under `CI`.

#[path = "../util/mod.rs"]
mod util;
use crate::util::fault_proxy;
use crate::util::moto;
use crate::util::seaweedfs;
use crate::util::sshd;

mod cases;
mod cli;
mod cli_faults;
mod faults;
mod locks;

use std::sync::{Once, OnceLock};
use std::time::Duration;

use envarc::repo::storage::retry::RetryPolicy;
use envarc::repo::storage::{open_with, LockTiming, RemoteOptions, Storage};

/// One kind of store, and how to get a fresh, empty one.
pub struct Target {
    pub label: &'static str,
    /// Location of a fresh empty store named `case` (a new prefix or folder).
    make: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// Whether a second create of a name fails (conditional create).
    pub exclusive: bool,
    pub remote: bool,
}

impl Target {
    pub fn url(&self, case: &str) -> String {
        (self.make)(case)
    }

    pub fn open(&self, case: &str) -> Box<dyn Storage> {
        self.open_with(case, &test_options())
    }

    pub fn open_with(&self, case: &str, opts: &RemoteOptions) -> Box<dyn Storage> {
        let url = self.url(case);
        open_with(&url, opts).unwrap_or_else(|e| panic!("{}: opening {url}: {e}", self.label))
    }
}

/// Short timings so that staleness and retries fit in a test run.
pub fn test_options() -> RemoteOptions {
    RemoteOptions {
        timeout: Duration::from_secs(20),
        retry: RetryPolicy {
            attempts: 6,
            first_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(300),
        },
        lock: LockTiming {
            refresh: Duration::from_millis(300),
            stale_after: Duration::from_secs(3),
        },
    }
}

/// Environment for the whole test process, set once before any store
/// exists (no thread reads it while it changes).
pub fn init_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", seaweedfs::ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", seaweedfs::SECRET_KEY);
        std::env::set_var("AWS_EC2_METADATA_DISABLED", "true");
        for v in [
            "AWS_PROFILE",
            "AWS_SESSION_TOKEN",
            "AWS_REGION",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
        ] {
            std::env::remove_var(v);
        }
        if let Some(s) = sshd_server() {
            std::env::set_var("ENVARC_SSH_CONFIG", s.ssh_config());
        }
    });
}

/// The folder of the local and SFTP stores, removed when the test process
/// ends (a static is never dropped: a shell holding a pipe from us removes
/// it when the pipe closes).
fn scratch() -> &'static std::path::Path {
    static DIR: OnceLock<(std::path::PathBuf, std::process::Child)> = OnceLock::new();
    &DIR.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("envarc-storage-")
            .tempdir()
            .unwrap()
            .keep();
        let reaper = std::process::Command::new("sh")
            .args(["-c", r#"read -r _ || true; rm -rf "$1""#, "reaper"])
            .arg(&dir)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("starting the clean-up shell");
        (dir, reaper)
    })
    .0
}

pub const BUCKET: &str = "envarc-test";

pub fn weed_server() -> Option<&'static seaweedfs::SeaweedFs> {
    static S: OnceLock<Option<seaweedfs::SeaweedFs>> = OnceLock::new();
    S.get_or_init(|| {
        let bin = seaweedfs::find_weed("storage conformance on SeaweedFS")?;
        let s = seaweedfs::SeaweedFs::start(&bin);
        s.create_bucket(BUCKET);
        Some(s)
    })
    .as_ref()
}

pub fn moto_server() -> Option<&'static moto::Moto> {
    static S: OnceLock<Option<moto::Moto>> = OnceLock::new();
    S.get_or_init(|| {
        let bin = moto::find_moto("storage conformance on moto S3")?;
        let m = moto::Moto::start(&bin);
        // moto does not check signatures: a plain PUT makes the bucket.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .new_agent();
        let r = agent
            .put(&format!("{}/{BUCKET}", m.url))
            .send(&[][..])
            .expect("creating the moto bucket");
        assert_eq!(r.status().as_u16(), 200, "creating the moto bucket");
        Some(m)
    })
    .as_ref()
}

pub fn sshd_server() -> Option<&'static sshd::Sshd> {
    static S: OnceLock<Option<sshd::Sshd>> = OnceLock::new();
    S.get_or_init(|| {
        let bin = sshd::find_sshd("storage conformance on SFTP")?;
        Some(sshd::Sshd::start(&bin))
    })
    .as_ref()
}

pub fn local_target() -> Target {
    Target {
        label: "local",
        make: Box::new(|case| scratch().join("local").join(case).display().to_string()),
        exclusive: true,
        remote: false,
    }
}

pub fn weed_target() -> Option<Target> {
    init_env();
    let port = weed_server()?.s3_port();
    Some(Target {
        label: "seaweedfs",
        make: Box::new(move |case| format!("s3:http://127.0.0.1:{port}/{BUCKET}/{case}")),
        exclusive: true,
        remote: true,
    })
}

pub fn moto_target() -> Option<Target> {
    init_env();
    let url = moto_server()?.url.clone();
    Some(Target {
        label: "moto",
        make: Box::new(move |case| format!("s3:{url}/{BUCKET}/{case}")),
        exclusive: true,
        remote: true,
    })
}

pub fn sftp_target() -> Option<Target> {
    init_env();
    let s = sshd_server()?;
    let root = scratch().join("sftp");
    std::fs::create_dir_all(&root).unwrap();
    let (user, port) = (s.user.clone(), s.port);
    Some(Target {
        label: "sftp",
        make: Box::new(move |case| {
            format!(
                "sftp://{user}@127.0.0.1:{port}/{}",
                root.join(case).display()
            )
        }),
        exclusive: true,
        remote: true,
    })
}

/// Runs `f` on every target there is (missing servers were reported).
pub fn each_target(f: impl Fn(&Target)) {
    let targets: Vec<Target> = [
        Some(local_target()),
        weed_target(),
        moto_target(),
        sftp_target(),
    ]
    .into_iter()
    .flatten()
    .collect();
    for t in &targets {
        eprintln!("-- {}", t.label);
        f(t);
    }
}

/// Bytes that depend only on `seed`.
pub fn bytes(seed: u64, len: usize) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Names under `prefix`, sorted.
pub fn names(s: &dyn Storage, prefix: &str) -> Vec<String> {
    let mut n: Vec<String> = s
        .list(prefix)
        .unwrap()
        .into_iter()
        .map(|o| o.name)
        .collect();
    n.sort();
    n
}
