//! Throughput of whole messages (encrypt and decrypt, every suite) beside the
//! raw AEAD of the same crates over 64 KiB chunks, measured in the same run, so
//! that the ratio shows what the framing (header, key derivation, key wrap,
//! per-frame AAD and copies) costs; the raw AEAD of the previous RustCrypto
//! generation (aes-gcm / chacha20poly1305 0.10) beside 0.11, which the crate
//! uses because it measured faster here; and the parallel pipeline
//! (`envelope::pipeline`) on a 64 MiB message with a pool of 1 thread and of
//! every core, in wall-clock time (group `pipeline`).
//!
//! Messages are written to `io::sink()` and read from a byte slice, so the
//! figures are the library's own cost: a real destination adds the same write
//! cost to envarc and to any other tool.
//!
//! Time is the benchmark thread's CPU time by default (except for the
//! pipeline group), so that other processes on a shared machine do not
//! distort the figures (or the ratio); set `ENVARC_BENCH_WALL=1` to measure
//! wall-clock time instead. That work is single-threaded, so on a quiet
//! machine both agree.
//!
//! Run: `cargo bench --bench envelope -- --warm-up-time 1 --measurement-time 3`.

use std::io::{self, Write};

use aes_gcm::aead::Nonce;
use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::Aes256Gcm;
use aes_gcm_0_10::aead::{AeadInPlace as AeadInPlace010, KeyInit as KeyInit010};
use chacha20poly1305::ChaCha20Poly1305;
use std::time::Duration;

use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{Criterion, Throughput};
use envarc::envelope::pipeline::{decrypt_stream, encrypt_stream};
use envarc::envelope::{
    encrypt_to_vec, DecryptOptions, Decryptor, EncryptOptions, Encryptor, RawAesKey, Suite,
};

const SIZES: &[(&str, usize)] = &[
    ("4KiB", 4 << 10),
    ("64KiB", 64 << 10),
    ("1MiB", 1 << 20),
    ("64MiB", 64 << 20),
];

/// The envelope's default frame length, and the chunk the raw AEAD runs over.
const CHUNK: usize = 64 << 10;

/// Encrypts `buf` in place chunk by chunk, one nonce per chunk, as the framed
/// body does, but with nothing else around it (aead 0.6: the crate's AEAD).
fn raw_seal<A: AeadInOut<NonceSize = aes_gcm::aead::consts::U12>>(cipher: &A, buf: &mut [u8]) {
    for (i, chunk) in buf.chunks_mut(CHUNK).enumerate() {
        let mut iv = [0u8; 12];
        iv[8..].copy_from_slice(&(i as u32 + 1).to_be_bytes());
        let tag = cipher
            .encrypt_inout_detached(&Nonce::<A>::from(iv), b"", chunk.into())
            .expect("chunk within AEAD limits");
        std::hint::black_box(tag);
    }
}

/// The same with the previous generation (aead 0.5), for the comparison.
fn raw_seal_010<A: AeadInPlace010>(cipher: &A, buf: &mut [u8]) {
    for (i, chunk) in buf.chunks_mut(CHUNK).enumerate() {
        let mut iv = [0u8; 12];
        iv[8..].copy_from_slice(&(i as u32 + 1).to_be_bytes());
        let tag = cipher
            .encrypt_in_place_detached(aes_gcm_0_10::Nonce::from_slice(&iv), b"", chunk)
            .expect("chunk within AEAD limits");
        std::hint::black_box(tag);
    }
}

/// CPU time of the calling thread (`CLOCK_THREAD_CPUTIME_ID`).
struct ThreadCpuTime;

fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock ID is a constant
    // that Linux supports. std offers no per-thread CPU clock.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

static WALL: WallTime = WallTime;

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        thread_cpu_time()
    }
    fn end(&self, start: Duration) -> Duration {
        thread_cpu_time().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, d: &Duration) -> f64 {
        d.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        // Same unit (nanoseconds) as wall time, so the same formatting.
        WALL.formatter()
    }
}

fn envelope<M: Measurement>(c: &mut Criterion<M>) {
    let key = RawAesKey::new("envarc", "bench/v1", &[7u8; 32]).expect("valid key");
    for &(label, size) in SIZES {
        let mut g = c.benchmark_group(format!("envelope/{label}"));
        g.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            g.sample_size(10);
        }
        let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();

        for suite in [
            Suite::Aes256GcmHkdfSha512Commit,
            Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
            Suite::ChaCha20Poly1305HkdfSha512Commit,
        ] {
            let opts = EncryptOptions {
                suite,
                ..Default::default()
            };
            g.bench_function(format!("encrypt {}", suite.cli_name()), |b| {
                b.iter(|| {
                    let mut enc = Encryptor::new(&key, &opts, io::sink()).unwrap();
                    enc.write_all(&plaintext).unwrap();
                    enc.finish().unwrap().1
                })
            });
            let message = encrypt_to_vec(&key, &opts, &plaintext).unwrap();
            let dopts = DecryptOptions::default();
            g.bench_function(format!("decrypt {}", suite.cli_name()), |b| {
                b.iter(|| {
                    let mut dec = Decryptor::new(&key, &dopts, message.as_slice()).unwrap();
                    dec.copy_to(&mut io::sink()).unwrap()
                })
            });
        }

        let mut buf = plaintext.clone();
        let aes = Aes256Gcm::new(&[9u8; 32].into());
        g.bench_function("raw aes-256-gcm seal", |b| {
            b.iter(|| raw_seal(&aes, &mut buf))
        });
        let chacha = ChaCha20Poly1305::new(&[9u8; 32].into());
        g.bench_function("raw chacha20-poly1305 seal", |b| {
            b.iter(|| raw_seal(&chacha, &mut buf))
        });
        let aes = aes_gcm_0_10::Aes256Gcm::new(&[9u8; 32].into());
        g.bench_function("raw aes-256-gcm 0.10 seal", |b| {
            b.iter(|| raw_seal_010(&aes, &mut buf))
        });
        let chacha = chacha20poly1305_0_10::ChaCha20Poly1305::new(&[9u8; 32].into());
        g.bench_function("raw chacha20-poly1305 0.10 seal", |b| {
            b.iter(|| raw_seal_010(&chacha, &mut buf))
        });
        g.finish();
    }
}

/// The pipeline on one 64 MiB message, on a rayon pool of 1 thread and of
/// every core: what frames in parallel buy (wall-clock time).
fn pipeline(c: &mut Criterion<WallTime>) {
    let key = RawAesKey::new("envarc", "bench/v1", &[7u8; 32]).expect("valid key");
    let size = 64 << 20;
    let plaintext: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    let opts = EncryptOptions::default();
    let message = encrypt_to_vec(&key, &opts, &plaintext).unwrap();
    let dopts = DecryptOptions::default();
    let mut g = c.benchmark_group("pipeline/64MiB");
    g.throughput(Throughput::Bytes(size as u64));
    g.sample_size(10);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    for threads in [1, cores] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut out = Vec::with_capacity(message.len() + 4096);
        g.bench_function(format!("encrypt {threads} thread(s)"), |b| {
            b.iter(|| {
                out.clear();
                pool.install(|| encrypt_stream(&key, &opts, plaintext.as_slice(), &mut out, None))
                    .unwrap()
                    .1
            })
        });
        g.bench_function(format!("decrypt {threads} thread(s)"), |b| {
            b.iter(|| {
                out.clear();
                pool.install(|| decrypt_stream(&key, &dopts, message.as_slice(), &mut out, None))
                    .unwrap()
                    .2
            })
        });
    }
    g.finish();
}

fn main() {
    let mut wall = Criterion::default().configure_from_args();
    pipeline(&mut wall);
    if std::env::var_os("ENVARC_BENCH_WALL").is_some() {
        let mut c = Criterion::default().configure_from_args();
        envelope(&mut c);
        c.final_summary();
    } else {
        let mut c = Criterion::default()
            .with_measurement(ThreadCpuTime)
            .configure_from_args();
        envelope(&mut c);
        c.final_summary();
    }
}
