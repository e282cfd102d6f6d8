//! Helpers for the repository tests: a repository with a raw key in a temp
//! folder, running `envarc backup --json`, and checking through the library
//! that every snapshot's chunks exist, decrypt and match their IDs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Output;

use envarc::envelope::RawAesKey;
use envarc::repo::{EntryKind, LocalStorage, Repository, Unopened};

use crate::util;
use crate::util::sandbox::Sandbox;

pub const KEY_NAME: &str = "test-key";
pub const NAMESPACE: &str = "envarc";

/// A repository under a raw key, in a [`Sandbox`] (whose folder, `dir`,
/// it derefs to).
pub struct TestRepo {
    pub sb: Sandbox,
    pub repo: PathBuf,
    pub key: PathBuf,
}

impl std::ops::Deref for TestRepo {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

impl TestRepo {
    /// `envarc init` with extra init arguments (e.g. a small frame length).
    pub fn init(extra: &[&str]) -> TestRepo {
        let dir = util::tempdir();
        let repo = dir.path().join("repo");
        TestRepo::init_at(dir, repo, extra)
    }

    /// `envarc init` of a repository at `repo` (which may live outside
    /// `dir`), the raw key in `dir`.
    pub fn init_at(dir: tempfile::TempDir, repo: PathBuf, extra: &[&str]) -> TestRepo {
        let (key, _) = util::write_key(dir.path(), "key", 32, 7);
        let r = TestRepo {
            sb: Sandbox::at(dir),
            repo,
            key,
        };
        let mut cmd = r.sb.cmd();
        cmd.arg("init").arg("-r").arg(&r.repo);
        cmd.args(util::raw_key_args(&r.key, KEY_NAME));
        cmd.args(extra);
        cmd.assert().success();
        r
    }

    /// `envarc SUBCOMMAND -r REPO --raw-key-file KEY ARGS...`
    pub fn cmd(&self, sub: &str) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.process(sub))
    }

    /// The same as a plain process (to run several at once, or to signal).
    pub fn process(&self, sub: &str) -> std::process::Command {
        let mut cmd = self.sb.process();
        cmd.arg(sub)
            .arg("-r")
            .arg(&self.repo)
            .arg("--raw-key-file")
            .arg(&self.key);
        cmd
    }

    /// `envarc backup --json ARGS...`: exit code, summary, stderr.
    pub fn backup<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
    ) -> (i32, serde_json::Value, String) {
        self.json_of("backup", args)
    }

    /// `envarc SUBCOMMAND --json ARGS...` (which prints JSON when it fails
    /// too): exit code, JSON, stderr.
    pub fn json_of<S: AsRef<std::ffi::OsStr>>(
        &self,
        sub: &str,
        args: &[S],
    ) -> (i32, serde_json::Value, String) {
        let out: Output = self
            .cmd(sub)
            .arg("--json")
            .args(args)
            .output()
            .expect("running envarc");
        let code = out.status.code().unwrap_or(-1);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "{sub} printed no JSON ({e}); exit {code}; stdout {:?}; stderr {stderr}",
                String::from_utf8_lossy(&out.stdout)
            )
        });
        (code, json, stderr)
    }

    /// The repository opened through the library.
    pub fn open(&self) -> Repository {
        let storage = LocalStorage::new(&self.repo);
        let unopened = Unopened::read(Box::new(storage)).expect("config");
        unopened.open(Box::new(self.provider())).expect("open")
    }

    /// The repository's raw key as a provider.
    pub fn provider(&self) -> RawAesKey {
        let material = std::fs::read(&self.key).expect("key");
        RawAesKey::new(NAMESPACE, KEY_NAME, &material).expect("key")
    }

    /// Total bytes under data/.
    pub fn data_bytes(&self) -> u64 {
        util::tree::total_size(&self.repo.join("data"))
    }
}

/// Checks every snapshot: each file entry's chunks are in the index, open
/// (MAC matching) and add up to the entry's size. Returns the number of
/// snapshots and of files checked.
pub fn verify_all(repo: &Repository) -> (usize, usize) {
    let index = repo.load_index().expect("index loads");
    let snaps = repo.snapshots().expect("snapshots list");
    let mut files = 0;
    for (id, _) in &snaps {
        let (_, entries) = repo.load_snapshot(id).expect("snapshot loads");
        for e in entries.iter().filter(|e| e.kind == EntryKind::File) {
            let mut n = 0;
            for c in &e.chunks {
                n += repo
                    .read_chunk(&index, c)
                    .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()))
                    .len() as u64;
            }
            assert_eq!(n, e.size, "{}", e.path().display());
            files += 1;
        }
    }
    (snaps.len(), files)
}

/// Writes `n` files of sizes 1..=max_kib KiB (deterministic) under `dir`,
/// spread over a few subfolders; returns their total size.
pub fn many_files(dir: &Path, n: usize, max_kib: usize, seed: u64) -> u64 {
    let mut total = 0;
    for i in 0..n {
        let sub = dir.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&sub).unwrap();
        let len = 1024 * (1 + (i * 37 + seed as usize) % max_kib);
        std::fs::write(
            sub.join(format!("f{i:04}")),
            util::random_bytes(seed + i as u64, len),
        )
        .unwrap();
        total += len as u64;
    }
    total
}

/// Whether the tests run as root (then permission bits do not stop reads).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false)
}

/// Waits out the "racy" window: files changed less than 50 ms before a backup
/// starts are read again by the next backup even if they look unchanged.
pub fn settle() {
    std::thread::sleep(std::time::Duration::from_millis(120));
}
