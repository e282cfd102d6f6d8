//! The fuzz targets: one function per parser of bytes that come from outside
//! (a file, a repository, another process). Each takes arbitrary bytes, must
//! never panic, hang or allocate without bound, and checks what must hold
//! when the parser accepts the input (round trips, authenticity). They run
//! under libFuzzer (`tests/fuzz`, see `.ci/fuzz.sh`) and, replaying the seed
//! corpus and every saved crash under `fixtures/fuzz/<target>/`, in the normal
//! test suite (`tests/envelope/fuzz_replay.rs`).
//!
//! Inputs of the structure-aware targets start with a mode byte and are read
//! through [`Input`], which never fails: missing bytes read as zero.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use envarc::envelope::{
    context, decrypt_to_vec, encrypt_to_vec, raw_aes, CommitmentPolicy, DecryptOptions, Decryptor,
    EncryptOptions, EncryptedDataKey, EncryptionContext, Error as EnvError, Header, KeyProvider,
    RawAesKey, ReadLimits, Suite,
};
use envarc::keyring::store::{encode_preamble, parse_preamble};
use envarc::keyring::{
    blob, cmk, kdf::Kdf, Argon2Params, FixedClock, FixedSecret, Keyring, KeyringFile,
    KeyringOptions, Secret,
};
use envarc::repo::{
    config::{compare, decode_sealed},
    decode_manifest, encode_manifest, ChunkId, Entry, EntryKind, Index, IndexData, OuterConfig,
    SnapshotMeta, Time,
};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// A fuzz target: takes any bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// Every target, by the name `.ci/fuzz.sh` and `fixtures/fuzz/<name>/` use.
pub const TARGETS: &[(&str, Target)] = &[
    ("header", header),
    ("edk", edk),
    ("body", body),
    ("manifest", manifest),
    ("config", config),
    ("keyring_preamble", keyring_preamble),
    ("keyring_open", keyring_open),
    ("blob", blob_target),
];

/// Runs the target called `name` on `data`; `false` if there is none.
pub fn run(name: &str, data: &[u8]) -> bool {
    match TARGETS.iter().find(|(n, _)| *n == name) {
        Some((_, f)) => {
            f(data);
            true
        }
        None => false,
    }
}

/// Reads structure out of fuzz bytes; past the end, everything is zero.
pub struct Input<'a>(pub &'a [u8]);

impl<'a> Input<'a> {
    pub fn u8(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    pub fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }
    /// A length-prefixed (u16) slice, cut short where the input ends.
    pub fn bytes(&mut self) -> &'a [u8] {
        let n = (self.u16() as usize).min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }
    pub fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// Appends a slice the way [`Input::bytes`] reads it (for building seeds).
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u16).to_be_bytes());
    out.extend_from_slice(b);
}

// ---- fixed keys and messages, shared by targets and seeds ------------------

pub const RAW_NAMESPACE: &str = "fuzz-ns";
pub const RAW_NAME: &str = "fuzz-key";
pub const RAW_MATERIAL: [u8; 32] = [0x11; 32];
/// The key file that locks the fixed keyring.
pub const KEY_FILE: [u8; 32] = [0x42; 32];
pub const PASSPHRASE: &[u8] = b"fuzz passphrase";
/// The one key of the fixed keyring (its material is fixed too).
pub const KEYRING_KEY_ID: &str = "11111111-2222-4333-8444-555555555555";
/// Argon2id cost of the fuzzed passphrase keyrings: cheap, so an execution
/// stays fast; recorded costs above this are parsed but not derived.
pub const CHEAP_ARGON2: Argon2Params = Argon2Params {
    m_kib: 8,
    t: 1,
    p: 1,
};

pub fn raw_key() -> RawAesKey {
    RawAesKey::new(RAW_NAMESPACE, RAW_NAME, &RAW_MATERIAL).expect("valid fixed key")
}

pub fn sample_context() -> EncryptionContext {
    let mut c = EncryptionContext::new();
    c.insert("envarc-repo".into(), "fuzz".into());
    c.insert("envarc-kind".into(), "object".into());
    c
}

/// A folder for the files the keyring targets write: in memory where /dev/shm
/// exists. Kept for the life of the process.
pub fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new("/dev/shm");
        let b = tempfile::Builder::new()
            .prefix("envarc-fuzz.")
            .tempdir_in(if base.is_dir() {
                base
            } else {
                Path::new("/tmp")
            });
        b.or_else(|_| tempfile::tempdir())
            .expect("a scratch folder")
    })
    .path()
}

/// A keyring file as the documented format has it: preamble (key-file KDF),
/// then `doc` encrypted under the key file with the preamble's hash in the
/// encryption context.
pub fn keyring_file_bytes(doc: &[u8]) -> Vec<u8> {
    let preamble = encode_preamble(&Kdf::KeyFile);
    let key = RawAesKey::new("envarc-keyring", "key-file", &KEY_FILE).expect("32 bytes");
    let opts = EncryptOptions {
        context: keyring_context(&preamble),
        ..Default::default()
    };
    let mut out = preamble;
    out.extend_from_slice(&encrypt_to_vec(&key, &opts, doc).expect("encrypts"));
    out
}

fn keyring_context(preamble: &[u8]) -> EncryptionContext {
    let mut ctx = EncryptionContext::new();
    ctx.insert("envarc-kind".into(), "keyring".into());
    ctx.insert(
        "envarc-keyring-preamble".into(),
        hex::encode(Sha256::digest(preamble)),
    );
    ctx
}

/// 2030-01-01T00:00:00Z: every fuzzed keyring is opened at this time.
pub fn fixed_now() -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(1_893_456_000).expect("in range")
}

/// A handle on the keyring file at `path`, unlocked by `secret`.
pub fn keyring_handle(path: PathBuf, secret: Secret) -> KeyringFile {
    KeyringFile::new(KeyringOptions {
        path,
        unlocker: Arc::new(FixedSecret(secret)),
        clock: Arc::new(FixedClock::new(fixed_now())),
        argon2: CHEAP_ARGON2,
        lock_timeout: Duration::from_secs(5),
    })
}

/// The fixed keyring: its JSON document, its file, and the keyring loaded.
pub struct FixedKeyring {
    pub doc: Vec<u8>,
    pub file: Vec<u8>,
    pub keyring: Keyring,
}

/// Made once per process: a keyring created through the library (a key with
/// an alias, automatic rotation and an on-demand rotation, and an HMAC key),
/// with its key id and materials then replaced by fixed values so that seeds
/// written by one process hold EDKs and blobs another process can open.
pub fn fixed_keyring() -> &'static FixedKeyring {
    static K: OnceLock<FixedKeyring> = OnceLock::new();
    K.get_or_init(|| {
        let dir = scratch_dir().join("fixed");
        std::fs::create_dir_all(&dir).expect("scratch");
        let path = dir.join("keyring");
        let _ = std::fs::remove_file(&path);
        let h = keyring_handle(path.clone(), Secret::KeyFile(Zeroizing::new(KEY_FILE)));
        h.create_or_update(|kr| {
            let id = kr.create_key(envarc::keyring::CreateKey {
                description: "fuzz".into(),
                alias: Some("alias/fuzz".into()),
                rotation_period_days: Some(90),
                ..Default::default()
            })?;
            kr.rotate_on_demand(&id.to_string())?;
            kr.create_key(envarc::keyring::CreateKey {
                key_spec: envarc::keyring::KeySpec::Hmac256,
                ..Default::default()
            })?;
            Ok(())
        })
        .expect("creates the fixed keyring");
        let bytes = std::fs::read(&path).expect("reads it back");
        let (_, at) = parse_preamble(&path, &bytes).expect("own preamble");
        let key = RawAesKey::new("envarc-keyring", "key-file", &KEY_FILE).expect("32 bytes");
        let opts = DecryptOptions {
            expected_context: keyring_context(&bytes[..at]),
            ..Default::default()
        };
        let (_, doc) = decrypt_to_vec(&key, &opts, &bytes[at..]).expect("own keyring");
        let mut v: serde_json::Value = serde_json::from_slice(&doc).expect("JSON");
        let mut ids = Vec::new();
        let keys = v["keys"].as_array_mut().expect("keys");
        for (i, k) in keys.iter_mut().enumerate() {
            // Key i gets the fixed id with its last digit raised by i.
            let id = format!("{}{}", &KEYRING_KEY_ID[..35], 5 + i);
            ids.push((
                k["key_id"].as_str().expect("key id").to_string(),
                id.clone(),
            ));
            k["key_id"] = id.into();
            for b in k["backing_keys"].as_array_mut().expect("backing keys") {
                let fill = (0x20 * (i as u8 + 1)) + b["version"].as_u64().expect("v") as u8;
                b["material"] = base64_of(&[fill; 32]).into();
            }
        }
        for (_, target) in v["aliases"].as_object_mut().expect("aliases").iter_mut() {
            if let Some((_, new)) = ids.iter().find(|(old, _)| target.as_str() == Some(old)) {
                *target = new.as_str().into();
            }
        }
        let doc = serde_json::to_vec(&v).expect("JSON");
        let file = keyring_file_bytes(&doc);
        std::fs::write(&path, &file).expect("writes the fixed keyring");
        let keyring = h.load().expect("the fixed keyring opens");
        FixedKeyring { doc, file, keyring }
    })
}

fn base64_of(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// A framed message under [`raw_key`] with a small frame length (several
/// frames), split into header and body: the fixed prefix of the body target.
pub struct FixedMessage {
    pub header: Vec<u8>,
    pub body: Vec<u8>,
    pub plaintext: Vec<u8>,
}

pub fn fixed_message() -> &'static FixedMessage {
    static M: OnceLock<FixedMessage> = OnceLock::new();
    M.get_or_init(|| {
        let plaintext: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        let opts = EncryptOptions {
            frame_length: 64,
            context: sample_context(),
            ..Default::default()
        };
        let msg = encrypt_to_vec(&raw_key(), &opts, &plaintext).expect("encrypts");
        let p = Header::parse(&msg, CommitmentPolicy::default(), &ReadLimits::default())
            .expect("own header");
        FixedMessage {
            header: msg[..p.total_len].to_vec(),
            body: msg[p.total_len..].to_vec(),
            plaintext,
        }
    })
}

// ---- the targets ------------------------------------------------------------

fn same_header(a: &Header, b: &Header) {
    assert_eq!(a.suite, b.suite);
    assert_eq!(a.message_id, b.message_id);
    assert_eq!(a.context, b.context);
    assert_eq!(a.edks, b.edks);
    assert_eq!(a.content_type, b.content_type);
    assert_eq!(a.frame_length, b.frame_length);
    assert_eq!(a.commitment, b.commitment);
    assert_eq!(a.auth_iv, b.auth_iv);
    assert_eq!(a.auth_tag, b.auth_tag);
}

/// `Header::parse` (both commitment policies) and `context::parse`. Accepted:
/// the header serializes back to fields that parse the same, byte for byte
/// when its context was in canonical order, and every prefix is `Truncated`.
pub fn header(data: &[u8]) {
    let limits = ReadLimits::default();
    for policy in [
        CommitmentPolicy::RequireCommitment,
        CommitmentPolicy::AllowLegacyRead,
    ] {
        let Ok(p) = Header::parse(data, policy, &limits) else {
            continue;
        };
        assert!(p.authenticated_len < p.total_len && p.total_len <= data.len());
        assert!(p.header.edks.len() <= limits.max_edks);
        assert!(p.header.frame_length <= limits.max_frame_length);
        if policy == CommitmentPolicy::RequireCommitment {
            assert!(p.header.suite.is_committing());
        }
        for e in &p.header.edks {
            let _ = e.describe();
        }
        let mut bytes = p
            .header
            .serialize_authenticated()
            .expect("a parsed header serializes");
        bytes.extend_from_slice(&p.header.serialize_auth());
        let again = Header::parse(&bytes, policy, &limits).expect("re-parses");
        same_header(&p.header, &again.header);
        assert_eq!(again.total_len, bytes.len());
        if context_bytes_sorted(&data[..p.total_len], &p.header) {
            assert_eq!(
                bytes,
                data[..p.total_len],
                "a canonical header re-serializes exactly"
            );
        }
        for n in [0, p.total_len / 2, p.total_len - 1] {
            assert!(
                matches!(
                    Header::parse(&data[..n], policy, &limits),
                    Err(EnvError::Truncated)
                ),
                "a prefix of {n} bytes of an accepted header is Truncated"
            );
        }
    }
    if let Ok(ctx) = context::parse(data) {
        let bytes = context::serialize(&ctx).expect("a parsed context serializes");
        assert_eq!(context::parse(&bytes).expect("re-parses"), ctx);
        assert!(bytes.len() <= data.len());
    }
}

/// Whether the context in a header's bytes is exactly its canonical (sorted)
/// serialization; only then must the header re-serialize byte for byte.
fn context_bytes_sorted(bytes: &[u8], h: &Header) -> bool {
    let id_end = if h.version() == 2 {
        1 + 2 + 32
    } else {
        1 + 1 + 2 + 16
    };
    let Some(len) = bytes.get(id_end..id_end + 2) else {
        return false;
    };
    let len = u16::from_be_bytes([len[0], len[1]]) as usize;
    match (
        bytes.get(id_end + 2..id_end + 2 + len),
        context::serialize(&h.context),
    ) {
        (Some(stored), Ok(canonical)) => stored == canonical.as_slice(),
        _ => false,
    }
}

/// EDK parsing: `raw_aes::key_name_of`, `describe`, the raw AES key's and the
/// keyring provider's unwrap of an arbitrary EDK under an arbitrary context,
/// and `cmk::parse_key_name`. Input: provider ID, provider info, ciphertext
/// (each u16-length-prefixed), then a serialized encryption context.
pub fn edk(data: &[u8]) {
    let mut u = Input(data);
    let edk = EncryptedDataKey {
        provider_id: String::from_utf8_lossy(u.bytes()).into_owned(),
        provider_info: u.bytes().to_vec(),
        ciphertext: u.bytes().to_vec(),
    };
    let ctx = context::parse(u.rest()).unwrap_or_else(|_| sample_context());
    let _ = edk.describe();
    if let Some(name) = raw_aes::key_name_of(&edk.provider_info) {
        assert_eq!(name.len() + 20, edk.provider_info.len());
        assert!(edk.provider_info.starts_with(name.as_bytes()));
        if let Some((id, v)) = cmk::parse_key_name(name) {
            assert_eq!(cmk::key_name(&id, v), name, "key names are canonical");
        }
    }
    let raw = raw_key();
    let edks = std::slice::from_ref(&edk);
    if let Ok(k) = raw.unwrap(&edk, &ctx) {
        // Only a real EDK (from a seed) unwraps: wrapping that key again and
        // unwrapping gives the same key.
        let again = raw.wrap(&k, &ctx).expect("wraps");
        assert_eq!(
            raw.unwrap(&again, &ctx).expect("unwraps").expose(),
            k.expose()
        );
    }
    let _ = raw.decrypt_data_key(edks, &ctx);
    let kr = &fixed_keyring().keyring;
    if let Ok(k) = kr.decrypt_provider().decrypt_data_key(edks, &ctx) {
        assert_eq!(edk.provider_id, envarc::keyring::PROVIDER_ID);
        let p = kr.provider(KEYRING_KEY_ID).expect("fixed key");
        let again = p.wrap_data_key(&k, &ctx).expect("wraps");
        let back = p.decrypt_data_key(&again, &ctx).expect("unwraps");
        assert_eq!(back.expose(), k.expose());
    }
    if let Ok(p) = kr.provider(KEYRING_KEY_ID) {
        let _ = p.only_this_key().decrypt_data_key(edks, &ctx);
    }
    // Transit EDKs: what `stats`, `rewrap` and decryption read from them.
    let _ = envarc::providers::edk_version(&edk);
    if let Some(k) = envarc::providers::edk_key(&edk) {
        assert_eq!(edk.provider_id, envarc::providers::TRANSIT_PROVIDER_ID);
        assert!(!k.name.is_empty() && !k.name.contains('/'));
        assert!(edk.provider_info.ends_with(k.name.as_bytes()));
    }
    let _ = envarc::providers::transit::derivation_context(&ctx);
}

/// A reader that hands out input in chunks of the sizes it is given, to
/// drive the decryptor's buffering through every boundary.
struct Chunky<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    at: usize,
}

impl Read for Chunky<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let size = if self.sizes.is_empty() {
            out.len()
        } else {
            self.sizes[self.at % self.sizes.len()]
        };
        self.at += 1;
        let n = size.min(out.len()).min(self.data.len());
        out[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// Decrypts `message` reading it in chunks and the plaintext through `Read`
/// with small buffers; `Err` on any failure.
fn decrypt_chunky(
    provider: &dyn KeyProvider,
    opts: &DecryptOptions,
    message: &[u8],
    sizes: Vec<usize>,
) -> Result<Vec<u8>, String> {
    let src = Chunky {
        data: message,
        sizes,
        at: 0,
    };
    let mut dec = Decryptor::new(provider, opts, src).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    let mut buf = [0u8; 37];
    loop {
        match dec.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) => return Err(e.to_string()),
        }
    }
    assert!(dec.next_frame().expect("done stays done").is_none());
    Ok(out)
}

/// The framed body reader. Mode 0: a fixed valid header, then the input as
/// the body. Mode 1: a message made from the input (plaintext length, frame
/// length, cipher), then altered by the input's edits (flip, cut, insert,
/// delete, duplicate). Either way the input is read in chunks of input-chosen
/// sizes. Oracle: decryption succeeds only for the unaltered message, and
/// then yields exactly its plaintext.
pub fn body(data: &[u8]) {
    let mut u = Input(data);
    let mode = u.u8() % 2;
    let sizes: Vec<usize> = u.bytes().iter().map(|b| 1 + *b as usize).collect();
    let opts = DecryptOptions {
        expected_context: sample_context(),
        ..Default::default()
    };
    if mode == 0 {
        let m = fixed_message();
        let body = u.rest();
        let mut msg = m.header.clone();
        msg.extend_from_slice(body);
        if let Ok(plain) = decrypt_chunky(&raw_key(), &opts, &msg, sizes) {
            assert_eq!(body, m.body.as_slice(), "only the real body authenticates");
            assert_eq!(plain, m.plaintext);
        }
        return;
    }
    let len = (u.u16() % 2048) as usize;
    let frame_length = 1 + (u.u16() % 512) as u32;
    let suite = if u.u8() & 1 == 0 {
        Suite::Aes256GcmHkdfSha512Commit
    } else {
        Suite::ChaCha20Poly1305HkdfSha512Commit
    };
    let plaintext: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31)).collect();
    let enc = EncryptOptions {
        suite,
        frame_length,
        context: sample_context(),
    };
    let original = encrypt_to_vec(&raw_key(), &enc, &plaintext).expect("encrypts");
    let mut msg = original.clone();
    for _ in 0..(u.u8() % 4) {
        let op = u.u8() % 5;
        let at = u.u16() as usize % (msg.len() + 1);
        let n = 1 + u.u8() as usize;
        let end = (at + n).min(msg.len());
        match op {
            0 if at < msg.len() => msg[at] ^= 1 | u.u8(),
            1 => msg.truncate(at),
            2 => msg.insert(at, u.u8()),
            3 => {
                msg.drain(at..end);
            }
            _ => {
                let piece = msg[at..end].to_vec();
                let to = u.u16() as usize % (msg.len() + 1);
                msg.splice(to..to, piece);
            }
        }
    }
    match decrypt_chunky(&raw_key(), &opts, &msg, sizes) {
        Ok(plain) => {
            assert!(msg == original, "an altered message decrypted");
            assert_eq!(plain, plaintext);
        }
        Err(_) => assert!(msg != original, "the unaltered message must decrypt"),
    }
}

/// Manifest (mode 0) and index (mode 1) plaintext decoding. Accepted: encoding
/// the result and decoding that gives the same values, and restore's checks
/// (invariant 5) pass only entries it can write safely. Mode 2: a manifest
/// whose paths and kinds the input spells out directly (a byte mutator
/// rarely keeps postcard's length prefixes right), through the same checks.
pub fn manifest(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 3 == 0 {
        if let Ok((meta, entries)) = decode_manifest(rest) {
            assert_eq!(meta.entries, entries.len() as u64);
            for e in &entries {
                let _ = e.path();
            }
            let _ = meta.time.to_rfc3339();
            let bytes = encode_manifest(&meta, &entries);
            let (m2, e2) = decode_manifest(&bytes).expect("re-decodes");
            assert_eq!((&m2, &e2), (&meta, &entries));
            restore_checks(&meta, &entries);
        }
    } else if mode % 3 == 2 {
        let (meta, entries) = spelled_manifest(rest);
        restore_checks(&meta, &entries);
    } else if let Ok(data) = IndexData::decode(rest) {
        let bytes = data.encode();
        assert_eq!(IndexData::decode(&bytes).expect("re-decodes"), data);
        let index = Index::from_files(vec![(envarc::repo::Id([0; 32]), data.clone())]);
        for p in &data.packs {
            for c in &p.chunks {
                let loc = index.get(&c.id).expect("a listed chunk is found");
                assert!(loc.offset + loc.length <= p.size, "within its pack");
            }
        }
    }
}

/// A manifest from `[path count] path... [entry kind, path, link target]...`
/// (u16-length-prefixed byte strings).
fn spelled_manifest(data: &[u8]) -> (SnapshotMeta, Vec<Entry>) {
    let mut u = Input(data);
    let paths = (0..1 + u.u8() % 3).map(|_| u.bytes().to_vec()).collect();
    let mut entries = Vec::new();
    while !u.0.is_empty() && entries.len() < 64 {
        let kind = match u.u8() % 3 {
            0 => EntryKind::Dir,
            1 => EntryKind::File,
            _ => EntryKind::Symlink,
        };
        let path = u.bytes().to_vec();
        let target = u.bytes().to_vec();
        entries.push(Entry {
            path,
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: Time::default(),
            ctime: Time::default(),
            size: 0,
            inode: entries.len() as u64,
            device: 1,
            nlink: 1,
            link_target: (kind == EntryKind::Symlink).then_some(target),
            chunks: if kind == EntryKind::File {
                vec![ChunkId([0; 32])]
            } else {
                Vec::new()
            },
        });
    }
    let meta = SnapshotMeta {
        version: envarc::repo::SNAPSHOT_VERSION,
        time: Time::default(),
        host: "fuzz".into(),
        paths,
        tags: Vec::new(),
        parent: None,
        summary: Default::default(),
        entries: entries.len() as u64,
    };
    (meta, entries)
}

/// Restore's plan checks: an entry they let through has an absolute, clean
/// path at or below a backed-up path, and no accepted entry lies below
/// another accepted entry that is a file or a symlink.
fn restore_checks(meta: &SnapshotMeta, entries: &[Entry]) {
    use envarc::repo::manifest as plan;
    let refused = plan::check_entries(meta, entries);
    let ok: Vec<bool> = (0..entries.len())
        .map(|i| !refused.iter().any(|r| r.idx == i))
        .collect();
    for (i, e) in entries.iter().enumerate().filter(|(i, _)| ok[*i]) {
        let comps = plan::components(&e.path).expect("an accepted path splits");
        assert!(
            comps
                .iter()
                .all(|c| !c.is_empty() && *c != b"." && *c != b".."),
            "entry {i}: an accepted path is clean"
        );
        let under = |p: &Vec<u8>| {
            e.path == *p
                || p.as_slice() == b"/"
                || (e.path.starts_with(p) && e.path.get(p.len()) == Some(&b'/'))
        };
        assert!(
            meta.paths.iter().any(under),
            "entry {i}: below a backed-up path"
        );
        for (j, o) in entries.iter().enumerate() {
            if ok[j] && j != i && o.kind != EntryKind::Dir {
                let below = e.path.starts_with(&o.path) && e.path.get(o.path.len()) == Some(&b'/');
                assert!(!below, "entry {i} lies below the {:?} entry {j}", o.kind);
            }
        }
    }
}

/// The config parsers. Mode 0: the config object (clear JSON): accepted
/// means its claimed settings are within what `init` writes, and opening its
/// sealed copy with a fixed raw key either fails or gives a config equal to
/// the clear one. Mode 1: a sealed plaintext: accepted means its settings
/// are valid, it compares equal to its own clear form, and any change to a
/// field of that clear form is refused.
pub fn config(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        let Ok(outer) = OuterConfig::parse(rest) else {
            return;
        };
        let c = &outer.claimed;
        assert!(c.check().is_ok() && c.suite().is_ok());
        assert!((1..=envarc::repo::MAX_FRAME_LENGTH).contains(&c.frame_length));
        let _ = c.describe_keys();
        let _ = c.fingerprint();
        let key = envarc::repo::PolicyProvider::new(Box::new(raw_key()), c.policy());
        if let Ok((sealed, _secrets)) = outer.open(&key) {
            assert_eq!(&sealed, c, "an opened config equals its clear fields");
        }
        return;
    }
    let Ok((c, _secrets)) = decode_sealed(rest) else {
        return;
    };
    assert!(c.check().is_ok());
    let serde_json::Value::Object(clear) = serde_json::to_value(&c).expect("serializes") else {
        panic!("a config is an object")
    };
    assert!(compare(&clear, &c).is_ok());
    for name in clear.keys() {
        let mut edited = clear.clone();
        edited.insert(name.clone(), serde_json::Value::Bool(true));
        let e = compare(&edited, &c).expect_err("an edit is refused");
        assert!(
            e.to_string().contains(name.as_str()),
            "the edit names the field"
        );
    }
}

/// The keyring preamble. Accepted: it is exactly the encoding of what it
/// parsed to, and its cost parameters are within bounds.
pub fn keyring_preamble(data: &[u8]) {
    if let Ok((kdf, at)) = parse_preamble(Path::new("<fuzz>"), data) {
        assert!(at <= data.len());
        assert_eq!(
            encode_preamble(&kdf),
            data[..at],
            "the preamble is canonical"
        );
    }
}

/// The whole open path of a keyring file, through `KeyringFile::load`. Mode
/// 0: the input is the file (unlocked with the fixed key file, or the fixed
/// passphrase if its preamble says so and its Argon2 cost is cheap). Mode 1:
/// the input is the JSON document, sealed as a valid keyring file first, so
/// that the fuzzer reaches the document checks. Mode 2: the fixed keyring's
/// document with fields set to values the input chooses (see
/// [`edit_document`]), sealed the same way. Opened: every usable key wraps
/// and unwraps a data key, and maintenance far ahead does not fail.
pub fn keyring_open(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (file, secret) = if mode % 3 == 2 {
        let doc = edit_document(&fixed_keyring().doc, rest);
        (
            keyring_file_bytes(&doc),
            Secret::KeyFile(Zeroizing::new(KEY_FILE)),
        )
    } else if mode % 3 == 0 {
        let secret = match parse_preamble(Path::new("<fuzz>"), rest) {
            Ok((Kdf::Argon2id { params, .. }, _)) => {
                if params.m_kib > 64 || params.t > 2 || params.p > 1 {
                    return; // parsed; deriving would only cost time
                }
                Secret::Passphrase(Zeroizing::new(PASSPHRASE.to_vec()))
            }
            Ok((Kdf::KeyFile, _)) => Secret::KeyFile(Zeroizing::new(KEY_FILE)),
            Err(_) => Secret::KeyFile(Zeroizing::new(KEY_FILE)),
        };
        (rest.to_vec(), secret)
    } else {
        (
            keyring_file_bytes(rest),
            Secret::KeyFile(Zeroizing::new(KEY_FILE)),
        )
    };
    let path = scratch_dir().join(format!("open-{}", std::process::id()));
    std::fs::write(&path, &file).expect("scratch write");
    let Ok(kr) = keyring_handle(path, secret).load() else {
        return;
    };
    let ctx = sample_context();
    for k in kr.keys() {
        let id = k.key_id.to_string();
        let _ = kr.next_rotation(k);
        let _ = k.last_rotation();
        if let Ok(p) = kr.provider(&id) {
            let (dk, edks) = p.generate_data_key(&ctx).expect("a usable key wraps");
            let back = kr
                .decrypt_provider()
                .decrypt_data_key(&edks, &ctx)
                .expect("and unwraps");
            assert_eq!(back.expose(), dk.expose());
        }
    }
    let mut kr = kr;
    let _ = kr.maintain(fixed_now() + time::Duration::days(3650));
}

/// Structure-aware edits of a JSON document: each edit picks one of its
/// fields (objects' members and arrays' items, depth first) and sets it to a
/// number, a string, a date, `null`, or removes it. A byte mutator would
/// rarely turn a valid document into another valid-looking one.
pub fn edit_document(doc: &[u8], edits: &[u8]) -> Vec<u8> {
    fn paths(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, c) in m {
                    let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(p.clone());
                    paths(c, p, out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, c) in a.iter().enumerate() {
                    let p = format!("{at}/{i}");
                    out.push(p.clone());
                    paths(c, p, out);
                }
            }
            _ => {}
        }
    }
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(doc) else {
        return doc.to_vec();
    };
    let mut u = Input(edits);
    for _ in 0..1 + u.u8() % 4 {
        let mut all = Vec::new();
        paths(&v, String::new(), &mut all);
        if all.is_empty() {
            break;
        }
        let p = all[u.u16() as usize % all.len()].clone();
        let new = match u.u8() % 6 {
            0 => serde_json::Value::from(u.u8()),
            1 => {
                let b = [
                    u.u8(),
                    u.u8(),
                    u.u8(),
                    u.u8(),
                    u.u8(),
                    u.u8(),
                    u.u8(),
                    u.u8(),
                ];
                serde_json::Value::from(i64::from_be_bytes(b))
            }
            2 => serde_json::Value::from(String::from_utf8_lossy(u.bytes()).into_owned()),
            3 => {
                let year = -9999 + (u.u16() % 20000) as i32;
                serde_json::Value::from(format!(
                    "{}{:04}-{:02}-{:02}T{:02}:00:00Z",
                    if year < 0 { "-" } else { "" },
                    year.abs(),
                    1 + u.u8() % 12,
                    1 + u.u8() % 31,
                    u.u8() % 24
                ))
            }
            4 => serde_json::Value::Null,
            _ => {
                let (parent, last) = p.rsplit_once('/').expect("paths start with /");
                match v.pointer_mut(parent) {
                    Some(serde_json::Value::Object(m)) => {
                        m.remove(&last.replace("~1", "/").replace("~0", "~"));
                    }
                    Some(serde_json::Value::Array(a)) => {
                        if let Ok(i) = last.parse::<usize>() {
                            if i < a.len() {
                                a.remove(i);
                            }
                        }
                    }
                    _ => {}
                }
                continue;
            }
        };
        if let Some(slot) = v.pointer_mut(&p) {
            *slot = new;
        }
    }
    serde_json::to_vec(&v).expect("JSON")
}

/// The small-payload ciphertext blob: `key_of`, `open` with fixed material,
/// and the keyring's `decrypt` and `re_encrypt` (input: the blob, then a
/// serialized context). Decrypted: re-encrypting and decrypting round-trips.
pub fn blob_target(data: &[u8]) {
    let mut u = Input(data);
    let b = u.bytes();
    let ctx = context::parse(u.rest()).unwrap_or_default();
    let _ = blob::key_of(b);
    let _ = blob::open(&[0x21; 32], b, &ctx);
    let kr = &fixed_keyring().keyring;
    if let Ok(d) = kr.decrypt(b, &ctx, None) {
        let e = kr
            .encrypt(&d.key_id.to_string(), &d.plaintext, &ctx)
            .expect("the same key encrypts");
        let again = kr
            .decrypt(&e.ciphertext_blob, &ctx, None)
            .expect("decrypts");
        assert_eq!(again.plaintext, d.plaintext);
    }
    let _ = kr.decrypt(b, &ctx, Some("alias/fuzz"));
    let _ = kr.re_encrypt(b, &ctx, KEYRING_KEY_ID, &ctx);
}
