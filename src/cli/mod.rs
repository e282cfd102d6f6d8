//! Command-line interface: clap definitions and one handler module per
//! command group. The only place that prints, and the only user of indicatif.

mod backup;
mod copy;
pub mod crypt;
mod demo;
mod demo_check;
mod demo_tree;
mod diff;
mod dircrypt;
mod docs;
mod dump;
mod filter;
pub mod fmt;
mod forget;
mod key;
pub mod keyspec;
mod output;
mod progress_bar;
mod repo;
mod restore;
mod rewrap;
mod stats;
mod tag;
mod unlock;
mod verify;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use envarc::Result;

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
    /// Print nothing but errors, warnings that matter and each entry that
    /// failed (with a closing "N entries failed"); no progress display.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// The keyring file [default: $XDG_CONFIG_HOME/envarc/keyring, else ~/.config/envarc/keyring].
    #[arg(
        help_heading = "Keyring",
        long,
        global = true,
        env = "ENVARC_KEYRING",
        value_name = "PATH"
    )]
    pub keyring: Option<PathBuf>,
    /// Read the keyring passphrase from FILE (one trailing newline is ignored).
    /// Other sources: ENVARC_PASSPHRASE, else a terminal prompt.
    #[arg(help_heading = "Keyring", long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<PathBuf>,
    /// Run CMD with `sh -c` and use what it prints as the keyring passphrase.
    #[arg(help_heading = "Keyring", long, global = true, value_name = "CMD")]
    pub passphrase_command: Option<String>,
    /// Unlock the keyring with a 32-byte key file instead of a passphrase (for
    /// unattended jobs; a new keyring created with it is locked by it).
    #[arg(help_heading = "Keyring", long, global = true, value_name = "FILE")]
    pub keyring_key_file: Option<PathBuf>,
    /// When the repository is locked by another process, retry for up to
    /// DURATION (e.g. 30s, 10m, 1h) before giving up with exit code 6.
    #[arg(help_heading = "Locking", long, global = true, value_name = "DURATION", value_parser = fmt::parse_duration)]
    pub retry_lock: Option<std::time::Duration>,
}

#[derive(Subcommand)]
pub enum Command {
    /// Encrypt a file (or stdin) into one AWS Encryption SDK message
    /// (suite 0x0478 by default; --algorithm for the signed 0x0578).
    Encrypt(crypt::EncryptArgs),
    /// Decrypt a message. To a file, the output appears only once everything
    /// authenticated (signature included); to stdout, frames are released as
    /// they authenticate and a failure exits non-zero.
    Decrypt(crypt::DecryptArgs),
    /// Manage and use the customer master keys of the local keyring (a small KMS).
    Key(key::KeyCommandArgs),
    /// Create a repository.
    Init(repo::InitArgs),
    /// Back up files and folders into a new snapshot.
    Backup(backup::BackupArgs),
    /// List snapshots.
    Snapshots(repo::SnapshotsArgs),
    /// Accept a repository's key set, config generation and location as
    /// pinned on this machine (after a change you made elsewhere, or on a
    /// second machine: --fingerprint).
    Trust(repo::TrustArgs),
    /// List the entries of a snapshot.
    Ls(repo::LsArgs),
    /// Write one file of a snapshot to stdout (or -o FILE).
    Dump(dump::DumpArgs),
    /// Add, remove or set the tags of snapshots (each changed snapshot is
    /// written anew under a new ID).
    Tag(tag::TagArgs),
    /// Check that every snapshot can be restored (--read-data: authenticate all data).
    Verify(verify::VerifyArgs),
    /// Restore a snapshot into a folder.
    Restore(restore::RestoreArgs),
    /// List paths added, removed and changed between two snapshots.
    Diff(diff::DiffArgs),
    /// Copy snapshots from another repository (--from-repo) into this one,
    /// moving only the chunks it lacks (create it with `init --from-repo`).
    Copy(copy::CopyArgs),
    /// Show, per key and key version, which chunks, files and snapshots it
    /// protects (the blast radius of each backing key).
    Stats(stats::StatsArgs),
    /// Write every message under an older key version anew, its data key
    /// wrapped by the current version (reads and writes all that data).
    Rewrap(rewrap::RewrapArgs),
    /// Write everything one key version protects anew under fresh data keys,
    /// then retire that version in the repository (for a compromised key).
    Reencrypt(rewrap::ReencryptArgs),
    /// Remove snapshots by a retention policy (restic's --keep-* rules).
    Forget(forget::ForgetArgs),
    /// Remove data no snapshot refers to.
    Prune(forget::PruneArgs),
    /// Remove the locks of processes that are gone (stale ones; every lock
    /// with --remove-all).
    Unlock(unlock::UnlockArgs),
    /// Show the rotation story end to end in a scratch folder: keyring, CMK,
    /// backups across two rotations, dedup, verify, restore, blast radius.
    Demo(demo::DemoArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(docs::CompletionsArgs),
    /// Print the manual page (roff), or write one page per command.
    Man(docs::ManArgs),
    /// restic's name for `verify`: says so.
    #[command(hide = true, disable_help_flag = true)]
    Check(CheckArgs),
}

/// Whatever follows `envarc check`: only to point to `verify`.
#[derive(clap::Args)]
pub struct CheckArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    rest: Vec<String>,
}

/// Global flags that a command ignores, hidden from its help: `demo` makes
/// its own keyring and repository in a scratch folder, and `completions`
/// and `man` only print.
const IGNORED_GLOBALS: [(&str, &[&str]); 3] = [
    (
        "demo",
        &[
            "keyring",
            "passphrase_file",
            "passphrase_command",
            "keyring_key_file",
            "retry_lock",
        ],
    ),
    ("completions", &[]),
    ("man", &[]),
];

/// The command line as parsed: [`Cli`] with what derive cannot say. On the
/// commands of an existing repository `--key` is hidden: its key set was
/// fixed at `init`, so the flag only draws a warning when it names another
/// key (see `repo::open_pinned`); `init`, `encrypt` and `decrypt` show it.
/// The flags of [`IGNORED_GLOBALS`] are hidden where they are ignored
/// (an empty list: every global flag). They stay accepted there, as clap
/// propagates a global flag only to a command that has none of its name.
pub fn command() -> clap::Command {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let names: Vec<String> = cmd
        .get_subcommands()
        .filter(|c| {
            let has = |id: &str| c.get_arguments().any(|a| a.get_id() == id);
            c.get_name() != "init" && has("repo") && has("key")
        })
        .map(|c| c.get_name().to_string())
        .collect();
    for name in names {
        cmd = cmd.mut_subcommand(name, |c| c.mut_arg("key", |a| a.hide(true)));
    }
    for (name, ignored) in IGNORED_GLOBALS {
        let hidden: Vec<clap::Arg> = cmd
            .get_arguments()
            .filter(|a| a.is_global_set())
            .filter(|a| ignored.is_empty() || ignored.contains(&a.get_id().as_str()))
            .map(|a| a.clone().hide(true))
            .collect();
        cmd = cmd.mut_subcommand(name, |c| c.args(hidden));
    }
    cmd
}

/// Parses the process's arguments with [`command`] (exits on a usage error, as clap does).
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

/// Runs a command and returns the exit code for a run that did not fail outright.
pub fn run(cli: Cli) -> Result<i32> {
    let out = Output::new(&cli.global);
    match cli.command {
        Command::Encrypt(a) => crypt::encrypt(&out, &cli.global, a),
        Command::Decrypt(a) => crypt::decrypt(&out, &cli.global, a),
        Command::Key(a) => key::run(&out, &cli.global, a),
        Command::Init(a) => repo::init(&out, &cli.global, a),
        Command::Backup(a) => backup::backup(&out, &cli.global, a),
        Command::Snapshots(a) => repo::snapshots(&out, &cli.global, a),
        Command::Ls(a) => repo::ls(&out, &cli.global, a),
        Command::Dump(a) => dump::dump(&out, &cli.global, a),
        Command::Tag(a) => tag::tag(&out, &cli.global, a),
        Command::Trust(a) => repo::trust(&out, &cli.global, a),
        Command::Verify(a) => verify::verify(&out, &cli.global, a),
        Command::Restore(a) => restore::restore(&out, &cli.global, a),
        Command::Diff(a) => diff::diff(&out, &cli.global, a),
        Command::Copy(a) => copy::copy(&out, &cli.global, a),
        Command::Stats(a) => stats::stats(&out, &cli.global, a),
        Command::Rewrap(a) => rewrap::rewrap(&out, &cli.global, a),
        Command::Reencrypt(a) => rewrap::reencrypt(&out, &cli.global, a),
        Command::Forget(a) => forget::forget(&out, &cli.global, a),
        Command::Prune(a) => forget::prune(&out, &cli.global, a),
        Command::Unlock(a) => unlock::unlock(&out, &cli.global, a),
        Command::Demo(a) => demo::demo(&out, &cli.global, a),
        Command::Completions(a) => docs::completions(a),
        Command::Man(a) => docs::man(a),
        Command::Check(_) => Err(envarc::Error::Usage(
            "envarc has no `check`; use `envarc verify` (add --read-data to read every chunk)"
                .into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    /// clap checks its definitions only in debug builds: check them here
    /// too, in release test runs (duplicate flags, bad references, …).
    #[test]
    fn the_command_line_is_consistent() {
        super::command().debug_assert();
    }

    fn help_of(name: &str) -> String {
        let mut cmd = super::command();
        cmd.build();
        let sub = cmd.find_subcommand_mut(name).expect("a command");
        sub.render_long_help().to_string()
    }

    #[test]
    fn global_flags_a_command_ignores_are_not_in_its_help_but_still_accepted() {
        let demo = help_of("demo");
        assert!(
            demo.contains("--json") && !demo.contains("--keyring"),
            "{demo}"
        );
        assert!(!demo.contains("--retry-lock"), "{demo}");
        for name in ["completions", "man"] {
            let help = help_of(name);
            assert!(
                !help.contains("--json") && !help.contains("--keyring"),
                "{help}"
            );
        }
        assert!(help_of("backup").contains("--keyring-key-file"));
        let parsed = super::command().try_get_matches_from(["envarc", "demo", "--keyring", "k"]);
        assert!(parsed.is_ok(), "{parsed:?}");
    }
}
