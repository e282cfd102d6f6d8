//! GenerateDataKey and Decrypt per second through the keyring's KeyProvider,
//! and the cost of opening a keyring (one Argon2id derivation at the
//! interactive setting).

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use envarc::envelope::{EncryptionContext, KeyProvider};
use envarc::keyring::{
    Argon2Params, CreateKey, FixedSecret, Keyring, KeyringFile, KeyringOptions, Secret, SystemClock,
};
use zeroize::Zeroizing;

fn context() -> EncryptionContext {
    let mut ctx = EncryptionContext::new();
    ctx.insert("repository".into(), "0f3c6a2e".into());
    ctx.insert("kind".into(), "object".into());
    ctx
}

fn provider_ops(c: &mut Criterion) {
    let mut kr = Keyring::in_memory(Arc::new(SystemClock));
    let id = kr.create_key(CreateKey::default()).unwrap().to_string();
    // A key with history: decrypt looks up an old version among many.
    for _ in 0..10 {
        kr.rotate_on_demand(&id).unwrap();
    }
    let p = kr.provider(&id).unwrap();
    let ctx = context();
    let mut g = c.benchmark_group("keyring_provider");
    g.throughput(Throughput::Elements(1));
    g.bench_function("generate_data_key", |b| {
        b.iter(|| p.generate_data_key(&ctx).unwrap())
    });
    let (_, edks) = p.generate_data_key(&ctx).unwrap();
    let d = kr.decrypt_provider();
    g.bench_function("decrypt_data_key", |b| {
        b.iter(|| d.decrypt_data_key(&edks, &ctx).unwrap())
    });
    g.finish();
}

fn open_keyring(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let opts = || {
        let mut o = KeyringOptions::new(
            dir.path().join("keyring"),
            Arc::new(FixedSecret(Secret::Passphrase(Zeroizing::new(
                b"bench".to_vec(),
            )))),
        );
        o.argon2 = Argon2Params::INTERACTIVE;
        o
    };
    KeyringFile::new(opts())
        .create_or_update(|kr| kr.create_key(CreateKey::default()))
        .unwrap();
    let mut g = c.benchmark_group("keyring_file");
    g.sample_size(10);
    // A fresh handle each time: what every envarc command pays once.
    g.bench_function("load_argon2id_interactive", |b| {
        b.iter(|| KeyringFile::new(opts()).load().unwrap())
    });
    g.finish();
}

criterion_group!(benches, provider_ops, open_keyring);
criterion_main!(benches);
