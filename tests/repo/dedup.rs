//! Deduplication and compression of format 2, measured as the repository's
//! growth through the built binary, with every snapshot restored and
//! compared byte for byte.
use crate::{repo_support, util};

use std::path::Path;

use repo_support::TestRepo;
use util::tree::total_size;

/// Files of several sizes (some of many chunks) under `dir`; total bytes.
fn folder(dir: &Path, seed: u64) -> u64 {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let mut total = 0;
    for i in 0..12u64 {
        let len = 50_000 + (i as usize * 370_001) % 3_000_000;
        let at = if i % 3 == 0 {
            dir.join("sub")
        } else {
            dir.to_path_buf()
        };
        std::fs::write(at.join(format!("f{i}")), util::random_bytes(seed + i, len)).unwrap();
        total += len as u64;
    }
    total
}

fn size(r: &TestRepo) -> u64 {
    total_size(&r.repo)
}

/// Restores `snap` and compares the source tree `src` with it.
fn restores_exactly(r: &TestRepo, snap: &str, src: &Path) {
    let target = r.dir.path().join(format!("restore-{snap}"));
    r.cmd("restore")
        .arg(snap)
        .arg("--target")
        .arg(&target)
        .assert()
        .success();
    let restored = target.join(src.strip_prefix("/").unwrap());
    let out = std::process::Command::new("diff")
        .arg("-r")
        .arg(src)
        .arg(&restored)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

fn backup(r: &TestRepo, src: &Path) -> (String, serde_json::Value) {
    let (code, sum, err) = r.backup(&[src.as_os_str()]);
    assert_eq!(code, 0, "{err}");
    (sum["snapshot_id"].as_str().unwrap().to_string(), sum)
}

#[test]
fn renamed_and_copied_folders_store_nothing_new() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    let total = folder(&src.join("photos"), 1);
    backup(&r, &src);
    let before = size(&r);
    std::fs::rename(src.join("photos"), src.join("pictures")).unwrap();
    let (renamed, sum) = backup(&r, &src);
    let grew = size(&r) - before;
    eprintln!("renamed folder of {total} bytes: repository grew {grew} bytes");
    assert!(grew * 100 < total, "renamed: grew {grew} of {total}");
    assert_eq!(sum["chunks_added"], 0, "{sum}");
    restores_exactly(&r, &renamed, &src);

    let before = size(&r);
    let copy = std::process::Command::new("cp")
        .arg("-a")
        .arg(src.join("pictures"))
        .arg(src.join("copy"))
        .status()
        .unwrap();
    assert!(copy.success());
    let (copied, _) = backup(&r, &src);
    let grew = size(&r) - before;
    eprintln!("copied folder of {total} bytes: repository grew {grew} bytes");
    assert!(grew * 100 < total, "copied: grew {grew} of {total}");
    restores_exactly(&r, &copied, &src);
}

#[test]
fn identical_files_in_different_folders_store_once() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    let data = util::random_bytes(5, 3 << 20);
    for d in ["a", "b/c", "d"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
        std::fs::write(src.join(d).join("same.bin"), &data).unwrap();
    }
    let (snap, sum) = backup(&r, &src);
    assert_eq!(sum["bytes_added"], data.len(), "{sum}");
    let stored = size(&r);
    assert!(
        stored < data.len() as u64 * 11 / 10,
        "3 copies stored in {stored} bytes"
    );
    restores_exactly(&r, &snap, &src);
}

#[test]
fn compressible_text_stores_smaller_and_compression_off_does_not() {
    let text: Vec<u8> = (0..400_000u32)
        .flat_map(|i| format!("line {i}: the mailbox keeps growing\n").into_bytes())
        .collect();
    for (mode, smaller) in [("auto", true), ("off", false)] {
        let r = TestRepo::init(&["--compression", mode]);
        let src = r.dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("mbox"), &text).unwrap();
        let (snap, sum) = backup(&r, &src);
        let stored = sum["bytes_stored"].as_u64().unwrap();
        eprintln!("{mode}: {} bytes of text stored in {stored}", text.len());
        assert_eq!(stored * 4 < text.len() as u64, smaller, "{mode}: {sum}");
        restores_exactly(&r, &snap, &src);
    }
}

#[test]
fn a_small_rewrite_in_a_large_file_stores_about_the_change() {
    let r = TestRepo::init(&[]);
    let src = r.dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    let image = src.join("disk.img");
    let mut data = util::random_bytes(7, 256 << 20);
    std::fs::write(&image, &data).unwrap();
    backup(&r, &src);
    let before = size(&r);
    // 4 MiB rewritten in the middle.
    let fresh = util::random_bytes(8, 4 << 20);
    data[100 << 20..104 << 20].copy_from_slice(&fresh);
    std::fs::write(&image, &data).unwrap();
    let (snap, sum) = backup(&r, &src);
    let grew = size(&r) - before;
    eprintln!("4 MiB rewritten in 256 MiB: repository grew {grew} bytes ({sum})");
    assert!(grew < 16 << 20, "grew {grew}");
    drop(data);
    restores_exactly(&r, &snap, &src);
}
