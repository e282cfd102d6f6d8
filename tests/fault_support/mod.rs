//! Helpers for the fault-injection tests (`tests/faults_*.rs`): small file
//! systems and read-only mounts that undo themselves, filling a disk, a
//! printed seed for random fault points, the long-run switch, and checking a
//! repository after a fault.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::repo_support::{verify_all, TestRepo};
use crate::util;

/// `ENVARC_LONG_TESTS=1` turns the loops from CI size to hundreds of faults.
pub fn long() -> bool {
    std::env::var("ENVARC_LONG_TESTS").is_ok_and(|v| v == "1")
}

/// Iterations: `ci` normally, `long` with `ENVARC_LONG_TESTS=1`.
pub fn iterations(ci: usize, long_n: usize) -> usize {
    if long() {
        long_n
    } else {
        ci
    }
}

/// The seed of a test's random fault points: `ENVARC_FAULT_SEED` or `default`.
/// Printed, so a failure can be replayed with the same points.
pub fn seed(test: &str, default: u64) -> u64 {
    let s = std::env::var("ENVARC_FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    eprintln!("{test}: seed {s} (replay with ENVARC_FAULT_SEED={s})");
    s
}

/// A mount that is taken down (lazily, so a busy file cannot keep it) when dropped.
pub struct Mount {
    pub path: PathBuf,
}

impl Mount {
    /// A tmpfs of `size` (e.g. "8m") at `path`; `Err` with the reason where
    /// this process may not mount (no CAP_SYS_ADMIN).
    pub fn tmpfs(path: &Path, size: &str) -> Result<Mount, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        run_mount(
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ],
            path,
        )?;
        Ok(Mount {
            path: path.to_path_buf(),
        })
    }

    /// `src` seen read-only at `path` (a read-only bind mount: even root
    /// cannot write through it).
    pub fn read_only_bind(src: &Path, path: &Path) -> Result<Mount, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        run_mount(&["--bind", &src.display().to_string()], path)?;
        let m = Mount {
            path: path.to_path_buf(),
        };
        run_mount(&["-o", "remount,bind,ro"], path)?;
        Ok(m)
    }
}

fn run_mount(args: &[&str], path: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .arg(path)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {args:?} {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Writes `dir/filler` until the file system is full; returns its path.
pub fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("creating the filler");
    let chunk = vec![0xA5u8; 64 * 1024];
    let mut small = false;
    loop {
        let r = if small {
            f.write(&chunk[..512])
        } else {
            f.write(&chunk)
        };
        match r {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && !small => small = true,
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling {}: {e}", dir.display()),
        }
    }
    let _ = f.sync_all();
    path
}

/// Free bytes on the file system holding `dir`.
pub fn free_bytes(dir: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(dir)
        .output()
        .expect("df");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .expect("df prints the free bytes")
}

/// Whether the built binary has a subcommand (commands of other branches
/// are used where they exist).
pub fn has_command(name: &str) -> bool {
    Command::new(util::envarc_path())
        .args([name, "--help"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `envarc backup` of `paths` as host `host`; warnings on stderr (not `-q`,
/// which hides them; no JSON: a failed run prints none).
pub fn backup(r: &TestRepo, host: &str, paths: &[&Path]) -> Output {
    r.cmd("backup")
        .args(["--host", host])
        .args(paths)
        .output()
        .expect("running envarc backup")
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Checks a repository after a fault: every snapshot loads and every file
/// message it names decrypts to the recorded size (through the library) and,
/// where the binary has `verify`, `verify --read-data` is clean. Returns
/// (snapshots, messages checked by the library).
pub fn check_repo(r: &TestRepo) -> (usize, usize) {
    let counts = verify_all(&r.open());
    if has_command("verify") {
        let out = r
            .cmd("verify")
            .arg("--read-data")
            .output()
            .expect("running envarc verify");
        assert!(
            out.status.success(),
            "verify --read-data after a fault: exit {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            stderr(&out)
        );
    }
    counts
}
