//! What `verify` found, as data: every problem names the object, the error,
//! the snapshots and paths that depend on it, and what it means for a restore.

use serde::Serialize;

use crate::error::ErrorKind;
use crate::Error;

/// Which object a problem is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    Config,
    Index,
    Snapshot,
    Chunk,
}

impl std::fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ObjectKind::Config => "config",
            ObjectKind::Index => "index",
            ObjectKind::Snapshot => "snapshot",
            ObjectKind::Chunk => "chunk",
        })
    }
}

/// What kind of problem it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Not there: a pack, an index entry, a snapshot's message.
    Missing,
    /// There, but altered, truncated, swapped or undecodable.
    Corrupt,
    /// The key that wraps its data key is unknown, disabled, pending
    /// deletion, or does not unwrap it.
    Key,
    /// Could not be read (permissions, I/O error).
    Io,
}

impl std::fmt::Display for Class {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Class::Missing => "missing",
            Class::Corrupt => "corrupt",
            Class::Key => "key",
            Class::Io => "io",
        })
    }
}

impl Class {
    /// The class of a crate error.
    pub fn of(e: &Error) -> Class {
        match e.kind() {
            ErrorKind::Integrity => Class::Corrupt,
            ErrorKind::Key => Class::Key,
            _ => Class::Io,
        }
    }
}

/// A snapshot entry that depends on a damaged object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reference {
    pub snapshot: String,
    /// The entry's path (lossy UTF-8).
    pub path: String,
}

/// At most this many references are listed per problem (all are counted).
pub const MAX_REFERENCES: usize = 100;

#[derive(Clone, Debug, Serialize)]
pub struct Problem {
    pub kind: ObjectKind,
    /// Hex ID of the object (empty for the config).
    pub id: String,
    pub class: Class,
    pub error: String,
    /// The first [`MAX_REFERENCES`] snapshot entries that depend on it.
    pub references: Vec<Reference>,
    pub references_total: u64,
    /// What it means for a restore, in a sentence.
    pub consequence: String,
}

impl Problem {
    /// A config that cannot be loaded or does not match its key check.
    pub fn config(e: &Error) -> Problem {
        Problem {
            kind: ObjectKind::Config,
            id: String::new(),
            class: Class::of(e),
            error: e.to_string(),
            references: Vec::new(),
            references_total: 0,
            consequence:
                "nothing in the repository can be read until the config is repaired (put back a copy you kept: its secrets are sealed)"
                    .into(),
        }
    }

    /// Fills in the consequence of a damaged chunk from its references.
    pub(crate) fn chunk_consequence(&mut self) {
        self.consequence = match (self.references.first(), self.references_total) {
            (None, _) => "no checked snapshot refers to it".into(),
            (Some(r), 1) => format!(
                "file {} in snapshot {} cannot be restored",
                r.path,
                short(&r.snapshot)
            ),
            (Some(r), n) => format!(
                "{n} files cannot be restored: {} in snapshot {} and the other references listed",
                r.path,
                short(&r.snapshot)
            ),
        };
    }
}

pub(crate) fn short(hex_id: &str) -> &str {
    &hex_id[..hex_id.len().min(8)]
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyReport {
    /// Index files that decrypted.
    pub index_files: u64,
    /// Pack files in data/.
    pub packs: u64,
    /// Snapshots checked.
    pub snapshots: u64,
    /// Distinct chunks the checked snapshots refer to (all structurally checked).
    pub chunks: u64,
    /// `none`, `all`, `group K/N` or `random P%`.
    pub read_data: String,
    /// Chunks read, authenticated and MAC-checked in full.
    pub chunks_read: u64,
    /// Chunk bytes authenticated.
    pub bytes_read: u64,
    pub problems: Vec<Problem>,
    /// Indexed chunks no snapshot refers to (only counted when every
    /// snapshot was checked): not an error, prune removes them.
    pub unreferenced_chunks: u64,
    pub unreferenced_bytes: u64,
    /// Pack files that no index file lists (e.g. left by an interrupted
    /// backup): not an error, prune removes them.
    pub unreferenced_packs: Vec<String>,
    /// Other remarks that are not errors.
    pub info: Vec<String>,
    pub duration_ms: u64,
}

impl VerifyReport {
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty()
    }
}
