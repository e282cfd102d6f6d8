//! `envarc encrypt` and `envarc decrypt`: one file or stream in, one out.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use envarc::envelope::{
    context, pipeline, CommitmentPolicy, DecryptOptions, EncryptOptions, ReadLimits, Suite,
    DEFAULT_FRAME_LENGTH,
};
use envarc::fsutil::{AtomicFile, Writeback};
use envarc::{Error, Result};

use super::fmt::context_of;
use super::keyspec::{open_provider, provider, KeyArgs};
use super::{GlobalArgs, Output};

#[derive(clap::Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Algorithm suite, named as the AWS Encryption SDKs name them (or by
    /// hex ID): AES_256_GCM_HKDF_SHA512_COMMIT_KEY (0x0478, the default:
    /// key-committing, unsigned), AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384
    /// (0x0578, the SDKs' own default: also signed, so that nobody who holds
    /// the data key, such as another recipient, can forge a message: use it
    /// for files meant for other people), or envarc's extension
    /// CHACHA20_POLY1305_HKDF_SHA512_COMMIT_KEY (0xcc20, envarc only).
    #[arg(long, value_name = "SUITE", value_parser = parse_suite, conflicts_with = "cipher")]
    pub algorithm: Option<Suite>,
    /// Content cipher of an unsigned suite (older spelling of --algorithm).
    #[arg(long, value_parser = ["aes-256-gcm", "chacha20-poly1305"])]
    pub cipher: Option<String>,
    /// Plaintext bytes per frame.
    #[arg(long, default_value_t = DEFAULT_FRAME_LENGTH, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..=(16 * 1024 * 1024)))]
    pub frame_length: u32,
    /// Encryption context pair (stored in clear, authenticated); repeatable.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", value_parser = context::parse_pair)]
    pub context: Vec<(String, String)>,
    /// Input file; stdin when absent or "-". With --recursive, a folder.
    pub input: Option<PathBuf>,
    /// Output file; stdout when absent or "-". With --recursive, a folder.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace an existing output file (refused otherwise).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub dir: super::dircrypt::DirArgs,
}

#[derive(clap::Args)]
pub struct DecryptArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Require this encryption context pair; repeatable.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", value_parser = context::parse_pair)]
    pub context: Vec<(String, String)>,
    /// Also read non-committing (format 1, suite 0x0178) messages. Only for data
    /// from writers you trust.
    #[arg(long)]
    pub legacy_non_committing: bool,
    /// Largest frame length accepted.
    #[arg(long, default_value_t = ReadLimits::default().max_frame_length, value_name = "BYTES")]
    pub max_frame_length: u32,
    /// Largest header accepted.
    #[arg(long, default_value_t = ReadLimits::default().max_header_size, value_name = "BYTES")]
    pub max_header_size: usize,
    /// Most encrypted data keys accepted in one header.
    #[arg(long, default_value_t = ReadLimits::default().max_edks, value_name = "N")]
    pub max_edks: usize,
    /// Input file; stdin when absent or "-". With --recursive, a folder.
    pub input: Option<PathBuf>,
    /// Output file (with --recursive, a folder); stdout when absent or "-". A file is written beside its
    /// place and renamed into it only once everything authenticated, the
    /// signature of a signed message included. On stdout, frames are released
    /// as they authenticate (the ESDK's streaming model), the last one only
    /// after the signature verified; a failure part-way exits non-zero after
    /// some output, so check the exit status before using it.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Replace an existing output file (refused otherwise).
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub dir: super::dircrypt::DirArgs,
}

fn parse_suite(s: &str) -> std::result::Result<Suite, String> {
    Suite::from_sdk_name(s).ok_or_else(|| {
        let names: Vec<&str> = Suite::WRITABLE.iter().map(|(n, _)| *n).collect();
        format!(
            "'{s}' is not a suite envarc writes; choose one of {} (or its hex ID); non-committing suites are never written",
            names.join(", ")
        )
    })
}

/// Capacity of the buffer around the output. The pipeline writes batches of
/// frames (megabytes) that bypass it; it only gathers the small pieces (a
/// final frame's prefix, the footer, tiny messages).
const IO_BUFFER: usize = 64 * 1024;

pub(super) fn is_stdio(p: &Option<PathBuf>) -> bool {
    p.as_deref().is_none_or(|p| p == Path::new("-"))
}

/// The input, unbuffered: the pipeline reads whole batches of frames straight
/// into their buffers.
fn open_input(p: &Option<PathBuf>) -> Result<Box<dyn Read + Send>> {
    if is_stdio(p) {
        return Ok(Box::new(io::stdin()));
    }
    let p = p.as_ref().unwrap();
    let f = File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
    Ok(Box::new(f))
}

/// A file being written whose writeback starts as it goes (see
/// [`Writeback`]), instead of being left to the fsync at the end.
struct EarlyWriteback<'a> {
    file: &'a File,
    writeback: Writeback,
}

impl Write for EarlyWriteback<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writeback.write(&mut self.file, buf)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        self.writeback.write_vectored(&mut self.file, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Runs `body` against the output: stdout, or an [`AtomicFile`] that is
/// committed only if `body` succeeds (so a failure leaves OUT untouched).
/// Refuses to replace an existing output file unless `--force`, and to
/// write a binary message to a terminal unless `-o -` asks for it.
pub(super) fn check_output(p: &Option<PathBuf>, force: bool, binary: bool) -> Result<()> {
    use std::io::IsTerminal;
    match p {
        None if binary && io::stdout().is_terminal() => Err(Error::Usage(
            "refusing to write an encrypted message (binary) to the terminal: pass -o FILE, \
             redirect stdout, or pass -o - to write it there anyway"
                .into(),
        )),
        Some(path) if !is_stdio(p) && !force && path.symlink_metadata().is_ok() => {
            Err(Error::Usage(format!(
                "{} exists; pass --force to replace it, or -o another path",
                path.display()
            )))
        }
        _ => Ok(()),
    }
}

/// A first byte that is no message format version means the input is not
/// a message at all (a plaintext file, a wrong path): say that.
fn not_a_message(input: &Option<PathBuf>, e: Error) -> Error {
    match e {
        Error::Envelope(envarc::envelope::Error::UnsupportedVersion(b)) if b > 2 => {
            let name = match input {
                Some(p) if p.as_os_str() != "-" => p.display().to_string(),
                _ => "the input".into(),
            };
            Error::Other(format!(
                "{name} is not an encrypted message (its first byte is {b:#04x}; an AWS \
                 Encryption SDK message starts with 0x02, or 0x01 in format 1): pass the \
                 .enc file, or check that it was written by `envarc encrypt`"
            ))
        }
        e => e,
    }
}

pub(super) fn with_output(
    p: &Option<PathBuf>,
    body: impl FnOnce(&mut (dyn Write + Send)) -> Result<()>,
) -> Result<()> {
    if is_stdio(p) {
        // Straight to file descriptor 1: std's stdout is line-buffered, which
        // would scan every batch for newlines and copy what follows the last.
        let fd = io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::io("opening stdout", e))?;
        let mut w = BufWriter::with_capacity(IO_BUFFER, File::from(fd));
        body(&mut w)?;
        return w.flush().map_err(|e| Error::io("writing to stdout", e));
    }
    let path = p.as_ref().unwrap();
    let mut f = AtomicFile::create(path).map_err(|e| {
        Error::io(
            format!("creating a temporary file beside {}", path.display()),
            e,
        )
    })?;
    {
        let early = EarlyWriteback {
            file: f.file(),
            writeback: Writeback::default(),
        };
        let mut w = BufWriter::with_capacity(IO_BUFFER, early);
        body(&mut w)?;
        w.flush()
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
    }
    f.commit().map_err(|e| {
        Error::io(
            format!("renaming the output into place at {}", path.display()),
            e,
        )
    })
}

/// `--json` prints its summary on stdout, so it cannot share stdout with the data:
/// the summary would end up inside the message (or the plaintext).
fn check_json_output(out: &Output, output: &Option<PathBuf>) -> Result<()> {
    if out.json && is_stdio(output) {
        return Err(Error::Usage(
            "--json prints its summary on stdout, which carries the data here; pass -o FILE, or drop --json".into(),
        ));
    }
    Ok(())
}

pub fn encrypt(out: &Output, g: &GlobalArgs, a: EncryptArgs) -> Result<i32> {
    if a.dir.recursive {
        super::dircrypt::check_paths(&a.input, &a.output)?;
    } else {
        check_json_output(out, &a.output)?;
    }
    if a.key.key.is_empty() && a.key.raw_key_file.is_none() {
        return Err(Error::Usage(
            "no key given: pass --key KEY (a key id or alias/NAME, see `envarc key list`; \
             transit:KEYNAME; or an AWS KMS key ARN), or --raw-key-file FILE --key-name NAME"
                .into(),
        ));
    }
    let provider = provider(&a.key, g)?;
    let suite = match (&a.algorithm, &a.cipher) {
        (Some(s), _) => *s,
        (None, Some(c)) => Suite::from_cli_name(c).expect("clap restricts the cipher names"),
        (None, None) => Suite::Aes256GcmHkdfSha512Commit,
    };
    let opts = EncryptOptions {
        suite,
        frame_length: a.frame_length,
        context: context_of(&a.context)?,
    };
    if a.dir.recursive {
        let io = (&a.input, &a.output);
        return super::dircrypt::encrypt(out, &a.dir, io, provider.as_ref(), opts);
    }
    check_output(&a.output, a.force, true)?;
    let input = open_input(&a.input)?;
    let mut info = None;
    with_output(&a.output, |w| {
        info = Some(pipeline::encrypt_stream(provider.as_ref(), &opts, input, w, None)?.1);
        Ok(())
    })?;
    let info = info.expect("set on success");
    out.json(&serde_json::json!({
        "MessageId": hex::encode(info.message_id),
        "PlaintextBytes": info.plaintext_len,
        "CiphertextBytes": info.total_len,
        "Suite": format!("{:#06x}", opts.suite.id()),
    }))?;
    Ok(envarc::error::exit::OK)
}

pub fn decrypt(out: &Output, g: &GlobalArgs, a: DecryptArgs) -> Result<i32> {
    if a.dir.recursive {
        super::dircrypt::check_paths(&a.input, &a.output)?;
    } else {
        check_json_output(out, &a.output)?;
    }
    let provider = open_provider(&a.key, g, true)?;
    let opts = DecryptOptions {
        policy: if a.legacy_non_committing {
            CommitmentPolicy::AllowLegacyRead
        } else {
            CommitmentPolicy::RequireCommitment
        },
        limits: ReadLimits {
            max_frame_length: a.max_frame_length,
            max_header_size: a.max_header_size,
            max_edks: a.max_edks,
        },
        expected_context: context_of(&a.context)?,
    };
    if a.dir.recursive {
        let io = (&a.input, &a.output);
        return super::dircrypt::decrypt(out, &a.dir, io, provider.as_ref(), opts);
    }
    check_output(&a.output, a.force, false)?;
    let input = open_input(&a.input)?;
    let mut plaintext_len = 0;
    let mut header = None;
    with_output(&a.output, |w| {
        let (h, _, n) = pipeline::decrypt_stream(provider.as_ref(), &opts, input, w, None)?;
        plaintext_len = n;
        header = Some(h);
        Ok(())
    })
    .map_err(|e| not_a_message(&a.input, e))?;
    let h = header.expect("set on success");
    out.json(&serde_json::json!({
        "MessageId": hex::encode(&h.message_id),
        "PlaintextBytes": plaintext_len,
        "Suite": format!("{:#06x}", h.suite.id()),
        "EncryptionContext": h.context,
        "EncryptedDataKeys": h.edks.iter().map(|e| e.describe()).collect::<Vec<_>>(),
    }))?;
    Ok(envarc::error::exit::OK)
}
