//! `envarc key …`: the local keyring as a small KMS. Every command prints a
//! short summary, or with `--json` the KMS-shaped response.

mod data;
mod manage;
mod passwd;
mod versions;

use std::path::PathBuf;

use clap::Subcommand;

use super::{GlobalArgs, Output};
use envarc::envelope::context;
use envarc::Result;

#[derive(clap::Args)]
pub struct KeyCommandArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// Encryption context pairs. Clap fields spell the type out: its derive
/// recognizes a repeatable option only by a literal `Vec`.
type Pairs = Vec<(String, String)>;

/// A key, named as every key command takes it: positionally, or with
/// `--key-id` as the AWS CLI spells it.
#[derive(clap::Args)]
pub struct KeyName {
    /// The key: its id (a UUID, or a unique prefix of one) or alias/NAME.
    #[arg(value_name = "KEY", required_unless_present = "key_id")]
    key: Option<String>,
    /// The key, as the AWS CLI names it (instead of KEY).
    #[arg(long = "key-id", value_name = "KEY", conflicts_with = "key")]
    key_id: Option<String>,
}

impl KeyName {
    pub fn get(&self) -> &str {
        self.key
            .as_deref()
            .or(self.key_id.as_deref())
            .expect("clap requires KEY or --key-id")
    }
}

/// A key and one of its backing-key versions.
#[derive(clap::Args)]
pub struct VersionRef {
    #[command(flatten)]
    pub key: KeyName,
    /// The backing-key version: N or vN (see `envarc key rotations KEY`).
    #[arg(long, value_name = "N", value_parser = envarc::keyring::versions::parse_version)]
    pub version: u32,
}

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Create a customer master key; the first one creates the keyring (on a
    /// terminal the new passphrase is asked twice).
    #[command(visible_alias = "create-key")]
    Create(CreateArgs),
    /// List the keys and aliases.
    #[command(visible_alias = "list-keys")]
    List,
    /// List the aliases and the keys they name (KMS ListAliases).
    ListAliases {
        /// Only the aliases of this key (id, id prefix or alias/NAME).
        #[arg(long = "key-id", value_name = "KEY")]
        key_id: Option<String>,
    },
    /// Show a key's metadata and the state of each backing-key version
    /// (never its material).
    #[command(visible_alias = "describe-key")]
    Describe(KeyName),
    /// Point a new alias at a key.
    CreateAlias {
        /// The new alias: alias/NAME.
        #[arg(value_name = "ALIAS")]
        alias: String,
        #[command(flatten)]
        key: KeyName,
    },
    /// Move an alias to another key of the same spec.
    UpdateAlias {
        /// The alias to move: alias/NAME.
        #[arg(value_name = "ALIAS")]
        alias: String,
        #[command(flatten)]
        key: KeyName,
    },
    /// Delete an alias (the key stays).
    DeleteAlias {
        /// The alias to delete: alias/NAME.
        #[arg(value_name = "ALIAS")]
        alias: String,
    },
    /// Enable a disabled key.
    #[command(visible_alias = "enable-key")]
    Enable(KeyName),
    /// Disable a key: it can neither encrypt nor decrypt until enabled again.
    #[command(visible_alias = "disable-key")]
    Disable(KeyName),
    /// Schedule a key's deletion; after the window its material is destroyed
    /// and everything encrypted under it becomes unrecoverable.
    #[command(visible_alias = "schedule-key-deletion")]
    ScheduleDeletion {
        #[command(flatten)]
        key: KeyName,
        /// Days until deletion, 7 to 30.
        #[arg(long, default_value_t = envarc::keyring::DEFAULT_PENDING_WINDOW_DAYS, value_name = "DAYS")]
        pending_window_in_days: u32,
    },
    /// Cancel a scheduled deletion; the key comes back Disabled.
    #[command(visible_alias = "cancel-key-deletion")]
    CancelDeletion(KeyName),
    /// Retire one backing-key version that is not the current one: it
    /// unwraps nothing more (undo with reinstate-version).
    RetireVersion(VersionRef),
    /// Undo retire-version: the version unwraps again.
    ReinstateVersion(VersionRef),
    /// Schedule the destruction of one backing-key version's material;
    /// whatever it still wraps becomes unrecoverable after the window.
    ScheduleVersionDeletion {
        #[command(flatten)]
        version: VersionRef,
        /// Days until the material is destroyed, 7 to 30.
        #[arg(long, default_value_t = envarc::keyring::DEFAULT_PENDING_WINDOW_DAYS, value_name = "DAYS")]
        pending_window_in_days: u32,
    },
    /// Cancel a version's scheduled destruction; it comes back retired.
    CancelVersionDeletion(VersionRef),
    /// Turn on automatic rotation (or change its period).
    #[command(visible_alias = "enable-key-rotation")]
    EnableRotation {
        #[command(flatten)]
        key: KeyName,
        /// 90 to 2560 days; default 365 (or the current period).
        #[arg(long, value_name = "DAYS")]
        rotation_period_in_days: Option<u32>,
    },
    /// Turn off automatic rotation.
    #[command(visible_alias = "disable-key-rotation")]
    DisableRotation(KeyName),
    /// Rotate now: add a backing key that wraps every new data key (at most
    /// 10 times per key).
    #[command(visible_alias = "rotate-key-on-demand")]
    RotateOnDemand(KeyName),
    /// List a key's rotations (KMS ListKeyRotations) and each version's state.
    #[command(visible_alias = "list-key-rotations")]
    Rotations {
        #[command(flatten)]
        key: KeyName,
        /// ROTATIONS_ONLY (as in KMS, the default): --json lists the
        /// rotations, not the initial material; ALL_KEY_MATERIAL: that too.
        #[arg(long, value_name = "WHICH", default_value = "ROTATIONS_ONLY", value_parser = ["ROTATIONS_ONLY", "ALL_KEY_MATERIAL"])]
        include_key_material: String,
    },
    /// Show whether a key rotates, its period and next rotation date.
    #[command(visible_alias = "get-key-rotation-status")]
    RotationStatus(KeyName),
    /// Carry out the rotations and deletions that are due (for cron).
    RotateDue {
        /// Act as of this date (RFC 3339 or YYYY-MM-DD, UTC); a date in the
        /// past acts as now; a date in the future needs --force.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
        /// Accept an --as-of date in the future: new backing keys are dated
        /// then, and deletions due before it happen now.
        #[arg(long)]
        force: bool,
    },
    /// Change what unlocks the keyring: a new passphrase, or a switch between
    /// passphrase and key file (both ways).
    ///
    /// The current secret comes from the usual options; the new one from the
    /// options below, else ENVARC_NEW_PASSPHRASE, else the terminal (asked
    /// twice). A passphrase gets the Argon2id cost of ENVARC_ARGON2_PARAMS
    /// when it is set, else the cost the keyring records.
    Passwd(passwd::PasswdArgs),
    /// Import 32 bytes of key material into an EXTERNAL key as a new backing
    /// key version.
    #[command(visible_alias = "import-key-material")]
    ImportMaterial {
        #[command(flatten)]
        key: KeyName,
        /// The 32 bytes of material ("-" for stdin).
        #[arg(long, value_name = "FILE")]
        material_file: PathBuf,
    },
    /// HMAC-SHA-256 of a message (at most 4096 bytes) under an HMAC_256 key.
    GenerateMac {
        #[command(flatten)]
        key: KeyName,
        /// The message ("-" for stdin).
        #[arg(long, value_name = "FILE")]
        message_file: PathBuf,
    },
    /// Check a MAC; exits 4 when it does not match.
    VerifyMac {
        #[command(flatten)]
        key: KeyName,
        /// The message ("-" for stdin).
        #[arg(long, value_name = "FILE")]
        message_file: PathBuf,
        /// The MAC, base64.
        #[arg(long, value_name = "BASE64")]
        mac: String,
    },
    /// Generate a data key: its plaintext and its ciphertext blob under KEY.
    GenerateDataKey(DataKeyArgs),
    /// Generate a data key, returning only its ciphertext blob.
    GenerateDataKeyWithoutPlaintext(DataKeyArgs),
    /// Encrypt up to 4096 bytes into a ciphertext blob.
    Encrypt {
        #[command(flatten)]
        key: KeyName,
        /// The plaintext ("-" for stdin).
        #[arg(long, value_name = "FILE")]
        plaintext_file: PathBuf,
        /// An encryption context pair; repeatable. Decrypt needs the same pairs.
        #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", value_parser = context::parse_pair)]
        context: Vec<(String, String)>,
        /// Write the raw ciphertext blob here instead of printing it in base64.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Decrypt a ciphertext blob; the blob names its key and backing version.
    Decrypt {
        /// The raw ciphertext blob ("-" for stdin).
        #[arg(long, value_name = "FILE")]
        ciphertext_file: PathBuf,
        /// The encryption context it was encrypted with.
        #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", value_parser = context::parse_pair)]
        context: Vec<(String, String)>,
        /// Fail unless the blob was encrypted under this key.
        #[arg(long, value_name = "KEY")]
        key_id: Option<String>,
        /// Write the plaintext here (mode 0600) instead of printing it in base64.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Decrypt a blob and encrypt its plaintext under another key.
    ReEncrypt {
        /// The raw ciphertext blob ("-" for stdin).
        #[arg(long, value_name = "FILE")]
        ciphertext_file: PathBuf,
        /// The source encryption context.
        #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", value_parser = context::parse_pair)]
        context: Vec<(String, String)>,
        /// The key to encrypt under (id, id prefix or alias/NAME).
        #[arg(long, visible_alias = "destination-key-id", value_name = "KEY")]
        destination_key: String,
        /// The destination encryption context (none by default, as in KMS).
        #[arg(long, value_name = "KEY=VALUE", value_parser = context::parse_pair)]
        destination_context: Vec<(String, String)>,
        /// Write the raw ciphertext blob here instead of printing it in base64.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    /// What the key is for (at most 8192 bytes); shown by `key describe`.
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub description: String,
    /// An alias for the new key (alias/NAME).
    #[arg(long, value_name = "alias/NAME")]
    pub alias: Option<String>,
    /// SYMMETRIC_DEFAULT: wraps data keys and encrypts, rotates; HMAC_256:
    /// generate-mac and verify-mac only.
    #[arg(long, default_value = "SYMMETRIC_DEFAULT", value_parser = ["SYMMETRIC_DEFAULT", "HMAC_256"])]
    pub key_spec: String,
    /// AWS_KMS: envarc generates the material; EXTERNAL: you import it.
    #[arg(long, default_value = "AWS_KMS", value_parser = ["AWS_KMS", "EXTERNAL"])]
    pub origin: String,
    /// Rotate automatically.
    #[arg(long)]
    pub enable_rotation: bool,
    /// 90 to 2560 days (default 365).
    #[arg(long, value_name = "DAYS", requires = "enable_rotation")]
    pub rotation_period_in_days: Option<u32>,
}

#[derive(clap::Args)]
pub struct DataKeyArgs {
    #[command(flatten)]
    pub key: KeyName,
    /// An encryption context pair; repeatable. Decrypt needs the same pairs.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", value_parser = context::parse_pair)]
    pub context: Vec<(String, String)>,
    /// AES_256 (32 bytes) or AES_128 (16 bytes).
    #[arg(long, default_value = "AES_256", value_parser = ["AES_256", "AES_128"], conflicts_with = "number_of_bytes")]
    pub key_spec: String,
    /// Length of the data key in bytes (1 to 1024), instead of --key-spec.
    #[arg(long, value_name = "N")]
    pub number_of_bytes: Option<usize>,
    /// Write the raw ciphertext blob here.
    #[arg(long, value_name = "FILE")]
    pub ciphertext_out: Option<PathBuf>,
    /// Write the plaintext data key here (mode 0600).
    #[arg(long, value_name = "FILE")]
    pub plaintext_out: Option<PathBuf>,
}

/// `envarc key …`: key lifecycle and aliases here, versions and data-key
/// operations in their own dispatchers.
pub fn run(out: &Output, g: &GlobalArgs, a: KeyCommandArgs) -> Result<i32> {
    use KeyCommand as K;
    match a.command {
        c @ (K::RetireVersion(_)
        | K::ReinstateVersion(_)
        | K::ScheduleVersionDeletion { .. }
        | K::CancelVersionDeletion(_)
        | K::Rotations { .. }) => run_versions(out, g, c),
        c @ (K::GenerateMac { .. }
        | K::VerifyMac { .. }
        | K::GenerateDataKey(_)
        | K::GenerateDataKeyWithoutPlaintext(_)
        | K::Encrypt { .. }
        | K::Decrypt { .. }
        | K::ReEncrypt { .. }) => run_data(out, g, c),
        c => run_manage(out, g, c),
    }
}

fn run_manage(out: &Output, g: &GlobalArgs, c: KeyCommand) -> Result<i32> {
    use KeyCommand as K;
    match c {
        K::Create(c) => manage::create(out, g, c),
        K::List => manage::list(out, g),
        K::ListAliases { key_id } => manage::list_aliases(out, g, key_id.as_deref()),
        K::Describe(k) => manage::describe(out, g, k.get()),
        K::CreateAlias { alias, key } => {
            manage::alias(out, g, manage::AliasOp::Create, &alias, Some(key.get()))
        }
        K::UpdateAlias { alias, key } => {
            manage::alias(out, g, manage::AliasOp::Update, &alias, Some(key.get()))
        }
        K::DeleteAlias { alias } => manage::alias(out, g, manage::AliasOp::Delete, &alias, None),
        K::Enable(k) => manage::set_enabled(out, g, k.get(), true),
        K::Disable(k) => manage::set_enabled(out, g, k.get(), false),
        K::ScheduleDeletion {
            key,
            pending_window_in_days,
        } => manage::schedule_deletion(out, g, key.get(), pending_window_in_days),
        K::CancelDeletion(k) => manage::cancel_deletion(out, g, k.get()),
        K::EnableRotation {
            key,
            rotation_period_in_days,
        } => manage::set_rotation(out, g, key.get(), Some(rotation_period_in_days)),
        K::DisableRotation(k) => manage::set_rotation(out, g, k.get(), None),
        K::RotateOnDemand(k) => manage::rotate_on_demand(out, g, k.get()),
        K::RotationStatus(k) => manage::rotation_status(out, g, k.get()),
        K::RotateDue { as_of, force } => manage::rotate_due(out, g, as_of.as_deref(), force),
        K::Passwd(p) => passwd::run(out, g, p),
        K::ImportMaterial { key, material_file } => {
            manage::import_material(out, g, key.get(), &material_file)
        }
        _ => unreachable!("run() sends only key management here"),
    }
}

fn run_versions(out: &Output, g: &GlobalArgs, c: KeyCommand) -> Result<i32> {
    use KeyCommand as K;
    match c {
        K::RetireVersion(v) => versions::retire(out, g, v.key.get(), v.version, true),
        K::ReinstateVersion(v) => versions::retire(out, g, v.key.get(), v.version, false),
        K::ScheduleVersionDeletion {
            version: v,
            pending_window_in_days,
        } => versions::schedule_deletion(out, g, v.key.get(), v.version, pending_window_in_days),
        K::CancelVersionDeletion(v) => versions::cancel_deletion(out, g, v.key.get(), v.version),
        K::Rotations {
            key,
            include_key_material,
        } => versions::rotations(
            out,
            g,
            key.get(),
            include_key_material == "ALL_KEY_MATERIAL",
        ),
        _ => unreachable!("run() sends only version commands here"),
    }
}

fn run_data(out: &Output, g: &GlobalArgs, c: KeyCommand) -> Result<i32> {
    use KeyCommand as K;
    match c {
        K::GenerateMac { key, message_file } => {
            data::generate_mac(out, g, key.get(), &message_file)
        }
        K::VerifyMac {
            key,
            message_file,
            mac,
        } => data::verify_mac(out, g, key.get(), &message_file, &mac),
        K::GenerateDataKey(d) => data::generate_data_key(out, g, d, true),
        K::GenerateDataKeyWithoutPlaintext(d) => data::generate_data_key(out, g, d, false),
        K::Encrypt {
            key,
            plaintext_file,
            context,
            output,
        } => data::encrypt(
            out,
            g,
            key.get(),
            &plaintext_file,
            &context,
            output.as_deref(),
        ),
        K::Decrypt {
            ciphertext_file,
            context,
            key_id,
            output,
        } => data::decrypt(
            out,
            g,
            &ciphertext_file,
            &context,
            key_id.as_deref(),
            output.as_deref(),
        ),
        K::ReEncrypt {
            ciphertext_file,
            context,
            destination_key,
            destination_context,
            output,
        } => data::re_encrypt(
            out,
            g,
            &ciphertext_file,
            &context,
            &destination_key,
            &destination_context,
            output.as_deref(),
        ),
        _ => unreachable!("run() sends only data-key commands here"),
    }
}
