//! Invariant 5: a restore never writes outside its target. A snapshot crafted
//! through the library holds `..` paths, an absolute path outside the
//! backed-up folder, a path through a symlink entry, and the target holds a
//! symlink where a folder belongs; nothing is written outside the target and
//! every refused entry is named.

use crate::{repo_support, util};

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use envarc::repo::{Entry, EntryKind, SnapshotMeta, Summary, Time, SNAPSHOT_VERSION};
use repo_support::TestRepo;

fn bytes(p: &Path) -> Vec<u8> {
    p.as_os_str().as_bytes().to_vec()
}

fn like(template: &Entry, path: Vec<u8>, kind: EntryKind) -> Entry {
    let mut e = template.clone();
    e.path = path;
    e.kind = kind;
    if kind != EntryKind::File {
        e.chunks = Vec::new();
    }
    e
}

#[test]
fn crafted_paths_never_leave_the_target() {
    let r = TestRepo::init(&[]);
    let tmp = r.dir.path().to_path_buf();
    let src = tmp.join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("ok"), b"fine").unwrap();
    let (code, _, _) = r.backup(&[src.as_os_str()]);
    assert_eq!(code, 0);
    let repo = r.open();
    let id = repo.resolve_snapshot("latest").unwrap();
    let (_, real) = repo.load_snapshot(&id).unwrap();
    let root = real.iter().find(|e| e.kind == EntryKind::Dir).unwrap();
    let file = real.iter().find(|e| e.kind == EntryKind::File).unwrap();

    let outside = tmp.join("outside");
    let outside2 = tmp.join("outside2");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::create_dir_all(&outside2).unwrap();
    let mut dotdot = bytes(&src);
    dotdot.extend_from_slice(&b"/..".repeat(40));
    dotdot.extend_from_slice(&bytes(&tmp.join("escaped-dotdot")));
    let absolute = bytes(&outside.join("abs-x"));
    let mut link = bytes(&src);
    link.extend_from_slice(b"/link");
    let mut through = link.clone();
    through.extend_from_slice(b"/x");
    let mut sub = bytes(&src);
    sub.extend_from_slice(b"/sub");
    let mut in_sub = sub.clone();
    in_sub.extend_from_slice(b"/f");

    let mut link_entry = like(root, link.clone(), EntryKind::Symlink);
    link_entry.link_target = Some(bytes(&outside));
    let entries = vec![
        root.clone(),
        file.clone(),
        like(file, dotdot.clone(), EntryKind::File),
        like(file, absolute.clone(), EntryKind::File),
        link_entry,
        like(file, through.clone(), EntryKind::File),
        like(root, sub.clone(), EntryKind::Dir),
        like(file, in_sub.clone(), EntryKind::File),
    ];
    let meta = SnapshotMeta {
        version: SNAPSHOT_VERSION,
        time: Time::now(),
        host: "crafted".into(),
        paths: vec![bytes(&src)],
        tags: vec![],
        parent: None,
        summary: Summary::default(),
        entries: 0,
    };
    let crafted = repo.save_snapshot(&meta, &entries).unwrap().to_hex();

    // In the target, a symlink where the folder `sub` belongs.
    let target = tmp.join("target");
    let restored_src = target.join(src.strip_prefix("/").unwrap());
    std::fs::create_dir_all(&restored_src).unwrap();
    std::os::unix::fs::symlink(&outside2, restored_src.join("sub")).unwrap();

    for overwrite in ["never", "always"] {
        let out = r
            .cmd("restore")
            .arg("--json")
            .arg(&crafted)
            .arg("--target")
            .arg(&target)
            .arg("--overwrite")
            .arg(overwrite)
            .output()
            .unwrap();
        let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(out.status.code(), Some(4), "{sum:#}");
        let errors = sum["errors"].as_array().unwrap();
        let named = |p: &[u8]| {
            let p = String::from_utf8_lossy(p);
            errors
                .iter()
                .find(|e| e["path"] == p.as_ref())
                .unwrap_or_else(|| panic!("{p} not named in {sum:#}"))
        };
        assert!(named(&dotdot)["cause"].as_str().unwrap().contains("`..`"));
        assert!(named(&absolute)["cause"]
            .as_str()
            .unwrap()
            .contains("outside"));
        assert!(named(&through)["cause"]
            .as_str()
            .unwrap()
            .contains("symlink"));
        if overwrite == "never" {
            // The symlink in the target is left, and not written through.
            assert!(named(&in_sub)["cause"]
                .as_str()
                .unwrap()
                .contains("symlink"));
        }
        assert_eq!(std::fs::read(restored_src.join("ok")).unwrap(), b"fine");
    }
    // `--overwrite always` replaced the symlink in the target by a folder.
    assert!(std::fs::symlink_metadata(restored_src.join("sub"))
        .unwrap()
        .is_dir());
    assert_eq!(std::fs::read(restored_src.join("sub/f")).unwrap(), b"fine");

    // Nothing outside the target, and nothing refused inside it either.
    assert!(util::dir_names(&outside).is_empty());
    assert!(util::dir_names(&outside2).is_empty());
    let mut left: Vec<String> = util::dir_names(&tmp);
    left.retain(|n| !["key", "repo", "src", "target", "outside", "outside2"].contains(&n.as_str()));
    assert!(left.is_empty(), "written outside the target: {left:?}");
    let inside: Vec<PathBuf> = util::tree::describe(&target).into_keys().collect();
    for bad in ["escaped-dotdot", "abs-x", "x"] {
        assert!(
            inside
                .iter()
                .all(|p| p.file_name().is_none_or(|n| n != bad)),
            "{bad} restored: {inside:?}"
        );
    }

    // verify names the same entries as problems of the snapshot.
    let out = r.cmd("verify").arg("--json").output().unwrap();
    assert_eq!(out.status.code(), Some(4));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let refused = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "snapshot" && p["id"] == crafted.as_str())
        .count();
    assert_eq!(refused, 3, "{v:#}");
}
