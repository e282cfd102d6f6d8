//! `envarc encrypt` and `envarc decrypt`: one file or stream in, one out.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::envelope::{
    context, CommitmentPolicy, DecryptOptions, Decryptor, EncryptOptions, EncryptionContext,
    Encryptor, KeyProvider, RawAesKey, ReadLimits, Suite, DEFAULT_FRAME_LENGTH,
};
use crate::fsutil::AtomicFile;
use crate::{Error, Result};

use super::keyring_args::load_keyring;
use super::{GlobalArgs, Output};

/// Where the wrapping key comes from: the keyring (the default), or a raw key file.
#[derive(clap::Args, Clone, Debug)]
pub struct KeyArgs {
    /// The CMK that wraps the data key: a keyring key id or alias/NAME, or
    /// transit:KEYNAME for an OpenBao/Vault transit key. To decrypt, none is
    /// needed (the message names its key); given, only that key is accepted.
    #[arg(long, value_name = "KEY", conflicts_with = "raw_key_file")]
    pub key: Option<String>,
    /// A file holding a raw AES wrapping key (16, 24 or 32 bytes, as they are).
    #[arg(long, value_name = "FILE")]
    pub raw_key_file: Option<PathBuf>,
    /// Namespace (ESDK provider ID) of the raw wrapping key.
    #[arg(
        long,
        default_value = "envarc",
        value_name = "NS",
        requires = "raw_key_file"
    )]
    pub key_namespace: String,
    /// Name of the raw wrapping key, as stored in each message.
    #[arg(long, value_name = "NAME", requires = "raw_key_file")]
    pub key_name: Option<String>,
    /// Where the server of transit: keys is.
    #[command(flatten)]
    pub transit: super::keys::TransitArgs,
}

#[derive(clap::Args)]
pub struct EncryptArgs {
    #[command(flatten)]
    pub key: KeyArgs,
    /// Content cipher.
    #[arg(long, default_value = "aes-256-gcm", value_parser = ["aes-256-gcm", "chacha20-poly1305"])]
    pub cipher: String,
    /// Plaintext bytes per frame.
    #[arg(long, default_value_t = DEFAULT_FRAME_LENGTH, value_name = "BYTES", value_parser = clap::value_parser!(u32).range(1..=(16 * 1024 * 1024)))]
    pub frame_length: u32,
    /// Encryption context pair (stored in clear, authenticated); repeatable.
    #[arg(short = 'c', long = "context", value_name = "KEY=VALUE", value_parser = context::parse_pair)]
    pub context: Vec<(String, String)>,
    /// Input file; stdin when absent or "-".
    pub input: Option<PathBuf>,
    /// Output file; stdout when absent or "-".
    #[arg(short, long)]
    pub output: Option<PathBuf>,
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
    /// Input file; stdin when absent or "-".
    pub input: Option<PathBuf>,
    /// Output file; stdout when absent or "-". Written to a temporary file and
    /// renamed into place only after the whole message authenticated.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// Builds the key provider the arguments name: a raw key file, else the
/// keyring (bound to `--key` when given; without it the provider only unwraps,
/// from any key of the keyring).
pub fn provider(args: &KeyArgs, g: &GlobalArgs) -> Result<Box<dyn KeyProvider>> {
    open_provider(args, g, false)
}

/// `only_key`: decrypt accepts only EDKs of `--key` (KMS Decrypt with KeyId).
fn open_provider(args: &KeyArgs, g: &GlobalArgs, only_key: bool) -> Result<Box<dyn KeyProvider>> {
    if let Some(p) = args
        .key
        .as_deref()
        .and_then(|k| super::keys::transit_from_spec(k, &args.transit))
    {
        return p;
    }
    let Some(path) = &args.raw_key_file else {
        return Ok(match &args.key {
            Some(k) if only_key => Box::new(load_keyring(g)?.provider(k)?.only_this_key()),
            Some(k) => Box::new(load_keyring(g)?.provider(k)?),
            // No key named: unwrap with whichever provider the message's EDKs
            // name, opening the keyring or reaching the transit server only then.
            None => super::keys::keyless_decrypt(g, &args.transit),
        });
    };
    let Some(name) = &args.key_name else {
        return Err(Error::Usage(
            "--raw-key-file needs --key-name NAME (the name stored in each message)".into(),
        ));
    };
    let material = zeroize::Zeroizing::new(
        std::fs::read(path)
            .map_err(|e| Error::io(format!("reading key file {}", path.display()), e))?,
    );
    Ok(Box::new(RawAesKey::new(
        &args.key_namespace,
        name,
        &material,
    )?))
}

/// Capacity of the buffers around input and output. Writes and reads of a whole
/// default frame (64 KiB of content plus its framing) are at least this large,
/// so they bypass the buffer instead of being copied through it; the buffers
/// only gather the small reads of frame headers and the writes of tiny frames.
const IO_BUFFER: usize = 64 * 1024;

/// Bytes read from the input per `write` into the encryptor.
const COPY_CHUNK: usize = 256 * 1024;

fn is_stdio(p: &Option<PathBuf>) -> bool {
    p.as_deref().is_none_or(|p| p == Path::new("-"))
}

fn open_input(p: &Option<PathBuf>) -> Result<Box<dyn Read>> {
    if is_stdio(p) {
        return Ok(Box::new(io::stdin().lock()));
    }
    let p = p.as_ref().unwrap();
    let f = File::open(p).map_err(|e| Error::io(format!("opening {}", p.display()), e))?;
    Ok(Box::new(BufReader::with_capacity(IO_BUFFER, f)))
}

fn context_of(pairs: &[(String, String)]) -> Result<EncryptionContext> {
    let mut ctx = EncryptionContext::new();
    for (k, v) in pairs {
        if ctx.insert(k.clone(), v.clone()).is_some() {
            return Err(Error::Usage(format!(
                "encryption context key '{k}' given twice"
            )));
        }
    }
    Ok(ctx)
}

/// Runs `body` against the output: stdout, or an [`AtomicFile`] that is
/// committed only if `body` succeeds (so a failure leaves OUT untouched).
fn with_output(p: &Option<PathBuf>, body: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    if is_stdio(p) {
        let stdout = io::stdout();
        let mut w = BufWriter::with_capacity(IO_BUFFER, stdout.lock());
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
        let mut w = BufWriter::with_capacity(IO_BUFFER, &mut f);
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

/// Copies all of `input` into the encryptor in large chunks: one copy from the
/// read buffer into the frame buffer (`io::copy` would add a second through its
/// small stack buffer, as the input is a `dyn Read`).
fn copy_into<W: Write>(input: &mut dyn Read, enc: &mut Encryptor<W>) -> Result<()> {
    let mut buf = vec![0u8; COPY_CHUNK];
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading the input", e)),
        };
        enc.write_all(&buf[..n])
            .map_err(|e| Error::Envelope(crate::envelope::from_io(e)))?;
    }
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
    check_json_output(out, &a.output)?;
    if a.key.key.is_none() && a.key.raw_key_file.is_none() {
        return Err(Error::Usage(
            "no key given: pass --key KEY (a key id or alias/NAME; see `envarc key list`), or \
             --raw-key-file FILE --key-name NAME"
                .into(),
        ));
    }
    let provider = provider(&a.key, g)?;
    let opts = EncryptOptions {
        suite: Suite::from_cli_name(&a.cipher).expect("clap restricts the cipher names"),
        frame_length: a.frame_length,
        context: context_of(&a.context)?,
    };
    let mut input = open_input(&a.input)?;
    let mut info = None;
    with_output(&a.output, |w| {
        let mut enc = Encryptor::new(provider.as_ref(), &opts, w)?;
        copy_into(&mut input, &mut enc)?;
        info = Some(enc.finish()?.1);
        Ok(())
    })?;
    let info = info.expect("set on success");
    out.json(&serde_json::json!({
        "MessageId": hex::encode(info.message_id),
        "PlaintextBytes": info.plaintext_len,
        "CiphertextBytes": info.total_len,
        "Suite": format!("{:#06x}", opts.suite.id()),
    }))?;
    Ok(crate::error::exit::OK)
}

pub fn decrypt(out: &Output, g: &GlobalArgs, a: DecryptArgs) -> Result<i32> {
    check_json_output(out, &a.output)?;
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
    let input = open_input(&a.input)?;
    let mut plaintext_len = 0;
    let mut header = None;
    with_output(&a.output, |w| {
        let mut dec = Decryptor::new(provider.as_ref(), &opts, input)?;
        plaintext_len = dec.copy_to(w)?;
        header = Some(dec.header().clone());
        Ok(())
    })?;
    let h = header.expect("set on success");
    out.json(&serde_json::json!({
        "MessageId": hex::encode(&h.message_id),
        "PlaintextBytes": plaintext_len,
        "Suite": format!("{:#06x}", h.suite.id()),
        "EncryptionContext": h.context,
        "EncryptedDataKeys": h.edks.iter().map(|e| e.describe()).collect::<Vec<_>>(),
    }))?;
    Ok(crate::error::exit::OK)
}
