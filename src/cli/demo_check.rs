//! The demo's checks after the three backups: verify with every byte read,
//! restore every snapshot and compare it with the tree that was backed up,
//! and show that the first snapshot's stored messages were never rewritten.

use std::collections::BTreeMap;

use super::demo::{Backup, Demo};
use super::demo_tree::{capture, differences};
use super::repo::fmt_bytes;
use crate::envelope::MessageId;
use crate::progress::Silent;
use crate::restore::{restore, RestoreOptions};
use crate::verify::{verify, ReadData, VerifyOptions};
use crate::Result;

pub(super) fn check(
    d: &mut Demo<'_>,
    backups: &[Backup],
    first_hashes: &BTreeMap<MessageId, [u8; 32]>,
) -> Result<()> {
    d.heading("Verify the repository, reading and authenticating every byte");
    d.cmd(&format!("verify -r {} --read-data", d.repo_dir().display()));
    let opts = VerifyOptions {
        read_data: ReadData::All,
        ..Default::default()
    };
    let v = verify(d.repo(), &opts, &Silent)?;
    d.say(format!(
        "{} snapshots, {} messages: every frame of all {} read and authenticated ({}); {} problems.",
        v.snapshots,
        v.messages,
        v.messages_read,
        fmt_bytes(v.bytes_read),
        v.problems.len()
    ));
    for p in &v.problems {
        d.fail(format!("verify: {:?} {}: {}", p.kind, p.id, p.error));
    }

    d.heading("Restore every snapshot and compare it with what was backed up");
    for (n, b) in backups.iter().enumerate() {
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
        let mut versions: Vec<u32> = b.files.values().filter_map(|k| k.version).collect();
        versions.sort();
        versions.dedup();
        let vs: Vec<String> = versions.iter().map(|v| format!("v{v}")).collect();
        if diffs.is_empty() {
            d.say(format!(
                "snapshot {}: {}, {}, {} restored; identical to the tree backed up \
                 (data keys wrapped by {})",
                b.id.short(),
                plural(r.files, "file", "files"),
                plural(r.dirs, "folder", "folders"),
                plural(r.symlinks, "symlink", "symlinks"),
                vs.join(", ")
            ));
        }
        for diff in diffs {
            d.fail(format!("restore of {} differs: {diff}", b.id.short()));
        }
    }

    d.heading("The first snapshot's messages were never rewritten");
    let now = d.stored_hashes(&backups[0])?;
    let same = first_hashes
        .iter()
        .filter(|(m, h)| now.get(*m) == Some(*h))
        .count();
    d.say(format!(
        "{same} of {} stored messages of snapshot {} are byte for byte as written in the first backup \
         (SHA-256), after two rotations: rotation re-encrypts nothing.",
        first_hashes.len(),
        backups[0].id.short()
    ));
    if same != first_hashes.len() {
        d.fail(format!(
            "{} messages of the first snapshot changed",
            first_hashes.len() - same
        ));
    }
    Ok(())
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}
