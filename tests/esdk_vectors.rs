//! Every message of the official ESDK decrypt test vectors (vendored in
//! fixtures/esdk-vectors, see its README): committing messages, signed (0x0578)
//! or not (0x0478), decrypt to their plaintext; must-fail cases fail;
//! non-committing 0x0178 messages are refused by default and decrypt in the
//! explicit legacy mode; signed non-committing 0x0378 messages are refused in
//! both modes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use envarc::envelope::{decrypt_to_vec, CommitmentPolicy, DecryptOptions, Error, RawAesKey};
use serde_json::Value;

fn vectors_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = std::env::var_os("ENVARC_ESDK_VECTORS")
        .map(PathBuf::from)
        .unwrap_or_else(|| here.join("fixtures/esdk-vectors"));
    assert!(
        root.is_dir(),
        "ESDK vectors not found at {} (set ENVARC_ESDK_VECTORS)",
        root.display()
    );
    root
}

fn file_url(dir: &Path, url: &str) -> PathBuf {
    dir.join(url.strip_prefix("file://").expect("file:// URL"))
}

struct Case {
    name: String,
    ciphertext: Vec<u8>,
    key: RawAesKey,
    context: BTreeMap<String, String>,
    expected: Option<Vec<u8>>,
}

fn load_set(dir: &Path) -> Vec<Case> {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    let keys_url = manifest["keys"].as_str().unwrap();
    let keys: Value =
        serde_json::from_slice(&std::fs::read(file_url(dir, keys_url)).unwrap()).unwrap();
    let mut cases = Vec::new();
    for (name, t) in manifest["tests"].as_object().unwrap() {
        let mk = &t["master-keys"][0];
        assert_eq!(
            mk["type"], "raw",
            "{name}: only raw AES vectors are stored here"
        );
        let key_id = mk["key"].as_str().unwrap();
        let key = &keys["keys"][key_id];
        let material = base64::engine::general_purpose::STANDARD
            .decode(key["material"].as_str().unwrap())
            .unwrap();
        let key_name = key["key-id"].as_str().unwrap_or(key_id);
        let context = t["encryption-context"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let expected = t["result"]["output"]["plaintext"]
            .as_str()
            .map(|u| std::fs::read(file_url(dir, u)).unwrap());
        cases.push(Case {
            name: format!("{}/{name}", dir.file_name().unwrap().to_string_lossy()),
            ciphertext: std::fs::read(file_url(dir, t["ciphertext"].as_str().unwrap())).unwrap(),
            key: RawAesKey::new(mk["provider-id"].as_str().unwrap(), key_name, &material).unwrap(),
            context,
            expected,
        });
    }
    cases
}

fn all_cases() -> Vec<Case> {
    let root = vectors_root();
    let mut sets: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("manifest.json").is_file())
        .collect();
    sets.sort();
    assert!(
        sets.len() >= 3,
        "expected at least three vector sets under {}",
        root.display()
    );
    sets.iter().flat_map(|d| load_set(d)).collect()
}

fn suite_of(ct: &[u8]) -> u16 {
    match ct[0] {
        1 => u16::from_be_bytes([ct[2], ct[3]]),
        _ => u16::from_be_bytes([ct[1], ct[2]]),
    }
}

#[test]
fn every_vector_behaves_as_its_manifest_says() {
    let cases = all_cases();
    let (mut ok, mut refused, mut legacy_ok, mut must_fail) = (0, 0, 0, 0);
    let (mut signed_ok, mut signed_refused) = (0, 0);
    for c in &cases {
        let suite = suite_of(&c.ciphertext);
        let opts = DecryptOptions {
            expected_context: c.context.clone(),
            ..Default::default()
        };
        let strict = decrypt_to_vec(&c.key, &opts, &c.ciphertext);
        match (&c.expected, suite) {
            (Some(_), 0x0178) => {
                assert!(
                    matches!(strict, Err(Error::NonCommittingSuite(0x0178))),
                    "{}: 0x0178 must be refused by default",
                    c.name
                );
                refused += 1;
                let legacy = DecryptOptions {
                    policy: CommitmentPolicy::AllowLegacyRead,
                    ..opts.clone()
                };
                let (_, pt) = decrypt_to_vec(&c.key, &legacy, &c.ciphertext)
                    .unwrap_or_else(|e| panic!("{}: legacy read failed: {e}", c.name));
                assert_eq!(&pt, c.expected.as_ref().unwrap(), "{}", c.name);
                legacy_ok += 1;
            }
            (Some(_), 0x0378) => {
                assert!(
                    matches!(strict, Err(Error::SignedSuite(0x0378))),
                    "{}: 0x0378 must be refused",
                    c.name
                );
                let legacy = DecryptOptions {
                    policy: CommitmentPolicy::AllowLegacyRead,
                    ..opts.clone()
                };
                assert!(
                    matches!(
                        decrypt_to_vec(&c.key, &legacy, &c.ciphertext),
                        Err(Error::SignedSuite(0x0378))
                    ),
                    "{}: 0x0378 is refused in legacy mode too",
                    c.name
                );
                signed_refused += 1;
            }
            (Some(expected), _) => {
                let (_, pt) = strict.unwrap_or_else(|e| panic!("{}: {e}", c.name));
                assert_eq!(&pt, expected, "{}", c.name);
                ok += 1;
                signed_ok += usize::from(suite == 0x0578);
            }
            (None, _) => {
                assert!(strict.is_err(), "{}: must fail but decrypted", c.name);
                let legacy = DecryptOptions {
                    policy: CommitmentPolicy::AllowLegacyRead,
                    ..opts.clone()
                };
                assert!(
                    decrypt_to_vec(&c.key, &legacy, &c.ciphertext).is_err(),
                    "{}: must fail in legacy mode too",
                    c.name
                );
                must_fail += 1;
            }
        }
    }
    eprintln!("vectors: {ok} decrypted ({signed_ok} signed 0x0578), {refused} non-committing refused ({legacy_ok} read in legacy mode), {signed_refused} signed non-committing refused, {must_fail} must-fail failed");
    assert!(
        ok >= 100 && signed_ok >= 48 && refused >= 60 && signed_refused >= 2 && must_fail >= 6,
        "too few vectors exercised"
    );
}
