//! Files that change under a running backup, by real races: a background
//! thread mutates the tree in a loop while backups run. Whatever the
//! interleaving, a backup reports what it could not read, stores only
//! objects that hold content the file really had (never padding, never
//! another file's bytes), and never follows a symlink that replaced a file
//! or a directory out of the tree.

use crate::{fault_support, repo_support, util};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use envarc::repo::{Entry, EntryKind};
use fault_support::{backup, check_repo, iterations, stderr};
use repo_support::TestRepo;

const SECRET: &[u8] = b"SECRET-outside-the-tree";

/// Runs `mutate` in a loop on a thread until the returned guard is dropped;
/// counts the mutations.
struct Mutator {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Mutator {
    fn start(mut mutate: impl FnMut(u64) + Send + 'static) -> Mutator {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let (s, c) = (stop.clone(), count.clone());
        let handle = thread::spawn(move || {
            let mut i = 0;
            while !s.load(Ordering::Relaxed) {
                mutate(i);
                i += 1;
                c.store(i, Ordering::Relaxed);
            }
        });
        Mutator {
            stop,
            count,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().expect("mutator");
        self.count.load(Ordering::Relaxed)
    }
}

/// Every entry of every snapshot with its decrypted content (files only).
fn stored(r: &TestRepo) -> Vec<(Entry, Option<Vec<u8>>)> {
    let repo = r.open();
    let index = repo.load_index().unwrap();
    let mut out = Vec::new();
    for (id, _) in repo.snapshots().unwrap() {
        let (_, entries) = repo.load_snapshot(&id).unwrap();
        for e in entries {
            let content = (e.kind == EntryKind::File).then(|| {
                let mut v = Vec::new();
                for c in &e.chunks {
                    let chunk = repo
                        .read_chunk(&index, c)
                        .unwrap_or_else(|err| panic!("{}: {err}", e.path().display()));
                    v.extend_from_slice(&chunk);
                }
                assert_eq!(v.len() as u64, e.size, "{}", e.path().display());
                v
            });
            out.push((e, content));
        }
    }
    out
}

/// Runs `n` backups of `src` (fresh host each: everything is read each time);
/// returns how many reported problems (exit 3) and the warnings.
fn backups(r: &TestRepo, src: &Path, n: usize) -> (usize, Vec<String>) {
    let mut partial = 0;
    let mut warnings = Vec::new();
    for i in 0..n {
        let out = backup(r, &format!("race{i}"), &[src]);
        match out.status.code() {
            Some(0) => {}
            Some(3) => {
                partial += 1;
                warnings.extend(stderr(&out).lines().map(String::from));
            }
            c => panic!("backup {i} exited {c:?}: {}", stderr(&out)),
        }
    }
    (partial, warnings)
}

fn outside(r: &TestRepo) -> PathBuf {
    let o = r.dir.path().join("outside");
    std::fs::create_dir_all(&o).unwrap();
    for i in 0..8 {
        std::fs::write(o.join(format!("secret-{i}")), SECRET).unwrap();
    }
    o
}

fn assert_nothing_from_outside(all: &[(Entry, Option<Vec<u8>>)]) {
    for (e, content) in all {
        let p = String::from_utf8_lossy(&e.path);
        assert!(
            !p.contains("secret-"),
            "the walk followed a symlink out of the tree: {p}"
        );
        if let Some(c) = content {
            assert!(c != SECRET, "{p}: holds a file from outside the tree");
        }
    }
}

#[test]
fn a_directory_replaced_by_a_symlink_mid_walk_is_not_followed() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    let d = src.join("d");
    std::fs::create_dir_all(&d).unwrap();
    for i in 0..8 {
        std::fs::write(d.join(format!("f{i}")), b"inside").unwrap();
        std::fs::create_dir_all(d.join(format!("sub{i}"))).unwrap();
        std::fs::write(d.join(format!("sub{i}/g")), b"inside").unwrap();
    }
    // Siblings listed before `d` widen the window between the listing that
    // says `d` is a directory and the moment the walk opens it.
    for i in 0..500 {
        std::fs::write(src.join(format!("a{i:04}")), b"").unwrap();
    }
    let out_dir = outside(&r);
    let (d2, away) = (d.clone(), src.join("d.away"));
    let m = Mutator::start(move |_| {
        std::fs::rename(&d2, &away).unwrap();
        std::os::unix::fs::symlink(&out_dir, &d2).unwrap();
        thread::sleep(Duration::from_micros(1000));
        std::fs::remove_file(&d2).unwrap();
        std::fs::rename(&away, &d2).unwrap();
    });
    let (partial, warnings) = backups(&r, &src, iterations(12, 200));
    let swaps = m.stop();
    let all = stored(&r);
    check_repo(&r);
    eprintln!(
        "{swaps} swaps; {partial} backups reported problems; {} entries",
        all.len()
    );
    for w in warnings.iter().take(5) {
        eprintln!("  {w}");
    }
    assert_nothing_from_outside(&all);
}

#[test]
fn a_file_replaced_by_a_symlink_is_not_read_through() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..8 {
        std::fs::write(src.join(format!("f{i}")), b"inside").unwrap();
    }
    let out_dir = outside(&r);
    let s2 = src.clone();
    let m = Mutator::start(move |i| {
        let f = s2.join(format!("f{}", i % 8));
        let away = s2.join("away");
        std::fs::rename(&f, &away).unwrap();
        std::os::unix::fs::symlink(out_dir.join("secret-0"), &f).unwrap();
        thread::sleep(Duration::from_micros(100));
        std::fs::remove_file(&f).unwrap();
        std::fs::rename(&away, &f).unwrap();
    });
    let (partial, warnings) = backups(&r, &src, iterations(12, 200));
    let swaps = m.stop();
    let all = stored(&r);
    check_repo(&r);
    eprintln!("{swaps} swaps; {partial} backups reported problems");
    for w in warnings.iter().take(3) {
        eprintln!("  {w}");
    }
    assert_nothing_from_outside(&all);
    for (e, c) in &all {
        if let Some(c) = c {
            if !e.path.ends_with(b"/away") {
                assert_eq!(c, b"inside", "{}", e.path().display());
            }
        }
    }
}

/// Byte `i` of every growing, shrinking or reappearing file: never 0, so
/// padding or a hole would show.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| ((i * 31 + 7) % 251) as u8 + 1).collect()
}

#[test]
fn files_that_grow_shrink_change_or_vanish_are_reported_never_stored_corrupt() {
    use std::os::unix::fs::FileExt;
    const K: usize = 1024;
    let r = TestRepo::init(&["--frame-length", "4096"]);
    let src = r.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let full = pattern(512 * K);
    std::fs::write(src.join("grow"), b"").unwrap();
    std::fs::write(src.join("shrink"), &full).unwrap();
    std::fs::write(src.join("change"), vec![1u8; 256 * K]).unwrap();
    for v in 0..4 {
        std::fs::write(src.join(format!("vanish{v}")), &full[..64 * K]).unwrap();
    }
    for i in 0..40 {
        std::fs::write(
            src.join(format!("stable{i:02}")),
            util::random_bytes(i, 3000),
        )
        .unwrap();
    }
    let s2 = src.clone();
    let m = Mutator::start(move |i| {
        let open = |n: &str| {
            std::fs::OpenOptions::new()
                .write(true)
                .open(s2.join(n))
                .unwrap()
        };
        let grow = open("grow");
        let len = grow.metadata().unwrap().len() as usize;
        if len >= 512 * K {
            grow.set_len(0).unwrap();
        } else {
            grow.write_all_at(&full[len..len + 8 * K], len as u64)
                .unwrap();
        }
        let shrink = open("shrink");
        let len = shrink.metadata().unwrap().len() as usize;
        if len == 0 {
            shrink.write_all_at(&full, 0).unwrap();
        } else {
            shrink.set_len((len - 8 * K) as u64).unwrap();
        }
        let version = 1 + (i % 250) as u8;
        open("change")
            .write_all_at(&vec![version; 256 * K], 0)
            .unwrap();
        let v = s2.join(format!("vanish{}", i % 4));
        std::fs::remove_file(&v).unwrap();
        thread::sleep(Duration::from_micros(300));
        std::fs::write(&v, &full[..64 * K]).unwrap();
    });
    let (partial, warnings) = backups(&r, &src, iterations(10, 150));
    let mutations = m.stop();
    let count = |what: &str| warnings.iter().filter(|w| w.contains(what)).count();
    eprintln!(
        "{mutations} rounds of mutations; {partial} backups reported problems: {} changed while \
         being read, {} vanished, {} replaced since the scan",
        count("changed while being read"),
        count("vanished"),
        count("replaced since the scan"),
    );
    for w in warnings.iter().take(4) {
        eprintln!("  {w}");
    }
    let full = pattern(512 * K);
    let mut checked = 0;
    for (e, c) in stored(&r) {
        let Some(c) = c else { continue };
        let name = e.path().file_name().unwrap().to_string_lossy().into_owned();
        if let Some(i) = name.strip_prefix("stable") {
            let i: u64 = i.parse().unwrap();
            assert_eq!(c, util::random_bytes(i, 3000), "{name}");
        } else if name == "change" {
            assert_eq!(c.len(), 256 * K);
            assert!(!c.contains(&0), "{name}: bytes that were never written");
        } else {
            assert!(c.len() <= full.len(), "{name}");
            assert!(c == full[..c.len()], "{name}: not a state the file had");
        }
        checked += 1;
    }
    assert!(
        checked >= 40,
        "the stable files were stored ({checked} objects)"
    );
    check_repo(&r);
}
