//! envarc: an envelope-encryption file archiver.
//!
//! Every file is encrypted under its own data key, obtained from a rotating
//! customer master key (CMK) and stored, wrapped, in the file's own header.
//! Every encrypted file is an AWS Encryption SDK message (format 2).
//!
//! # Architecture
//!
//! Read this first. The crate is layered, and every dependency points down:
//!
//! ```text
//! cli  (binary only: the only code that prints; parses, runs a pipeline, renders its report)
//!  |
//!  v
//! pipelines: backup  restore  verify  maintain  copy  diff  dircrypt
//!  |
//!  v
//! repo  (repository format 2 on a Storage: config, packs, index, snapshots)
//!  |
//!  v
//! keyring   providers  (key providers: the local CMK keyring; transit, AWS KMS)
//!  |          |
//!  v          v
//! envelope  (the ESDK message format and the KeyProvider seam; imports nothing else)
//! ```
//!
//! A module imports only from the layers below it: `envelope` from nothing
//! in the crate, `repo` names EDKs through `keyring` and `providers`
//! ([`repo::KeyVersion::of`]) but never calls into a pipeline, and a pipeline
//! imports neither the CLI nor another pipeline. Small helpers that import
//! nothing above `envelope` sit beside the layers and serve any of them:
//! [`error`], [`progress`], [`interrupt`], [`pathmatch`], [`fsutil`],
//! [`text`]; [`pool`], sized from a repository, serves the pipelines.
//!
//! What each top-level module owns:
//!
//! - [`envelope`]: reading and writing ESDK messages (headers, frames,
//!   suites, signatures), the raw AES key, and the [`envelope::KeyProvider`]
//!   seam with the one EDK try-loop ([`envelope::provider::unwrap_first`]).
//! - [`keyring`]: the local CMK keyring, a small KMS in one encrypted file.
//! - [`providers`]: remote key services (OpenBao/Vault transit, AWS KMS),
//!   several keys per message, and [`providers::ProviderKind`], the names of
//!   all provider kinds as the repository config records them.
//! - [`repo`]: the repository: its config and pins, chunker, compression,
//!   packs, index, snapshots and manifests, the key policy, and the
//!   [`repo::storage::Storage`] seam (local folder, S3, SFTP).
//! - [`backup`], [`restore`], [`verify`]: the three main pipelines.
//! - [`maintain`]: stats, rewrap, reencrypt, forget, prune, and the rewrite
//!   engine they share.
//! - [`copy`]: snapshots from one repository into another.
//! - [`diff`]: what changed between two snapshots.
//! - [`dircrypt`]: directory mode (`encrypt|decrypt|stats --recursive`).
//! - [`pool`]: the one worker pool of the pipelines.
//! - [`progress`]: the [`progress::Progress`] trait. The library never
//!   prints: pipelines report progress through it and return reports and
//!   errors; only the CLI writes to the terminal.
//! - [`interrupt`]: SIGINT/SIGTERM as a flag the pipelines check between steps.
//! - [`error`]: the crate-wide [`Error`] and the exit codes ([`error::exit`]).
//! - [`pathmatch`]: the path patterns of `--exclude` and `--include`.
//! - [`fsutil`]: crash-safe file writing (temporary file, fsync, rename).
//! - [`text`]: the bits of message text the library and the CLI share.
//!
//! The CLI is not part of the library: `src/cli` is a module of the binary
//! (`src/main.rs` declares it) and reaches the library as `envarc::…`, like
//! any other user of the crate; nothing in the library, the tests or the
//! benches can import it. It holds the clap definitions, one handler per
//! command, and `cli/keyspec/`, the registry of key providers as the command
//! line and a repository config name them (one module per provider kind).
//!
//! Exit codes are defined once, in [`error::exit`], and decided only in the
//! CLI and `main`. A failed run's code is [`Error::exit_code`], from the
//! error's [`Error::kind`]; library code that recovers from some failures
//! asks [`Error::is_integrity`] or [`Error::is_key_problem`], never a code.
//! A run that finished with some items failed or problems found gets its
//! code from its CLI handler, which reads the pipeline's report (restore's
//! failed entries, verify's problems); `main` only turns the result into
//! the process status.
//!
//! Tests: unit tests sit beside the code (`#[cfg(test)]` modules and
//! `*_tests.rs` files). The integration tests drive the built binary, one
//! test binary per theme:
//!
//! - `tests/envelope`: the message format, the official ESDK vectors,
//!   tampering, round-trip properties, the fuzz corpus, Python ESDK interop;
//! - `tests/repo`: backup, restore, verify, packs, path safety, attacks from
//!   the storage side, deduplication;
//! - `tests/story`: the rotation story (stats, rewrap, reencrypt, forget,
//!   prune) and the demo;
//! - `tests/faults`: unreadable files, concurrent runs, full disks, SIGKILL,
//!   races, crashes mid-backup;
//! - `tests/keys`: keyring rotation and `envarc key`, the keyring against the
//!   official SDK, OpenBao transit;
//! - `tests/storage`: `Storage` conformance on a folder, S3 (SeaweedFS, moto)
//!   and SFTP (OpenSSH), and their faults;
//! - `tests/aws_kms`: AWS KMS through moto and the Python ESDK;
//! - `tests/dircrypt`: directory mode;
//! - `tests/util`: what they share: running the binary, test data, tree
//!   capture, and the launchers of the peer servers (bao, moto, SeaweedFS,
//!   sshd).
#![forbid(unsafe_code)]

pub mod backup;
pub mod dircrypt;
pub mod envelope;
pub mod error;
pub mod keyring;
pub mod maintain;
pub mod pathmatch;
pub mod pool;
pub mod progress;
pub mod providers;
pub mod repo;

pub use error::{Error, Result};
pub mod copy;
pub mod diff;
pub mod fsutil;
pub mod interrupt;
pub mod restore;
pub mod text;
pub mod verify;
