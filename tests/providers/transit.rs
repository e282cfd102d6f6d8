//! The OpenBao / Vault transit key provider against a real OpenBao dev server
//! (tests/util/bao.rs), through the built binary and through the library.
//! One server is shared by the tests of this binary (each test uses its own
//! key names); the sealed and TLS cases start their own.

use crate::{bao, util};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use assert_cmd::Command;
use envarc::envelope::{
    decrypt_to_vec, encrypt_to_vec, open_header, CommitmentPolicy, DecryptOptions, EncryptOptions,
    EncryptedDataKey, EncryptionContext, Encryptor, KeyProvider, ProviderError, RawAesKey,
    ReadLimits,
};
use envarc::providers::{edk_version, TransitConfig, TransitProvider};
use predicates::prelude::*;
use zeroize::Zeroizing;

use bao::{find_bao, Bao};

static SERVER: OnceLock<Option<Bao>> = OnceLock::new();

/// The shared dev server with transit enabled, or `None` to skip.
fn server(test: &str) -> Option<&'static Bao> {
    SERVER
        .get_or_init(|| {
            let b = Bao::start(&find_bao(test)?, false);
            b.enable_transit("transit");
            Some(b)
        })
        .as_ref()
}

/// `envarc` with a clean environment: no ambient Vault/OpenBao settings, no
/// proxies, HOME in `home` (so no ~/.vault-token), and the server's address
/// and token when given.
fn envarc(bao: Option<&Bao>, home: &Path) -> Command {
    let mut c = util::envarc();
    c.env("HOME", home);
    if let Some(b) = bao {
        c.env("BAO_ADDR", &b.addr).env("BAO_TOKEN", &b.token);
    }
    c
}

fn provider(b: &Bao, key: Option<&str>) -> TransitProvider {
    let cfg = TransitConfig::new(&b.addr, Zeroizing::new(b.token.clone()), None).unwrap();
    TransitProvider::new(cfg, key).unwrap()
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The transit versions of the EDKs in a message file's header.
fn versions(path: &Path) -> Vec<Option<u32>> {
    let mut f = std::fs::File::open(path).unwrap();
    let p = open_header(
        &mut f,
        CommitmentPolicy::RequireCommitment,
        &ReadLimits::default(),
    )
    .unwrap();
    p.header.edks.iter().map(edk_version).collect()
}

/// A scratch folder (also HOME for envarc) with a plaintext file in it.
struct Scratch {
    dir: tempfile::TempDir,
    input: PathBuf,
    data: Vec<u8>,
}

fn scratch() -> Scratch {
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let input = dir.path().join("plain.bin");
    std::fs::write(&input, &data).unwrap();
    Scratch { dir, input, data }
}

impl Scratch {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `envarc encrypt --key transit:KEY INPUT [-o OUT]`.
    fn encrypt(&self, b: Option<&Bao>, key: &str, out: Option<&Path>) -> Command {
        let mut c = envarc(b, self.dir.path());
        c.args(["encrypt", "--key", &format!("transit:{key}")])
            .arg(&self.input);
        if let Some(o) = out {
            c.arg("-o").arg(o);
        }
        c
    }

    /// `envarc decrypt MESSAGE` (no key: transit picks itself).
    fn decrypt(&self, b: Option<&Bao>, message: &Path) -> Command {
        let mut c = envarc(b, self.dir.path());
        c.arg("decrypt").arg(message);
        c
    }
}

#[test]
fn cli_round_trip_needs_no_key_to_decrypt() {
    let Some(b) = server("cli_round_trip") else {
        return;
    };
    b.create_key("rt", true);
    let t = scratch();
    let enc = t.path("m.enc");
    t.encrypt(Some(b), "rt", Some(&enc))
        .args(["-c", "purpose=test"])
        .assert()
        .success();
    assert_eq!(versions(&enc), [Some(1)]);
    let out = t.path("m.out");
    t.decrypt(Some(b), &enc)
        .args(["--json", "-c", "purpose=test", "-o"])
        .arg(&out)
        .assert()
        .success()
        .stdout(predicate::str::contains("envarc-transit:transit/rt"));
    assert_eq!(std::fs::read(&out).unwrap(), t.data);
    // stdin to stdout works the same.
    let got = envarc(Some(b), t.dir.path())
        .arg("decrypt")
        .pipe_stdin(&enc)
        .unwrap()
        .assert()
        .success();
    assert_eq!(got.get_output().stdout, t.data);
}

#[test]
fn rotation_keeps_old_messages_and_new_ones_use_the_new_version() {
    let Some(b) = server("rotation") else { return };
    b.create_key("rot", true);
    let t = scratch();
    let (old, new) = (t.path("old.enc"), t.path("new.enc"));
    t.encrypt(Some(b), "rot", Some(&old)).assert().success();
    b.rotate("rot");
    t.encrypt(Some(b), "rot", Some(&new)).assert().success();
    assert_eq!(versions(&old), [Some(1)]);
    assert_eq!(versions(&new), [Some(2)]);
    for m in [&old, &new] {
        let got = t.decrypt(Some(b), m).assert().success();
        assert_eq!(got.get_output().stdout, t.data);
    }
}

#[test]
fn a_different_encryption_context_is_rejected_by_transit() {
    let Some(b) = server("context_mismatch") else {
        return;
    };
    b.create_key("ctx", true);
    let p = provider(b, Some("ctx"));
    let right = ctx(&[("repo", "r1"), ("kind", "object")]);
    let wrong = ctx(&[("repo", "r2"), ("kind", "object")]);
    let (key, edks) = p.generate_data_key(&right).unwrap();
    assert_eq!(
        p.decrypt_data_key(&edks, &right).unwrap().expose(),
        key.expose()
    );
    for bad in [wrong, EncryptionContext::new()] {
        match p.decrypt_data_key(&edks, &bad) {
            Err(ProviderError::UnwrapFailed { key }) => assert!(key.contains("'ctx'"), "{key}"),
            Err(e) => panic!("expected an unwrap failure, got: {e}"),
            Ok(_) => panic!("transit unwrapped the data key under another encryption context"),
        }
    }
}

#[test]
fn non_derived_keys_are_refused_for_wrapping() {
    let Some(b) = server("non_derived") else {
        return;
    };
    b.create_key("plain", false);
    let t = scratch();
    let out = t.path("m.enc");
    t.encrypt(Some(b), "plain", Some(&out))
        .assert()
        .code(5)
        .stderr(predicate::str::contains("'plain'").and(predicate::str::contains("derived=true")));
    assert!(!out.exists(), "a failed encrypt left its output behind");
}

#[test]
fn min_decryption_version_above_a_message_fails_clearly() {
    let Some(b) = server("min_decryption_version") else {
        return;
    };
    b.create_key("mdv", true);
    let t = scratch();
    let (old, new) = (t.path("old.enc"), t.path("new.enc"));
    t.encrypt(Some(b), "mdv", Some(&old)).assert().success();
    b.rotate("mdv");
    b.rotate("mdv");
    t.encrypt(Some(b), "mdv", Some(&new)).assert().success();
    b.configure_key("mdv", serde_json::json!({"min_decryption_version": 3}));
    let out = t.path("old.out");
    t.decrypt(Some(b), &old)
        .arg("-o")
        .arg(&out)
        .assert()
        .code(5)
        .stderr(
            predicate::str::contains("'mdv'")
                .and(predicate::str::contains("version v1"))
                .and(predicate::str::contains("min_decryption_version (now 3)"))
                .and(predicate::str::contains(&b.addr)),
        );
    assert!(!out.exists(), "a failed decrypt left its output behind");
    let got = t.decrypt(Some(b), &new).assert().success();
    assert_eq!(got.get_output().stdout, t.data);
}

fn header_of(message: &[u8]) -> envarc::envelope::Header {
    open_header(
        &mut &message[..],
        CommitmentPolicy::RequireCommitment,
        &ReadLimits::default(),
    )
    .unwrap()
    .header
}

/// What rewrap does with a message: its data key, unwrapped by `old`, wrapped
/// anew by `new_edks`, and the plaintext in a new message (new message ID)
/// under it. No header is ever tagged twice.
fn reseal(
    old: &dyn KeyProvider,
    opts: &DecryptOptions,
    enc_opts: &EncryptOptions,
    message: &[u8],
    new_edks: impl FnOnce(
        &[EncryptedDataKey],
        &envarc::envelope::DataKey,
        &EncryptionContext,
    ) -> Result<Vec<EncryptedDataKey>, ProviderError>,
) -> Vec<u8> {
    let header = header_of(message);
    let key = old.decrypt_data_key(&header.edks, &header.context).unwrap();
    let edks = new_edks(&header.edks, &key, &header.context).unwrap();
    let (_, plain) = decrypt_to_vec(old, opts, message).unwrap();
    let mut enc = Encryptor::with_data_key(&key, edks, enc_opts, Vec::new()).unwrap();
    std::io::Write::write_all(&mut enc, &plain).unwrap();
    enc.finish().unwrap().0
}

#[test]
fn rewrap_moves_old_messages_to_the_newest_version_on_the_server() {
    let Some(b) = server("rewrap") else { return };
    b.create_key("rw", true);
    let p = provider(b, Some("rw"));
    let enc_opts = EncryptOptions {
        context: ctx(&[("repo", "r1")]),
        ..EncryptOptions::default()
    };
    let message = encrypt_to_vec(&p, &enc_opts, b"old data").unwrap();
    b.rotate("rw");
    b.rotate("rw");
    let opts = DecryptOptions::default();
    let rewrapped = reseal(&p, &opts, &enc_opts, &message, |edks, _key, ctx| {
        p.rewrap_edks(edks, ctx)
    });
    let header = header_of(&rewrapped);
    let got: Vec<_> = header.edks.iter().map(edk_version).collect();
    assert_eq!(got, [Some(3)]);
    assert_ne!(
        header.message_id,
        header_of(&message).message_id,
        "a rewrapped message is a new message"
    );

    b.configure_key(
        "rw",
        serde_json::json!({"min_decryption_version": 3, "auto_rotate_period": "24h"}),
    );
    assert_eq!(
        decrypt_to_vec(&p, &opts, &rewrapped).unwrap().1,
        b"old data"
    );
    match decrypt_to_vec(&p, &opts, &message) {
        Err(e) => assert!(e.to_string().contains("version v1"), "{e}"),
        Ok(_) => panic!("a v1 data key decrypted above min_decryption_version"),
    }
    // What `stats` would show.
    let info = p.key_info(&p.wrapping_key().unwrap()).unwrap();
    assert_eq!((info.latest_version, info.min_decryption_version), (3, 3));
    assert_eq!(info.auto_rotate_period_secs, 24 * 3600);
    assert!(info.derived);
}

#[test]
fn a_raw_key_message_moves_to_transit_through_wrap_data_key() {
    let Some(b) = server("raw_to_transit") else {
        return;
    };
    b.create_key("mv", true);
    let raw = RawAesKey::new("envarc", "old", &[9u8; 32]).unwrap();
    let p = provider(b, Some("mv"));
    let enc_opts = EncryptOptions {
        context: ctx(&[("kind", "object")]),
        ..EncryptOptions::default()
    };
    let message = encrypt_to_vec(&raw, &enc_opts, b"moving").unwrap();
    let opts = DecryptOptions::default();
    let moved = reseal(&raw, &opts, &enc_opts, &message, |_, key, ctx| {
        p.wrap_data_key(key, ctx)
    });
    assert_eq!(
        header_of(&moved).edks[0].describe(),
        "envarc-transit:transit/mv"
    );
    assert_eq!(decrypt_to_vec(&p, &opts, &moved).unwrap().1, b"moving");
    assert!(decrypt_to_vec(&raw, &opts, &moved).is_err());
}

#[test]
fn bad_token_is_a_key_error_that_never_shows_the_token() {
    let Some(b) = server("bad_token") else { return };
    b.create_key("tok", true);
    let t = scratch();
    let secret = "hvs.this-token-must-never-be-printed";
    let assert = t
        .encrypt(Some(b), "tok", None)
        .env("BAO_TOKEN", secret)
        .assert()
        .code(5)
        .stderr(
            predicate::str::contains("permission denied")
                .and(predicate::str::contains("'tok'"))
                .and(predicate::str::contains(&b.addr)),
        );
    let stderr = String::from_utf8_lossy(&assert.get_output().stderr).to_string();
    assert!(
        !stderr.contains(secret) && !stderr.contains(&b.token),
        "{stderr}"
    );
}

#[test]
fn missing_key_and_missing_mount_name_what_to_create() {
    let Some(b) = server("missing_key") else {
        return;
    };
    let t = scratch();
    t.encrypt(Some(b), "nosuchkey", None)
        .assert()
        .code(5)
        .stderr(
            predicate::str::contains("'nosuchkey'")
                .and(predicate::str::contains("does not exist"))
                .and(predicate::str::contains("derived=true")),
        );
    t.encrypt(Some(b), "k", None)
        .args(["--transit-mount", "nosuchmount"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains(
            "no transit engine is mounted at 'nosuchmount'",
        ));
}

#[test]
fn many_threads_share_one_provider() {
    let Some(b) = server("many_threads") else {
        return;
    };
    b.create_key("conc", true);
    let p = provider(b, Some("conc"));
    let c = ctx(&[("kind", "object")]);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..10 {
                    let (key, edks) = p.generate_data_key(&c).unwrap();
                    let back = p.decrypt_data_key(&edks, &c).unwrap();
                    assert_eq!(back.expose(), key.expose());
                }
            });
        }
    });
}

#[test]
fn sealed_server_is_a_clear_key_error() {
    let Some(bin) = find_bao("sealed_server") else {
        return;
    };
    let b = Bao::start(&bin, false);
    b.enable_transit("transit");
    b.create_key("sealme", true);
    let t = scratch();
    let enc = t.path("m.enc");
    t.encrypt(Some(&b), "sealme", Some(&enc)).assert().success();
    b.seal();
    let sealed = || {
        predicate::str::contains("is sealed")
            .and(predicate::str::contains("'sealme'"))
            .and(predicate::str::contains(&b.addr))
    };
    t.decrypt(Some(&b), &enc).assert().code(5).stderr(sealed());
    t.encrypt(Some(&b), "sealme", None)
        .assert()
        .code(5)
        .stderr(sealed());
}

#[test]
fn tls_server_needs_its_ca_file() {
    let Some(bin) = find_bao("tls_server") else {
        return;
    };
    let b = Bao::start(&bin, true);
    b.enable_transit("transit");
    b.create_key("tls", true);
    let ca = b.ca_file.clone().unwrap();
    let t = scratch();
    let enc = t.path("m.enc");
    t.encrypt(Some(&b), "tls", Some(&enc))
        .assert()
        .code(1)
        .stderr(predicate::str::contains("TLS").and(predicate::str::contains("--transit-ca-file")));
    t.encrypt(Some(&b), "tls", Some(&enc))
        .arg("--transit-ca-file")
        .arg(&ca)
        .assert()
        .success();
    let got = t
        .decrypt(Some(&b), &enc)
        .env("BAO_CACERT", &ca)
        .assert()
        .success();
    assert_eq!(got.get_output().stdout, t.data);
}

// ---- No server needed: these run everywhere. --------------------------------

#[test]
fn server_down_is_a_network_error_after_bounded_retries() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("http://127.0.0.1:{port}");
    let t = scratch();
    let started = Instant::now();
    t.encrypt(None, "k", None)
        .env("BAO_ADDR", &addr)
        .env("BAO_TOKEN", "t")
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains(&addr)
                .and(predicate::str::contains("connection refused"))
                .and(predicate::str::contains("tried 3 times"))
                .and(predicate::str::contains("'k'")),
        );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_server_that_never_answers_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    // Accept and hold connections without answering.
    std::thread::spawn(move || {
        let held: Vec<_> = listener.incoming().take(8).collect();
        std::thread::sleep(Duration::from_secs(30));
        drop(held);
    });
    let t = scratch();
    let started = Instant::now();
    t.encrypt(None, "k", None)
        .env("BAO_ADDR", &addr)
        .env("BAO_TOKEN", "t")
        .args(["--transit-timeout", "1"])
        .assert()
        .code(1)
        .stderr(
            predicate::str::contains("did not answer within 1 s")
                .and(predicate::str::contains(&addr)),
        );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn missing_address_or_token_is_a_usage_error() {
    let t = scratch();
    t.encrypt(None, "k", None)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("BAO_ADDR"));
    t.encrypt(None, "k", None)
        .env("VAULT_ADDR", "http://127.0.0.1:1")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("BAO_TOKEN").and(predicate::str::contains("bao login")));
    envarc(None, t.dir.path())
        .args(["encrypt", "--key", "nosuchprovider:k"])
        .arg(&t.input)
        .assert()
        .failure()
        .stderr(predicate::str::contains("keyring"));
}

#[test]
fn decrypt_without_a_key_of_a_raw_key_message_names_its_key() {
    let t = scratch();
    let key = t.path("k.bin");
    std::fs::write(&key, [7u8; 32]).unwrap();
    let enc = t.path("m.enc");
    envarc(None, t.dir.path())
        .args(["encrypt", "--key-name", "mykey", "--raw-key-file"])
        .arg(&key)
        .arg(&t.input)
        .arg("-o")
        .arg(&enc)
        .assert()
        .success();
    t.decrypt(None, &enc).assert().code(5).stderr(
        predicate::str::contains("envarc:mykey").and(predicate::str::contains("--raw-key-file")),
    );
}

/// Data keys per second with 1 and 8 threads against the shared dev server.
/// `cargo test --release --test keys -- --ignored --nocapture throughput`
#[test]
#[ignore = "a measurement, not a check"]
fn throughput_of_data_keys() {
    let Some(b) = server("throughput_of_data_keys") else {
        return;
    };
    b.create_key("perf", true);
    let p = provider(b, Some("perf"));
    let c = ctx(&[("kind", "object")]);
    p.generate_data_key(&c).unwrap();
    for threads in [1usize, 8] {
        let per_thread = 2000 / threads;
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    for _ in 0..per_thread {
                        p.generate_data_key(&c).unwrap();
                    }
                });
            }
        });
        let n = per_thread * threads;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "generate_data_key, {threads} thread(s): {n} in {secs:.2} s = {:.0}/s",
            n as f64 / secs
        );
    }
    let (_, edks) = p.generate_data_key(&c).unwrap();
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..250 {
                    p.decrypt_data_key(&edks, &c).unwrap();
                }
            });
        }
    });
    println!(
        "decrypt_data_key, 8 threads: 2000 in {:.2} s = {:.0}/s",
        started.elapsed().as_secs_f64(),
        2000.0 / started.elapsed().as_secs_f64()
    );
}
