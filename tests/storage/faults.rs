//! Faults between envarc and a real server: a proxy that answers 500/503,
//! holds requests past the timeout and drops connections (before or after
//! the server acted), and SeaweedFS killed with SIGKILL mid-write. The
//! store may fail, after its bounded retries, but it never reports success
//! for an object that is not there whole, and never shows half an object.

use std::io::{ErrorKind, Write};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use envarc::repo::storage::retry::RetryPolicy;
use envarc::repo::storage::{open_with, RemoteOptions, Storage};

use crate::fault_proxy::{FaultProxy, Plan};
use crate::{bytes, names, test_options, BUCKET};

fn faulty_options() -> RemoteOptions {
    RemoteOptions {
        timeout: Duration::from_millis(1500),
        retry: RetryPolicy {
            attempts: 8,
            first_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(100),
        },
        ..test_options()
    }
}

fn plan(seed: u64) -> Plan {
    Plan {
        status_500: 8,
        status_503: 8,
        stall: 3,
        stall_for: Duration::from_millis(2500),
        drop: 5,
        drop_answer: 6,
        seed,
    }
}

/// Writes, reads, lists and deletes through `faulty`; then checks every
/// outcome against `direct` (the same store without the proxy).
fn exercise(label: &str, faulty: &dyn Storage, direct: &dyn Storage, proxy: &FaultProxy) {
    let mut created = Vec::new();
    let mut failed = Vec::new();
    let started = Instant::now();
    for i in 0..40u64 {
        let name = format!("data/{:02x}/{i:04}", i % 4);
        // Every fifth object is big enough for a multipart upload / chunks.
        let data = bytes(
            100 + i,
            if i % 5 == 0 {
                9 << 20
            } else {
                5_000 + i as usize
            },
        );
        let r = if i % 2 == 0 {
            faulty.create(&name, &data)
        } else {
            faulty.create_writer(&name).and_then(|mut w| {
                w.write_all(&data)?;
                w.commit()
            })
        };
        match r {
            Ok(()) => created.push((name, data)),
            Err(e) => {
                assert_ne!(
                    e.kind(),
                    ErrorKind::AlreadyExists,
                    "{label}: our own retried create: {e}"
                );
                assert!(
                    !e.to_string().contains(crate::seaweedfs::SECRET_KEY),
                    "{label}: a secret in {e}"
                );
                failed.push((name, data));
            }
        }
        if let Ok(back) = faulty.read(&created.last().map_or("config".into(), |c| c.0.clone())) {
            assert!(
                created.iter().any(|(_, d)| *d == back),
                "{label}: a read returned other bytes"
            );
        }
    }
    let listed = faulty.list("data/");
    // Faults happened, and the run stayed bounded.
    assert!(
        proxy.counts.faults() >= 5,
        "{label}: only {:?}",
        proxy.counts
    );
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "{label}: retries did not stay bounded"
    );
    proxy.enabled.store(false, Ordering::SeqCst);
    for (name, data) in &created {
        let back = direct
            .read(name)
            .unwrap_or_else(|e| panic!("{label}: {name} reported stored, but: {e}"));
        assert!(
            back == *data,
            "{label}: {name} reported stored, but holds other bytes"
        );
    }
    for (name, data) in &failed {
        // Failed: absent, or (the server did it, the answer was lost) whole.
        if let Ok(back) = direct.read(name) {
            assert!(
                back == *data,
                "{label}: {name} failed and holds half an object"
            );
        }
    }
    if let Ok(mut l) = listed {
        l.sort_by(|a, b| a.name.cmp(&b.name));
        for o in &l {
            assert!(
                direct.stat(&o.name).is_ok(),
                "{label}: listed {} is not there",
                o.name
            );
        }
    }
    for (name, _) in &created {
        faulty.delete(name).unwrap();
    }
    assert!(
        direct.leftovers().unwrap().is_empty() || label == "sftp",
        "{label}"
    );
    eprintln!(
        "{label}: {} stored, {} failed, faults {:?}, {:.1} s",
        created.len(),
        failed.len(),
        proxy.counts,
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn s3_through_a_faulty_proxy() {
    let weed = crate::weed_target().map(|_| crate::weed_server().unwrap().s3_port());
    let moto = crate::moto_target().map(|_| {
        crate::moto_server()
            .unwrap()
            .url
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap()
    });
    for (label, port, seed) in [("seaweedfs", weed, 7), ("moto", moto, 8)] {
        let Some(port) = port else { continue };
        let proxy = FaultProxy::http(port, plan(seed));
        let faulty = open_with(
            &format!("s3:http://127.0.0.1:{}/{BUCKET}/faults", proxy.port),
            &faulty_options(),
        )
        .unwrap();
        let direct = open_with(
            &format!("s3:http://127.0.0.1:{port}/{BUCKET}/faults"),
            &test_options(),
        )
        .unwrap();
        exercise(label, &*faulty, &*direct, &proxy);
    }
}

#[test]
fn sftp_through_a_faulty_proxy() {
    let Some(_) = crate::sftp_target() else {
        return;
    };
    let sshd = crate::sshd_server().unwrap();
    let plan = Plan {
        status_500: 0,
        status_503: 0,
        stall: 10,
        stall_for: Duration::from_millis(2500),
        drop: 10,
        drop_answer: 70, // cut mid-session, after some bytes
        seed: 9,
    };
    let proxy = FaultProxy::tcp(sshd.port, plan);
    let root = tempfile::Builder::new()
        .prefix("envarc-sftp-faults-")
        .tempdir()
        .unwrap();
    let mut opts = faulty_options();
    opts.timeout = Duration::from_secs(5); // an ssh login takes a while
    let faulty = open_with(&sshd.url_via(proxy.port, root.path()), &opts).unwrap();
    let direct = open_with(&sshd.url(root.path()), &test_options()).unwrap();
    exercise("sftp", &*faulty, &*direct, &proxy);
}

#[test]
fn seaweedfs_killed_mid_write_then_restarted() {
    crate::init_env();
    let Some(bin) = crate::seaweedfs::find_weed("SeaweedFS killed mid-write") else {
        return;
    };
    let mut weed = crate::seaweedfs::SeaweedFs::start(&bin);
    weed.create_bucket("crash-test");
    let url = format!("s3:{}/crash-test/repo", weed.s3_endpoint());
    let short = RemoteOptions {
        timeout: Duration::from_secs(2),
        retry: RetryPolicy {
            attempts: 3,
            first_delay: Duration::from_millis(50),
            max_delay: Duration::from_millis(200),
        },
        ..test_options()
    };
    let s = open_with(&url, &short).unwrap();
    let data = bytes(11, 40 << 20);

    // Killed after two parts went up: the write fails, nothing is visible.
    let mut w = s.create_writer("data/00/pack").unwrap();
    w.write_all(&data[..17 << 20]).unwrap();
    weed.kill();
    let r = w.write_all(&data[17 << 20..]).and_then(|()| w.commit());
    let e = r.expect_err("a write to a killed server succeeded");
    eprintln!("write to the killed server: {e}");
    weed.restart();
    assert_eq!(
        s.stat("data/00/pack").unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert!(names(&*s, "").is_empty(), "half an object is visible");

    // The next write of the same name succeeds, whole.
    let mut w = s.create_writer("data/00/pack").unwrap();
    w.write_all(&data).unwrap();
    w.commit().unwrap();
    assert!(s.read("data/00/pack").unwrap() == data);

    // Killed and back within the retry budget: the write gets through.
    let patient = RemoteOptions {
        retry: RetryPolicy {
            attempts: 10,
            first_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(3),
        },
        ..short
    };
    let s = open_with(&url, &patient).unwrap();
    let mut w = s.create_writer("data/00/second").unwrap();
    w.write_all(&data[..9 << 20]).unwrap();
    weed.kill();
    std::thread::scope(|sc| {
        sc.spawn(|| {
            std::thread::sleep(Duration::from_millis(500));
            weed.restart();
        });
        w.write_all(&data[9 << 20..]).unwrap();
        w.commit().unwrap();
    });
    assert!(s.read("data/00/second").unwrap() == data);
}
