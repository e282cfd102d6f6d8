//! The framed body as streaming adapters: [`Encryptor`] is a `Write` with an
//! explicit [`Encryptor::finish`]; [`Decryptor`] is a `Read` that releases a
//! frame's plaintext only after that frame authenticated, and reports an error
//! unless the final frame authenticated and nothing follows it.
//!
//! Memory is bounded by the frame length whatever the message size.
//!
//! Body layout (both formats): regular frame = `seq(4) | iv(12) | content(frame
//! length) | tag(16)`; final frame = `0xFFFFFFFF | seq(4) | iv(12) | len(4) |
//! content(len) | tag(16)`. The frame AAD is `message id | content string |
//! seq(4) | content length(8)`, so frames cannot be reordered, dropped, moved
//! between messages, or have their final marker changed.
//!
//! The writing side lives here; the reading side is in `decryptor.rs` and is
//! re-exported from this module.

use std::io::{self, Write};

use rand::RngCore;

pub use super::decryptor::{decrypt_to_vec, open_header, Decryptor};
use super::header::{ContentType, Header, MessageId};
use super::signing::{Signer, PUBLIC_KEY_CONTEXT_KEY};
use super::suite::{frame_iv, ContentCipher, IV_LEN, TAG_LEN};
use super::{
    context, DataKey, EncryptOptions, EncryptedDataKey, EncryptionContext, Error, KeyProvider,
};

/// A fresh random message ID from the OS CSPRNG: the salt of the message key
/// derivation, so no two messages share a content key or a header tag.
pub(super) fn fresh_message_id() -> MessageId {
    let mut id = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    id
}

pub(super) const FRAME_STR: &[u8] = b"AWSKMSEncryptionClient Frame";
pub(super) const FINAL_FRAME_STR: &[u8] = b"AWSKMSEncryptionClient Final Frame";
pub(super) const SINGLE_BLOCK_STR: &[u8] = b"AWSKMSEncryptionClient Single Block";
pub(super) const END_MARKER: u32 = 0xFFFF_FFFF;
/// Room before the content in the frame buffer: end marker, seq, IV, length.
pub(super) const PREFIX: usize = 4 + 4 + IV_LEN + 4;

/// Builds a frame's AAD into `aad`, which each adapter reuses across frames.
pub(super) fn body_aad<'a>(
    aad: &'a mut Vec<u8>,
    message_id: &[u8],
    kind: &[u8],
    seq: u32,
    len: u64,
) -> &'a [u8] {
    aad.clear();
    aad.extend_from_slice(message_id);
    aad.extend_from_slice(kind);
    aad.extend_from_slice(&seq.to_be_bytes());
    aad.extend_from_slice(&len.to_be_bytes());
    aad
}

/// Computes the header tag: an AEAD over no plaintext with the header as AAD.
pub(super) fn header_tag(cipher: &ContentCipher, iv: &[u8; IV_LEN], aad: &[u8]) -> [u8; TAG_LEN] {
    cipher.seal_in_place(iv, aad, &mut [])
}

/// Checks what a writer is asked for before any key is generated.
pub(super) fn check_encrypt_options(opts: &EncryptOptions) -> Result<(), Error> {
    if !opts.suite.is_committing() {
        return Err(Error::Invalid(
            "envarc never writes non-committing suites".into(),
        ));
    }
    if opts.frame_length == 0 {
        return Err(Error::Invalid(
            "the frame length must be at least 1 byte".into(),
        ));
    }
    if let Some(k) = opts
        .context
        .keys()
        .find(|k| k.starts_with(context::RESERVED_PREFIX))
    {
        return Err(Error::Invalid(format!(
            "encryption context key '{k}' uses the prefix '{}' that the ESDK reserves; choose another key",
            context::RESERVED_PREFIX
        )));
    }
    Ok(())
}

/// The context a message stores: the caller's pairs, plus the public key of a
/// signed suite. Key providers wrap the data key under this full context.
pub(super) fn message_context(opts: &EncryptOptions, signer: Option<&Signer>) -> EncryptionContext {
    let mut ctx = opts.context.clone();
    if let Some(s) = signer {
        ctx.insert(PUBLIC_KEY_CONTEXT_KEY.into(), s.public_key_b64());
    }
    ctx
}

/// Builds and authenticates a format-2 header for a data key and its EDKs.
/// `message_id` must be fresh: a header is tagged exactly once per (data key,
/// message ID), since its IV is fixed at zero (invariant 2).
pub(super) fn build_header(
    opts: &EncryptOptions,
    context: EncryptionContext,
    data_key: &DataKey,
    edks: Vec<EncryptedDataKey>,
    message_id: MessageId,
) -> Result<(Header, ContentCipher, Vec<u8>), Error> {
    check_encrypt_options(opts)?;
    let (cipher, commitment) = opts.suite.derive_committed(data_key, &message_id)?;
    let mut header = Header {
        suite: opts.suite,
        message_id: message_id.to_vec(),
        context,
        edks,
        content_type: ContentType::Framed,
        frame_length: opts.frame_length,
        commitment,
        auth_iv: [0u8; IV_LEN],
        auth_tag: [0u8; TAG_LEN],
    };
    let mut bytes = header.serialize_authenticated()?;
    header.auth_tag = header_tag(&cipher, &header.auth_iv, &bytes);
    bytes.extend_from_slice(&header.auth_tag);
    Ok((header, cipher, bytes))
}

/// What a finished message looks like from outside.
#[derive(Clone, Debug)]
pub struct MessageInfo {
    pub message_id: MessageId,
    /// Header length in bytes, authentication included.
    pub header_len: u64,
    /// Total message length in bytes.
    pub total_len: u64,
    /// Plaintext length in bytes.
    pub plaintext_len: u64,
}

/// Encrypts everything written to it into one message. Call [`finish`](Self::finish):
/// dropping an unfinished encryptor leaves a message without its final frame,
/// which every reader rejects.
pub struct Encryptor<W: Write> {
    inner: W,
    cipher: ContentCipher,
    message_id: MessageId,
    frame_len: usize,
    /// `PREFIX` bytes of room, then the buffered plaintext (up to `frame_len`
    /// bytes); the tag is appended when the frame is sealed. Allocated once at
    /// full size but never zero-filled: only the bytes written are touched.
    buf: Vec<u8>,
    aad: Vec<u8>,
    seq: u32,
    /// Set while a frame is being sealed and written, cleared on success: after
    /// a failed write the buffer holds ciphertext and `seq` was not advanced, so
    /// going on could seal other plaintext under the same IV (invariant 2).
    poisoned: bool,
    /// Signed suites: hashes every byte written, then signs the footer.
    signer: Option<Signer>,
    header_len: u64,
    body_len: u64,
    plaintext_len: u64,
}

impl<W: Write> Encryptor<W> {
    /// Asks the provider for a fresh data key and writes the header. A signed
    /// suite gets a fresh key pair first, since its public key is part of the
    /// context the data key is wrapped under.
    pub fn new(provider: &dyn KeyProvider, opts: &EncryptOptions, inner: W) -> Result<Self, Error> {
        check_encrypt_options(opts)?;
        let signer = opts.suite.is_signed().then(Signer::generate);
        let ctx = message_context(opts, signer.as_ref());
        let (data_key, edks) = provider.generate_data_key(&ctx)?;
        Self::start(&data_key, edks, opts, ctx, signer, inner)
    }

    /// Writes the header for an already generated data key and its EDKs (one
    /// data key for many messages, as a repository does for a file's chunks).
    ///
    /// Every call draws a fresh random message ID, so each message gets its
    /// own derived key and its header is tagged once per (data key, message
    /// ID) whatever the caller does (invariant 2). Signed suites are refused:
    /// their EDKs must be bound to each message's own public key.
    pub fn with_data_key(
        data_key: &DataKey,
        edks: Vec<EncryptedDataKey>,
        opts: &EncryptOptions,
        inner: W,
    ) -> Result<Self, Error> {
        if opts.suite.is_signed() {
            return Err(Error::Invalid(format!(
                "suite {:#06x} signs each message with its own key pair, whose public key the EDKs are bound to; encrypt it with Encryptor::new (a fresh data key)",
                opts.suite.id()
            )));
        }
        Self::start(data_key, edks, opts, opts.context.clone(), None, inner)
    }

    fn start(
        data_key: &DataKey,
        edks: Vec<EncryptedDataKey>,
        opts: &EncryptOptions,
        ctx: EncryptionContext,
        mut signer: Option<Signer>,
        mut inner: W,
    ) -> Result<Self, Error> {
        let message_id = fresh_message_id();
        let (_, cipher, header_bytes) = build_header(opts, ctx, data_key, edks, message_id)?;
        inner.write_all(&header_bytes)?;
        if let Some(s) = signer.as_mut() {
            s.update(&header_bytes);
        }
        let frame_len = opts.frame_length as usize;
        Ok(Encryptor {
            inner,
            cipher,
            message_id,
            frame_len,
            buf: {
                let mut b = Vec::with_capacity(PREFIX + frame_len + TAG_LEN);
                b.resize(PREFIX, 0);
                b
            },
            aad: Vec::with_capacity(32 + FINAL_FRAME_STR.len() + 12),
            seq: 1,
            poisoned: false,
            signer,
            header_len: header_bytes.len() as u64,
            body_len: 0,
            plaintext_len: 0,
        })
    }

    pub fn message_id(&self) -> &MessageId {
        &self.message_id
    }

    /// Plaintext bytes buffered for the frame being filled.
    fn filled(&self) -> usize {
        self.buf.len() - PREFIX
    }

    fn check_usable(&self) -> io::Result<()> {
        if self.poisoned {
            return Err(io::Error::other(Error::Invalid(
                "an earlier write of this message failed, so it is incomplete; discard it and encrypt again".into(),
            )));
        }
        Ok(())
    }

    /// Encrypts the buffered content as frame `self.seq` and writes it.
    fn emit(&mut self, last: bool) -> io::Result<()> {
        self.check_usable()?;
        self.poisoned = true;
        let len = self.filled();
        let seq = self.seq;
        let (kind, start) = if last {
            (FINAL_FRAME_STR, 0)
        } else {
            (FRAME_STR, 8)
        };
        let aad = body_aad(&mut self.aad, &self.message_id, kind, seq, len as u64);
        let iv = frame_iv(seq);
        let tag = self.cipher.seal_in_place(&iv, aad, &mut self.buf[PREFIX..]);
        self.buf.extend_from_slice(&tag);
        if last {
            self.buf[0..4].copy_from_slice(&END_MARKER.to_be_bytes());
            self.buf[4..8].copy_from_slice(&seq.to_be_bytes());
            self.buf[8..20].copy_from_slice(&iv);
            self.buf[20..24].copy_from_slice(&(len as u32).to_be_bytes());
        } else {
            self.buf[8..12].copy_from_slice(&seq.to_be_bytes());
            self.buf[12..24].copy_from_slice(&iv);
        }
        let out = &self.buf[start..];
        self.inner.write_all(out)?;
        if let Some(s) = self.signer.as_mut() {
            s.update(out);
        }
        self.body_len += out.len() as u64;
        self.buf.truncate(PREFIX);
        if !last {
            self.seq = self
                .seq
                .checked_add(1)
                .filter(|s| *s != END_MARKER)
                .ok_or_else(|| {
                    io::Error::other(
                        "message too large: more than 2^32 - 2 frames; use a larger frame length",
                    )
                })?;
        }
        self.poisoned = false;
        Ok(())
    }

    /// Writes the final frame (holding whatever is buffered, possibly nothing)
    /// and returns the inner writer with the message's dimensions.
    pub fn finish(mut self) -> Result<(W, MessageInfo), Error> {
        self.emit(true).map_err(super::from_io)?;
        if let Some(signer) = self.signer.take() {
            let footer = signer.footer()?;
            self.inner.write_all(&footer)?;
            self.body_len += footer.len() as u64;
        }
        self.inner.flush()?;
        let info = MessageInfo {
            message_id: self.message_id,
            header_len: self.header_len,
            total_len: self.header_len + self.body_len,
            plaintext_len: self.plaintext_len,
        };
        Ok((self.inner, info))
    }
}

impl<W: Write> Write for Encryptor<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check_usable()?;
        let mut rest = data;
        while !rest.is_empty() {
            // A full buffer becomes a regular frame only once more data arrives,
            // so that a message whose size is a multiple of the frame length ends
            // with a full final frame rather than an empty one.
            if self.filled() == self.frame_len {
                self.emit(false)?;
            }
            let n = rest.len().min(self.frame_len - self.filled());
            self.buf.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
        }
        self.plaintext_len += data.len() as u64;
        Ok(data.len())
    }

    /// Flushes the inner writer; buffered plaintext stays until its frame is full.
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Encrypts a whole buffer (small payloads: snapshots, indexes, keyrings).
pub fn encrypt_to_vec(
    provider: &dyn KeyProvider,
    opts: &EncryptOptions,
    plaintext: &[u8],
) -> Result<Vec<u8>, Error> {
    let mut enc = Encryptor::new(provider, opts, Vec::with_capacity(plaintext.len() + 512))?;
    enc.write_all(plaintext)?;
    Ok(enc.finish()?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{decrypt_to_vec, DecryptOptions, KeyProvider, RawAesKey};

    /// A writer that fails its `fail_at`-th write (counting from 0) once.
    struct Flaky {
        out: Vec<u8>,
        writes: usize,
        fail_at: usize,
    }

    impl Write for Flaky {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.writes += 1;
            if self.writes - 1 == self.fail_at {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.out.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Invariant 2: after a failed frame write the encryptor refuses to go on,
    /// so no other plaintext can be sealed under the IV of the failed frame.
    #[test]
    fn invariant2_failed_write_poisons_the_encryptor() {
        let key = RawAesKey::new("envarc", "k", &[1u8; 32]).unwrap();
        let opts = EncryptOptions {
            frame_length: 16,
            ..Default::default()
        };
        let sink = Flaky {
            out: Vec::new(),
            writes: 0,
            fail_at: 2, // header, frame 1, then frame 2 fails
        };
        let mut enc = Encryptor::new(&key, &opts, sink).unwrap();
        enc.write_all(&[7u8; 17]).unwrap(); // frame 1 written, 1 byte buffered
        assert!(enc.write_all(&[8u8; 16]).is_err(), "frame 2 fails");
        let again = enc.write(&[9u8; 1]).unwrap_err();
        assert!(again.to_string().contains("earlier write"), "{again}");
        assert!(matches!(enc.finish(), Err(Error::Invalid(_))));
    }

    /// Invariant 2: one data key for many messages (`with_data_key`) still
    /// gives every message its own message ID, hence its own derived key and
    /// commitment, so no header or frame is sealed twice under one key and IV.
    #[test]
    fn invariant2_with_data_key_draws_a_fresh_message_id_each_time() {
        let key = RawAesKey::new("envarc", "k", &[1u8; 32]).unwrap();
        let opts = EncryptOptions::default();
        let (data_key, edks) = key.generate_data_key(&opts.context).unwrap();
        let plaintext = [5u8; 100];
        let message = || {
            let mut enc =
                Encryptor::with_data_key(&data_key, edks.clone(), &opts, Vec::new()).unwrap();
            enc.write_all(&plaintext).unwrap();
            enc.finish().unwrap()
        };
        let ((a, ia), (b, ib)) = (message(), message());
        assert_ne!(ia.message_id, ib.message_id);
        let limits = crate::envelope::ReadLimits::default();
        let ha = Header::parse(&a, Default::default(), &limits).unwrap();
        let hb = Header::parse(&b, Default::default(), &limits).unwrap();
        assert_eq!(ha.header.edks, hb.header.edks, "same data key and EDKs");
        assert_ne!(
            ha.header.commitment, hb.header.commitment,
            "different derived keys"
        );
        assert_ne!(ha.header.auth_tag, hb.header.auth_tag);
        assert_ne!(
            a[ha.total_len..],
            b[hb.total_len..],
            "same plaintext, other ciphertext"
        );
        for m in [&a, &b] {
            assert_eq!(
                decrypt_to_vec(&key, &DecryptOptions::default(), m)
                    .unwrap()
                    .1,
                plaintext
            );
        }
        let signed = EncryptOptions {
            suite: crate::envelope::Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
            ..Default::default()
        };
        assert!(matches!(
            Encryptor::with_data_key(&data_key, edks.clone(), &signed, Vec::new()),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn buffer_stays_within_one_frame_and_no_empty_final_frame() {
        let key = RawAesKey::new("envarc", "k", &[1u8; 32]).unwrap();
        for (size, frame) in [(0usize, 5u32), (5, 5), (10, 5), (11, 5), (1, 1)] {
            let opts = EncryptOptions {
                frame_length: frame,
                ..Default::default()
            };
            let mut enc = Encryptor::new(&key, &opts, Vec::new()).unwrap();
            for b in 0..size {
                enc.write_all(&[b as u8]).unwrap();
                assert!(enc.buf.len() <= PREFIX + frame as usize);
                assert!(enc.buf.capacity() >= PREFIX + frame as usize + TAG_LEN);
            }
            let (m, info) = enc.finish().unwrap();
            let regular = size.saturating_sub(1) / frame as usize;
            let last = size - regular * frame as usize;
            assert_eq!(
                last > 0,
                size > 0,
                "a non-empty message ends with a non-empty frame"
            );
            assert_eq!(
                info.total_len - info.header_len,
                (regular * (32 + frame as usize) + 40 + last) as u64
            );
            let (_, pt) = decrypt_to_vec(&key, &DecryptOptions::default(), &m).unwrap();
            assert_eq!(pt, (0..size).map(|b| b as u8).collect::<Vec<_>>());
        }
    }
}
