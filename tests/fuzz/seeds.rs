//! Seed inputs for every fuzz target, made through the library from the same
//! fixed keys the targets use (so seeds reach past the key checks), plus the
//! official ESDK test vectors' messages for the header target.

use std::path::Path;

use envarc::envelope::{
    context, encrypt_to_vec, CommitmentPolicy, DataKey, EncryptOptions, EncryptionContext,
    Encryptor, Header, KeyProvider, RawAesKey, ReadLimits, Suite,
};
use envarc::keyring::kdf::Kdf;
use envarc::keyring::store::encode_preamble;
use envarc::keyring::Secret;
use envarc::repo::{
    encode_manifest, ChunkId, ChunkRecord, Entry, EntryKind, Id, IndexData, InitOptions, KeyRef,
    KeyVersion, LocalStorage, OuterConfig, PackRecord, Repository, SnapshotMeta, Summary, Time,
    SNAPSHOT_VERSION,
};
use zeroize::Zeroizing;

use crate::targets::{self, put_bytes};

/// Every seed as (target name, input).
pub fn seeds(vectors: Option<&Path>) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let messages = sample_messages();
    for m in &messages {
        out.push(("header", m.clone()));
        for s in edk_inputs(m) {
            out.push(("edk", s));
        }
    }
    if let Some(dir) = vectors {
        for m in vector_messages(dir) {
            out.push(("header", m));
        }
    }
    out.extend(body_seeds().into_iter().map(|s| ("body", s)));
    out.extend(manifest_seeds().into_iter().map(|s| ("manifest", s)));
    out.extend(config_seeds().into_iter().map(|s| ("config", s)));
    let fixed = targets::fixed_keyring();
    let pass_file = passphrase_keyring();
    let cheap = Kdf::Argon2id {
        params: targets::CHEAP_ARGON2,
        salt: vec![7; 16],
    };
    for p in [
        encode_preamble(&Kdf::KeyFile),
        encode_preamble(&cheap),
        fixed.file.clone(),
        pass_file.clone(),
    ] {
        out.push(("keyring_preamble", p));
    }
    let edits = vec![1u8, 0, 7, 0, 42];
    for (mode, body) in [
        (0u8, &fixed.file),
        (1, &fixed.doc),
        (0, &pass_file),
        (2, &edits),
    ] {
        let mut s = vec![mode];
        s.extend_from_slice(body);
        out.push(("keyring_open", s));
    }
    for ctx in [EncryptionContext::new(), targets::sample_context()] {
        let e = fixed
            .keyring
            .encrypt(targets::KEYRING_KEY_ID, b"fuzz blob", &ctx)
            .expect("the fixed key encrypts");
        let mut s = Vec::new();
        put_bytes(&mut s, &e.ciphertext_blob);
        s.extend_from_slice(&context::serialize(&ctx).expect("small"));
        out.push(("blob", s));
    }
    out
}

/// Messages of several shapes: both suites, an empty context, two EDKs, a
/// keyring EDK, an empty plaintext.
fn sample_messages() -> Vec<Vec<u8>> {
    let raw = targets::raw_key();
    let keyring = targets::fixed_keyring()
        .keyring
        .provider(targets::KEYRING_KEY_ID)
        .expect("fixed key");
    let opts = |suite, frame_length, context| EncryptOptions {
        suite,
        frame_length,
        context,
    };
    let aes = Suite::Aes256GcmHkdfSha512Commit;
    let chacha = Suite::ChaCha20Poly1305HkdfSha512Commit;
    let ctx = targets::sample_context();
    let mut out = vec![
        encrypt_to_vec(&raw, &opts(aes, 64, ctx.clone()), b"hello fuzz").expect("encrypts"),
        encrypt_to_vec(&raw, &opts(chacha, 4096, EncryptionContext::new()), b"").expect("encrypts"),
        encrypt_to_vec(&keyring, &opts(aes, 16, ctx.clone()), &[9u8; 40]).expect("encrypts"),
    ];
    let other = RawAesKey::new("other-ns", "other", &[0x33; 16]).expect("16 bytes");
    let dk = DataKey::generate();
    let edks = vec![
        other.wrap(&dk, &ctx).expect("wraps"),
        raw.wrap(&dk, &ctx).expect("wraps"),
    ];
    let mut enc =
        Encryptor::with_data_key(&dk, edks, &opts(aes, 32, ctx), Vec::new()).expect("header");
    std::io::Write::write_all(&mut enc, &[1u8; 100]).expect("writes");
    out.push(enc.finish().expect("finishes").0);
    out
}

/// One edk-target input per EDK of a message: its fields and the context.
fn edk_inputs(message: &[u8]) -> Vec<Vec<u8>> {
    let Ok(p) = Header::parse(message, CommitmentPolicy::default(), &ReadLimits::default()) else {
        return Vec::new();
    };
    p.header
        .edks
        .iter()
        .map(|e| {
            let mut s = Vec::new();
            put_bytes(&mut s, e.provider_id.as_bytes());
            put_bytes(&mut s, &e.provider_info);
            put_bytes(&mut s, &e.ciphertext);
            s.extend_from_slice(&context::serialize(&p.header.context).expect("small"));
            s
        })
        .collect()
}

/// The official vectors' messages, cut to their header and a little more
/// (the header target reads no further).
fn vector_messages(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let Ok(sets) = std::fs::read_dir(dir) else {
        return out;
    };
    let mut files: Vec<_> = sets
        .flatten()
        .filter_map(|set| std::fs::read_dir(set.path().join("ciphertexts")).ok())
        .flat_map(|rd| rd.flatten().map(|e| e.path()))
        .collect();
    files.sort();
    for f in files {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        let keep = Header::parse(
            &bytes,
            CommitmentPolicy::AllowLegacyRead,
            &ReadLimits::default(),
        )
        .map_or(4096, |p| p.total_len + 64);
        out.push(bytes[..keep.min(bytes.len())].to_vec());
    }
    out
}

fn body_seeds() -> Vec<Vec<u8>> {
    let m = targets::fixed_message();
    let mut out = Vec::new();
    for sizes in [&[][..], &[0u8, 3, 15, 200][..]] {
        let mut s = vec![0u8];
        put_bytes(&mut s, sizes);
        s.extend_from_slice(&m.body);
        out.push(s);
    }
    // Mode 1: (plaintext length, frame length - 1, suite, edits).
    for (len, frame, suite, edits) in [
        (300u16, 63u16, 0u8, &[][..]),
        (0, 0, 1, &[][..]),
        (1000, 510, 1, &[0u8, 0, 200, 0, 4][..]),
        (129, 63, 0, &[4u8, 0, 100, 20, 0, 150][..]),
    ] {
        let mut s = vec![1u8];
        put_bytes(&mut s, &[4, 1]);
        s.extend_from_slice(&len.to_be_bytes());
        s.extend_from_slice(&frame.to_be_bytes());
        s.push(suite);
        s.push(if edits.is_empty() { 0 } else { 1 });
        s.extend_from_slice(edits);
        out.push(s);
    }
    out
}

fn manifest_seeds() -> Vec<Vec<u8>> {
    let t = Time {
        sec: 1_700_000_000,
        nsec: 5,
    };
    let entry = |path: &str, kind, content: Option<ChunkId>, link: Option<&str>| Entry {
        path: path.as_bytes().to_vec(),
        kind,
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        mtime: t,
        ctime: t,
        size: 12,
        inode: 42,
        device: 7,
        nlink: 1,
        link_target: link.map(|l| l.as_bytes().to_vec()),
        chunks: content.into_iter().collect(),
    };
    let entries = vec![
        entry("/src", EntryKind::Dir, None, None),
        entry(
            "/src/a.txt",
            EntryKind::File,
            Some(ChunkId([5u8; 32])),
            None,
        ),
        entry("/src/link", EntryKind::Symlink, None, Some("a.txt")),
    ];
    let meta = SnapshotMeta {
        version: SNAPSHOT_VERSION,
        time: t,
        host: "fuzz-host".into(),
        paths: vec![b"/src".to_vec()],
        tags: vec!["nightly".into()],
        parent: Some(Id([3; 32])),
        summary: Summary {
            files: 1,
            dirs: 1,
            symlinks: 1,
            ..Summary::default()
        },
        entries: 0,
    };
    let packs = vec![PackRecord {
        id: Id([1; 32]),
        size: 300,
        chunks: vec![
            ChunkRecord {
                id: ChunkId([5; 32]),
                offset: 0,
                length: 200,
                raw_length: 12,
                key_set: 0,
            },
            ChunkRecord {
                id: ChunkId([6; 32]),
                offset: 200,
                length: 100,
                raw_length: 1,
                key_set: 0,
            },
        ],
    }];
    let key_set = vec![KeyVersion {
        provider: "raw-aes".into(),
        key: "k".into(),
        version: None,
    }];
    let mut m = vec![0u8];
    m.extend_from_slice(&encode_manifest(&meta, &entries));
    let mut empty = vec![0u8];
    empty.extend_from_slice(&encode_manifest(&meta, &[]));
    let mut i = vec![1u8];
    i.extend_from_slice(&IndexData::new(vec![key_set], packs).encode());
    // Mode 2: two backed-up paths, then (kind, path, link target) entries.
    let mut spelled = vec![2u8, 1];
    for p in [&b"/src"[..], b"/other"] {
        targets::put_bytes(&mut spelled, p);
    }
    for (kind, path, target) in [
        (0u8, &b"/src"[..], &b""[..]),
        (1, b"/src/a", b""),
        (2, b"/src/l", b"../../etc"),
        (1, b"/src/l/x", b""),
        (1, b"/src/../etc/passwd", b""),
        (0, b"/other/d", b""),
    ] {
        spelled.push(kind);
        targets::put_bytes(&mut spelled, path);
        targets::put_bytes(&mut spelled, target);
    }
    vec![m, empty, i, spelled]
}

/// Real configs: a raw-key repository and a keyring one, made by `init`.
fn config_seeds() -> Vec<Vec<u8>> {
    let dir = tempfile::tempdir().expect("temp");
    let mut out = Vec::new();
    let keyring = targets::fixed_keyring()
        .keyring
        .provider(targets::KEYRING_KEY_ID)
        .expect("fixed key");
    let raw_ref = KeyRef {
        provider: "raw-aes".parse().unwrap(),
        key: targets::RAW_NAME.into(),
        params: [("namespace".to_string(), targets::RAW_NAMESPACE.to_string())].into(),
    };
    let kr_ref = KeyRef {
        provider: "keyring".parse().unwrap(),
        key: targets::KEYRING_KEY_ID.into(),
        params: Default::default(),
    };
    let providers: Vec<(KeyRef, Box<dyn KeyProvider>)> = vec![
        (raw_ref, Box::new(targets::raw_key())),
        (kr_ref, Box::new(keyring)),
    ];
    for (i, (key, provider)) in providers.into_iter().enumerate() {
        let root = dir.path().join(format!("r{i}"));
        let storage = Box::new(LocalStorage::new(&root));
        Repository::init(storage, vec![key], provider, &InitOptions::default()).expect("init");
        let bytes = std::fs::read(root.join("config")).expect("config");
        // Mode 0: the object; mode 1: a sealed plaintext.
        out.push([&[0u8][..], &bytes].concat());
    }
    let c = OuterConfig::parse(&out[0][1..]).expect("parses").claimed;
    let (mac, gear) = ([1u8; 32].to_vec(), [2u8; 32].to_vec());
    let sealed = serde_json::json!({"config": c, "secrets": {"mac_key": mac, "chunker_key": gear}});
    out.push([&[1u8][..], &serde_json::to_vec(&sealed).expect("json")].concat());
    out
}

/// A keyring locked by [`targets::PASSPHRASE`] with the cheap Argon2 cost.
fn passphrase_keyring() -> Vec<u8> {
    let dir = tempfile::tempdir().expect("temp");
    let path = dir.path().join("keyring");
    let h = targets::keyring_handle(
        path.clone(),
        Secret::Passphrase(Zeroizing::new(targets::PASSPHRASE.to_vec())),
    );
    h.create_or_update(|kr| kr.create_key(Default::default()).map(|_| ()))
        .expect("creates");
    std::fs::read(path).expect("reads")
}
