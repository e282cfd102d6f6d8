//! SIGKILL at random or spread points of every command that writes:
//! backups (backup.rs), key rotations and creations (keyring.rs), rewrap,
//! re-encrypt and prune (maintenance.rs). After every kill the repository
//! verifies and the keyring opens holding every change a completed command
//! made; rerunning the killed command completes. The seeded tests print
//! their seed; CI runs ~10 kills per command, `ENVARC_LONG_TESTS=1`
//! hundreds. The helpers below are the one way these tests kill a run.

mod backup;
mod keyring;
mod maintenance;

use crate::{fault_support, repo_support};

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fault_support::stderr;
use repo_support::TestRepo;

/// Runs `cmd`, killing it with SIGKILL after `after` unless it ended first;
/// `None` lets it run to its end and sets `takes` (what a run takes now, on
/// a machine whose load varies) from its duration. Returns whether it was
/// killed, its status and stderr.
pub fn run_and_kill(
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
pub fn time_of(mut make: impl FnMut() -> Command) -> Duration {
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

/// `envarc backup -q` of `src` as host `host`, as a plain process with
/// stderr piped (to kill it, or to run several at once).
pub fn backup_cmd(r: &TestRepo, src: &Path, host: &str) -> Command {
    let mut c = r.process("backup");
    c.args(["-q", "--host", host])
        .arg(src)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// Starts `make(k)` for k in 1..=`runs`, killing the k-th after
/// `step * k` unless it ended first (kill points spread over a run); returns
/// how many were killed before they ended.
pub fn kill_spread(runs: u32, step: Duration, mut make: impl FnMut(u32) -> Command) -> u32 {
    let mut killed = 0;
    for k in 1..=runs {
        let mut child = make(k).spawn().expect("spawning envarc");
        std::thread::sleep(step * k);
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            killed += 1;
        }
        child.wait().unwrap();
    }
    killed
}
