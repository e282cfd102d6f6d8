//! `envarc init`, `backup`, `snapshots` and `ls` through the built binary.

use crate::{repo_support, util};

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use base64::Engine;
use envarc::repo::EntryKind;
use repo_support::{is_root, many_files, settle, verify_all, TestRepo};

/// Frame length of the test repositories: small, so files span many frames.
const FRAME: &str = "4096";

fn os(s: impl AsRef<OsStr>) -> OsString {
    s.as_ref().to_os_string()
}

fn ls_json(r: &TestRepo, snap: &str, path: Option<&Path>) -> Vec<serde_json::Value> {
    let mut cmd = r.cmd("ls");
    cmd.arg("--json").arg(snap);
    if let Some(p) = path {
        cmd.arg(p);
    }
    let out = cmd.output().unwrap();
    crate::util::assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["entries"].as_array().unwrap().clone()
}

/// The raw path bytes of an `ls --json` entry.
fn path_bytes(e: &serde_json::Value) -> Vec<u8> {
    match e.get("path_base64") {
        Some(b) => base64::engine::general_purpose::STANDARD
            .decode(b.as_str().unwrap())
            .unwrap(),
        None => e["path"].as_str().unwrap().as_bytes().to_vec(),
    }
}

/// Appends to `path` until `stop` is set: a file that changes while it is read.
fn keep_growing(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
        while !stop.load(Ordering::Relaxed) {
            f.write_all(b"x").unwrap();
            std::thread::sleep(std::time::Duration::from_micros(20));
        }
    })
}

#[test]
fn tree_with_every_kind_of_entry() {
    let r = TestRepo::init(&["--frame-length", FRAME, "--chunk-size", "64KiB"]);
    let src = r.dir.path().join("src");
    let deep = src.join("a/b/c");
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::create_dir_all(src.join("a/empty")).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    let mut contents: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
    let mut put = |p: PathBuf, data: Vec<u8>| {
        std::fs::write(&p, &data).unwrap();
        contents.insert(p, data);
    };
    put(deep.join("deep.txt"), b"deep".to_vec());
    put(src.join("zero"), Vec::new());
    // 13 frames at 4096 bytes; and a file of several chunks.
    put(src.join("frames.bin"), util::random_bytes(1, 50_000));
    put(src.join("large.bin"), util::random_bytes(2, 200_000));
    let odd = src.join(OsStr::from_bytes(b"caf\xe9 \x01name"));
    put(odd.clone(), b"non-UTF-8 name".to_vec());
    std::os::unix::fs::symlink("a/b/c/deep.txt", src.join("link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", src.join("dangling")).unwrap();
    let fifo = src.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let secret = src.join("secret");
    std::fs::write(&secret, b"unreadable").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    // Root reads mode-000 files; a file that changes while it is read fails
    // for every user, so the run is partial either way.
    let growing = src.join("growing.log");
    std::fs::write(&growing, util::random_bytes(3, 4 << 20)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = keep_growing(growing.clone(), stop.clone());

    let (code, sum, stderr) = r.backup(&[src.as_os_str()]);
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    assert_eq!(code, 3, "partial run exits 3; stderr: {stderr}");
    assert!(sum["snapshot_id"].is_string(), "{sum}");
    assert!(
        stderr.contains("growing.log") && stderr.contains("changed while being read"),
        "{stderr}"
    );
    assert!(
        stderr.contains("fifo") && stderr.contains("FIFO"),
        "{stderr}"
    );
    assert_eq!(sum["skipped"], 1);
    let expected_errors = if is_root() {
        eprintln!(
            "note: running as root, so the mode-000 file is readable; its failure is not asserted"
        );
        1
    } else {
        assert!(stderr.contains("secret"), "{stderr}");
        2
    };
    assert_eq!(sum["errors"], expected_errors, "{sum}");
    assert_eq!(sum["total_files"], contents.len() + usize::from(is_root()));

    let entries = ls_json(&r, "latest", None);
    let by_path: BTreeMap<Vec<u8>, &serde_json::Value> =
        entries.iter().map(|e| (path_bytes(e), e)).collect();
    let get = |p: &Path| {
        *by_path
            .get(p.as_os_str().as_bytes())
            .unwrap_or_else(|| panic!("{} missing from ls", p.display()))
    };
    for d in [
        &src,
        &src.join("a"),
        &deep,
        &src.join("a/empty"),
        &src.join("empty"),
    ] {
        assert_eq!(get(d)["type"], "dir");
    }
    assert_eq!(get(&src.join("link"))["link_target"], "a/b/c/deep.txt");
    assert_eq!(get(&src.join("dangling"))["type"], "symlink");
    assert_eq!(get(&src.join("zero"))["size"], 0);
    assert_eq!(get(&src.join("zero"))["chunks"], serde_json::json!([]));
    assert!(
        get(&src.join("large.bin"))["chunks"]
            .as_array()
            .unwrap()
            .len()
            > 1
    );
    assert!(get(&odd).get("path_base64").is_some());
    assert!(!by_path.contains_key(fifo.as_os_str().as_bytes()));
    assert!(!by_path.contains_key(growing.as_os_str().as_bytes()));
    assert_eq!(
        by_path.contains_key(secret.as_os_str().as_bytes()),
        is_root()
    );

    // Every stored file decrypts to its content.
    let repo = r.open();
    let index = repo.load_index().unwrap();
    let id = repo.resolve_snapshot("latest").unwrap();
    let (meta, snap) = repo.load_snapshot(&id).unwrap();
    assert_eq!(meta.summary.errors as usize, expected_errors);
    for e in snap.iter().filter(|e| e.kind == EntryKind::File) {
        let mut plain = Vec::new();
        for c in &e.chunks {
            plain.extend(repo.read_chunk(&index, c).unwrap());
        }
        if let Some(want) = contents.get(e.path()) {
            assert_eq!(&plain, want, "{}", e.path().display());
        }
    }
    for p in contents.keys() {
        assert!(snap.iter().any(|e| e.path() == p), "{}", p.display());
    }
}

#[test]
fn unchanged_files_are_not_read_again() {
    let r = TestRepo::init(&["--frame-length", FRAME]);
    let src = r.dir.path().join("src");
    let n = 30;
    many_files(&src, n, 16, 11);
    settle();
    let (code, first, _) = r.backup(&[src.as_os_str()]);
    assert_eq!(code, 0);
    assert_eq!(first["files_new"], n);
    assert_eq!(first["chunks_added"], n);
    let data_before = r.data_bytes();
    let index_files = util::dir_names(&r.repo.join("index")).len();

    let (code, second, _) = r.backup(&[src.as_os_str()]);
    assert_eq!(code, 0);
    assert_eq!(second["parent"], first["snapshot_id"]);
    assert_eq!(second["files_unchanged"], n);
    assert_eq!(second["files_new"], 0);
    assert_eq!(second["files_changed"], 0);
    assert_eq!(second["bytes_read"], 0, "no content is read: {second}");
    assert_eq!(second["chunks_added"], 0);
    assert_eq!(second["bytes_stored"], 0);
    assert_eq!(r.data_bytes(), data_before);
    assert_eq!(util::dir_names(&r.repo.join("index")).len(), index_files);

    // Touch one file, add one: the touched file is read again but its chunk
    // is already stored; only the new file adds a chunk.
    let touched = src.join("d3/f0003");
    let touched_len = std::fs::metadata(&touched).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&touched)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let added = src.join("d0/new-file");
    std::fs::write(&added, util::random_bytes(99, 5000)).unwrap();
    let (code, third, _) = r.backup(&[src.as_os_str()]);
    assert_eq!(code, 0);
    assert_eq!(third["chunks_added"], 1, "{third}");
    assert_eq!(third["chunks_deduplicated"], 1, "{third}");
    assert_eq!(third["files_new"], 1);
    assert_eq!(third["files_changed"], 1);
    assert_eq!(third["files_unchanged"], n - 1);
    assert_eq!(third["bytes_read"], touched_len + 5000);
    let stored = third["bytes_stored"].as_u64().unwrap();
    assert_eq!(r.data_bytes() - data_before, stored);
    let overhead = stored - 5000;
    assert!(
        overhead < 1024,
        "a chunk message costs {overhead} bytes beyond its plaintext"
    );
    let repo = r.open();
    assert_eq!(verify_all(&repo), (3, 3 * n + 1));
}

#[test]
fn snapshots_ls_and_selection() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("tree");
    std::fs::create_dir_all(src.join("sub/inner")).unwrap();
    std::fs::write(src.join("sub/inner/file"), b"x").unwrap();
    std::fs::write(src.join("top"), b"y").unwrap();
    let (code, a, _) = r.backup(&[os(&src), os("--tag"), os("nightly"), os("--host"), os("h1")]);
    assert_eq!(code, 0);
    let out = r.cmd("snapshots").arg("--json").output().unwrap();
    assert!(out.status.success());
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let s = &list[0];
    assert_eq!(s["id"], a["snapshot_id"]);
    assert_eq!(s["host"], "h1");
    assert_eq!(s["tags"], serde_json::json!(["nightly"]));
    assert_eq!(s["paths"], serde_json::json!([src.to_str().unwrap()]));
    assert_eq!(s["files"], 2);
    assert_eq!(s["size"], 2);

    // Listing below a path, by ID prefix; the human listing too.
    let id = a["snapshot_id"].as_str().unwrap();
    let sub = ls_json(&r, &id[..8], Some(&src.join("sub")));
    let paths: Vec<String> = sub
        .iter()
        .map(|e| e["path"].as_str().unwrap().into())
        .collect();
    let want: Vec<String> = ["sub", "sub/inner", "sub/inner/file"]
        .iter()
        .map(|p| src.join(p).display().to_string())
        .collect();
    assert_eq!(paths, want);
    let out = r.cmd("ls").arg(&id[..8]).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.lines()
            .any(|l| l.starts_with("-rw") && l.ends_with("/top")),
        "{text}"
    );
    r.cmd("ls").arg(id).arg(src.join("absent")).assert().code(2);
    r.cmd("ls").arg("ffffffffffff").assert().code(2);

    // Another host's snapshot is not the parent; --parent picks one.
    let (_, b, _) = r.backup(&[os(&src), os("--host"), os("h2")]);
    assert!(b["parent"].is_null());
    let (_, c, _) = r.backup(&[
        os(&src),
        os("--host"),
        os("h2"),
        os("--parent"),
        os(&id[..10]),
    ]);
    assert_eq!(c["parent"], a["snapshot_id"]);
    // Through ENVARC_REPOSITORY.
    let mut cmd = util::envarc();
    cmd.env("ENVARC_REPOSITORY", &r.repo)
        .args(["snapshots", "--raw-key-file"])
        .arg(&r.key);
    let out = cmd.output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 snapshots"));
}

#[test]
fn dry_run_writes_nothing_and_excludes_apply() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    std::fs::create_dir_all(src.join("cache/deep")).unwrap();
    std::fs::create_dir_all(src.join("keep")).unwrap();
    std::fs::write(src.join("cache/deep/x"), b"1").unwrap();
    std::fs::write(src.join("keep/a.tmp"), b"2").unwrap();
    std::fs::write(src.join("keep/b.txt"), b"3").unwrap();
    std::fs::write(src.join("keep/c.log"), b"4").unwrap();
    let excludes = r.dir.path().join("excludes");
    std::fs::write(&excludes, "# logs\n\n*.log\n").unwrap();
    let before = util::dir_names(&r.repo.join("snapshots"));
    let (code, sum, _) = r.backup(&[os(&src), os("--dry-run")]);
    assert_eq!(code, 0);
    assert!(sum["snapshot_id"].is_null());
    assert_eq!(sum["files_new"], 4);
    assert_eq!(sum["bytes_read"], 0);
    assert_eq!(util::dir_names(&r.repo.join("snapshots")), before);
    assert_eq!(util::tree::total_size(&r.repo.join("data")), 0);
    assert!(util::dir_names(&r.repo.join("locks")).is_empty());

    let cache = format!("{}/cache", src.display());
    let (code, sum, _) = r.backup(&[
        os(&src),
        os("--exclude"),
        os("*.tmp"),
        os("--exclude"),
        os(&cache),
        os("--exclude-file"),
        os(&excludes),
    ]);
    assert_eq!(code, 0);
    assert_eq!(sum["total_files"], 1);
    let names: Vec<String> = ls_json(&r, "latest", None)
        .iter()
        .map(|e| e["path"].as_str().unwrap().to_string())
        .collect();
    assert!(names.iter().any(|n| n.ends_with("keep/b.txt")));
    assert!(
        !names
            .iter()
            .any(|n| n.contains("cache") || n.ends_with(".tmp") || n.ends_with(".log")),
        "{names:?}"
    );
}

#[test]
fn wrong_key_and_missing_repository_are_clear_errors() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let (other, _) = util::write_key(r.dir.path(), "other", 32, 99);
    let out = util::envarc()
        .args(["backup", "-r"])
        .arg(&r.repo)
        .arg("--raw-key-file")
        .arg(&other)
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "a wrong key exits 5");
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not open this repository"));
    assert_eq!(util::tree::total_size(&r.repo.join("data")), 0);
    assert!(util::dir_names(&r.repo.join("snapshots")).is_empty());
    // No key at all; not a repository; a repository in a non-empty folder.
    util::envarc()
        .args(["snapshots", "-r"])
        .arg(&r.repo)
        .assert()
        .code(2);
    let out = util::envarc()
        .args(["snapshots", "-r"])
        .arg(&src)
        .arg("--raw-key-file")
        .arg(&r.key)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("envarc init"));
    util::envarc()
        .args(["init", "-r"])
        .arg(&src)
        .args(util::raw_key_args(&r.key, "k"))
        .assert()
        .code(2);
    // A PATH that does not exist stops the run before anything is written.
    let out = r
        .cmd("backup")
        .arg(r.dir.path().join("absent"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot back up"));
    assert!(util::dir_names(&r.repo.join("snapshots")).is_empty());
}

#[test]
fn unreadable_file_as_non_root() {
    if is_root() {
        eprintln!("skipped: running as root, where a mode-000 file is readable");
        return;
    }
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ok"), b"fine").unwrap();
    let secret = src.join("secret");
    std::fs::write(&secret, b"no").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let (code, sum, stderr) = r.backup(&[src.as_os_str()]);
    assert_eq!(code, 3);
    assert!(
        stderr.contains("secret") && stderr.contains("ermission denied"),
        "{stderr}"
    );
    assert_eq!(sum["total_files"], 1);
    assert_eq!(sum["errors"], 1);
}

#[test]
fn a_damaged_snapshot_does_not_stop_nightly_backups() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("f"), b"x").unwrap();
    let (_, first, _) = r.backup(&[&src]);
    let (_, second, _) = r.backup(&[&src]);
    // Flip a byte inside the second snapshot's first frame.
    let id = second["snapshot_id"].as_str().unwrap();
    let path = r.repo.join("snapshots").join(id);
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len();
    bytes[n - 30] ^= 1;
    std::fs::write(&path, bytes).unwrap();

    let out = r.cmd("snapshots").output().unwrap();
    assert_eq!(out.status.code(), Some(4), "an unreadable snapshot exits 4");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&first["snapshot_id"].as_str().unwrap()[..8]));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&id[..16]));
    let (code, third, stderr) = r.backup(&[&src]);
    assert_eq!(code, 0);
    assert_eq!(
        third["parent"], first["snapshot_id"],
        "the readable one is the parent"
    );
    assert!(stderr.contains("not considered as parent"), "{stderr}");
}

#[test]
fn a_repository_error_stops_the_run_without_a_snapshot() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    many_files(&src, 20, 4, 5);
    // data/ is a file: no pack can be created, even as root.
    std::fs::write(r.repo.join("data"), b"").unwrap();
    let out = r.cmd("backup").arg(&src).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("creating pack data/"), "{stderr}");
    assert!(util::dir_names(&r.repo.join("snapshots")).is_empty());
    assert!(util::dir_names(&r.repo.join("index")).is_empty());
    assert!(
        util::dir_names(&r.repo.join("locks")).is_empty(),
        "the lock is released"
    );
}
