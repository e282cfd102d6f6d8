//! `envarc restore` and `envarc diff` through the built binary: round trips
//! of generated trees and of a real system folder, overwrite modes,
//! include/exclude, dry runs.

use crate::{repo_support, util};

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use repo_support::TestRepo;
use util::tree::{assert_same_tree, temp_files};

const FRAME: &str = "4096";

/// Where `src` lands below `target` (restore keeps absolute paths).
pub fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

/// `envarc restore --json SNAP --target TARGET EXTRA...`: exit code and summary.
fn restore(r: &TestRepo, snap: &str, target: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let mut args: Vec<std::ffi::OsString> = vec![snap.into(), "--target".into(), target.into()];
    args.extend(extra.iter().map(Into::into));
    let (code, v, _) = r.json_of("restore", &args);
    (code, v)
}

fn time(sec: u64, nsec: u32) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::new(sec, nsec)
}

fn set_mtime(p: &Path, t: SystemTime) {
    std::fs::File::open(p).unwrap().set_modified(t).unwrap();
}

/// `touch -h`: sets a symlink's own mtime.
fn set_link_mtime(p: &Path, sec: u64, nsec: u32) {
    let ok = std::process::Command::new("touch")
        .arg("-h")
        .arg("-d")
        .arg(format!("@{sec}.{nsec:09}"))
        .arg(p)
        .status()
        .unwrap()
        .success();
    assert!(ok, "touch -h {}", p.display());
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A tree with every kind of entry the backup stores, odd modes and old
/// mtimes with nanoseconds.
fn generated_tree(src: &Path) {
    let deep = src.join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    for d in ["a/empty", "empty", "ro"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    let files: [(&str, Vec<u8>, u32); 9] = [
        ("a/b/c/deep.txt", b"deep".to_vec(), 0o644),
        ("zero", Vec::new(), 0o644),
        ("frames.bin", util::random_bytes(1, 50_000), 0o640),
        ("large.bin", util::random_bytes(2, 200_000), 0o644),
        ("secret", b"only me".to_vec(), 0o600),
        ("script.sh", b"#!/bin/sh\necho hi\n".to_vec(), 0o755),
        ("readonly", b"look, don't touch".to_vec(), 0o444),
        ("ro/inside.txt", b"in a read-only folder".to_vec(), 0o444),
        ("a/notes.txt", b"notes".to_vec(), 0o664),
    ];
    for (i, (name, data, mode)) in files.iter().enumerate() {
        let p = src.join(name);
        std::fs::write(&p, data).unwrap();
        chmod(&p, *mode);
        set_mtime(
            &p,
            time(946_684_800 + i as u64 * 3600, 123_456_789 + i as u32),
        );
    }
    let odd = src.join(OsStr::from_bytes(b"caf\xe9 \x01name"));
    std::fs::write(&odd, b"non-UTF-8 name").unwrap();
    set_mtime(&odd, time(1_000_000_000, 1));
    let links = [
        ("rel-link", "a/b/c/deep.txt"),
        ("abs-link", "/usr/share"),
        ("dangling", "/nowhere/at/all"),
        ("dir-link", "a"),
    ];
    for (i, (name, target)) in links.iter().enumerate() {
        let p = src.join(name);
        std::os::unix::fs::symlink(target, &p).unwrap();
        set_link_mtime(&p, 1_100_000_000 + i as u64, 987_654_321);
    }
    chmod(&src.join("a/empty"), 0o700);
    chmod(&src.join("ro"), 0o555);
    // Folder mtimes last, deepest first, as writing inside changes them.
    for (i, d) in ["a/b/c", "a/b", "a/empty", "a", "empty", "ro", ""]
        .iter()
        .enumerate()
    {
        set_mtime(
            &src.join(d),
            time(1_200_000_000 + i as u64, 5_000 + i as u32),
        );
    }
}

#[test]
fn generated_tree_round_trips_exactly() {
    let r = TestRepo::init(&["--frame-length", FRAME, "--chunk-size", "64KiB"]);
    let src = r.dir.path().join("src");
    generated_tree(&src);
    let (code, _, stderr) = r.backup(&[src.as_os_str()]);
    assert_eq!(code, 0, "{stderr}");

    let target = r.dir.path().join("target");
    let (code, sum) = restore(&r, "latest", &target, &[]);
    assert_eq!(code, 0, "{sum}");
    assert_eq!(sum["files"], 10, "{sum}");
    assert_eq!(sum["symlinks"], 4);
    assert_eq!(sum["dirs"], 7);
    assert_eq!(sum["error_count"], 0);
    let n = assert_same_tree(&src, &restored(&target, &src), true);
    assert_eq!(n, 21);
    assert!(temp_files(&target).is_empty());
    // Folders above the backed-up path are not in the snapshot: mode 0700.
    let above = restored(&target, src.parent().unwrap());
    let mode = std::fs::metadata(&above).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);

    // Restoring again changes nothing and says so; a dry run writes nothing.
    let (code, sum) = restore(&r, "latest", &target, &[]);
    assert_eq!(code, 0);
    assert_eq!(sum["files"], 0);
    assert_eq!(sum["skipped"], 14, "{sum}");
    assert_same_tree(&src, &restored(&target, &src), true);
    let fresh = r.dir.path().join("fresh");
    let (code, plan) = restore(&r, "latest", &fresh, &["--dry-run"]);
    assert_eq!(code, 0);
    assert!(!fresh.exists(), "a dry run must not create the target");
    let entries = plan["plan"].as_array().unwrap();
    assert_eq!(entries.len(), 21);
    assert!(entries.iter().all(|e| e["action"] == "new"), "{plan}");
    assert!(entries.iter().any(|e| e.get("path_base64").is_some()));
}

#[test]
fn overwrite_modes_include_and_exclude() {
    let r = TestRepo::init(&["--frame-length", FRAME]);
    let src = r.dir.path().join("src");
    generated_tree(&src);
    r.backup(&[src.as_os_str()]);
    let target = r.dir.path().join("t");
    let (code, _) = restore(&r, "latest", &target, &[]);
    assert_eq!(code, 0);
    let out = restored(&target, &src);

    // A changed file: never keeps it, if-changed replaces it.
    let notes = out.join("a/notes.txt");
    std::fs::write(&notes, b"edited").unwrap();
    let (_, sum) = restore(&r, "latest", &target, &[]);
    assert_eq!(sum["files"], 0);
    assert_eq!(std::fs::read(&notes).unwrap(), b"edited");
    let (code, sum) = restore(&r, "latest", &target, &["--overwrite", "if-changed"]);
    assert_eq!(code, 0);
    assert_eq!(sum["files"], 1, "{sum}");
    assert_eq!(std::fs::read(&notes).unwrap(), b"notes");

    // Same size and mtime: if-changed trusts it, always replaces it.
    let deep = out.join("a/b/c/deep.txt");
    let md = std::fs::metadata(&deep).unwrap();
    std::fs::write(&deep, b"DEEP").unwrap();
    set_mtime(&deep, md.modified().unwrap());
    let (_, sum) = restore(&r, "latest", &target, &["--overwrite", "if-changed"]);
    assert_eq!(sum["files"], 0);
    let (code, sum) = restore(&r, "latest", &target, &["--overwrite", "always"]);
    assert_eq!(code, 0);
    assert_eq!(sum["files"], 10);
    assert_same_tree(&src, &out, true);

    // A folder where a file belongs is never removed: that file fails (exit 3).
    std::fs::remove_file(&notes).unwrap();
    std::fs::create_dir(&notes).unwrap();
    let (code, sum) = restore(&r, "latest", &target, &["--overwrite", "always"]);
    assert_eq!(code, 3, "{sum}");
    assert_eq!(sum["error_count"], 1);
    assert!(sum["errors"][0]["cause"]
        .as_str()
        .unwrap()
        .contains("folder is in the way"));

    // --include takes matching entries and the folders above them.
    let only = r.dir.path().join("only");
    let (code, _) = restore(&r, "latest", &only, &["--include", "*.txt"]);
    assert_eq!(code, 0);
    let got = util::tree::describe(&restored(&only, &src));
    let files: Vec<String> = got
        .iter()
        .filter(|(_, n)| n.kind == "file")
        .map(|(p, _)| p.display().to_string())
        .collect();
    assert_eq!(
        files,
        vec!["a/b/c/deep.txt", "a/notes.txt", "ro/inside.txt"]
    );
    assert!(!got.contains_key(Path::new("empty")));
    // --exclude leaves out a folder and everything below it.
    let ex = r.dir.path().join("ex");
    let (code, _) = restore(&r, "latest", &ex, &["--exclude", "a", "--exclude", "*.bin"]);
    assert_eq!(code, 0);
    let got = util::tree::describe(&restored(&ex, &src));
    assert!(got
        .keys()
        .all(|p| !p.starts_with("a") && !p.to_string_lossy().ends_with(".bin")));
    assert!(got.contains_key(Path::new("ro/inside.txt")));
}

/// Package folders of /usr/share/doc (or another system folder) adding up to
/// about `budget` bytes.
fn system_folders(budget: u64) -> Vec<PathBuf> {
    for base in [
        "/usr/share/doc",
        "/usr/share/zoneinfo",
        "/usr/share/locale",
        "/etc",
    ] {
        let Ok(rd) = std::fs::read_dir(base) else {
            continue;
        };
        let mut names: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        names.sort();
        let mut picked = Vec::new();
        let mut total = 0;
        for p in names {
            let size = util::tree::describe(&p)
                .values()
                .map(|n| n.size)
                .sum::<u64>();
            if std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) && total + size <= budget {
                total += size;
                picked.push(p);
            }
            if total > budget / 2 && picked.len() >= 20 {
                break;
            }
        }
        if !picked.is_empty() {
            return picked;
        }
    }
    Vec::new()
}

#[test]
fn real_system_folder_round_trips() {
    let folders = system_folders(4 << 20);
    if folders.is_empty() {
        eprintln!("note: no readable system folder found; nothing to test");
        return;
    }
    let r = TestRepo::init(&[]);
    let (code, sum, stderr) = r.backup(&folders);
    assert_eq!(code, 0, "{stderr}");
    assert!(sum["total_files"].as_u64().unwrap() > 0);
    let target = r.dir.path().join("t");
    let (code, sum) = restore(&r, "latest", &target, &[]);
    assert_eq!(code, 0, "{sum}");
    let mut n = 0;
    for f in &folders {
        n += assert_same_tree(f, &restored(&target, f), true);
    }
    eprintln!(
        "{} folders, {n} entries, {} bytes compared",
        folders.len(),
        sum["bytes"]
    );
}

#[test]
fn diff_lists_added_removed_and_changed() {
    let r = TestRepo::init(&["--frame-length", FRAME]);
    let src = r.dir.path().join("src");
    generated_tree(&src);
    let (_, first, _) = r.backup(&[src.as_os_str()]);
    repo_support::settle();
    std::fs::write(src.join("a/notes.txt"), b"longer notes now").unwrap();
    chmod(&src.join("secret"), 0o640);
    std::fs::remove_file(src.join("zero")).unwrap();
    std::fs::write(src.join("new.txt"), b"new").unwrap();
    let (_, second, _) = r.backup(&[src.as_os_str()]);
    let a = first["snapshot_id"].as_str().unwrap();
    let b = second["snapshot_id"].as_str().unwrap();
    let out = r
        .cmd("diff")
        .arg("--json")
        .arg(&a[..8])
        .arg(b)
        .output()
        .unwrap();
    assert!(out.status.success());
    let d: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = |p: &str| src.join(p).display().to_string();
    assert_eq!(d["added"][0]["path"], s("new.txt"));
    assert_eq!(d["removed"][0]["path"], s("zero"));
    let changed = d["changed"].as_array().unwrap();
    let find = |p: String| {
        changed
            .iter()
            .find(|c| c["path"] == p.as_str())
            .unwrap_or_else(|| panic!("{p} not in {d}"))
    };
    let notes = find(s("a/notes.txt"));
    assert_eq!(notes["content"], true);
    assert!(notes["what"].as_array().unwrap().contains(&"size".into()));
    let secret = find(s("secret"));
    assert_eq!(secret["content"], false);
    assert_eq!(secret["what"], serde_json::json!(["mode"]));
    // Folders whose contents changed show a new mtime; nothing else changed.
    for c in changed {
        let p = c["path"].as_str().unwrap();
        assert!(
            [s("a/notes.txt"), s("secret"), s("a"), s("")].contains(&p.to_string())
                || p == src.display().to_string(),
            "unexpected change {c}"
        );
    }
    let text = r.cmd("diff").arg(a).arg(b).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("+  {}", s("new.txt"))), "{text}");
    assert!(text.contains(&format!("-  {}", s("zero"))), "{text}");
    assert!(text.contains("[metadata: mode]"), "{text}");
    assert!(text.contains("1 added, 1 removed"), "{text}");
}
