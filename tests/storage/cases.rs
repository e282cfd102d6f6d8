//! The object cases every store must pass alike.

use std::io::{ErrorKind, Write};

use crate::{bytes, each_target, names};

#[test]
fn objects_are_created_read_and_statted() {
    each_target(|t| {
        let s = t.open("basic");
        let data = bytes(1, 100_000);
        s.create("data/ab/ab01", &data).unwrap();
        s.create("index/01", b"i").unwrap();
        s.create("empty", b"").unwrap();
        assert_eq!(s.read("data/ab/ab01").unwrap(), data, "{}", t.label);
        assert_eq!(s.read("empty").unwrap(), b"", "{}", t.label);
        assert_eq!(
            s.read_range("data/ab/ab01", 1000, 5000).unwrap(),
            &data[1000..6000]
        );
        assert_eq!(
            s.read_range("data/ab/ab01", 99_999, 1).unwrap(),
            &data[99_999..]
        );
        for (off, len) in [(99_999, 2), (100_000, 1), (200_000, 10)] {
            let e = s.read_range("data/ab/ab01", off, len).unwrap_err();
            assert_eq!(
                e.kind(),
                ErrorKind::UnexpectedEof,
                "{} {off}+{len}: {e}",
                t.label
            );
        }
        let st = s.stat("data/ab/ab01").unwrap();
        assert_eq!((st.name.as_str(), st.size), ("data/ab/ab01", 100_000));
        assert!(st.modified.is_some(), "{}: no modification time", t.label);
        for missing in ["index/02", "data/zz/zz"] {
            assert_eq!(
                s.stat(missing).unwrap_err().kind(),
                ErrorKind::NotFound,
                "{}",
                t.label
            );
            let e = s.read(missing).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::NotFound, "{}", t.label);
            assert!(
                e.to_string().contains(missing),
                "{}: the error names the object: {e}",
                t.label
            );
        }
        for bad in ["../x", "/etc/passwd", ".hidden", "data//x"] {
            assert_eq!(
                s.create(bad, b"x").unwrap_err().kind(),
                ErrorKind::InvalidInput,
                "{bad}"
            );
        }
    });
}

#[test]
fn listing_follows_prefixes() {
    each_target(|t| {
        let s = t.open("list");
        for n in [
            "data/ab/ab01",
            "data/ab/ab02",
            "data/cd/cd01",
            "index/01",
            "snapshots/aa",
            "config",
        ] {
            s.create(n, n.as_bytes()).unwrap();
        }
        assert_eq!(
            names(&*s, "data/"),
            ["data/ab/ab01", "data/ab/ab02", "data/cd/cd01"],
            "{}",
            t.label
        );
        assert_eq!(
            names(&*s, "data/ab/ab0"),
            ["data/ab/ab01", "data/ab/ab02"],
            "{}",
            t.label
        );
        assert_eq!(names(&*s, "data/cd/"), ["data/cd/cd01"], "{}", t.label);
        assert_eq!(names(&*s, "snapshots/"), ["snapshots/aa"]);
        assert!(names(&*s, "locks/").is_empty(), "{}", t.label);
        assert_eq!(names(&*s, "").len(), 6, "{}", t.label);
        let listed = s.list("index/").unwrap();
        assert_eq!(
            listed[0].size, 8,
            "{}: sizes come with the listing",
            t.label
        );
        // A prefix in another store's folder sees none of these.
        assert!(
            t.open("list-other").list("").unwrap().is_empty(),
            "{}",
            t.label
        );
    });
}

#[test]
fn many_objects_list_past_a_page() {
    // S3 lists 1000 names a page: 1100 objects need a second one.
    each_target(|t| {
        let s = t.open("many");
        let n = 1100;
        std::thread::scope(|sc| {
            for w in 0..8 {
                let s = &s;
                sc.spawn(move || {
                    for i in (w..n).step_by(8) {
                        s.create(&format!("index/{i:05}"), &[i as u8]).unwrap();
                    }
                });
            }
        });
        let listed = names(&*s, "index/");
        assert_eq!(listed.len(), n, "{}", t.label);
        assert_eq!(listed[0], "index/00000");
        assert_eq!(listed[n - 1], format!("index/{:05}", n - 1));
    });
}

#[test]
fn a_name_is_created_once() {
    each_target(|t| {
        let s = t.open("exclusive");
        s.create("snapshots/01", b"first").unwrap();
        let second = s.create("snapshots/01", b"second");
        if t.exclusive {
            let e = second.unwrap_err();
            assert_eq!(e.kind(), ErrorKind::AlreadyExists, "{}: {e}", t.label);
            assert_eq!(s.read("snapshots/01").unwrap(), b"first", "{}", t.label);
        } else {
            eprintln!(
                "{}: a second create overwrote the object (no If-None-Match)",
                t.label
            );
        }
        // The same through a streamed writer, large enough for a multipart
        // upload on S3 (completion is conditional too).
        let big = bytes(2, 9 << 20);
        let mut w = s.create_writer("snapshots/01").unwrap();
        w.write_all(&big).unwrap();
        let r = w.commit();
        if t.exclusive {
            assert_eq!(
                r.unwrap_err().kind(),
                ErrorKind::AlreadyExists,
                "{}",
                t.label
            );
            assert_eq!(s.read("snapshots/01").unwrap(), b"first", "{}", t.label);
        }
    });
}

#[test]
fn a_writer_shows_its_object_only_on_commit() {
    each_target(|t| {
        let s = t.open("writer");
        let data = bytes(3, 21 << 20); // several S3 parts and SFTP chunks
        let mut w = s.create_writer("data/00/big").unwrap();
        for piece in data.chunks(1_234_567) {
            w.write_all(piece).unwrap();
        }
        assert_eq!(w.written(), data.len() as u64);
        assert_eq!(
            s.stat("data/00/big").unwrap_err().kind(),
            ErrorKind::NotFound,
            "{}",
            t.label
        );
        assert!(
            names(&*s, "").is_empty(),
            "{}: visible before commit",
            t.label
        );
        w.commit().unwrap();
        let back = s.read("data/00/big").unwrap();
        assert!(back == data, "{}: read back differs", t.label);
        assert_eq!(
            s.read_range("data/00/big", 9 << 20, 10).unwrap(),
            &data[9 << 20..(9 << 20) + 10]
        );
        assert!(s.leftovers().unwrap().is_empty(), "{}", t.label);
    });
}

#[test]
fn a_dropped_writer_leaves_nothing() {
    each_target(|t| {
        let s = t.open("dropped");
        for len in [10, 13 << 20] {
            let mut w = s.create_writer("data/00/gone").unwrap();
            w.write_all(&bytes(4, len)).unwrap();
            drop(w);
            assert_eq!(
                s.stat("data/00/gone").unwrap_err().kind(),
                ErrorKind::NotFound,
                "{}",
                t.label
            );
            assert!(names(&*s, "").is_empty(), "{}", t.label);
            assert!(
                s.leftovers().unwrap().is_empty(),
                "{}: temporaries stay",
                t.label
            );
        }
        // The name is still free.
        s.create("data/00/gone", b"x").unwrap();
    });
}

#[test]
fn delete_is_idempotent_and_replace_swaps() {
    each_target(|t| {
        let s = t.open("delete");
        s.create("snapshots/aa", b"x").unwrap();
        s.delete("snapshots/aa").unwrap();
        s.delete("snapshots/aa").unwrap();
        s.delete("snapshots/never").unwrap();
        assert!(names(&*s, "snapshots/").is_empty(), "{}", t.label);
        s.replace("config", b"one").unwrap();
        s.replace("config", b"two").unwrap();
        assert_eq!(s.read("config").unwrap(), b"two", "{}", t.label);
        assert_eq!(
            names(&*s, ""),
            ["config"],
            "{}: replace leaves no temporary",
            t.label
        );
        if t.remote {
            assert!(s.max_in_flight() > 1, "{}", t.label);
        }
    });
}
