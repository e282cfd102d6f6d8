//! The rotation story on an OpenBao transit key (tests/util/bao.rs starts a
//! dev server; skipped without `bao`): stats per transit key version,
//! reencrypt of one version, rewrap to the newest through transit's own
//! rewrap, and restores that need only the newest version.

use crate::{bao, util};

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

struct T<'a> {
    b: &'a bao::Bao,
    home: tempfile::TempDir,
    repo: std::path::PathBuf,
    src: std::path::PathBuf,
}

impl T<'_> {
    fn run(&self, args: &[&str]) -> Value {
        let mut c = util::envarc();
        for v in [
            "BAO_ADDR",
            "VAULT_ADDR",
            "BAO_TOKEN",
            "VAULT_TOKEN",
            "HTTP_PROXY",
            "http_proxy",
        ] {
            c.env_remove(v);
        }
        let out = c
            .env("HOME", self.home.path())
            .env("BAO_ADDR", &self.b.addr)
            .env("BAO_TOKEN", &self.b.token)
            .args(args)
            .arg("--json")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "envarc {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// Runs envarc expecting failure; returns (exit code, stderr).
    fn run_fails(&self, args: &[&str]) -> (i32, String) {
        let out = util::envarc()
            .env_remove("VAULT_ADDR")
            .env_remove("VAULT_TOKEN")
            .env("HOME", self.home.path())
            .env("BAO_ADDR", &self.b.addr)
            .env("BAO_TOKEN", &self.b.token)
            .args(args)
            .output()
            .unwrap();
        assert!(!out.status.success(), "envarc {args:?} should fail");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
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

    fn backup(&self) -> (String, BTreeMap<String, Vec<u8>>) {
        std::thread::sleep(std::time::Duration::from_millis(60));
        let tree = read_tree(&self.src);
        let v = self.repo_cmd("backup", &[self.src.to_str().unwrap()]);
        (v["snapshot_id"].as_str().unwrap().to_string(), tree)
    }

    /// Unique chunks per transit key version (every file here is one chunk).
    fn per_version(&self) -> BTreeMap<u64, u64> {
        let v = self.repo_cmd("stats", &[]);
        v["versions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["chunks"].as_u64().unwrap() > 0)
            .map(|v| {
                assert_eq!(v["key"]["key"], "transit/story");
                (
                    v["key"]["version"].as_u64().unwrap(),
                    v["chunks"].as_u64().unwrap(),
                )
            })
            .collect()
    }

    fn restores_match(&self, snaps: &[(String, BTreeMap<String, Vec<u8>>)]) {
        for (i, (id, tree)) in snaps.iter().enumerate() {
            let target = self.home.path().join(format!("restore{i}"));
            self.repo_cmd("restore", &[id, "--target", target.to_str().unwrap()]);
            let root = target.join(self.src.strip_prefix("/").unwrap());
            assert_eq!(&read_tree(&root), tree, "snapshot {id}");
        }
    }
}

fn read_tree(root: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            (rel, std::fs::read(e.path()).unwrap())
        })
        .collect()
}

#[test]
fn transit_key_versions_reencrypt_and_rewrap() {
    let Some(bin) = bao::find_bao("transit_key_versions_reencrypt_and_rewrap") else {
        return;
    };
    let b = bao::Bao::start(&bin, false);
    b.enable_transit("transit");
    b.create_key("story", true);
    let home = util::tempdir();
    let t = T {
        b: &b,
        repo: home.path().join("repo"),
        src: home.path().join("src"),
        home,
    };
    t.run(&[
        "init",
        "-r",
        t.repo.to_str().unwrap(),
        "--key",
        "transit:story",
    ]);
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
    let Some(bin) = bao::find_bao("transit_backup_rotate_verify_restore_rewrap") else {
        return;
    };
    let b = bao::Bao::start(&bin, false);
    b.enable_transit("transit");
    b.create_key("story", true);
    let home = util::tempdir();
    let t = T {
        b: &b,
        repo: home.path().join("repo"),
        src: home.path().join("src"),
        home,
    };
    t.run(&[
        "init",
        "-r",
        t.repo.to_str().unwrap(),
        "--key",
        "transit:story",
    ]);
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
        b: &b,
        repo: t.home.path().join("old-repo"),
        src: t.src.clone(),
        home: util::tempdir(),
    };
    old.run(&[
        "init",
        "-r",
        old.repo.to_str().unwrap(),
        "--key",
        "transit:story",
    ]);
    let (old_snap, _) = old.backup();

    b.rotate("story");
    let r = t.repo_cmd("rewrap", &[]);
    assert_eq!(r["chunks"], 8);
    assert_eq!(t.per_version(), BTreeMap::from([(3, 8)]));

    b.configure_key("story", serde_json::json!({"min_decryption_version": 3}));
    t.restores_match(&[s1, s2]);
    let target = old.home.path().join("restore");
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
