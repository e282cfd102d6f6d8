//! SIGKILL at random points (from a printed seed) of commands that write:
//! backups and key rotations, and, where the binary has them, rewrap,
//! re-encrypt and prune. After every kill the repository verifies and the
//! keyring opens holding every change a completed command made; rerunning the
//! killed command completes. CI runs ~10 kills per command;
//! `ENVARC_LONG_TESTS=1` runs hundreds.

use crate::{fault_support, repo_support, support, util};

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envarc::keyring::{Argon2Params, FixedSecret, KeyringFile, KeyringOptions, Secret};
use fault_support::{check_repo, iterations, seed, stderr};
use rand::{Rng, SeedableRng};
use repo_support::{many_files, TestRepo};
use support::Story;
use zeroize::Zeroizing;

/// Runs `cmd`, killing it with SIGKILL after `after` unless it ended first;
/// `None` lets it run to its end and sets `takes` (what a run takes now, on
/// a machine whose load varies) from its duration. Returns whether it was
/// killed, its status and stderr.
fn run_and_kill(
    mut cmd: Command,
    after: Option<Duration>,
    takes: &mut Duration,
) -> (bool, ExitStatus, String) {
    let timing = after.is_none();
    let after = after.unwrap_or(Duration::from_secs(3600));
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning envarc");
    let start = Instant::now();
    let mut killed = false;
    loop {
        if child.try_wait().expect("waiting").is_some() {
            break;
        }
        if start.elapsed() >= after {
            killed = child.kill().is_ok();
            break;
        }
        std::thread::sleep(Duration::from_micros(200).min(after / 4 + Duration::from_micros(1)));
    }
    let elapsed = start.elapsed();
    let out = child.wait_with_output().expect("collecting");
    let killed = killed && out.status.code().is_none();
    if timing {
        *takes = elapsed;
    }
    (killed, out.status, stderr(&out))
}

/// How long a complete run of `make()` takes: the median of three runs (the
/// kill points are drawn from 0 to this).
fn time_of(mut make: impl FnMut() -> Command) -> Duration {
    let mut d: Vec<Duration> = (0..3)
        .map(|_| {
            let t = Instant::now();
            let out = make().output().expect("running envarc");
            assert!(out.status.success(), "{}", stderr(&out));
            t.elapsed()
        })
        .collect();
    d.sort();
    d[1]
}

fn backup_cmd(r: &TestRepo, src: &Path, host: &str) -> Command {
    let mut c = Command::new(util::envarc_path());
    c.args(["backup", "-q", "-r"])
        .arg(&r.repo)
        .arg("--raw-key-file")
        .arg(&r.key)
        .args(["--host", host])
        .arg(src);
    c
}

#[test]
fn sigkill_during_backups_leaves_a_repository_that_verifies() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("kill/backup", 8));
    let r = TestRepo::init(&["--pack-size", "128KiB", "--chunk-size", "256KiB"]);
    let src = r.dir.path().join("src");
    many_files(&src, 150, 12, 5);
    for i in 0..2 {
        std::fs::write(
            src.join(format!("large{i}")),
            util::random_bytes(90 + i, 600 << 10),
        )
        .unwrap();
    }
    let mut full = time_of(|| backup_cmd(&r, &src, "first"));
    let mut incremental = time_of(|| backup_cmd(&r, &src, "first"));
    // Runs until `n` were killed (a run may end before its kill point).
    let n = iterations(10, 300);
    let (mut killed, mut runs) = (0, 0);
    for i in 0..4 * n {
        if killed == n {
            break;
        }
        runs += 1;
        // Half the runs read everything (a new host: no parent), half are
        // incremental on the first snapshot (reading only what changed).
        let host = if i % 2 == 0 {
            format!("kill{i}")
        } else {
            "first".to_string()
        };
        if i % 2 == 1 {
            let f = src.join(format!("d{}/f{:04}", i % 7, i % 150 / 7 * 7 + i % 7));
            if f.exists() {
                std::fs::write(&f, util::random_bytes(1000 + i as u64, 2048)).unwrap();
            }
        }
        let takes = if i % 2 == 0 {
            &mut full
        } else {
            &mut incremental
        };
        // Every fifth run is not killed: it times a run, and shows that the
        // command completes after the kills before it.
        let at = (i % 5 != 4).then(|| takes.mul_f64(rng.gen_range(0.0..1.0)));
        let (k, status, err) = run_and_kill(backup_cmd(&r, &src, &host), at, takes);
        assert!(k || status.success(), "run {i} failed by itself: {err}");
        killed += k as usize;
        // Every snapshot present after a kill loads.
        r.open().snapshots().expect("snapshots load after a kill");
    }
    let out = backup_cmd(&r, &src, "after").output().unwrap();
    assert!(
        out.status.success(),
        "the backup after the kills: {}",
        stderr(&out)
    );
    let (snapshots, messages) = check_repo(&r);
    eprintln!(
        "kill/backup: {runs} runs, {killed} killed (a run takes {full:?}, an incremental one \
         {incremental:?}); then {snapshots} snapshots with {messages} files verify"
    );
    assert_eq!(killed, n, "{n} runs are killed mid-way");
}

/// A keyring in a temporary folder, driven through the binary and read
/// through the library.
struct Ring {
    dir: tempfile::TempDir,
}

const PW: &str = "kill test passphrase";

impl Ring {
    fn new() -> Ring {
        Ring {
            dir: util::tempdir(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("keyring")
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(util::envarc_path());
        c.current_dir(self.dir.path())
            .env("ENVARC_KEYRING", self.path())
            .env("ENVARC_PASSPHRASE", PW)
            .env("ENVARC_ARGON2_PARAMS", "m=8,t=1,p=1")
            .args(["-q", "key"])
            .args(args);
        c
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).arg("--json").output().unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// (alias → backing-key count) as the keyring holds it now.
    fn state(&self) -> std::collections::BTreeMap<String, usize> {
        let kf = KeyringFile::new(KeyringOptions {
            argon2: Argon2Params {
                m_kib: 8,
                t: 1,
                p: 1,
            },
            ..KeyringOptions::new(
                self.path(),
                Arc::new(FixedSecret(Secret::Passphrase(Zeroizing::new(
                    PW.as_bytes().to_vec(),
                )))),
            )
        });
        let kr = kf.load().expect("the keyring opens after a kill");
        kr.aliases()
            .iter()
            .map(|(a, id)| {
                let k = kr.get(&id.to_string()).expect("an alias names a key");
                (a.clone(), k.backing_keys().len())
            })
            .collect()
    }

    /// Temporary files that killed writers left beside the keyring.
    fn leftovers(&self) -> usize {
        util::dir_names(self.dir.path())
            .iter()
            .filter(|n| n.starts_with('.'))
            .count()
    }
}

#[test]
fn sigkill_during_key_rotation_and_creation_loses_no_committed_change() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("kill/keyring", 6));
    let ring = Ring::new();
    ring.ok(&["create", "--alias", "alias/k0"]);
    let mut full = time_of(|| ring.cmd(&["rotate-on-demand", "alias/k0"]));
    let n = iterations(12, 400);
    let mut model = ring.state();
    let (mut killed, mut keys, mut runs, mut seen_left) = (0, 1, 0, 0);
    for i in 0..4 * n {
        if killed == n {
            break;
        }
        runs += 1;
        // Rotate the newest key until its on-demand budget (10) is spent,
        // then create the next one.
        let newest = format!("alias/k{}", keys - 1);
        let (args, what): (Vec<String>, _) = if model[&newest] < 11 {
            (
                vec!["rotate-on-demand".into(), newest.clone()],
                newest.clone(),
            )
        } else {
            let a = format!("alias/k{keys}");
            (vec!["create".into(), "--alias".into(), a.clone()], a)
        };
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let at = (i % 5 != 4).then(|| full.mul_f64(rng.gen_range(0.0..1.0)));
        let (k, status, err) = run_and_kill(ring.cmd(&argv), at, &mut full);
        assert!(
            k || status.success(),
            "run {i} ({argv:?}) failed by itself: {err}"
        );
        killed += k as usize;
        seen_left = seen_left.max(ring.leftovers());
        let now = ring.state();
        let before = model.get(&what).copied().unwrap_or(0);
        let after = now.get(&what).copied().unwrap_or(0);
        assert!(
            after == before || after == before + 1,
            "{argv:?}: {before} backing keys became {after}"
        );
        if status.success() {
            assert_eq!(after, before + 1, "{argv:?} completed: its change is kept");
        }
        for (a, count) in &model {
            if a != &what {
                assert_eq!(now.get(a), Some(count), "{a} is unchanged");
            }
        }
        if k && after == before {
            // Rerunning the killed command completes.
            let out = ring.cmd(&argv).output().unwrap();
            assert!(out.status.success(), "rerunning {argv:?}: {}", stderr(&out));
        }
        model = ring.state();
        keys = model.len();
    }
    // A completed write removes what killed writers left behind (old copies
    // of the keyring, which may hold keys deleted since).
    ring.ok(&["create", "--alias", "alias/last"]);
    let leftovers = ring.leftovers();
    assert_eq!(
        leftovers, 0,
        "temporary files of killed writers are removed"
    );
    eprintln!(
        "kill/keyring: {runs} runs, {killed} killed (a run takes {full:?}); {} keys, {} backing \
         keys in all; at most {seen_left} temporary files of killed writers at once, removed by the next write",
        model.len(),
        model.values().sum::<usize>()
    );
    assert_eq!(killed, n, "{n} runs are killed mid-way");
}

/// A [`Story`] (keyring with `alias/t`, repository) in /dev/shm where there
/// is one: a SIGKILL test needs no fsync to reach the disk, and this one
/// makes hundreds of commits.
fn story_in_memory(extra: &[&str]) -> Story {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::Builder::new()
            .prefix("envarc-test.")
            .tempdir_in(shm)
            .unwrap()
    } else {
        util::tempdir()
    };
    let s = Story {
        keyring: dir.path().join("keyring"),
        repo: dir.path().join("repo"),
        src: dir.path().join("src"),
        dir,
    };
    std::fs::create_dir_all(&s.src).unwrap();
    s.ok(&[
        "key",
        "create",
        "--alias",
        support::ALIAS,
        "--enable-rotation",
    ]);
    let mut init = vec![
        "init",
        "-r",
        s.repo.to_str().unwrap(),
        "--key",
        support::ALIAS,
    ];
    init.extend_from_slice(extra);
    s.ok(&init);
    s
}

/// Runs to the end and requires success.
fn must(s: &Story, args: &[&str]) {
    let out = s.process(args).output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
}

/// Seeded kills of rewrap, reencrypt and prune on a keyring repository
/// whose key rotates: after every kill `verify --read-data` is clean; rerun
/// to completion, every snapshot restores as it was backed up.
#[test]
fn sigkill_during_rewrap_reencrypt_and_prune_loses_nothing() {
    if !["rewrap", "reencrypt", "prune", "verify", "restore"]
        .iter()
        .all(|c| fault_support::has_command(c))
    {
        eprintln!("SKIPPED kill/rewrite: this build has no rewrap/reencrypt/prune/verify/restore");
        return;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed("kill/rewrite", 9));
    let s = story_in_memory(&["--pack-size", "16KiB", "--frame-length", "4096"]);
    let repo = s.repo.to_str().unwrap().to_string();
    s.files("a", 60, 8, 1);
    let mut snaps = vec![s.backup()];
    s.rotate();
    s.files("b", 20, 8, 2);
    snaps.push(s.backup());
    let mut version = 2; // the current backing key of alias/t
    let n = iterations(10, 150);
    let mut figures = Vec::new();
    for command in ["reencrypt", "rewrap", "prune"] {
        // Gives the command work to do: everything under an older version
        // (reencrypt, rewrap), or old copies no snapshot uses (prune).
        let make_work = |version: &mut u32| {
            // An automatic rotation, one year further on each time (on-demand
            // rotations are limited to 10 per key).
            let as_of = format!("{}-06-01", 2030 + *version);
            s.ok(&["key", "rotate-due", "-q", "--as-of", &as_of, "--force"]);
            *version += 1;
            if command == "prune" {
                let v = format!("alias/t/v{}", *version - 1);
                must(&s, &["reencrypt", "-q", "-r", &repo, "--key-version", &v]);
            }
        };
        make_work(&mut version);
        let args = |version: u32| -> Vec<String> {
            let mut a = vec![command.to_string(), "-q".into(), "-r".into(), repo.clone()];
            match command {
                "reencrypt" => {
                    a.extend(["--key-version".into(), format!("alias/t/v{}", version - 1)])
                }
                "prune" => a.extend(["--grace".into(), "0".into()]),
                _ => {}
            }
            a
        };
        let mut takes = Duration::from_millis(100);
        let (mut killed, mut runs) = (0, 0);
        for i in 0..4 * n {
            if killed == n {
                break;
            }
            runs += 1;
            let a = args(version);
            let argv: Vec<&str> = a.iter().map(String::as_str).collect();
            let at = (i % 4 != 0).then(|| takes.mul_f64(rng.gen_range(0.0..1.0)));
            let (k, status, err) = run_and_kill(s.process(&argv), at, &mut takes);
            assert!(k || status.success(), "{argv:?} failed by itself: {err}");
            killed += k as usize;
            if k {
                must(&s, &["verify", "-q", "-r", &repo, "--read-data"]);
            } else {
                make_work(&mut version);
            }
        }
        let a = args(version);
        must(&s, &a.iter().map(String::as_str).collect::<Vec<_>>());
        must(&s, &["verify", "-q", "-r", &repo, "--read-data"]);
        figures.push(format!(
            "{command}: {runs} runs, {killed} killed (a run takes {takes:?})"
        ));
        assert_eq!(killed, n, "{command}: {n} runs are killed mid-way");
    }
    s.restores_match(&snaps);
    eprintln!(
        "kill/rewrite: {}; every snapshot restores as backed up",
        figures.join("; ")
    );
}
