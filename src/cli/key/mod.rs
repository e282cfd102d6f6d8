//! `envarc key …`: the local keyring as a small KMS. Every command prints a
//! short summary, or with `--json` the KMS-shaped response.

mod data;
mod manage;

use std::path::PathBuf;

use clap::Subcommand;

use super::{GlobalArgs, Output};
use crate::envelope::context;
use crate::Result;

#[derive(clap::Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// Encryption context pairs. Clap fields spell the type out: its derive
/// recognizes a repeatable option only by a literal `Vec`.
type Pairs = Vec<(String, String)>;

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Create a customer master key; the first one creates the keyring (on a
    /// terminal the new passphrase is asked twice).
    Create(CreateArgs),
    /// List the keys and aliases.
    List,
    /// Show a key's metadata (never its material).
    Describe { key: String },
    /// Point a new alias at a key.
    CreateAlias { alias: String, key: String },
    /// Move an alias to another key of the same spec.
    UpdateAlias { alias: String, key: String },
    /// Delete an alias (the key stays).
    DeleteAlias { alias: String },
    /// Enable a disabled key.
    Enable { key: String },
    /// Disable a key: it can neither encrypt nor decrypt until enabled again.
    Disable { key: String },
    /// Schedule a key's deletion; after the window its material is destroyed
    /// and everything encrypted under it becomes unrecoverable.
    ScheduleDeletion {
        key: String,
        /// Days until deletion, 7 to 30.
        #[arg(long, default_value_t = crate::keyring::DEFAULT_PENDING_WINDOW_DAYS, value_name = "DAYS")]
        pending_window_in_days: u32,
    },
    /// Cancel a scheduled deletion; the key comes back Disabled.
    CancelDeletion { key: String },
    /// Turn on automatic rotation (or change its period).
    EnableRotation {
        key: String,
        /// 90 to 2560 days; default 365 (or the current period).
        #[arg(long, value_name = "DAYS")]
        rotation_period_in_days: Option<u32>,
    },
    /// Turn off automatic rotation.
    DisableRotation { key: String },
    /// Rotate now: add a backing key that wraps every new data key (at most
    /// 10 times per key).
    RotateOnDemand { key: String },
    /// List every backing key of a key, with its date and type.
    Rotations { key: String },
    /// Show whether a key rotates, its period and next rotation date.
    RotationStatus { key: String },
    /// Carry out the rotations and deletions that are due (for cron).
    RotateDue {
        /// Act as of this date (RFC 3339 or YYYY-MM-DD, UTC); a date in the
        /// past acts as now.
        #[arg(long, value_name = "DATE")]
        as_of: Option<String>,
    },
    /// Import 32 bytes of key material into an EXTERNAL key as a new backing
    /// key version.
    ImportMaterial {
        key: String,
        #[arg(long, value_name = "FILE")]
        material_file: PathBuf,
    },
    /// HMAC-SHA-256 of a message (at most 4096 bytes) under an HMAC_256 key.
    GenerateMac {
        key: String,
        #[arg(long, value_name = "FILE")]
        message_file: PathBuf,
    },
    /// Check a MAC; exits 4 when it does not match.
    VerifyMac {
        key: String,
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
        key: String,
        /// The plaintext ("-" for stdin).
        #[arg(long, value_name = "FILE")]
        plaintext_file: PathBuf,
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
        #[arg(long, value_name = "FILE")]
        ciphertext_file: PathBuf,
        /// The source encryption context.
        #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", value_parser = context::parse_pair)]
        context: Vec<(String, String)>,
        #[arg(long, value_name = "KEY")]
        destination_key: String,
        /// The destination encryption context (none by default, as in KMS).
        #[arg(long, value_name = "KEY=VALUE", value_parser = context::parse_pair)]
        destination_context: Vec<(String, String)>,
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct CreateArgs {
    #[arg(long, default_value = "", value_name = "TEXT")]
    pub description: String,
    /// An alias for the new key (alias/NAME).
    #[arg(long, value_name = "alias/NAME")]
    pub alias: Option<String>,
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
    pub key: String,
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

pub fn run(out: &Output, g: &GlobalArgs, a: KeyArgs) -> Result<i32> {
    use KeyCommand as K;
    match a.command {
        K::Create(c) => manage::create(out, g, c),
        K::List => manage::list(out, g),
        K::Describe { key } => manage::describe(out, g, &key),
        K::CreateAlias { alias, key } => {
            manage::alias(out, g, manage::AliasOp::Create, &alias, Some(&key))
        }
        K::UpdateAlias { alias, key } => {
            manage::alias(out, g, manage::AliasOp::Update, &alias, Some(&key))
        }
        K::DeleteAlias { alias } => manage::alias(out, g, manage::AliasOp::Delete, &alias, None),
        K::Enable { key } => manage::set_enabled(out, g, &key, true),
        K::Disable { key } => manage::set_enabled(out, g, &key, false),
        K::ScheduleDeletion {
            key,
            pending_window_in_days,
        } => manage::schedule_deletion(out, g, &key, pending_window_in_days),
        K::CancelDeletion { key } => manage::cancel_deletion(out, g, &key),
        K::EnableRotation {
            key,
            rotation_period_in_days,
        } => manage::set_rotation(out, g, &key, Some(rotation_period_in_days)),
        K::DisableRotation { key } => manage::set_rotation(out, g, &key, None),
        K::RotateOnDemand { key } => manage::rotate_on_demand(out, g, &key),
        K::Rotations { key } => manage::rotations(out, g, &key),
        K::RotationStatus { key } => manage::rotation_status(out, g, &key),
        K::RotateDue { as_of } => manage::rotate_due(out, g, as_of.as_deref()),
        K::ImportMaterial { key, material_file } => {
            manage::import_material(out, g, &key, &material_file)
        }
        K::GenerateMac { key, message_file } => data::generate_mac(out, g, &key, &message_file),
        K::VerifyMac {
            key,
            message_file,
            mac,
        } => data::verify_mac(out, g, &key, &message_file, &mac),
        K::GenerateDataKey(d) => data::generate_data_key(out, g, d, true),
        K::GenerateDataKeyWithoutPlaintext(d) => data::generate_data_key(out, g, d, false),
        K::Encrypt {
            key,
            plaintext_file,
            context,
            output,
        } => data::encrypt(out, g, &key, &plaintext_file, &context, output.as_deref()),
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
    }
}
