//! A keyring with a rotating CMK `alias/t` and a repository under it, in a
//! temporary folder; helpers to back up, rotate, read stats, compare message
//! bodies and restore every snapshot.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use envarc::envelope::{open_header, CommitmentPolicy, MessageId};
use envarc::keyring::{FixedSecret, KeyringFile, KeyringOptions, Secret};
use envarc::repo::{Config, Repository};
use serde_json::Value;

use crate::util;

pub const PASSPHRASE: &str = "story test passphrase";
pub const ALIAS: &str = "alias/t";

pub struct Story {
    pub dir: tempfile::TempDir,
    pub keyring: PathBuf,
    pub repo: PathBuf,
    pub src: PathBuf,
}

/// A tree as backed up: relative path -> content (`None` for folders).
pub type Tree = BTreeMap<PathBuf, Option<Vec<u8>>>;

impl Story {
    /// A keyring with `alias/t` (rotation on) and `envarc init` with `extra`.
    pub fn new(extra: &[&str]) -> Story {
        let dir = util::tempdir();
        let s = Story {
            keyring: dir.path().join("keyring"),
            repo: dir.path().join("repo"),
            src: dir.path().join("src"),
            dir,
        };
        std::fs::create_dir_all(&s.src).unwrap();
        s.ok(&["key", "create", "--alias", ALIAS, "--enable-rotation"]);
        let mut init = vec!["init", "-r", s.repo.to_str().unwrap(), "--key", ALIAS];
        init.extend_from_slice(extra);
        s.ok(&init);
        s
    }

    /// `envarc ARGS` with this story's keyring.
    pub fn cmd(&self, args: &[&str]) -> assert_cmd::Command {
        let mut c = util::envarc();
        c.env("ENVARC_KEYRING", &self.keyring)
            .env("ENVARC_PASSPHRASE", PASSPHRASE)
            .env("ENVARC_ARGON2_PARAMS", "m=1024,t=1,p=1")
            .args(args);
        c
    }

    /// The same as a plain process (for signals).
    pub fn process(&self, args: &[&str]) -> std::process::Command {
        let mut c = std::process::Command::new(util::envarc_path());
        c.env("ENVARC_KEYRING", &self.keyring)
            .env("ENVARC_PASSPHRASE", PASSPHRASE)
            .env_remove("ENVARC_REPOSITORY")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c
    }

    /// Runs and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "envarc {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--json`, requires success, parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = args.to_vec();
        a.push("--json");
        serde_json::from_str(&self.ok(&a)).unwrap()
    }

    /// `--repo R` arguments for a subcommand.
    pub fn on_repo<'a>(&'a self, sub: &'a str, more: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![sub, "-r", self.repo.to_str().unwrap()];
        v.extend_from_slice(more);
        v
    }

    /// Backs up the source folder; returns the snapshot ID and the tree.
    pub fn backup(&self) -> (String, Tree) {
        util_settle();
        let tree = capture(&self.src);
        let v = self.json(&self.on_repo("backup", &["--host", "h", self.src.to_str().unwrap()]));
        (v["snapshot_id"].as_str().unwrap().to_string(), tree)
    }

    pub fn rotate(&self) {
        self.ok(&["key", "rotate-on-demand", ALIAS]);
    }

    /// Writes `n` files (1..=max_kib KiB) under `src/sub`.
    pub fn files(&self, sub: &str, n: usize, max_kib: usize, seed: u64) {
        let d = self.src.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..n {
            let len = 1024 * (1 + (i * 31 + seed as usize) % max_kib) - (i % 7);
            std::fs::write(
                d.join(format!("f{i:03}")),
                util::random_bytes(seed * 1000 + i as u64, len),
            )
            .unwrap();
        }
    }

    /// `stats --json`: objects per backing-key version.
    pub fn objects_per_version(&self) -> BTreeMap<u64, u64> {
        let v = self.json(&self.on_repo("stats", &[]));
        v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["objects"].as_u64().unwrap() > 0)
            .map(|v| {
                (
                    v["key"]["version"].as_u64().unwrap(),
                    v["objects"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    /// Versions that wrap anything at all (objects, manifests, index files,
    /// the key check).
    pub fn versions_in_use(&self) -> Vec<u64> {
        let v = self.json(&self.on_repo("stats", &[]));
        v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["key"]["version"].as_u64().unwrap())
            .collect()
    }

    pub fn keyring_file(&self) -> KeyringFile {
        KeyringFile::new(KeyringOptions::new(
            self.keyring.clone(),
            Arc::new(FixedSecret(Secret::Passphrase(zeroize::Zeroizing::new(
                PASSPHRASE.as_bytes().to_vec(),
            )))),
        ))
    }

    /// The repository through the library.
    pub fn open(&self) -> Repository {
        let cfg = Config::load(&self.repo).unwrap();
        let p = self
            .keyring_file()
            .load()
            .unwrap()
            .provider(&cfg.key.key)
            .unwrap();
        Repository::open(&self.repo, cfg, Box::new(p)).unwrap()
    }

    /// Restores every snapshot given with `envarc restore` and compares each
    /// with its tree.
    pub fn restores_match(&self, snaps: &[(String, Tree)]) {
        for (i, (id, tree)) in snaps.iter().enumerate() {
            let target = self
                .dir
                .path()
                .join(format!("restore-{i}-{}", rand_suffix()));
            self.ok(&self.on_repo("restore", &[id, "--target", target.to_str().unwrap()]));
            let root = target.join(self.src.strip_prefix("/").unwrap());
            assert_eq!(&capture(&root), tree, "snapshot {id} restores as backed up");
            std::fs::remove_dir_all(&target).unwrap();
        }
    }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// Files changed less than 50 ms before a backup are read again by the next.
pub fn util_settle() {
    std::thread::sleep(std::time::Duration::from_millis(60));
}

pub fn capture(root: &Path) -> Tree {
    let mut t = Tree::new();
    for e in walkdir::WalkDir::new(root).min_depth(1) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
        let content = e
            .file_type()
            .is_file()
            .then(|| std::fs::read(e.path()).unwrap());
        t.insert(rel, content);
    }
    t
}

/// Every stored object copy's bytes after its header, by message ID.
pub fn bodies(repo: &Repository) -> BTreeMap<MessageId, Vec<u8>> {
    let index = repo.load_index().unwrap();
    let limits = repo.decrypt_options(envarc::repo::Kind::Object).limits;
    let mut out = BTreeMap::new();
    for (id, loc) in index.copies() {
        let mut bytes = Vec::new();
        repo.open_message(&loc)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        let parsed = open_header(
            &mut bytes.as_slice(),
            CommitmentPolicy::RequireCommitment,
            &limits,
        )
        .unwrap();
        assert!(
            out.insert(id, bytes[parsed.total_len..].to_vec()).is_none(),
            "one copy each"
        );
    }
    out
}
