//! Command-line interface: clap definitions and one handler module per
//! command group. The only place that prints, and the only user of indicatif.

mod backup;
mod crypt;
mod diff;
mod output;
mod progress_bar;
mod repo;
mod repo_key;
mod restore;
mod verify;

use clap::{Parser, Subcommand};

use crate::Result;

pub use output::Output;

#[derive(Parser)]
#[command(name = "envarc", version, about = "Envelope-encryption file archiver: every file under its own data key, wrapped by a rotating CMK", long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(clap::Args, Clone, Debug)]
pub struct GlobalArgs {
    /// Print machine-readable JSON on stdout instead of the human summary.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors; no progress display.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Encrypt a file (or stdin) into one AWS Encryption SDK message.
    Encrypt(crypt::EncryptArgs),
    /// Decrypt a message; the output appears only once it fully authenticated.
    Decrypt(crypt::DecryptArgs),
    /// Create a repository.
    Init(repo::InitArgs),
    /// Back up files and folders into a new snapshot.
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots(repo::SnapshotsArgs),
    /// List the entries of a snapshot.
    Ls(repo::LsArgs),
    /// Check that every snapshot can be restored (--read-data: authenticate all data).
    Verify(verify::VerifyArgs),
    /// Restore a snapshot into a folder.
    Restore(restore::RestoreArgs),
    /// List paths added, removed and changed between two snapshots.
    Diff(diff::DiffArgs),
}

/// Runs a command and returns the exit code for a run that did not fail outright.
pub fn run(cli: Cli) -> Result<i32> {
    let out = Output::new(&cli.global);
    match cli.command {
        Command::Encrypt(a) => crypt::encrypt(&out, a),
        Command::Decrypt(a) => crypt::decrypt(&out, a),
        Command::Init(a) => repo::init(&out, a),
        Command::Backup(a) => backup::backup(&out, a),
        Command::Snapshots(a) => repo::snapshots(&out, a),
        Command::Ls(a) => repo::ls(&out, a),
        Command::Verify(a) => verify::verify(&out, a),
        Command::Restore(a) => restore::restore(&out, a),
        Command::Diff(a) => diff::diff(&out, a),
    }
}
