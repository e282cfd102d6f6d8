//! Damaged repositories: each kind of damage is found by `envarc verify`
//! (structural damage without `--read-data`), named precisely with the files
//! it affects, and `envarc restore` restores every unaffected file while an
//! affected one never appears at its final path (nor any temporary file).

use crate::{repo_support, util};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use envarc::repo::{pack_name, ChunkId, EntryKind, Location};
use repo_support::TestRepo;
use util::tree::temp_files;

struct Stored {
    path: PathBuf,
    /// The file's only chunk (every fixture file is one chunk).
    id: ChunkId,
    loc: Location,
    data: Vec<u8>,
}

struct Fixture {
    r: TestRepo,
    snap: String,
    files: BTreeMap<String, Stored>,
}

impl Fixture {
    /// Eight 5000-byte files packed a few to a pack, two 100 kB files that
    /// each fill a pack, 4 KiB frames; every file is one chunk.
    fn new() -> Fixture {
        let r = TestRepo::init(&["--frame-length", "4096", "--pack-size", "16KiB"]);
        let src = r.dir.path().join("src");
        std::fs::create_dir_all(&src).unwrap();
        let mut data = BTreeMap::new();
        for i in 0..8 {
            data.insert(format!("small{i}"), util::random_bytes(i, 5000));
        }
        for i in 0..2 {
            data.insert(format!("large{i}"), util::random_bytes(100 + i, 100_000));
        }
        for (name, d) in &data {
            std::fs::write(src.join(name), d).unwrap();
        }
        // So that a second backup finds them unchanged (see `settle`).
        repo_support::settle();
        let (code, sum, stderr) = r.backup(&[src.as_os_str()]);
        assert_eq!(code, 0, "{stderr}");
        let snap = sum["snapshot_id"].as_str().unwrap().to_string();
        let files = stored(&r, &snap, &data);
        Fixture { r, snap, files }
    }

    fn get(&self, name: &str) -> &Stored {
        &self.files[name]
    }

    fn pack_path(&self, s: &Stored) -> PathBuf {
        self.r.repo.join(pack_name(&s.loc.pack))
    }
}

/// Where each of `data`'s files is stored in snapshot `snap`.
fn stored(r: &TestRepo, snap: &str, data: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Stored> {
    let repo = r.open();
    let index = repo.load_index().unwrap();
    let id = repo.resolve_snapshot(snap).unwrap();
    let (_, entries) = repo.load_snapshot(&id).unwrap();
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| e.kind == EntryKind::File) {
        let name = e.path().file_name().unwrap().to_string_lossy().into_owned();
        let Some(d) = data.get(&name) else { continue };
        assert_eq!(e.chunks.len(), 1, "{}", e.path().display());
        let mid = e.chunks[0];
        out.insert(
            name,
            Stored {
                path: e.path().to_path_buf(),
                id: mid,
                loc: index.get(&mid).unwrap(),
                data: d.clone(),
            },
        );
    }
    assert_eq!(out.len(), data.len());
    out
}

fn flip(path: &Path, offset: u64) {
    let mut b = std::fs::read(path).unwrap();
    b[offset as usize] ^= 0x01;
    std::fs::write(path, b).unwrap();
}

/// `envarc verify --json ARGS`: exit code and report.
fn verify(r: &TestRepo, args: &[&str]) -> (i32, serde_json::Value) {
    let (code, v, _) = r.json_of("verify", args);
    (code, v)
}

/// Asserts that the report has a problem about message `s`, naming its path,
/// of `class`; returns the problem.
fn assert_message_problem(report: &serde_json::Value, s: &Stored, class: &str) {
    let id = s.id.to_hex();
    let path = s.path.display().to_string();
    let p = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["kind"] == "chunk" && p["id"] == id.as_str())
        .unwrap_or_else(|| panic!("no problem for chunk {id} ({path}) in {report:#}"));
    assert_eq!(p["class"], class, "{p:#}");
    assert_eq!(p["references"][0]["path"], path.as_str(), "{p:#}");
    assert!(p["consequence"].as_str().unwrap().contains(&path), "{p:#}");
}

/// Restores the fixture's snapshot; asserts exit 4, that the files named in
/// `damaged` are absent and every other file is restored intact, and that no
/// temporary file is left.
fn assert_restore_spares_the_rest(fx: &Fixture, snap: &str, damaged: &[&str]) {
    let target =
        fx.r.dir
            .path()
            .join(format!("restore-{}", damaged.join("-")));
    let out =
        fx.r.cmd("restore")
            .arg("--json")
            .arg(snap)
            .arg("--target")
            .arg(&target)
            .output()
            .unwrap();
    let sum: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(4), "{sum:#}");
    assert_eq!(sum["error_count"], damaged.len(), "{sum:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    for (name, s) in &fx.files {
        let at = target.join(s.path.strip_prefix("/").unwrap());
        if damaged.contains(&name.as_str()) {
            assert!(!at.exists(), "{} must not be restored", at.display());
            assert!(stderr.contains(&s.path.display().to_string()), "{stderr}");
        } else {
            assert_eq!(std::fs::read(&at).unwrap(), s.data, "{}", at.display());
        }
    }
    assert_eq!(temp_files(&target), Vec::<PathBuf>::new());
}

#[test]
fn sound_repository_verifies() {
    let fx = Fixture::new();
    let (code, r) = verify(&fx.r, &["--read-data"]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["chunks"], 10);
    assert_eq!(r["chunks_read"], 10);
    assert_eq!(r["bytes_read"], 8 * 5000 + 2 * 100_000);
    assert_eq!(r["unreferenced_chunks"], 0);
    // Subsets: the groups of 1/2 and 2/2 read every message once.
    let (_, a) = verify(&fx.r, &["--read-data-subset", "1/2"]);
    let (_, b) = verify(&fx.r, &["--read-data-subset", "2/2"]);
    let n = a["chunks_read"].as_u64().unwrap() + b["chunks_read"].as_u64().unwrap();
    assert_eq!(n, 10);
    let (code, c) = verify(&fx.r, &["--read-data-subset", "100%"]);
    assert_eq!((code, c["chunks_read"].as_u64()), (0, Some(10)));
    let out =
        fx.r.cmd("verify")
            .arg("--read-data-subset")
            .arg("7/3")
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn flipped_byte_in_packed_message_body() {
    let fx = Fixture::new();
    let s = fx.get("small3");
    flip(&fx.pack_path(s), s.loc.offset + s.loc.length - 100);
    // The header is intact: only reading the data finds it.
    let (code, r) = verify(&fx.r, &[]);
    assert_eq!(code, 0, "{r:#}");
    let (code, r) = verify(&fx.r, &["--read-data"]);
    assert_eq!(code, 4);
    assert_eq!(r["problems"].as_array().unwrap().len(), 1, "{r:#}");
    assert_message_problem(&r, s, "corrupt");
    assert!(r["problems"][0]["error"]
        .as_str()
        .unwrap()
        .contains("failed authentication"));
    // The human report names it too.
    let out = fx.r.cmd("verify").arg("--read-data").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&s.id.to_hex()) && text.contains("cannot be restored"),
        "{text}"
    );
    assert_restore_spares_the_rest(&fx, &fx.snap, &["small3"]);
}

#[test]
fn flipped_byte_in_message_stored_alone() {
    let fx = Fixture::new();
    // A 100 kB chunk fills its pack; where in the pack depends on how the
    // workers met, so the flip is relative to its offset.
    let s = fx.get("large1");
    flip(&fx.pack_path(s), s.loc.offset + 50_000);
    assert_eq!(verify(&fx.r, &[]).0, 0);
    let (code, r) = verify(&fx.r, &["--read-data"]);
    assert_eq!(code, 4);
    assert_message_problem(&r, s, "corrupt");
    assert_restore_spares_the_rest(&fx, &fx.snap, &["large1"]);
}

#[test]
fn flipped_byte_in_message_header_is_structural() {
    let fx = Fixture::new();
    let s = fx.get("small5");
    flip(&fx.pack_path(s), s.loc.offset + 60);
    let (code, r) = verify(&fx.r, &[]);
    assert_eq!(code, 4, "{r:#}");
    assert_message_problem(&r, s, "corrupt");
    assert_restore_spares_the_rest(&fx, &fx.snap, &["small5"]);
}

#[test]
fn flipped_byte_in_snapshot() {
    let fx = Fixture::new();
    let path = fx.r.repo.join("snapshots").join(&fx.snap);
    let len = std::fs::metadata(&path).unwrap().len();
    flip(&path, len / 2);
    let (code, r) = verify(&fx.r, &[]);
    assert_eq!(code, 4);
    let p = &r["problems"][0];
    assert_eq!(
        (p["kind"].as_str(), p["id"].as_str()),
        (Some("snapshot"), Some(fx.snap.as_str()))
    );
    assert!(p["consequence"]
        .as_str()
        .unwrap()
        .contains("cannot be listed or restored"));
    let target = fx.r.dir.path().join("t");
    let out =
        fx.r.cmd("restore")
            .arg(&fx.snap)
            .arg("-t")
            .arg(&target)
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(
        !target.exists(),
        "nothing is written from a damaged snapshot"
    );
}

#[test]
fn flipped_byte_in_index_file() {
    let fx = Fixture::new();
    // A second backup adds two files; its index file is then damaged.
    let src = fx.r.dir.path().join("src");
    let mut more = BTreeMap::new();
    for name in ["added0", "added1"] {
        let d = util::random_bytes(name.len() as u64 + name.as_bytes()[5] as u64, 3000);
        std::fs::write(src.join(name), &d).unwrap();
        more.insert(name.to_string(), d);
    }
    let before = util::dir_names(&fx.r.repo.join("index"));
    let (_, sum, _) = fx.r.backup(&[src.as_os_str()]);
    let snap2 = sum["snapshot_id"].as_str().unwrap().to_string();
    let new_index = util::dir_names(&fx.r.repo.join("index"))
        .into_iter()
        .find(|n| !before.contains(n))
        .unwrap();
    let mut all = fx
        .files
        .iter()
        .map(|(n, s)| (n.clone(), s.data.clone()))
        .collect::<BTreeMap<_, _>>();
    all.extend(more);
    let files = stored(&fx.r, &snap2, &all);
    let path = fx.r.repo.join("index").join(&new_index);
    flip(&path, std::fs::metadata(&path).unwrap().len() - 20);

    let (code, r) = verify(&fx.r, &[]);
    assert_eq!(code, 4);
    let problems = r["problems"].as_array().unwrap();
    assert!(
        problems
            .iter()
            .any(|p| p["kind"] == "index" && p["id"] == new_index.as_str()),
        "{r:#}"
    );
    for name in ["added0", "added1"] {
        assert_message_problem(&r, &files[name], "missing");
    }
    assert_eq!(problems.len(), 3, "{r:#}");
    let fx2 = Fixture {
        r: fx.r,
        snap: snap2.clone(),
        files,
    };
    assert_restore_spares_the_rest(&fx2, &snap2, &["added0", "added1"]);
}

#[test]
fn flipped_byte_in_config() {
    let fx = Fixture::new();
    let path = fx.r.repo.join("config");
    let text = std::fs::read_to_string(&path).unwrap();
    let start = text.find("\"sealed\": \"").unwrap() + 11;
    let end = start + text[start..].find('"').unwrap();
    // Change one base64 digit near the end of the sealed config's message
    // (its final frame), keeping the config valid JSON and valid base64.
    let at = end - 8;
    let mut bytes = text.into_bytes();
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    std::fs::write(&path, bytes).unwrap();
    let (code, r) = verify(&fx.r, &[]);
    assert_eq!(code, 4, "{r:#}");
    assert_eq!(r["problems"][0]["kind"], "config");
    let target = fx.r.dir.path().join("t");
    let out =
        fx.r.cmd("restore")
            .arg("latest")
            .arg("-t")
            .arg(&target)
            .output()
            .unwrap();
    assert_eq!(out.status.code(), Some(4));
    assert!(!target.exists());
}

#[test]
fn deleted_pack() {
    let fx = Fixture::new();
    let s = fx.get("small0");
    let victims: Vec<String> = fx
        .files
        .iter()
        .filter(|(_, o)| o.loc.pack == s.loc.pack)
        .map(|(n, _)| n.clone())
        .collect();
    std::fs::remove_file(fx.pack_path(s)).unwrap();
    let (code, r) = verify(&fx.r, &[]);
    assert_eq!(code, 4);
    for v in &victims {
        assert_message_problem(&r, fx.get(v), "missing");
    }
    assert_eq!(r["problems"].as_array().unwrap().len(), victims.len());
    assert!(r["problems"][0]["error"]
        .as_str()
        .unwrap()
        .contains("missing from data/"));
    let v: Vec<&str> = victims.iter().map(String::as_str).collect();
    assert_restore_spares_the_rest(&fx, &fx.snap, &v);
}

#[test]
fn swapped_chunks_are_caught_by_their_mac() {
    let fx = Fixture::new();
    // Two equal-length chunk messages in one pack trade places: each is a
    // valid message of this repository, at the other's place. Headers stay
    // sound, so reading the data (restore, --read-data) finds it by the MAC.
    let (a, b) = fx
        .files
        .iter()
        .filter(|(n, _)| n.starts_with("small"))
        .flat_map(|(n, s)| fx.files.iter().map(move |(m, t)| (n, s, m, t)))
        .find(|(n, s, m, t)| n < m && s.loc.pack == t.loc.pack && s.loc.length == t.loc.length)
        .map(|(n, _, m, _)| (n.clone(), m.clone()))
        .expect("two small files share a pack");
    let (sa, sb) = (fx.get(&a), fx.get(&b));
    let pack = fx.pack_path(sa);
    let mut bytes = std::fs::read(&pack).unwrap();
    let (oa, ob, len) = (
        sa.loc.offset as usize,
        sb.loc.offset as usize,
        sa.loc.length as usize,
    );
    let ma = bytes[oa..oa + len].to_vec();
    let mb = bytes[ob..ob + len].to_vec();
    bytes[oa..oa + len].copy_from_slice(&mb);
    bytes[ob..ob + len].copy_from_slice(&ma);
    std::fs::write(&pack, bytes).unwrap();
    // And a large file's pack replaced by the other's (same length, when
    // each is alone in its pack).
    let (l0, l1) = (fx.get("large0"), fx.get("large1"));
    let alone = |s: &Stored| {
        fx.files
            .values()
            .filter(|o| o.loc.pack == s.loc.pack)
            .count()
            == 1
    };
    let large_swapped = alone(l0) && alone(l1) && l0.loc.length == l1.loc.length;
    if large_swapped {
        std::fs::copy(fx.pack_path(l1), fx.pack_path(l0)).unwrap();
    }

    let (code, r) = verify(&fx.r, &["--read-data"]);
    assert_eq!(code, 4);
    let mut damaged = vec![sa, sb];
    let mut names = vec![a.as_str(), b.as_str()];
    if large_swapped {
        damaged.push(l0);
        names.push("large0");
    }
    for s in &damaged {
        assert_message_problem(&r, s, "corrupt");
    }
    assert_eq!(
        r["problems"].as_array().unwrap().len(),
        damaged.len(),
        "{r:#}"
    );
    assert!(r["problems"][0]["error"]
        .as_str()
        .unwrap()
        .contains("does not match the chunk ID"));
    assert_restore_spares_the_rest(&fx, &fx.snap, &names);
}

#[test]
fn truncated_pack() {
    let fx = Fixture::new();
    // The pack whose last message belongs to small files; cut 100 bytes.
    let s = fx.get("small1");
    let last = fx
        .files
        .iter()
        .filter(|(_, o)| o.loc.pack == s.loc.pack)
        .max_by_key(|(_, o)| o.loc.offset)
        .map(|(n, _)| n.clone())
        .unwrap();
    let pack = fx.pack_path(s);
    let len = std::fs::metadata(&pack).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&pack)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let (code, r) = verify(&fx.r, &[]);
    assert_eq!(code, 4);
    assert_message_problem(&r, fx.get(&last), "corrupt");
    assert!(r["problems"][0]["error"]
        .as_str()
        .unwrap()
        .contains("truncated"));
    assert_eq!(r["problems"].as_array().unwrap().len(), 1);
    assert_restore_spares_the_rest(&fx, &fx.snap, &[last.as_str()]);
}

#[test]
fn unreferenced_data_is_information_not_an_error() {
    let fx = Fixture::new();
    // A pack no index lists, as an interrupted backup leaves.
    let stray = fx.r.repo.join("data/ab").join("ab".repeat(32));
    std::fs::create_dir_all(stray.parent().unwrap()).unwrap();
    std::fs::write(&stray, b"leftover").unwrap();
    // And a snapshot deleted: its messages are no longer referenced.
    std::fs::remove_file(fx.r.repo.join("snapshots").join(&fx.snap)).unwrap();
    let (code, r) = verify(&fx.r, &[]);
    assert_eq!(code, 0, "{r:#}");
    assert_eq!(r["unreferenced_chunks"], 10);
    assert_eq!(r["unreferenced_packs"][0], "ab".repeat(32));
}
