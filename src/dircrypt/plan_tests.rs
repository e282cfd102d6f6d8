//! The plan's decisions as data: (what exists, --overwrite, direction) → action.

use super::*;
use crate::dircrypt::naming::DEFAULT_SUFFIX;
use crate::dircrypt::record::Time;

fn stamp(size: u64, sec: i64) -> Stamp {
    Stamp {
        size,
        mtime: Time { sec, nsec: 7 },
    }
}

fn file(rel: &str, size: u64, sec: i64) -> SourceFile {
    SourceFile {
        rel: rel.into(),
        stamp: stamp(size, sec),
        mode: 0o644,
        dev: 1,
        ino: 1,
    }
}

fn dir(rel: &str) -> SourceDir {
    SourceDir {
        rel: rel.into(),
        mode: 0o755,
        mtime: Time { sec: 0, nsec: 0 },
    }
}

const SUITE: Suite = Suite::Aes256GcmHkdfSha512Commit;

fn record(st: Option<Stamp>, suite: Suite, ctx: &[(&str, &str)]) -> Option<Record> {
    Some(Record {
        stamp: st,
        suite,
        context: ctx
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    })
}

/// One file `a` of 10 bytes at mtime 100, with `existing` at its output.
fn decide_one(direction: Direction, overwrite: Overwrite, existing: Existing) -> Plan {
    let files = [file("a", 10, 100)];
    let t = targets(&files, &[], direction, DEFAULT_SUFFIX);
    let ctx: EncryptionContext = [("team".to_string(), "ops".to_string())].into();
    let want = Want {
        direction,
        overwrite,
        suite: SUITE,
        context: &ctx,
    };
    decide(&files, t, &[existing], &want)
}

enum Decision {
    Do(FileAction),
    Keep(Kept),
    Fail,
}

fn outcome(p: &Plan) -> Decision {
    match (&p.jobs[..], &p.kept[..], &p.failed[..]) {
        ([j], [], []) => Decision::Do(j.action),
        ([], [(_, k)], []) => Decision::Keep(*k),
        ([], [], [_]) => Decision::Fail,
        _ => panic!("one decision per file"),
    }
}

type Case = (&'static str, Direction, Overwrite, Existing, Decision);

/// The stamp of the sources in these cases.
fn same() -> Stamp {
    stamp(10, 100)
}

/// A record of this very source, suite and context.
fn good() -> Option<Record> {
    record(Some(same()), SUITE, &[("team", "ops")])
}

/// An output file (another stamp than the source's) with `record`.
fn output(record: Option<Record>) -> Existing {
    Existing::File {
        stamp: stamp(99, 5),
        record,
    }
}

/// Each case decides as it says.
fn check(cases: Vec<Case>) {
    use Decision::*;
    for (name, d, o, existing, want) in cases {
        let got = outcome(&decide_one(d, o, existing));
        let ok = match (&got, &want) {
            (Do(a), Do(b)) => a == b,
            (Keep(a), Keep(b)) => a == b,
            (Fail, Fail) => true,
            _ => false,
        };
        assert!(ok, "{name}");
    }
}

/// Existing outputs are kept, replaced or checked as asked: absent, never, always.
#[test]
fn absent_or_existing_outputs_follow_never_and_always() {
    use Decision::*;
    use Direction::*;
    use Overwrite::*;
    check(vec![
        (
            "absent",
            Encrypt,
            Never,
            Existing::Absent,
            Do(FileAction::Create),
        ),
        (
            "absent, always",
            Encrypt,
            Always,
            Existing::Absent,
            Do(FileAction::Create),
        ),
        (
            "exists, never",
            Encrypt,
            Never,
            output(good()),
            Keep(Kept::Exists),
        ),
        (
            "exists, always",
            Encrypt,
            Always,
            output(good()),
            Do(FileAction::Replace),
        ),
    ]);
}

/// `if-changed` when encrypting: only an output that records this source, suite and context may be kept.
#[test]
fn if_changed_replaces_what_does_not_record_this_source() {
    use Decision::*;
    use Direction::*;
    use Overwrite::*;
    check(vec![
        (
            "records this source",
            Encrypt,
            IfChanged,
            output(good()),
            Do(FileAction::ReplaceUnlessCurrent),
        ),
        (
            "no record",
            Encrypt,
            IfChanged,
            output(None),
            Do(FileAction::Replace),
        ),
        (
            "record without stamp",
            Encrypt,
            IfChanged,
            output(record(None, SUITE, &[("team", "ops")])),
            Do(FileAction::Replace),
        ),
        (
            "source grew",
            Encrypt,
            IfChanged,
            output(record(Some(stamp(11, 100)), SUITE, &[("team", "ops")])),
            Do(FileAction::Replace),
        ),
        (
            "source touched",
            Encrypt,
            IfChanged,
            output(record(Some(stamp(10, 101)), SUITE, &[("team", "ops")])),
            Do(FileAction::Replace),
        ),
        (
            "other suite",
            Encrypt,
            IfChanged,
            output(record(
                Some(same()),
                Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
                &[("team", "ops")],
            )),
            Do(FileAction::Replace),
        ),
        (
            "other context",
            Encrypt,
            IfChanged,
            output(record(Some(same()), SUITE, &[("team", "dev")])),
            Do(FileAction::Replace),
        ),
    ]);
}

/// A folder, a symlink or an unreadable entry where the output goes: the file fails.
#[test]
fn outputs_that_are_not_files_fail() {
    use Decision::*;
    use Direction::*;
    use Overwrite::*;
    check(vec![
        (
            "a folder there",
            Encrypt,
            Always,
            Existing::Other("a folder"),
            Fail,
        ),
        (
            "a symlink there",
            Decrypt,
            IfChanged,
            Existing::Other("a symlink"),
            Fail,
        ),
        (
            "unreadable",
            Encrypt,
            Never,
            Existing::Unreadable("no".into()),
            Fail,
        ),
        // Decryption: the output's stamp against what the input records.
    ]);
}

/// Decrypting: outputs carry no record; the stamp decides.
#[test]
fn decrypted_outputs_are_judged_by_their_stamp() {
    use Decision::*;
    use Direction::*;
    use Overwrite::*;
    check(vec![
        (
            "decrypted, recorded stamp",
            Decrypt,
            IfChanged,
            Existing::File {
                stamp: same(),
                record: good(),
            },
            Keep(Kept::Current),
        ),
        (
            "decrypted, other size",
            Decrypt,
            IfChanged,
            Existing::File {
                stamp: stamp(9, 100),
                record: good(),
            },
            Do(FileAction::Replace),
        ),
        (
            "decrypted, no record, input's mtime",
            Decrypt,
            IfChanged,
            Existing::File {
                stamp: stamp(3, 100),
                record: None,
            },
            Keep(Kept::Current),
        ),
        (
            "decrypted, no record, other mtime",
            Decrypt,
            IfChanged,
            Existing::File {
                stamp: stamp(10, 99),
                record: None,
            },
            Do(FileAction::Replace),
        ),
        (
            "decrypted, never",
            Decrypt,
            Never,
            Existing::File {
                stamp: stamp(1, 1),
                record: None,
            },
            Keep(Kept::Exists),
        ),
    ]);
}

#[test]
fn clashing_outputs_fail_both_files_and_nothing_else() {
    // Decrypting: `x` becomes x.decrypted, and so does x.decrypted.encrypted.
    let files = [
        file("x", 1, 1),
        file("x.decrypted.encrypted", 1, 1),
        file("y.encrypted", 1, 1),
    ];
    let t = targets(&files, &[], Direction::Decrypt, DEFAULT_SUFFIX);
    assert_eq!(t.out[0], None);
    assert_eq!(t.out[1], None);
    assert_eq!(t.out[2].as_deref(), Some(Path::new("y")));
    assert_eq!(t.failed.len(), 2);
    assert!(
        t.failed[0].1.contains("x.decrypted.encrypted"),
        "{}",
        t.failed[0].1
    );
}

#[test]
fn an_output_that_would_be_a_folder_fails() {
    // With an empty suffix nothing changes names, so no clash; with the
    // default, file `d` becomes `d.encrypted`, which is also a folder.
    let files = [file("d", 1, 1), file("d.encrypted/f", 1, 1)];
    let dirs = [dir("d.encrypted")];
    let t = targets(&files, &dirs, Direction::Encrypt, DEFAULT_SUFFIX);
    assert_eq!(t.out[0], None);
    assert_eq!(
        t.out[1].as_deref(),
        Some(Path::new("d.encrypted/f.encrypted"))
    );
    assert!(t.failed[0].1.contains("folder"));
}

#[test]
fn relative_layout_is_kept() {
    let files = [file("a/b/c.txt", 1, 1), file("top", 1, 1)];
    let t = targets(&files, &[dir("a"), dir("a/b")], Direction::Encrypt, ".enc");
    assert_eq!(t.out[0].as_deref(), Some(Path::new("a/b/c.txt.enc")));
    assert_eq!(t.out[1].as_deref(), Some(Path::new("top.enc")));
}
