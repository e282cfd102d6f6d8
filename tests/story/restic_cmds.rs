//! Issue 19: what a restic user reaches for in the first week, through the
//! built binary: `forget SNAP…` and `--keep-within`, `dump`, the `snapshots`
//! filters, `tag` (a new sealed snapshot under a new ID), and `check`.

use std::process::Output;

use crate::support::Story;

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ids(s: &Story, filter: &[&str]) -> Vec<String> {
    let v = s.json(&s.on_repo("snapshots", filter));
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x["id"].as_str().unwrap().to_string())
        .collect()
}

fn snapshot_files(s: &Story) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(s.repo.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn run(s: &Story, sub: &str, args: &[&str]) -> Output {
    s.cmd(&s.on_repo(sub, args)).output().unwrap()
}

#[test]
fn forget_removes_named_snapshots_all_or_nothing() {
    let s = Story::new(&[]);
    s.files("a", 3, 4, 1);
    let (a, _) = s.backup();
    let (b, _) = s.backup();
    let (c, _) = s.backup();
    // Unknown or ambiguous: refused, nothing removed.
    for (spec, says) in [
        ("zz", "no snapshot matches 'zz'"),
        ("", "matches 3 snapshots ("),
    ] {
        let o = run(&s, "forget", &[&a[..8], spec]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains(says), "{}", stderr(&o));
        assert_eq!(ids(&s, &[]).len(), 3);
    }
    // Names and a policy do not mix.
    let o = run(&s, "forget", &[&a[..8], "--keep-last", "1"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not both"), "{}", stderr(&o));
    // A dry run names it and keeps it.
    let out = s.ok(&s.on_repo("forget", &["-n", &a[..8]]));
    assert!(
        out.contains(&format!("would remove snapshot {}", &a[..8])),
        "{out}"
    );
    assert_eq!(ids(&s, &[]).len(), 3);
    let out = s.ok(&s.on_repo("forget", &[&a[..8], &b, &a[..10]]));
    assert!(
        out.contains(&format!("removed snapshot {}", &a[..8])),
        "{out}"
    );
    assert!(
        out.contains(&format!("removed snapshot {}", &b[..8])),
        "{out}"
    );
    assert_eq!(ids(&s, &[]), std::slice::from_ref(&c));
    // With --prune, as the policy form.
    let v = s.json(&s.on_repo("forget", &["latest", "--prune", "--grace", "0"]));
    assert_eq!(v["forget"]["snapshots"][0], c.as_str());
    assert!(v["prune"]["packs_deleted"].as_u64().unwrap() >= 1, "{v}");
    assert!(ids(&s, &[]).is_empty());
}

#[test]
fn keep_within_keeps_recent_snapshots_and_takes_weeks() {
    let s = Story::new(&[]);
    s.files("a", 2, 4, 2);
    s.backup();
    s.backup();
    let v = s.json(&s.on_repo("forget", &["--keep-within", "2w"]));
    let keep = v["forget"]["groups"][0]["keep"].as_array().unwrap();
    assert_eq!(keep.len(), 2, "{v}");
    assert_eq!(keep[1][1][0], "within 14d", "{v}");
    let o = run(&s, "forget", &["--keep-within", "7q"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown unit in '7q'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dump_writes_one_file_and_refuses_folders() {
    let s = Story::new(&[]);
    let body = crate::util::random_bytes(7, 1_500_000);
    std::fs::create_dir_all(s.src.join("d")).unwrap();
    std::fs::write(s.src.join("d/big.bin"), &body).unwrap();
    let (id, _) = s.backup();
    let file = s.src.join("d/big.bin");
    let o = run(&s, "dump", &[&id[..8], file.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(o.stdout == body, "stdout is not the file's contents");
    let out = s.dir.path().join("copy.bin");
    let to = [
        "latest",
        file.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    s.ok(&s.on_repo("dump", &to));
    assert!(std::fs::read(&out).unwrap() == body);
    let o = run(&s, "dump", &to);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("exists; pass --force"),
        "{}",
        stderr(&o)
    );
    let mut forced = to.to_vec();
    forced.push("--force");
    s.ok(&s.on_repo("dump", &forced));
    let o = run(&s, "dump", &["latest", s.src.join("d").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("is a folder in snapshot"),
        "{}",
        stderr(&o)
    );
    let o = run(
        &s,
        "dump",
        &["latest", s.src.join("nope").to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("has no entry at"), "{}", stderr(&o));
    // A damaged chunk: exit 4, and no output file appears.
    for pack in crate::util::tree::files(&s.repo.join("data")) {
        let p = s.repo.join("data").join(pack);
        let mut b = std::fs::read(&p).unwrap();
        for x in &mut b[100..140] {
            *x ^= 0x5a;
        }
        std::fs::write(&p, b).unwrap();
    }
    let fresh = s.dir.path().join("fresh.bin");
    let o = run(
        &s,
        "dump",
        &[
            "latest",
            file.to_str().unwrap(),
            "-o",
            fresh.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(!fresh.exists(), "a failed dump left its output");
}

#[test]
fn snapshots_filter_by_host_tag_and_path() {
    let s = Story::new(&[]);
    s.files("a", 2, 4, 3);
    let src = s.src.to_str().unwrap();
    let other = s.dir.path().join("other");
    std::fs::create_dir(&other).unwrap();
    s.ok(&s.on_repo("backup", &["--host", "h1", "--tag", "a", src]));
    s.ok(&s.on_repo("backup", &["--host", "h2", "--tag", "b", "--tag", "c", src]));
    s.ok(&s.on_repo("backup", &["--host", "h1", other.to_str().unwrap()]));
    assert_eq!(ids(&s, &["--host", "h1"]).len(), 2);
    assert_eq!(ids(&s, &["--host", "h1", "--host", "h2"]).len(), 3);
    assert_eq!(ids(&s, &["--tag", "b,c"]).len(), 1);
    assert_eq!(ids(&s, &["--tag", "a,b"]).len(), 0);
    assert_eq!(ids(&s, &["--tag", "a", "--tag", "b"]).len(), 2);
    assert_eq!(ids(&s, &["--path", src]).len(), 2);
    assert_eq!(ids(&s, &["--path", src, "--host", "h2"]).len(), 1);
    let o = run(&s, "snapshots", &["--host", "nosuch"]);
    assert!(o.status.success());
    assert!(
        stderr(&o).contains("warning: no snapshot matches --host nosuch"),
        "{}",
        stderr(&o)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.trim_end().ends_with("0 snapshots"), "{out}");
}

#[test]
fn tag_writes_a_new_sealed_snapshot_and_removes_the_old() {
    let s = Story::new(&[]);
    s.files("a", 3, 4, 4);
    let (old, _) = s.backup();
    let entries = |id: &str| {
        s.json(&s.on_repo("ls", &[id]))["entries"]
            .as_array()
            .unwrap()
            .len()
    };
    let n = entries(&old);
    let out = s.ok(&s.on_repo("tag", &[&old[..8], "--add", "x", "--add", "y"]));
    let after = ids(&s, &[]);
    assert_eq!(after.len(), 1);
    let new = after[0].clone();
    assert_ne!(new, old, "a tag change must give a new ID");
    assert!(
        out.contains(&format!("{} → {}", &old[..8], &new[..8])),
        "{out}"
    );
    assert_eq!(
        snapshot_files(&s),
        std::slice::from_ref(&new),
        "the old snapshot is left"
    );
    assert_eq!(entries(&new), n);
    let tags = |f: &[&str]| s.json(&s.on_repo("snapshots", f))[0]["tags"].clone();
    assert_eq!(tags(&[]), serde_json::json!(["x", "y"]));
    // The new message is bound to its own name: under the old name it is refused.
    let dir = s.repo.join("snapshots");
    std::fs::copy(dir.join(&new), dir.join(&old)).unwrap();
    let o = run(&s, "ls", &[&old]);
    assert_ne!(
        o.status.code(),
        Some(0),
        "a snapshot opened under another name"
    );
    std::fs::remove_file(dir.join(&old)).unwrap();

    s.ok(&s.on_repo("tag", &["latest", "--remove", "x"]));
    assert_eq!(tags(&[]), serde_json::json!(["y"]));
    s.ok(&s.on_repo("tag", &["--tag", "y", "--set", "z"]));
    assert_eq!(tags(&[]), serde_json::json!(["z"]));
    let before = ids(&s, &[]);
    let out = s.ok(&s.on_repo("tag", &["latest", "--add", "z"]));
    assert!(
        out.contains("changed 0 snapshots; 1 already as asked"),
        "{out}"
    );
    assert_eq!(ids(&s, &[]), before, "an unchanged snapshot was rewritten");
    for (args, says) in [
        (vec!["--add", "q"], "name the snapshots"),
        (
            vec!["--host", "nosuch", "--add", "q"],
            "no snapshot matches --host nosuch",
        ),
        (vec!["latest"], "say what to change"),
    ] {
        let o = run(&s, "tag", &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        assert!(stderr(&o).contains(says), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn check_points_to_verify() {
    let o = crate::util::envarc()
        .args(["check", "-r", "/nowhere", "--read-data"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(
            "envarc has no `check`; use `envarc verify` (add --read-data to read every chunk)"
        ),
        "{}",
        stderr(&o)
    );
}
