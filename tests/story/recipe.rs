//! Issue 19: the README's nightly recipe runs as written. The cron lines
//! (the fenced blocks after `<!-- test: cron -->`) run under cron's bare
//! environment, `env -i PATH=/usr/bin:/bin sh -c LINE`; the systemd units
//! (after `<!-- test: systemd -->`) pass `systemd-analyze verify`, and the
//! backup unit's ExecStart runs with its Environment= and nothing else. The
//! README's absolute paths are moved into a temporary root: `/etc`, `/home`
//! and `/srv` below it, `/usr/local/bin/envarc` the built binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util;

const README: &str = include_str!("../../README.md");

/// The fenced blocks that follow `<!-- test: KIND -->`.
fn blocks(kind: &str) -> Vec<String> {
    let marker = format!("<!-- test: {kind} -->");
    let mut out = Vec::new();
    let mut rest = README;
    while let Some(at) = rest.find(&marker) {
        rest = &rest[at + marker.len()..];
        let open = rest.find("```").expect("a fenced block after the marker");
        let body_at = open + rest[open..].find('\n').unwrap() + 1;
        let close = body_at + rest[body_at..].find("\n```").unwrap();
        out.push(rest[body_at..close].to_string());
        rest = &rest[close..];
    }
    assert!(!out.is_empty(), "README.md has no {marker}");
    out
}

/// A temporary root that stands for `/`.
struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        let r = Root {
            dir: util::tempdir(),
        };
        for d in ["etc/envarc", "home/alice", "srv/backup"] {
            std::fs::create_dir_all(r.path(d)).unwrap();
        }
        std::fs::write(r.path("etc/hostname"), "nightly\n").unwrap();
        std::fs::write(r.path("home/alice/notes.txt"), "week one\n").unwrap();
        r
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// One README path (or `VAR=path`) moved below the root.
    fn token(&self, t: &str) -> String {
        if t == "/usr/local/bin/envarc" {
            return util::envarc_path().display().to_string();
        }
        if let Some(eq) = t.find("=/") {
            return format!("{}={}", &t[..eq], self.token(&t[eq + 1..]));
        }
        let moved = ["/etc", "/home", "/srv"]
            .iter()
            .any(|r| t == *r || t.starts_with(&format!("{r}/")));
        if moved {
            format!("{}{t}", self.dir.path().display())
        } else {
            t.to_string()
        }
    }

    /// A README line with its paths moved (words split at single spaces,
    /// so the line's spacing stays).
    fn line(&self, l: &str) -> String {
        l.split(' ')
            .map(|t| self.token(t))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// `envarc ARGS` as the README's setup runs it.
    fn envarc(&self, unlock: &[&str], args: &[&str]) {
        let mut c = util::envarc();
        c.env("ENVARC_KEYRING", self.path("etc/envarc/keyring"))
            .env("ENVARC_PINS", self.path("etc/envarc/repositories.json"))
            .env("ENVARC_ARGON2_PARAMS", "m=1024,t=1,p=1")
            .args(unlock)
            .args(args);
        let o = c.output().unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }

    /// The README's setup: the keyring in /etc/envarc, locked by `unlock`,
    /// with alias/backup, and the repository in /srv/backup/envarc.
    fn setup(&self, unlock: &[&str]) {
        self.envarc(
            unlock,
            &[
                "key",
                "create",
                "--alias",
                "alias/backup",
                "--enable-rotation",
            ],
        );
        let repo = self.path("srv/backup/envarc");
        self.envarc(
            unlock,
            &[
                "init",
                "-r",
                repo.to_str().unwrap(),
                "--key",
                "alias/backup",
            ],
        );
    }

    fn snapshots(&self) -> usize {
        std::fs::read_dir(self.path("srv/backup/envarc/snapshots"))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

/// The command of a system crontab line (`m h dom mon dow user command`).
fn cron_command(line: &str) -> &str {
    let mut rest = line;
    for _ in 0..6 {
        rest = rest.trim_start();
        rest = &rest[rest
            .find(' ')
            .unwrap_or_else(|| panic!("not a cron.d line: {line}"))..];
    }
    rest.trim_start()
}

/// Each simple command of `command` names its program by absolute path
/// (cron's PATH is /usr/bin:/bin, where envarc is not).
fn check_absolute(command: &str, line: &str) {
    let code = command.split(" #").next().unwrap();
    for part in code
        .split("||")
        .flat_map(|p| p.split("&&"))
        .flat_map(|p| p.split(';'))
    {
        let program = part
            .split_whitespace()
            .find(|w| !w.contains('='))
            .unwrap_or_default();
        assert!(
            program.starts_with('/'),
            "'{program}' relies on PATH, which cron sets to /usr/bin:/bin: {line}"
        );
    }
}

/// Runs a command as cron does: only PATH=/usr/bin:/bin, through `sh -c`.
fn under_cron(cmd: &str) -> std::process::Output {
    // A `%` in a crontab command is a newline to cron; the README has none.
    assert!(!cmd.contains('%'), "cron would cut this line at '%': {cmd}");
    Command::new("/usr/bin/env")
        .args(["-i", "PATH=/usr/bin:/bin", "sh", "-c", cmd])
        .output()
        .unwrap()
}

#[test]
fn the_readme_cron_lines_run_under_crons_environment() {
    for block in blocks("cron") {
        let root = Root::new();
        let passphrase = root.path("etc/envarc/passphrase");
        std::fs::write(&passphrase, "a long nightly passphrase\n").unwrap();
        root.setup(&["--passphrase-file", passphrase.to_str().unwrap()]);
        for line in block
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            let command = cron_command(line);
            check_absolute(command, line);
            assert!(
                command.contains("ENVARC_KEYRING=/"),
                "no ENVARC_KEYRING on: {line}"
            );
            let before = root.snapshots();
            let o = under_cron(&root.line(command));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(o.status.success(), "{line}\n{err}");
            assert!(!err.contains("warning"), "{line}\n{err}");
            if command.contains(" backup ") {
                assert_eq!(root.snapshots(), before + 1, "no snapshot from: {line}");
            }
        }
        assert!(root.snapshots() >= 1);
    }
}

/// The unit files of one README block: `# /etc/systemd/system/NAME` starts
/// each (other files of the block, such as an environment file, are skipped).
fn unit_files(block: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in block.lines() {
        if let Some(path) = line.strip_prefix("# /") {
            let path = path.split(' ').next().unwrap();
            files.push((path.rsplit('/').next().unwrap().to_string(), String::new()));
            continue;
        }
        if let Some((_, body)) = files.last_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    files.retain(|(name, _)| name.ends_with(".service") || name.ends_with(".timer"));
    files
}

fn value_of<'a>(unit: &'a str, key: &str) -> Option<&'a str> {
    unit.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
}

#[test]
fn the_readme_units_verify_and_the_backup_unit_runs() {
    let root = Root::new();
    let key = root.path("etc/envarc/keyring.key");
    std::fs::write(&key, util::random_bytes(19, 32)).unwrap();
    root.setup(&["--keyring-key-file", key.to_str().unwrap()]);
    let units = root.path("units");
    std::fs::create_dir(&units).unwrap();
    let mut names = Vec::new();
    for block in blocks("systemd") {
        for (name, body) in unit_files(&block) {
            let body: String = body.lines().map(|l| root.line(l) + "\n").collect();
            if let Some(exec) =
                value_of(&body, "ExecStart").filter(|_| name == "envarc-backup.service")
            {
                // As systemd runs it: no shell, only the unit's Environment=.
                let argv: Vec<&str> = exec.split(' ').collect();
                let mut c = Command::new("/usr/bin/env");
                c.args(["-i", "PATH=/usr/bin:/bin"]);
                c.args(value_of(&body, "Environment").unwrap().split(' '));
                let o = c.args(&argv).output().unwrap();
                let err = String::from_utf8_lossy(&o.stderr);
                assert!(o.status.success(), "{exec}\n{err}");
                assert!(err.is_empty(), "a quiet nightly run printed: {err}");
                assert_eq!(root.snapshots(), 1);
                assert!(body.contains("SuccessExitStatus=3\n"));
            }
            std::fs::write(units.join(&name), body).unwrap();
            names.push(name);
        }
    }
    assert!(
        names.contains(&"envarc-backup.service".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"envarc-backup.timer".to_string()),
        "{names:?}"
    );
    let Ok(analyze) = which("systemd-analyze") else {
        eprintln!("skipped systemd-analyze verify: systemd-analyze is not installed here");
        return;
    };
    let o = Command::new(analyze)
        .arg("verify")
        .arg("--man=no")
        .args(names.iter().map(|n| units.join(n)))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success() && err.trim().is_empty(), "{err}");
}

fn which(name: &str) -> Result<PathBuf, ()> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.exists())
        .ok_or(())
}

#[test]
fn backup_warns_when_the_keyring_is_inside_what_it_saves() {
    let root = Root::new();
    let key = root.path("etc/envarc/keyring.key");
    std::fs::write(&key, util::random_bytes(20, 32)).unwrap();
    root.setup(&["--keyring-key-file", key.to_str().unwrap()]);
    let repo = root.path("srv/backup/envarc");
    let etc = root.path("etc");
    let run = |extra: &[&str]| {
        let mut c = util::envarc();
        c.env("ENVARC_KEYRING", root.path("etc/envarc/keyring"))
            .env("ENVARC_PINS", root.path("etc/envarc/repositories.json"))
            .args(["backup", "-q", "-r", repo.to_str().unwrap()])
            .args(["--keyring-key-file", key.to_str().unwrap()])
            .args(extra)
            .arg(&etc);
        c.output().unwrap()
    };
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "the exit code stays: {err}");
    assert_eq!(root.snapshots(), 1, "the snapshot is still saved");
    for what in ["the keyring ", "the keyring's key file "] {
        assert!(
            err.contains(&format!("warning: {what}")),
            "no warning for {what}: {err}"
        );
    }
    assert!(err.contains("cannot be decrypted without it"), "{err}");
    let exclude = format!("--exclude {}", root.path("etc/envarc/keyring").display());
    assert!(err.contains(&exclude), "{err}");
    // Left out, by the folder or by name: no warning.
    let folder = root.path("etc/envarc");
    let o = run(&["--exclude", folder.to_str().unwrap()]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    let o = run(&["--exclude", "keyring*"]);
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    assert_eq!(root.snapshots(), 3);
}
