//! The demo's checks after the three backups: verify with every byte read,
//! restore every snapshot and compare it with the tree that was backed up,
//! and show that the first snapshot's stored messages were never rewritten.

use std::collections::BTreeMap;

use super::demo::{Backup, Demo};
use super::demo_tree::{capture, differences};
use super::fmt::plural;
use envarc::progress::Silent;
use envarc::repo::ChunkId;
use envarc::restore::{restore, RestoreOptions};
use envarc::verify::{verify, ReadData, VerifyOptions};
use envarc::Result;

pub(super) fn check(
    d: &mut Demo<'_>,
    backups: &[Backup],
    first_hashes: &BTreeMap<ChunkId, [u8; 32]>,
) -> Result<()> {
    check_verify(d)?;
    d.heading("Restore every snapshot and compare it with what was backed up");
    for (n, b) in backups.iter().enumerate() {
        check_restore(d, n, b)?;
    }
    check_unchanged(d, &backups[0], first_hashes)
}

/// `verify --read-data`, as `envarc verify` reports it.
fn check_verify(d: &mut Demo<'_>) -> Result<()> {
    d.heading("Verify the repository, reading and authenticating every byte");
    d.cmd(&format!("verify -r {} --read-data", d.repo_dir().display()));
    let opts = VerifyOptions {
        read_data: ReadData::All,
        ..Default::default()
    };
    let v = verify(d.repo(), &opts, &Silent)?;
    // What `envarc verify` prints first and last, with the demo's reading
    // of it between.
    d.say(super::verify::checked_line(&v));
    d.say(format!(
        "every frame of all {} read and authenticated, each chunk's MAC checked",
        plural(v.chunks_read, "chunk", "chunks")
    ));
    d.say(super::verify::verdict_line(&v));
    for p in &v.problems {
        d.fail(format!("verify: {} {}: {}", p.kind, p.id, p.error));
    }
    Ok(())
}

/// Restores backup number `n` (from 0) and compares it with its tree.
fn check_restore(d: &mut Demo<'_>, n: usize, b: &Backup) -> Result<()> {
    let target = d.work_dir().join("restore").join(format!("{}", n + 1));
    d.cmd(&format!(
        "restore -r {} {} --target {}",
        d.repo_dir().display(),
        b.id.short(),
        target.display()
    ));
    let r = restore(
        d.repo(),
        &b.id,
        &RestoreOptions {
            target: target.clone(),
            ..Default::default()
        },
        &Silent,
    )?;
    for e in &r.errors {
        d.fail(format!(
            "restore of {}: {}: {}",
            b.id.short(),
            e.path,
            e.cause
        ));
    }
    let root = target.join(d.source_dir().strip_prefix("/").unwrap_or(d.source_dir()));
    let diffs = differences(&b.tree, &capture(&root)?);
    let versions: std::collections::BTreeSet<u32> = b.files.values().flatten().copied().collect();
    let vs: Vec<String> = versions.iter().map(|v| format!("v{v}")).collect();
    d.say(super::restore::summary_line(&r));
    if diffs.is_empty() {
        d.say(format!(
            "identical to the tree backed up in snapshot {} (data keys wrapped by {})",
            b.id.short(),
            vs.join(", ")
        ));
    }
    for diff in diffs {
        d.fail(format!("restore of {} differs: {diff}", b.id.short()));
    }
    Ok(())
}

/// The first snapshot's stored chunk messages, byte for byte as written.
fn check_unchanged(
    d: &mut Demo<'_>,
    first: &Backup,
    first_hashes: &BTreeMap<ChunkId, [u8; 32]>,
) -> Result<()> {
    d.heading("The first snapshot's chunks were never rewritten");
    let now = d.stored_hashes(first)?;
    let same = first_hashes
        .iter()
        .filter(|(m, h)| now.get(*m) == Some(*h))
        .count();
    d.say(format!(
        "{same} of {} stored chunk messages of snapshot {} are byte for byte as written in the first \
         backup (SHA-256), after two rotations: rotation re-encrypts nothing.",
        first_hashes.len(),
        first.id.short()
    ));
    if same != first_hashes.len() {
        d.fail(format!(
            "{} chunk messages of the first snapshot changed",
            first_hashes.len() - same
        ));
    }
    Ok(())
}
