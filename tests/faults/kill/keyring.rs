//! SIGKILL during `envarc key rotate-on-demand` and `key create`: no
//! change a completed command made is lost, and the keyring always opens.

use crate::{fault_support, util};
use util::sandbox::{Sandbox, CHEAP_ARGON2};

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use envarc::keyring::{Argon2Params, FixedSecret, KeyringFile, KeyringOptions, Secret};
use fault_support::{iterations, seed, stderr};
use rand::{Rng, SeedableRng};
use zeroize::Zeroizing;

use super::{run_and_kill, time_of};

/// A keyring in a temporary folder, driven through the binary and read
/// through the library.
struct Ring {
    sb: Sandbox,
}

const PW: &str = "kill test passphrase";

impl Ring {
    fn new() -> Ring {
        Ring {
            sb: Sandbox::new().in_dir().keyring("keyring", PW, CHEAP_ARGON2),
        }
    }

    fn path(&self) -> PathBuf {
        self.sb.path("keyring")
    }

    /// `envarc -q key ARGS…` as a plain process (to kill it).
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = self.sb.process();
        c.args(["-q", "key"]).args(args);
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
        util::dir_names(self.sb.dir.path())
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
