//! `envarc encrypt|decrypt --recursive` and `envarc stats --recursive`
//! through the built binary, in temp folders: round trips with modes and
//! mtimes, names, special files, the overwrite modes and the rotation story,
//! interruption, failures, refusals, memory; plus the generated completions
//! and man page. The AWS Encryption CLI interop is in tests/providers/aws_kms/dircrypt.rs.

mod docs;
mod faults;
mod overwrite;
mod roundtrip;

use std::fs::{File, FileTimes};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime};

use crate::util;
use crate::util::sandbox::{Sandbox, CHEAP_ARGON2};
pub use crate::util::{random_bytes, stdout_json, tempdir};
use serde_json::Value;

pub const KEY_NAME: &str = "tree/v1";

/// A raw wrapping key and a keyring of its own in a [`Sandbox`] (HOME too),
/// which it derefs to.
pub struct Fx {
    pub sb: Sandbox,
    pub key: PathBuf,
}

impl std::ops::Deref for Fx {
    type Target = Sandbox;
    fn deref(&self) -> &Sandbox {
        &self.sb
    }
}

impl Default for Fx {
    fn default() -> Fx {
        Fx::new()
    }
}

impl Fx {
    pub fn new() -> Fx {
        let dir = tempdir();
        let (key, _) = util::write_key(dir.path(), "wrapping.key", 32, 7);
        let home = dir.path().to_path_buf();
        let sb = Sandbox::at(dir)
            .keyring("keyring", "pw", CHEAP_ARGON2)
            .env("HOME", home);
        Fx { sb, key }
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.sb.path(rel)
    }

    /// The raw-key arguments.
    pub fn raw(&self) -> Vec<String> {
        util::raw_key_args(&self.key, KEY_NAME)
    }

    /// Runs `envarc ARGS…` (plus the raw key when `raw`); returns the output.
    pub fn run(&self, args: &[&str], raw: bool) -> Output {
        let mut c = self.cmd();
        c.args(args);
        if raw {
            c.args(self.raw());
        }
        c.output().expect("running envarc")
    }

    /// `envarc --json VERB --recursive DIR/IN -o DIR/OUT ARGS…` with the raw
    /// key, asserting `code`; the JSON summary.
    pub fn tree(
        &self,
        verb: &str,
        input: &str,
        output: &str,
        args: &[&str],
        code: i32,
    ) -> serde_json::Value {
        let mut c = self.cmd();
        c.args(["--json", verb, "--recursive"])
            .arg(self.p(input))
            .arg("-o")
            .arg(self.p(output))
            .args(args)
            .args(self.raw());
        let out = c.output().expect("running envarc");
        expect(&out, code);
        stdout_json(&out)
    }

    /// [`Fx::tree`] with `encrypt`.
    pub fn encrypt(&self, i: &str, o: &str, args: &[&str], code: i32) -> Value {
        self.tree("encrypt", i, o, args, code)
    }

    /// [`Fx::tree`] with `decrypt`.
    pub fn decrypt(&self, i: &str, o: &str, args: &[&str], code: i32) -> Value {
        self.tree("decrypt", i, o, args, code)
    }
}

/// Asserts an exit code, showing stderr when it differs.
pub fn expect(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}; stderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// One file of a test tree: relative path, content, mode, mtime in seconds.
pub struct Spec<'a> {
    pub rel: &'a str,
    pub data: Vec<u8>,
    pub mode: u32,
    pub mtime: u64,
}

/// Writes files (folders made as needed) with their modes and mtimes (plus
/// 123 ns, so that nanoseconds are checked too).
pub fn make_tree(root: &Path, specs: &[Spec]) {
    for s in specs {
        let p = root.join(s.rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &s.data).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(s.mode)).unwrap();
        set_mtime(&p, s.mtime);
    }
}

pub fn set_mtime(p: &Path, secs: u64) {
    let t = SystemTime::UNIX_EPOCH + Duration::new(secs, 123);
    let f = File::open(p).unwrap();
    f.set_times(FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

/// Relative paths of every regular file below `root`, sorted.
pub fn files(root: &Path) -> Vec<String> {
    let mut v: Vec<String> = util::tree::describe(root)
        .into_iter()
        .filter(|(_, n)| n.kind == "file")
        .map(|(p, _)| p.display().to_string())
        .collect();
    v.sort();
    v
}
