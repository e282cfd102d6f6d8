//! A keyring with a rotating CMK `alias/t` and a repository under it, in a
//! temporary folder; helpers to back up, rotate, read stats, list chunk
//! messages and restore every snapshot.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use envarc::envelope::{open_header, CommitmentPolicy, MessageId, ReadLimits};
use envarc::keyring::{FixedSecret, KeyringFile, KeyringOptions, Secret};
use envarc::repo::{pack_name, ChunkId, LocalStorage, Repository, Unopened};
use serde_json::Value;

use crate::util;
use crate::util::sandbox::Sandbox;
use crate::util::tree;

pub const PASSPHRASE: &str = "story test passphrase";
pub const ALIAS: &str = "alias/t";

/// A keyring with `alias/t` and a repository under it, in a [`Sandbox`]
/// (whose folder, `dir`, and `ok`/`json` it derefs to).
pub struct Story {
    pub sb: Sandbox,
    pub keyring: PathBuf,
    pub repo: PathBuf,
    pub src: PathBuf,
}

impl std::ops::Deref for Story {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

/// A tree as backed up (see [`tree::contents`]).
pub type Tree = tree::Contents;

impl Story {
    /// A keyring with `alias/t` (rotation on) and `envarc init` with `extra`.
    pub fn new(extra: &[&str]) -> Story {
        Story::in_folder(util::tempdir(), extra)
    }

    /// [`Story::new`] in a folder made elsewhere (e.g. in /dev/shm).
    pub fn in_folder(dir: tempfile::TempDir, extra: &[&str]) -> Story {
        let keyring = dir.path().join("keyring");
        let s = Story {
            repo: dir.path().join("repo"),
            src: dir.path().join("src"),
            sb: Sandbox::at(dir).keyring("keyring", PASSPHRASE, "m=1024,t=1,p=1"),
            keyring,
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
        let mut c = self.sb.cmd();
        c.args(args);
        c
    }

    /// The same as a plain process (for signals): stdout to /dev/null,
    /// stderr piped.
    pub fn process(&self, args: &[&str]) -> std::process::Command {
        let mut c = self.sb.process();
        c.args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        c
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
        let tree = tree::contents(&self.src);
        let v = self.json(&self.on_repo("backup", &["--host", "h", self.src.to_str().unwrap()]));
        (v["snapshot_id"].as_str().unwrap().to_string(), tree)
    }

    /// [`Story::backup`] pinned to one CPU (`taskset`): the worker pool then
    /// has one thread and one pack writer, so which pack holds which chunk
    /// follows the walk order and a test that depends on it is
    /// deterministic (issue 17).
    pub fn backup_on_one_core(&self) -> (String, Tree) {
        util_settle();
        let tree = tree::contents(&self.src);
        let src = self.src.to_str().unwrap();
        let v = self.json_on_one_core(&self.on_repo("backup", &["--host", "h", src]));
        (v["snapshot_id"].as_str().unwrap().to_string(), tree)
    }

    /// Runs `envarc ARGS --json` pinned to one CPU (see
    /// [`Story::backup_on_one_core`]) and returns its JSON output.
    pub fn json_on_one_core(&self, args: &[&str]) -> Value {
        let mut c = self.sb.wrapped("taskset", &["-c", &first_allowed_cpu()]);
        c.args(args).arg("--json");
        let out = c.output().expect("taskset (util-linux) runs envarc");
        assert!(
            out.status.success(),
            "envarc {args:?} on one core failed ({:?}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
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

    /// `stats --json`: unique chunks per backing-key version (versions
    /// that wrap at least one).
    pub fn chunks_per_version(&self) -> BTreeMap<u64, u64> {
        util::chunks_per_version(&self.json(&self.on_repo("stats", &[])))
    }

    /// Versions that wrap anything at all (chunks, manifests, index files,
    /// the config).
    pub fn versions_in_use(&self) -> Vec<u64> {
        let v = self.json(&self.on_repo("stats", &[]));
        v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| {
                v["chunks"].as_u64().unwrap() > 0
                    || v["manifests"].as_u64().unwrap() > 0
                    || v["index_files"].as_u64().unwrap() > 0
                    || v["config"].as_bool().unwrap()
            })
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

    /// The repository through the library, opened with the keyring.
    pub fn open(&self) -> Repository {
        let unopened = Unopened::read(Box::new(LocalStorage::new(&self.repo))).unwrap();
        let key = unopened.claimed().keys[0].key.clone();
        let p = self.keyring_file().load().unwrap().provider(&key).unwrap();
        unopened.open(Box::new(p)).unwrap()
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
            assert_eq!(
                &tree::contents(&root),
                tree,
                "snapshot {id} restores as backed up"
            );
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

/// Every chunk copy the index lists: chunk ID and the message ID of the
/// message that holds it, sorted.
pub fn chunk_messages(repo: &Repository) -> Vec<(ChunkId, MessageId)> {
    let index = repo.load_index().unwrap();
    let mut out: Vec<(ChunkId, MessageId)> = index
        .chunks()
        .map(|c| {
            let loc = c.location;
            let bytes = repo
                .storage()
                .read_range(&pack_name(&loc.pack), loc.offset, loc.length)
                .unwrap();
            let h = open_header(
                &mut bytes.as_slice(),
                CommitmentPolicy::RequireCommitment,
                &ReadLimits::default(),
            )
            .unwrap()
            .header;
            (c.id, h.message_id.try_into().expect("32 bytes"))
        })
        .collect();
    out.sort();
    out
}

/// Every chunk's content, read and checked through the library.
pub fn chunk_contents(repo: &Repository) -> BTreeMap<ChunkId, Vec<u8>> {
    let index = repo.load_index().unwrap();
    index
        .chunks()
        .map(|c| (c.id, repo.read_chunk(&index, &c.id).unwrap()))
        .collect()
}

/// The first CPU this process may run on (CPU 0 need not be one of them in
/// a container or under a CPU set).
fn first_allowed_cpu() -> String {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Linux /proc/self/status lists the allowed CPUs");
    let first = list.trim().split([',', '-']).next().unwrap();
    first.to_string()
}
