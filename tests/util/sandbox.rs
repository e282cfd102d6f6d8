//! The one harness around the built binary: a scratch folder and the
//! environment every `envarc` command of a test runs with (a keyring of its
//! own, a HOME, a server's address…), on top of the clean environment of
//! [`super::process`]. The other test types (`TestRepo`, `Story`, the
//! keyring `Ring`s, the fixtures) are thin helpers that hold one and add
//! what their tests are about.

#![allow(dead_code)]

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::Output;

use serde_json::Value;

/// Cheap Argon2id for tests; it is recorded in the keyring like any cost.
pub const CHEAP_ARGON2: &str = "m=8,t=1,p=1";

pub struct Sandbox {
    pub dir: tempfile::TempDir,
    /// Set (`Some`) or removed (`None`), in order, after the clean
    /// environment.
    env: Vec<(OsString, Option<OsString>)>,
    /// Whether commands run in `dir` (else in the test's own folder).
    in_dir: bool,
}

impl Default for Sandbox {
    fn default() -> Sandbox {
        Sandbox::new()
    }
}

impl Sandbox {
    /// A fresh temporary folder.
    pub fn new() -> Sandbox {
        Sandbox::at(super::tempdir())
    }

    /// Around a folder made elsewhere (e.g. in /dev/shm).
    pub fn at(dir: tempfile::TempDir) -> Sandbox {
        Sandbox {
            dir,
            env: Vec::new(),
            in_dir: false,
        }
    }

    /// Every command gets `var=value`.
    pub fn env(mut self, var: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Sandbox {
        self.env
            .push((var.as_ref().to_owned(), Some(value.as_ref().to_owned())));
        self
    }

    /// No command gets `var`.
    pub fn env_remove(mut self, var: impl AsRef<OsStr>) -> Sandbox {
        self.env.push((var.as_ref().to_owned(), None));
        self
    }

    /// A keyring of its own at `dir/file`, opened with `passphrase`, made
    /// with `argon2` (the keyring records it).
    pub fn keyring(self, file: &str, passphrase: &str, argon2: &str) -> Sandbox {
        let path = self.path(file);
        self.env("ENVARC_KEYRING", path)
            .env("ENVARC_PASSPHRASE", passphrase)
            .env("ENVARC_ARGON2_PARAMS", argon2)
    }

    /// Commands run in the folder (relative paths are the folder's).
    pub fn in_dir(mut self) -> Sandbox {
        self.in_dir = true;
        self
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
    }

    pub fn read(&self, name: &str) -> Vec<u8> {
        let p = self.path(name);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// `envarc` as a plain process (pipes, signals, several at once).
    pub fn process(&self) -> std::process::Command {
        self.apply(super::clean_command(super::BIN.as_ref()))
    }

    /// `program ARGS… envarc` (e.g. `taskset -c 0 envarc`), with this
    /// environment.
    pub fn wrapped(&self, program: &str, args: &[&str]) -> std::process::Command {
        let mut c = super::clean_command(program.as_ref());
        c.args(args).arg(super::BIN);
        self.apply(c)
    }

    fn apply(&self, mut c: std::process::Command) -> std::process::Command {
        for (var, value) in &self.env {
            match value {
                Some(v) => c.env(var, v),
                None => c.env_remove(var),
            };
        }
        if self.in_dir {
            c.current_dir(self.dir.path());
        }
        c
    }

    /// `envarc` for assertions.
    pub fn cmd(&self) -> assert_cmd::Command {
        assert_cmd::Command::from_std(self.process())
    }

    /// Runs `envarc ARGS…`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("running envarc")
    }

    /// Runs `envarc ARGS…` and requires success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "envarc {args:?} failed ({:?}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs `envarc --json ARGS…`, requires success, parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let out = self.ok(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("envarc {args:?}: stdout is not JSON ({e}):\n{out}"))
    }

    /// Runs `envarc ARGS…` expecting exit `code`; returns stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "envarc {args:?}: {err}");
        err
    }

    /// Runs `envarc ARGS…`; its exit code.
    pub fn code(&self, args: &[&str]) -> Option<i32> {
        self.run(args).status.code()
    }
}
