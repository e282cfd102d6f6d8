//! Memory of the chunk index: writes a synthetic index of N chunks (default
//! 10 million; `INDEX_CHUNKS` overrides) as real encrypted index files into
//! a temporary repository, loads it, and prints the bytes per chunk of the
//! loaded table, the process's peak RSS and the load time.
//!
//!   cargo bench --bench index_memory [--no-default-features]

use std::time::Instant;

use envarc::envelope::RawAesKey;
use envarc::repo::{
    ChunkId, ChunkRecord, Id, IndexData, InitOptions, KeyRef, KeyVersion, LocalStorage, PackRecord,
    Repository,
};

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    let n: u64 = std::env::var("INDEX_CHUNKS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let dir = tempfile::tempdir().expect("temp");
    let key = RawAesKey::new("envarc", "bench", &[7u8; 32]).expect("key");
    let kref = KeyRef {
        provider: envarc::providers::ProviderKind::RawAes,
        key: "bench".into(),
        params: [("namespace".to_string(), "envarc".to_string())].into(),
    };
    let storage = Box::new(LocalStorage::new(dir.path().join("repo")));
    let repo = Repository::init(storage, vec![kref], Box::new(key), &InitOptions::default())
        .expect("init");
    let set = vec![KeyVersion {
        provider: "raw-aes".into(),
        key: "bench".into(),
        version: None,
    }];
    // 16 MiB packs of 16 chunks of 1 MiB; IDs from a counter through BLAKE3
    // (uniform, as keyed MACs are).
    let t = Instant::now();
    let per_pack = 16u64;
    let mut packs = Vec::new();
    for p in 0..n.div_ceil(per_pack) {
        let chunks = (0..per_pack.min(n - p * per_pack))
            .map(|i| ChunkRecord {
                id: ChunkId(*blake3::hash(&(p * per_pack + i).to_le_bytes()).as_bytes()),
                offset: (i << 20) as u32,
                length: 1 << 20,
                raw_length: 1 << 20,
                key_set: 0,
            })
            .collect();
        packs.push(PackRecord {
            id: Id(*blake3::hash(&p.to_be_bytes()).as_bytes()),
            size: per_pack << 20,
            chunks,
        });
        if packs.len() as u64 * per_pack >= 1_000_000 {
            repo.save_index(IndexData::new(
                vec![set.clone()],
                std::mem::take(&mut packs),
            ))
            .expect("save");
        }
    }
    if !packs.is_empty() {
        repo.save_index(IndexData::new(vec![set], packs))
            .expect("save");
    }
    let written = t.elapsed();
    let before = peak_rss_kib();
    let t = Instant::now();
    let index = repo.load_index().expect("load");
    let load = t.elapsed();
    let probe = ChunkId(*blake3::hash(&(n / 2).to_le_bytes()).as_bytes());
    assert!(index.contains(&probe));
    println!(
        "index of {} chunks in {} files: {:.1} bytes per chunk in the table, {} MiB; \
         peak RSS {} MiB (before loading {} MiB); loaded in {:.2} s (written in {:.1} s)",
        index.len(),
        index.files().len(),
        index.memory_bytes() as f64 / index.len() as f64,
        index.memory_bytes() >> 20,
        peak_rss_kib() >> 10,
        before >> 10,
        load.as_secs_f64(),
        written.as_secs_f64()
    );
}
