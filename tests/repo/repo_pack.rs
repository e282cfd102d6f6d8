//! The storage layer through the library: a chunk message cut out of a
//! pack at the index's offset and length is a complete ESDK message (envarc
//! and, when configured, the official Python SDK decrypt it alone, and zstd
//! decompresses its plaintext to the chunk); packs roll over at the pack
//! size; one GenerateDataKey per file however many chunks it has; the index
//! and snapshots round-trip.
//!
//! The Python cross-check needs ENVARC_ESDK_PYTHON and ENVARC_ESDK_TOOL
//! (tests/interop/esdk_tool.py); unset, it is skipped with a note, except
//! under CI (env `CI` set), where that is a failure.

use crate::{repo_support, util};

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

use envarc::envelope::{
    decrypt_to_vec, DataKey, DecryptOptions, EncryptedDataKey, EncryptionContext, KeyProvider,
    ProviderError, RawAesKey,
};
use envarc::repo::{
    encryption_context, snapshot_name, ChunkId, Compression, Entry, EntryKind, IndexData,
    InitOptions, KeyRef, Kind, LocalStorage, PackWriter, Repository, SnapshotMeta, Summary, Time,
    Unopened, SNAPSHOT_VERSION,
};
use envarc::Error;
use repo_support::{KEY_NAME, NAMESPACE};

fn python() -> Option<(PathBuf, PathBuf)> {
    util::peers::esdk_python("repo_pack")
}

fn key() -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let dir = util::tempdir();
    let (path, material) = util::write_key(dir.path(), "key", 32, 5);
    (dir, path, material)
}

fn raw_ref() -> KeyRef {
    KeyRef {
        provider: "raw-aes".parse().unwrap(),
        key: KEY_NAME.into(),
        params: [("namespace".to_string(), NAMESPACE.to_string())].into(),
    }
}

fn new_repo_with(
    dir: &std::path::Path,
    provider: Box<dyn KeyProvider>,
    pack_size: u64,
) -> Repository {
    let opts = InitOptions {
        frame_length: 1000,
        pack_size,
        ..Default::default()
    };
    let storage = LocalStorage::new(dir.join("repo"));
    Repository::init(Box::new(storage), vec![raw_ref()], provider, &opts).unwrap()
}

fn new_repo(dir: &std::path::Path, material: &[u8], pack_size: u64) -> Repository {
    let provider = RawAesKey::new(NAMESPACE, KEY_NAME, material).unwrap();
    new_repo_with(dir, Box::new(provider), pack_size)
}

/// zstd -d of `frame` (the zstd tool when installed, else the crate).
fn unzstd(frame: &[u8], dir: &std::path::Path) -> Vec<u8> {
    let f = dir.join("frame.zst");
    std::fs::write(&f, frame).unwrap();
    match Command::new("zstd").arg("-dqc").arg(&f).output() {
        Ok(out) if out.status.success() => out.stdout,
        Ok(out) => panic!("zstd -d failed: {}", String::from_utf8_lossy(&out.stderr)),
        Err(_) => zstd::stream::decode_all(frame).unwrap(),
    }
}

#[test]
fn chunk_cut_out_of_a_pack_decrypts_alone() {
    let (dir, key_path, material) = key();
    let repo = new_repo(dir.path(), &material, 1 << 20);
    let text = b"compressible text, compressible text, compressible text\n".repeat(300);
    let payloads: Vec<Vec<u8>> = vec![
        util::random_bytes(1, 1),
        util::random_bytes(2, 999),
        util::random_bytes(3, 12_345),
        text.clone(),
        util::random_bytes(4, 200_000),
    ];
    let fk = repo.file_key(Compression::Auto).unwrap();
    let mut w = PackWriter::new(&repo);
    let mut ids = Vec::new();
    for p in &payloads {
        let id = repo.chunker().id(p);
        let msg = repo.seal_chunk(&fk, p).unwrap();
        if p == &text {
            assert!(msg.len() < p.len() / 4, "compressible text stores smaller");
        }
        w.add(id, &msg, p.len() as u32, 0).unwrap();
        ids.push(id);
    }
    let packs = w.finish().unwrap();
    assert_eq!(packs.len(), 1, "all in one pack");
    repo.save_index(IndexData::new(vec![fk.key_set.clone()], packs))
        .unwrap();

    let index = repo.load_index().unwrap();
    let standalone = RawAesKey::new(NAMESPACE, KEY_NAME, &material).unwrap();
    let opts = DecryptOptions {
        expected_context: encryption_context(&repo.config().id, Kind::Chunk),
        ..Default::default()
    };
    let py = python();
    let mut message_ids = std::collections::HashSet::new();
    for (i, (id, plain)) in ids.iter().zip(&payloads).enumerate() {
        let loc = index.get(id).expect("indexed");
        let pack = dir
            .path()
            .join("repo")
            .join(envarc::repo::pack_name(&loc.pack));
        let bytes = std::fs::read(pack).unwrap();
        let msg = &bytes[loc.offset as usize..(loc.offset + loc.length) as usize];
        let (header, body) = decrypt_to_vec(&standalone, &opts, msg).unwrap();
        assert!(
            message_ids.insert(header.message_id.clone()),
            "a new message ID per chunk"
        );
        assert_eq!(header.context["envarc-compression"], "zstd");
        assert_eq!(&unzstd(&body, dir.path()), plain);
        assert_eq!(repo.read_chunk(&index, id).unwrap(), *plain);

        // Python starts slowly (about 1.5 s): check the text chunk only.
        if let (Some((python, tool)), 3) = (&py, i) {
            let cut = dir.path().join("cut.msg");
            let plain_out = dir.path().join("cut.out");
            std::fs::write(&cut, msg).unwrap();
            let _ = std::fs::remove_file(&plain_out);
            let out = Command::new(python)
                .arg(tool)
                .args(["decrypt", "--key-file"])
                .arg(&key_path)
                .args(["--namespace", NAMESPACE, "--name", KEY_NAME])
                .args([
                    "-c",
                    "envarc-kind=chunk",
                    "-c",
                    "envarc-compression=zstd",
                    "-c",
                ])
                .arg(format!("envarc-repo={}", repo.config().id))
                .arg(&cut)
                .arg(&plain_out)
                .output()
                .unwrap();
            crate::util::assert_success(&out);
            let frame = std::fs::read(&plain_out).unwrap();
            assert_eq!(&unzstd(&frame, dir.path()), plain);
        }
    }
    // Read from the wrong place, or under another ID, a chunk is refused.
    let mut loc = index.get(&ids[2]).unwrap();
    assert!(repo
        .read_chunk_at(&loc, &ids[1])
        .unwrap_err()
        .to_string()
        .contains("does not match the chunk ID"));
    loc.length -= 1;
    assert_eq!(
        repo.read_chunk_at(&loc, &ids[2]).unwrap_err().exit_code(),
        4
    );
}

#[test]
fn packs_roll_over_at_the_pack_size() {
    let (dir, _, material) = key();
    let repo = new_repo(dir.path(), &material, 10_000);
    let fk = repo.file_key(Compression::Off).unwrap();
    let mut w = PackWriter::new(&repo);
    for i in 0..5u64 {
        let p = util::random_bytes(10 + i, 6000);
        w.add(
            repo.chunker().id(&p),
            &repo.seal_chunk(&fk, &p).unwrap(),
            6000,
            0,
        )
        .unwrap();
    }
    let packs = w.finish().unwrap();
    assert_eq!(packs.len(), 3, "two chunks fill a pack of 10,000 bytes");
    assert!(packs
        .iter()
        .all(|p| p.size == p.chunks.iter().map(|c| u64::from(c.length)).sum::<u64>()));
}

/// A raw key that counts GenerateDataKey calls.
struct Counting {
    inner: RawAesKey,
    generated: AtomicUsize,
}

impl KeyProvider for Counting {
    fn generate_data_key(
        &self,
        c: &EncryptionContext,
    ) -> Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
        self.generated.fetch_add(1, Ordering::SeqCst);
        self.inner.generate_data_key(c)
    }
    fn decrypt_data_key(
        &self,
        e: &[EncryptedDataKey],
        c: &EncryptionContext,
    ) -> Result<DataKey, ProviderError> {
        self.inner.decrypt_data_key(e, c)
    }
}

#[test]
fn one_generate_data_key_per_file_with_new_content() {
    let (dir, _, material) = key();
    let counting = std::sync::Arc::new(Counting {
        inner: RawAesKey::new(NAMESPACE, KEY_NAME, &material).unwrap(),
        generated: AtomicUsize::new(0),
    });
    struct Shared(std::sync::Arc<Counting>);
    impl KeyProvider for Shared {
        fn generate_data_key(
            &self,
            c: &EncryptionContext,
        ) -> Result<(DataKey, Vec<EncryptedDataKey>), ProviderError> {
            self.0.generate_data_key(c)
        }
        fn decrypt_data_key(
            &self,
            e: &[EncryptedDataKey],
            c: &EncryptionContext,
        ) -> Result<DataKey, ProviderError> {
            self.0.decrypt_data_key(e, c)
        }
    }
    let repo = new_repo_with(dir.path(), Box::new(Shared(counting.clone())), 1 << 24);
    let src = dir.path().join("src");
    std::fs::create_dir_all(&src).unwrap();
    // 24 MiB: about 24 chunks in one file (and two batches); two small files;
    // one copy of a small file (no new content).
    std::fs::write(src.join("big"), util::random_bytes(7, 24 << 20)).unwrap();
    std::fs::write(src.join("a"), util::random_bytes(8, 5000)).unwrap();
    std::fs::write(src.join("b"), util::random_bytes(9, 7000)).unwrap();
    std::fs::write(src.join("a-copy"), util::random_bytes(8, 5000)).unwrap();
    let before = counting.generated.load(Ordering::SeqCst); // the sealed config
    let opts = envarc::backup::BackupOptions {
        paths: vec![src.clone()],
        ..Default::default()
    };
    let r = envarc::backup::backup(&repo, &opts, &envarc::progress::Silent).unwrap();
    let calls = counting.generated.load(Ordering::SeqCst) - before;
    // The snapshot and the index file are one message each.
    assert_eq!(calls, 3 + 2, "{:?}", r.summary);
    assert_eq!(r.summary.data_keys, 3);
    assert!(r.summary.chunks_added > 10, "{:?}", r.summary);
    assert_eq!(r.summary.chunks_deduplicated, 1);
}

#[test]
fn snapshots_round_trip_and_resolve() {
    let (dir, _, material) = key();
    let repo = new_repo(dir.path(), &material, 1 << 20);
    let entry = |p: &[u8], kind| Entry {
        path: p.to_vec(),
        kind,
        mode: 0o644,
        uid: 1,
        gid: 2,
        mtime: Time { sec: -5, nsec: 7 },
        ctime: Time {
            sec: 1 << 40,
            nsec: 999_999_999,
        },
        size: 3,
        inode: 4,
        device: 5,
        nlink: 1,
        link_target: (kind == EntryKind::Symlink).then(|| b"t\xff".to_vec()),
        chunks: if kind == EntryKind::File {
            vec![ChunkId([9u8; 32])]
        } else {
            Vec::new()
        },
    };
    let entries = vec![
        entry(b"/r", EntryKind::Dir),
        entry(b"/r/\xfe\xff", EntryKind::File),
        entry(b"/r/l", EntryKind::Symlink),
    ];
    let meta = |sec| SnapshotMeta {
        version: SNAPSHOT_VERSION,
        time: Time { sec, nsec: 0 },
        host: "h".into(),
        paths: vec![b"/r".to_vec()],
        tags: vec!["t".into()],
        parent: None,
        summary: Summary {
            files: 1,
            ..Default::default()
        },
        entries: 0,
    };
    let old = repo.save_snapshot(&meta(100), &entries).unwrap();
    let new = repo.save_snapshot(&meta(200), &[]).unwrap();
    let (m, e) = repo.load_snapshot(&old).unwrap();
    assert_eq!(e, entries);
    assert_eq!(m.entries, 3);
    assert_eq!(repo.resolve_snapshot("latest").unwrap(), new);
    assert_eq!(repo.resolve_snapshot(&old.to_hex()[..12]).unwrap(), old);
    let listed: Vec<_> = repo
        .snapshots()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(listed, vec![old, new]);
    // A snapshot file cut short: the metadata may still list, loading fails.
    let path = dir.path().join("repo").join(snapshot_name(&old));
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    assert!(repo.load_snapshot(&old).is_err());
    repo.delete_snapshot(&new).unwrap();
    assert_eq!(repo.list_snapshots().unwrap(), vec![old]);
    // The config names the key; a wrong key does not open the repository.
    let wrong = RawAesKey::new(NAMESPACE, KEY_NAME, &[1u8; 32]).unwrap();
    let unopened = Unopened::read(Box::new(LocalStorage::new(dir.path().join("repo")))).unwrap();
    assert!(matches!(
        unopened.open(Box::new(wrong)),
        Err(Error::Key { .. })
    ));
}
