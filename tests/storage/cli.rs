//! Every repository command through the built binary on remote
//! repositories (SeaweedFS's S3 and OpenSSH's SFTP, on loopback): init,
//! backup, an unchanged re-backup, snapshots, ls, diff, verify --read-data,
//! restore (byte for byte), stats, rewrap, reencrypt, forget, prune, and
//! copy from a local repository into the remote one.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util;

pub const PASSPHRASE: &str = "remote test passphrase";
pub const ALIAS: &str = "alias/t";

/// A keyring with one rotating CMK, a source tree, and the environment
/// every command needs to reach the test servers.
pub struct Cli {
    pub dir: tempfile::TempDir,
    pub src: PathBuf,
    keyring: PathBuf,
    /// Extra variables for every command (ENVARC_REMOTE_TIMEOUT, say).
    pub env: Vec<(String, String)>,
}

impl Cli {
    pub fn new() -> Cli {
        crate::init_env();
        let dir = util::tempdir();
        let c = Cli {
            src: dir.path().join("src"),
            keyring: dir.path().join("keyring"),
            dir,
            env: Vec::new(),
        };
        std::fs::create_dir_all(&c.src).unwrap();
        c.ok(&["key", "create", "--alias", ALIAS, "--enable-rotation"]);
        c
    }

    /// What every command gets: the keyring and the servers' credentials.
    fn vars(&self) -> Vec<(String, std::ffi::OsString)> {
        let mut v: Vec<(String, std::ffi::OsString)> = vec![
            ("ENVARC_KEYRING".into(), self.keyring.clone().into()),
            ("ENVARC_PASSPHRASE".into(), PASSPHRASE.into()),
            ("ENVARC_ARGON2_PARAMS".into(), "m=1024,t=1,p=1".into()),
            (
                "AWS_ACCESS_KEY_ID".into(),
                crate::seaweedfs::ACCESS_KEY.into(),
            ),
            (
                "AWS_SECRET_ACCESS_KEY".into(),
                crate::seaweedfs::SECRET_KEY.into(),
            ),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
        ];
        if let Some(s) = crate::sshd_server() {
            v.push(("ENVARC_SSH_CONFIG".into(), s.ssh_config().into()));
        }
        v.extend(self.env.iter().map(|(k, x)| (k.clone(), x.into())));
        v
    }

    /// `envarc ARGS` (the test process's own AWS and envarc variables never
    /// reach it: util::envarc).
    pub fn cmd(&self, args: &[&str]) -> assert_cmd::Command {
        let mut c = util::envarc();
        c.envs(self.vars()).args(args);
        c
    }

    /// The same as a `std::process::Command` (for processes run beside
    /// each other, or killed).
    pub fn process(&self, args: &[&str]) -> std::process::Command {
        let mut p = std::process::Command::new(util::BIN);
        for (var, _) in std::env::vars_os() {
            let v = var.to_string_lossy();
            if v.starts_with("AWS_") || v.starts_with("ENVARC_") || v == "RUST_LOG" {
                p.env_remove(&var);
            }
        }
        p.env("ENVARC_PINS", util::pins_file())
            .envs(self.vars())
            .args(args)
            .stdin(std::process::Stdio::null());
        p
    }

    /// Exit code, stdout, stderr.
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.cmd(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "envarc {args:?} failed:\n{out}\n{err}");
        out
    }

    /// `envarc --json ARGS`, parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
    }

    /// `envarc SUB -r REPO MORE...` as arguments.
    pub fn on<'a>(&self, sub: &'a str, repo: &'a str, more: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec![sub, "-r", repo];
        v.extend_from_slice(more);
        v
    }

    /// A backup of the source tree as host `host`: the new snapshot's ID.
    pub fn backup(&self, repo: &str, host: &str) -> Value {
        let src = self.src.to_str().unwrap();
        self.json(&self.on("backup", repo, &["--host", host, src]))
    }

    /// Restores `snap` and compares it with the source tree as it is now.
    pub fn restore_matches(&self, repo: &str, snap: &str) {
        let target = self.dir.path().join(format!("restored-{}", rand_suffix()));
        let t = target.to_str().unwrap();
        self.ok(&self.on("restore", repo, &["--target", t, snap]));
        let inside = target.join(self.src.strip_prefix("/").unwrap());
        let n = util::tree::assert_same_tree(&self.src, &inside, false);
        assert!(n > 3, "restored only {n} entries");
        std::fs::remove_dir_all(&target).unwrap();
    }

    /// `verify --read-data`, which must find nothing wrong.
    pub fn verify_clean(&self, repo: &str) -> Value {
        let v = self.json(&self.on("verify", repo, &["--read-data"]));
        assert_eq!(v["problems"], Value::Array(vec![]), "{repo}: {v}");
        v
    }

    pub fn snapshot_ids(&self, repo: &str) -> Vec<String> {
        let v = self.json(&self.on("snapshots", repo, &[]));
        snapshots_of(&v)
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    }
}

/// The snapshot list of `envarc snapshots --json`.
pub fn snapshots_of(v: &Value) -> &Vec<Value> {
    v.as_array()
        .or_else(|| v["snapshots"].as_array())
        .unwrap_or_else(|| panic!("no snapshot list in {v}"))
}

fn rand_suffix() -> u64 {
    use rand::Rng;
    rand::thread_rng().gen()
}

/// Files of many sizes (none, small, several chunks), a nested folder and
/// a symlink, all depending on `seed` only.
pub fn write_tree(root: &Path, seed: u64, big: usize) {
    let sub = root.join("docs/deep");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(root.join("big.bin"), util::random_bytes(seed, big)).unwrap();
    std::fs::write(root.join("empty"), b"").unwrap();
    for i in 0..60u64 {
        let len = (i as usize * 977 + seed as usize * 31) % 40_000;
        let dir = if i % 3 == 0 { &sub } else { root };
        std::fs::write(
            dir.join(format!("f{i:03}")),
            util::random_bytes(seed * 1000 + i, len),
        )
        .unwrap();
    }
    let link = root.join("link");
    if !link.exists() {
        std::os::unix::fs::symlink("docs/deep/f000", link).unwrap();
    }
}

fn paths_of(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .iter()
        .map(|p| {
            p.as_str()
                .or_else(|| p["path"].as_str())
                .unwrap()
                .to_string()
        })
        .collect()
}

/// The whole cycle on the repository at `url` (a fresh, empty location).
fn cycle(label: &str, url: &str, copy_to: &str) {
    let c = Cli::new();
    write_tree(&c.src, 1, 6 << 20);
    let out = c.ok(&c.on("init", url, &["--key", ALIAS]));
    assert!(out.contains("created repository"), "{label}: {out}");

    let first = c.backup(url, "h");
    assert_eq!(first["errors"], 0, "{label}: {first}");
    let s1 = first["snapshot_id"].as_str().unwrap().to_string();
    let again = c.backup(url, "h");
    assert_eq!(
        again["chunks_added"], 0,
        "{label}: unchanged re-backup {again}"
    );
    assert_eq!(again["files_changed"], 0, "{label}: {again}");
    assert_eq!(again["files_new"], 0, "{label}: {again}");

    // A change, a new file, a removed one; under a rotated key version.
    c.ok(&["key", "rotate-on-demand", ALIAS]);
    std::fs::write(c.src.join("f001"), b"changed").unwrap();
    std::fs::write(c.src.join("new"), util::random_bytes(9, 300_000)).unwrap();
    std::fs::remove_file(c.src.join("f002")).unwrap();
    let third = c.backup(url, "h");
    let s3 = third["snapshot_id"].as_str().unwrap().to_string();
    assert_eq!(c.snapshot_ids(url).len(), 3, "{label}");

    let ls = c.ok(&c.on("ls", url, &[&s1]));
    assert!(
        ls.contains("big.bin") && ls.contains("f002"),
        "{label}: {ls}"
    );
    let diff = c.json(&c.on("diff", url, &[&s1, &s3]));
    let text = diff.to_string();
    for p in ["new", "f001", "f002"] {
        assert!(
            text.contains(&format!("/{p}")),
            "{label}: {p} not in {diff}"
        );
    }
    assert!(
        paths_of(&diff, "removed")
            .iter()
            .any(|p| p.ends_with("/f002")),
        "{label}: {diff}"
    );

    c.verify_clean(url);
    c.restore_matches(url, &s3);

    // Two key versions in use; rewrap moves everything to the current one.
    let stats = c.json(&c.on("stats", url, &[]));
    assert_eq!(
        stats["versions"].as_array().unwrap().len(),
        2,
        "{label}: {stats}"
    );
    let r = c.json(&c.on("rewrap", url, &[]));
    assert!(r["chunks"].as_u64().unwrap() > 0, "{label}: {r}");
    let stats = c.json(&c.on("stats", url, &[]));
    assert_eq!(
        stats["versions"].as_array().unwrap().len(),
        1,
        "{label}: {stats}"
    );
    // reencrypt: the version in use, after one more rotation, moves out.
    c.ok(&["key", "rotate-on-demand", ALIAS]);
    let r = c.json(&c.on("reencrypt", url, &["--key-version", "alias/t/v2"]));
    assert!(r["chunks"].as_u64().unwrap() > 0, "{label}: {r}");
    let stats = c.json(&c.on("stats", url, &[]));
    let versions: Vec<u64> = stats["versions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["chunks"].as_u64().unwrap_or(0) > 0)
        .map(|v| v["key"]["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![3], "{label}: {stats}");
    c.verify_clean(url);

    // forget + prune: the older snapshots go, the last one still restores.
    c.ok(&c.on("forget", url, &["--keep-last", "1"]));
    let p = c.json(&c.on("prune", url, &[]));
    assert_eq!(p["missing_packs"], Value::Array(vec![]), "{label}: {p}");
    assert_eq!(c.snapshot_ids(url), vec![s3.clone()], "{label}");
    c.verify_clean(url);
    c.restore_matches(url, "latest");

    copy_local_into(label, &c, copy_to, url);
}

/// copy: a local repository into a new remote one made with
/// `init --from-repo`; a rerun moves nothing; a repository that does not
/// share chunk IDs is refused.
fn copy_local_into(label: &str, c: &Cli, dst: &str, unrelated: &str) {
    let local = c.dir.path().join("local");
    let local = local.to_str().unwrap();
    c.ok(&c.on("init", local, &["--key", ALIAS]));
    let a = c.backup(local, "h")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    std::fs::write(c.src.join("later"), util::random_bytes(77, 2_000_000)).unwrap();
    let b = c.backup(local, "h")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();

    c.ok(&c.on("init", dst, &["--key", ALIAS, "--from-repo", local]));
    let r = c.json(&c.on("copy", dst, &["--from-repo", local, &a]));
    assert_eq!(
        r["copied"],
        Value::Array(vec![a.clone().into()]),
        "{label}: {r}"
    );
    let first_chunks = r["chunks"].as_u64().unwrap();
    let r = c.json(&c.on("copy", dst, &["--from-repo", local]));
    assert_eq!(
        r["copied"],
        Value::Array(vec![b.clone().into()]),
        "{label}: {r}"
    );
    assert_eq!(
        r["present"],
        Value::Array(vec![a.clone().into()]),
        "{label}: {r}"
    );
    // Only the new file's chunks travelled the second time.
    let second = r["chunks"].as_u64().unwrap();
    assert!(
        second > 0 && second < first_chunks,
        "{label}: {second} vs {first_chunks}"
    );
    let r = c.json(&c.on("copy", dst, &["--from-repo", local]));
    assert_eq!(r["chunks"], 0, "{label}: {r}");
    assert_eq!(r["copied"], Value::Array(vec![]), "{label}: {r}");

    let mut ids = c.snapshot_ids(dst);
    ids.sort();
    let mut want = vec![a, b.clone()];
    want.sort();
    assert_eq!(ids, want, "{label}: the copies keep the source's IDs");
    c.verify_clean(dst);
    c.restore_matches(dst, &b);
    // The data is the destination's own: its stats show its chunks.
    let st = c.json(&c.on("stats", dst, &[]));
    assert!(st["chunks"].as_u64().unwrap() > 0, "{label}: {st}");

    // A snapshot name planted in DST (by whoever holds its store) does not
    // make copy take the source's snapshot as copied.
    std::fs::write(c.src.join("planted"), b"x").unwrap();
    let d = c.backup(local, "h")["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let store = envarc::repo::storage::open_with(dst, &crate::test_options()).unwrap();
    store
        .create(&format!("snapshots/{d}"), b"not a snapshot")
        .unwrap();
    let (code, _, err) = c.run(&c.on("copy", dst, &["--from-repo", local]));
    assert_eq!(code, 4, "{label}: {err}");
    assert!(err.contains("does not open"), "{label}: {err}");

    let (code, _, err) = c.run(&c.on("copy", unrelated, &["--from-repo", local]));
    assert_eq!(code, 2, "{label}: {err}");
    assert!(
        err.contains("init") && err.contains("--from-repo"),
        "{label}: {err}"
    );
}

#[test]
fn every_command_on_seaweedfs() {
    let Some(t) = crate::weed_target() else {
        return;
    };
    cycle("seaweedfs", &t.url("cli-cycle"), &t.url("cli-copy"));
}

#[test]
fn every_command_on_sftp() {
    let Some(t) = crate::sftp_target() else {
        return;
    };
    cycle("sftp", &t.url("cli-cycle"), &t.url("cli-copy"));
}

/// A lock left by a process on another host blocks prune (exit 6, naming
/// `envarc unlock`); `unlock` keeps it while it may be live, removes it
/// once stale or with --remove-all.
#[test]
fn unlock_removes_another_hosts_lock() {
    let Some(t) = crate::weed_target() else {
        return;
    };
    let url = t.url("cli-unlock");
    let mut c = Cli::new();
    c.env.push(("ENVARC_LOCK_STALE_AFTER".into(), "4".into()));
    c.ok(&c.on("init", &url, &["--key", ALIAS]));
    let store = t.open("cli-unlock");
    let plant = |name: &str| {
        let info = format!(
            r#"{{"kind":"shared","pid":4242,"host":"elsewhere","time":"{}"}}"#,
            time_now()
        );
        store.create(name, info.as_bytes()).unwrap();
    };
    plant("locks/aaaa");
    let (code, _, err) = c.run(&c.on("prune", &url, &[]));
    assert_eq!(code, 6, "{err}");
    assert!(
        err.contains("elsewhere") && err.contains("envarc unlock"),
        "{err}"
    );
    let v = c.json(&["unlock", "-r", &url]);
    assert_eq!(v["kept"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(crate::names(&*store, "locks/"), vec!["locks/aaaa"]);
    let v = c.json(&["unlock", "-r", &url, "--remove-all"]);
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{v}");
    assert!(crate::names(&*store, "locks/").is_empty());
    c.ok(&c.on("prune", &url, &[]));

    // Not refreshed for longer than ENVARC_LOCK_STALE_AFTER: stale.
    plant("locks/bbbb");
    std::thread::sleep(std::time::Duration::from_secs(6));
    let v = c.json(&["unlock", "-r", &url]);
    assert_eq!(v["removed"].as_array().unwrap().len(), 1, "{v}");
    // A location without a repository is refused, not "unlocked".
    let (code, _, err) = c.run(&["unlock", "-r", &t.url("cli-unlock-none")]);
    assert_eq!(code, 2, "{err}");
}

/// Now, RFC 3339 in UTC (as lock objects record it).
fn time_now() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}
