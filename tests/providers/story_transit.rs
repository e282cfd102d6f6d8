//! The rotation story on an OpenBao transit key (tests/util/bao.rs starts a
//! dev server; skipped without `bao`): stats per transit key version,
//! reencrypt of one version, rewrap to the newest through transit's own
//! rewrap, and restores that need only the newest version.

use crate::util::sandbox::Sandbox;
use crate::util::tree;
use crate::{bao, util};

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::Value;

/// A repository on transit key `story` in a [`Sandbox`] (its own HOME,
/// the server's address and token, no ambient Vault settings).
struct T {
    sb: Sandbox,
    repo: PathBuf,
    src: PathBuf,
}

impl T {
    fn new(b: &bao::Bao) -> T {
        let home = util::tempdir();
        let (repo, src) = (home.path().join("repo"), home.path().join("src"));
        let home_path = home.path().to_path_buf();
        // The clean environment has no BAO_/VAULT_ settings or proxies.
        let sb = Sandbox::at(home)
            .env("HOME", home_path)
            .env("BAO_ADDR", &b.addr)
            .env("BAO_TOKEN", &b.token);
        T { sb, repo, src }
    }

    fn run(&self, args: &[&str]) -> Value {
        self.sb.json(args)
    }

    /// Runs envarc expecting failure; returns (exit code, stderr).
    fn run_fails(&self, args: &[&str]) -> (i32, String) {
        let out = self.sb.run(args);
        assert!(!out.status.success(), "envarc {args:?} should fail");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// `envarc init` of the repository on transit key `story`.
    fn init(&self) {
        self.run(&[
            "init",
            "-r",
            self.repo.to_str().unwrap(),
            "--key",
            "transit:story",
        ]);
    }

    fn repo_cmd(&self, sub: &str, more: &[&str]) -> Value {
        let mut a = vec![sub, "-r", self.repo.to_str().unwrap()];
        a.extend_from_slice(more);
        self.run(&a)
    }

    fn files(&self, sub: &str, n: usize, seed: u64) {
        let d = self.src.join(sub);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..n {
            std::fs::write(
                d.join(format!("f{i}")),
                util::random_bytes(seed + i as u64, 3000 + i),
            )
            .unwrap();
        }
    }

    fn backup(&self) -> (String, BTreeMap<PathBuf, Vec<u8>>) {
        std::thread::sleep(std::time::Duration::from_millis(60));
        let tree = tree::file_contents(&self.src);
        let v = self.repo_cmd("backup", &[self.src.to_str().unwrap()]);
        (v["snapshot_id"].as_str().unwrap().to_string(), tree)
    }

    /// Unique chunks per transit key version (every file here is one chunk).
    fn per_version(&self) -> BTreeMap<u64, u64> {
        let v = self.repo_cmd("stats", &[]);
        for version in util::chunk_versions(&v) {
            assert_eq!(version["key"]["key"], "transit/story");
        }
        util::chunks_per_version(&v)
    }

    fn restores_match(&self, snaps: &[(String, BTreeMap<PathBuf, Vec<u8>>)]) {
        for (i, (id, tree)) in snaps.iter().enumerate() {
            let target = self.sb.path(&format!("restore{i}"));
            self.repo_cmd("restore", &[id, "--target", target.to_str().unwrap()]);
            let root = target.join(self.src.strip_prefix("/").unwrap());
            assert_eq!(&tree::file_contents(&root), tree, "snapshot {id}");
        }
    }
}

/// A dev server with transit key `story` (derived) and a repository on it;
/// `None` (a skip) without `bao`.
fn story_on_transit(test: &str) -> Option<(bao::Bao, T)> {
    let b = bao::Bao::start(&bao::find_bao(test)?, false);
    b.enable_transit("transit");
    b.create_key("story", true);
    let t = T::new(&b);
    t.init();
    Some((b, t))
}

#[test]
fn transit_key_versions_reencrypt_and_rewrap() {
    let Some((b, t)) = story_on_transit("transit_key_versions_reencrypt_and_rewrap") else {
        return;
    };
    t.files("a", 8, 1);
    let s1 = t.backup();
    b.rotate("story");
    t.files("b", 4, 100);
    let s2 = t.backup();
    b.rotate("story");
    assert_eq!(t.per_version(), BTreeMap::from([(1, 8), (2, 4)]));
    let stats = t.repo_cmd("stats", &[]);
    // One current version per key of the key set: the latest, asked from
    // the server.
    assert_eq!(
        stats["current"],
        serde_json::json!([{"key": "transit/story", "provider": "transit", "version": 3}]),
        "{stats}"
    );

    let r = t.repo_cmd("reencrypt", &["--key-version", "transit:story/v1"]);
    assert_eq!(r["chunks"], 8);
    assert_eq!(r["remaining"], 0);
    assert_eq!(r["retired"], true);
    assert_eq!(t.per_version(), BTreeMap::from([(2, 4), (3, 8)]));

    let r = t.repo_cmd("rewrap", &[]);
    assert_eq!(r["chunks"], 4);
    // The config was under v1: reencrypt, retiring v1, sealed it anew
    // under v3 already.
    assert!(!r["config_renewed"].as_bool().unwrap(), "{r}");
    assert_eq!(r["snapshots_rewritten"], 1, "the v2 snapshot");
    assert_eq!(t.per_version(), BTreeMap::from([(3, 12)]));
    // Nothing needs the older versions any more: the server may refuse them.
    b.configure_key("story", serde_json::json!({"min_decryption_version": 3}));
    t.restores_match(&[s1, s2]);
    t.repo_cmd("verify", &["--read-data"]);
}

/// Issue 10's story through the binary: back up, rotate on the server, back up
/// again, turn on `auto_rotate_period`, verify and restore both snapshots; rewrap
/// moves every chunk to the newest version; and once `min_decryption_version`
/// is raised above a repository that was not rewrapped, its restore fails
/// clearly.
#[test]
fn transit_backup_rotate_verify_restore_rewrap_and_min_decryption_version() {
    let Some((b, t)) = story_on_transit("transit_backup_rotate_verify_restore_rewrap") else {
        return;
    };
    t.files("a", 5, 1);
    let s1 = t.backup();
    b.rotate("story");
    t.files("b", 3, 50);
    let s2 = t.backup();
    b.configure_key("story", serde_json::json!({"auto_rotate_period": "24h"}));
    assert_eq!(t.per_version(), BTreeMap::from([(1, 5), (2, 3)]));
    let v = t.repo_cmd("verify", &["--read-data"]);
    assert_eq!(v["problems"].as_array().map(|p| p.len()), Some(0), "{v}");
    t.restores_match(&[s1.clone(), s2.clone()]);

    // A second repository keeps its v2 messages un-rewrapped.
    let old = T {
        repo: t.sb.path("old-repo"),
        src: t.src.clone(),
        ..T::new(&b)
    };
    old.init();
    let (old_snap, _) = old.backup();

    b.rotate("story");
    let r = t.repo_cmd("rewrap", &[]);
    assert_eq!(r["chunks"], 8);
    assert_eq!(t.per_version(), BTreeMap::from([(3, 8)]));

    b.configure_key("story", serde_json::json!({"min_decryption_version": 3}));
    t.restores_match(&[s1, s2]);
    let target = old.sb.path("restore");
    let (code, err) = old.run_fails(&[
        "restore",
        "-r",
        old.repo.to_str().unwrap(),
        &old_snap,
        "--target",
        target.to_str().unwrap(),
    ]);
    assert!(code == 4 || code == 5, "exit {code}: {err}");
    assert!(err.contains("story"), "the error names the key: {err}");
    assert!(
        err.contains("min_decryption_version") || err.contains("version"),
        "the error says the version is too old: {err}"
    );
}
