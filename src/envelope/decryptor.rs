//! The reading side of the framed body: [`Decryptor`] is a `Read` that releases
//! a frame's plaintext only after that frame authenticated, and reports an error
//! unless the final frame authenticated and nothing follows it; plus the
//! header-only [`open_header`]. There is deliberately no way to give an
//! existing message new EDKs and a new header tag: the header IV is fixed at
//! zero, so a second tag under the same data key and message ID would hand
//! out the GHASH key (security invariant 2). Rewrap writes new messages.
//! Layout and AAD: see `stream.rs`.

use std::io::{self, Read, Write};

use super::header::{ContentType, Header, Parsed};
use super::signing::{Verifier, MAX_SIGNATURE_LEN};
use super::stream::{
    body_aad, MessageInfo, END_MARKER, FINAL_FRAME_STR, FRAME_STR, PREFIX, SINGLE_BLOCK_STR,
};
use super::suite::{frame_iv, ContentCipher, IV_LEN, TAG_LEN};
use super::{
    context, CommitmentPolicy, DataKey, DecryptOptions, EncryptionContext, Error, KeyProvider,
    ReadLimits,
};

/// A reader that first returns bytes already read past the header.
struct Source<R> {
    pending: Vec<u8>,
    pos: usize,
    inner: R,
    consumed: u64,
    /// Signed suites: hashes every body byte read, until the footer.
    verifier: Option<Verifier>,
}

impl<R: Read> Source<R> {
    fn read_exact(&mut self, out: &mut [u8]) -> Result<(), Error> {
        let from_pending = out.len().min(self.pending.len() - self.pos);
        out[..from_pending].copy_from_slice(&self.pending[self.pos..self.pos + from_pending]);
        self.pos += from_pending;
        if self.pos == self.pending.len() && !self.pending.is_empty() {
            self.pending = Vec::new();
            self.pos = 0;
        }
        let rest = &mut out[from_pending..];
        if !rest.is_empty() {
            self.inner.read_exact(rest).map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => Error::Truncated,
                _ => Error::Io(e),
            })?;
        }
        self.consumed += out.len() as u64;
        if let Some(v) = self.verifier.as_mut() {
            v.update(out);
        }
        Ok(())
    }

    /// Reads the footer of a signed message and checks its signature over
    /// everything read before it.
    fn verify_footer(&mut self) -> Result<(), Error> {
        let Some(verifier) = self.verifier.take() else {
            return Ok(());
        };
        let mut len = [0u8; 2];
        self.read_exact(&mut len)?;
        let len = u16::from_be_bytes(len) as usize;
        if len > MAX_SIGNATURE_LEN {
            return Err(Error::Malformed(format!(
                "the footer announces a {len}-byte signature; an ECDSA P-384 signature has at most {MAX_SIGNATURE_LEN}"
            )));
        }
        let mut der = [0u8; MAX_SIGNATURE_LEN];
        self.read_exact(&mut der[..len])?;
        verifier.verify(&der[..len])
    }

    fn at_eof(&mut self) -> Result<bool, Error> {
        if self.pos < self.pending.len() {
            return Ok(false);
        }
        let mut b = [0u8; 1];
        loop {
            match self.inner.read(&mut b) {
                Ok(0) => return Ok(true),
                Ok(_) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        }
    }
}

/// Reads a header from the start of `inner`, returning it and the bytes read
/// beyond it. Reads no more than the header size limit plus one chunk.
fn read_header<R: Read>(
    inner: &mut R,
    policy: CommitmentPolicy,
    limits: &ReadLimits,
) -> Result<(Parsed, Vec<u8>, Vec<u8>), Error> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = 512;
    loop {
        match Header::parse(&buf, policy, limits) {
            Ok(parsed) => {
                let rest = buf.split_off(parsed.total_len);
                return Ok((parsed, buf, rest));
            }
            Err(Error::Truncated) => {}
            Err(e) => return Err(e),
        }
        let start = buf.len();
        buf.resize(start + chunk, 0);
        let n = loop {
            match inner.read(&mut buf[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::Io(e)),
            }
        };
        buf.truncate(start + n);
        if n == 0 {
            return Err(Error::Truncated);
        }
        chunk = (chunk * 2).min(64 * 1024);
    }
}

/// Parses a message's header without any key: for listing and structural checks.
pub fn open_header<R: Read>(
    inner: &mut R,
    policy: CommitmentPolicy,
    limits: &ReadLimits,
) -> Result<Parsed, Error> {
    Ok(read_header(inner, policy, limits)?.0)
}

/// A message whose header was read and authenticated: what a body reader needs.
pub(super) struct Opened<R> {
    pub header: Header,
    pub header_len: u64,
    pub cipher: ContentCipher,
    /// Signed suites: the hash so far (the header), to go on over the body.
    pub verifier: Option<Verifier>,
    /// Bytes read past the header.
    pub rest: Vec<u8>,
    pub inner: R,
}

/// Reads and checks a header: public key (signed suites), context, data key
/// unwrap, key commitment, header tag.
pub(super) fn open<R: Read>(
    provider: &dyn KeyProvider,
    opts: &DecryptOptions,
    mut inner: R,
) -> Result<Opened<R>, Error> {
    let (parsed, header_bytes, rest) = read_header(&mut inner, opts.policy, &opts.limits)?;
    let header = parsed.header;
    let verifier = if header.suite.is_signed() {
        let mut v = Verifier::from_context(&header.context)?;
        v.update(&header_bytes);
        Some(v)
    } else {
        None
    };
    let (full_ctx, reproduced) = merge_context(&header.context, &opts.expected_context)?;
    let data_key = unwrap_data_key(provider, &header, &full_ctx, &reproduced)?;
    let cipher = verify_header(
        &header,
        &data_key,
        &header_bytes[..parsed.authenticated_len],
        &reproduced,
    )?;
    Ok(Opened {
        header,
        header_len: parsed.total_len as u64,
        cipher,
        verifier,
        rest,
        inner,
    })
}

/// Decrypts one message. `read` hands out plaintext frame by frame, each only
/// after its tag verified. Plaintext read before an error belongs to frames that
/// did authenticate, but the message as a whole is only authentic once `read`
/// returned 0 (or [`finish`](Self::finish) returned `Ok`): write it to a
/// temporary file and rename only then (invariant 4).
pub struct Decryptor<R: Read> {
    src: Source<R>,
    header: Header,
    header_len: u64,
    cipher: ContentCipher,
    frame_len: usize,
    buf: Vec<u8>,
    aad: Vec<u8>,
    out_start: usize,
    out_end: usize,
    seq: u32,
    done: bool,
    failed: bool,
    plaintext_len: u64,
    limits: ReadLimits,
}

impl<R: Read> Decryptor<R> {
    pub fn new(provider: &dyn KeyProvider, opts: &DecryptOptions, inner: R) -> Result<Self, Error> {
        Ok(Self::from_opened(open(provider, opts, inner)?, opts))
    }

    /// Goes on reading the body of a message whose header [`open`] checked.
    pub(super) fn from_opened(o: Opened<R>, opts: &DecryptOptions) -> Self {
        let frame_len = o.header.frame_length as usize;
        Decryptor {
            src: Source {
                pending: o.rest,
                pos: 0,
                inner: o.inner,
                consumed: 0,
                verifier: o.verifier,
            },
            header_len: o.header_len,
            cipher: o.cipher,
            frame_len,
            buf: Vec::with_capacity(if frame_len > 0 {
                PREFIX + frame_len + TAG_LEN
            } else {
                0
            }),
            aad: Vec::with_capacity(32 + FINAL_FRAME_STR.len() + 12),
            out_start: 0,
            out_end: 0,
            seq: 1,
            done: false,
            failed: false,
            plaintext_len: 0,
            limits: opts.limits.clone(),
            header: o.header,
        }
    }

    pub fn header(&self) -> &Header {
        &self.header
    }

    pub fn header_len(&self) -> u64 {
        self.header_len
    }

    /// Authenticates the next frame and returns its plaintext, or `None` after
    /// the final frame (and the check that nothing follows it).
    pub fn next_frame(&mut self) -> Result<Option<&[u8]>, Error> {
        if self.failed {
            return Err(Error::Invalid(
                "this message already failed to decrypt".into(),
            ));
        }
        if self.done {
            return Ok(None);
        }
        let r = match self.header.content_type {
            ContentType::Framed => self.read_frame(),
            ContentType::NonFramed => self.read_single_block(),
        };
        // The final frame is released only once the signature verified, so a
        // reader of a signed message never sees its end before that.
        let r = r.and_then(|()| {
            if self.done {
                self.src.verify_footer()
            } else {
                Ok(())
            }
        });
        if let Err(e) = r {
            self.failed = true;
            return Err(e);
        }
        if self.done && !self.src.at_eof()? {
            self.failed = true;
            return Err(Error::TrailingData);
        }
        self.plaintext_len += (self.out_end - self.out_start) as u64;
        Ok(Some(&self.buf[self.out_start..self.out_end]))
    }

    fn read_frame(&mut self) -> Result<(), Error> {
        let mut word = [0u8; 4];
        self.src.read_exact(&mut word)?;
        let first = u32::from_be_bytes(word);
        let last = first == END_MARKER;
        let seq = if last {
            self.src.read_exact(&mut word)?;
            u32::from_be_bytes(word)
        } else {
            first
        };
        if seq != self.seq {
            return Err(Error::Sequence {
                expected: self.seq,
                found: seq,
            });
        }
        let mut iv = [0u8; IV_LEN];
        self.src.read_exact(&mut iv)?;
        check_iv(&iv, seq)?;
        let len = if last {
            self.src.read_exact(&mut word)?;
            let len = u32::from_be_bytes(word) as usize;
            if len > self.frame_len {
                return Err(Error::Malformed(format!(
                    "final frame holds {len} bytes, more than the frame length {}",
                    self.frame_len
                )));
            }
            len
        } else {
            self.frame_len
        };
        self.buf.resize(len + TAG_LEN, 0);
        self.src.read_exact(&mut self.buf[..len + TAG_LEN])?;
        let kind = if last { FINAL_FRAME_STR } else { FRAME_STR };
        let aad = body_aad(
            &mut self.aad,
            &self.header.message_id,
            kind,
            seq,
            len as u64,
        );
        let (content, tag) = self.buf.split_at_mut(len);
        self.cipher
            .open_in_place(&iv, aad, content, tag)
            .map_err(|_| Error::FrameAuth { sequence: seq })?;
        self.out_start = 0;
        self.out_end = len;
        if last {
            self.done = true;
        } else {
            self.seq = seq
                .checked_add(1)
                .filter(|s| *s != END_MARKER)
                .ok_or_else(|| Error::Malformed("more than 2^32 - 2 frames".into()))?;
        }
        Ok(())
    }

    fn read_single_block(&mut self) -> Result<(), Error> {
        let mut iv = [0u8; IV_LEN];
        self.src.read_exact(&mut iv)?;
        check_iv(&iv, 1)?;
        let mut len = [0u8; 8];
        self.src.read_exact(&mut len)?;
        let len = u64::from_be_bytes(len);
        let limit = u64::from(self.limits.max_frame_length);
        if len > limit {
            return Err(Error::FrameTooLong { length: len, limit });
        }
        let len = len as usize;
        self.buf.resize(len + TAG_LEN, 0);
        self.src.read_exact(&mut self.buf[..len + TAG_LEN])?;
        let aad = body_aad(
            &mut self.aad,
            &self.header.message_id,
            SINGLE_BLOCK_STR,
            1,
            len as u64,
        );
        let (content, tag) = self.buf.split_at_mut(len);
        self.cipher
            .open_in_place(&iv, aad, content, tag)
            .map_err(|_| Error::FrameAuth { sequence: 1 })?;
        self.out_start = 0;
        self.out_end = len;
        self.done = true;
        Ok(())
    }

    /// Decrypts the rest of the message into `out`, frame by frame, without an
    /// intermediate copy. Returns the plaintext length written.
    pub fn copy_to<W: Write + ?Sized>(&mut self, out: &mut W) -> Result<u64, Error> {
        let mut n = 0u64;
        if self.out_start < self.out_end {
            out.write_all(&self.buf[self.out_start..self.out_end])?;
            n += (self.out_end - self.out_start) as u64;
            self.out_start = self.out_end;
        }
        while let Some(frame) = self.next_frame()? {
            out.write_all(frame)?;
            n += frame.len() as u64;
        }
        self.out_start = self.out_end;
        Ok(n)
    }

    /// Reads and authenticates the rest of the message, discarding plaintext.
    /// Returns the total plaintext length of the message.
    pub fn finish(mut self) -> Result<MessageInfo, Error> {
        self.out_start = self.out_end;
        while self.next_frame()?.is_some() {}
        Ok(MessageInfo {
            message_id: self.header.message_id32().unwrap_or([0u8; 32]),
            header_len: self.header_len,
            total_len: self.header_len + self.src.consumed,
            plaintext_len: self.plaintext_len,
        })
    }

    /// Body bytes consumed so far (header excluded).
    pub fn body_bytes_read(&self) -> u64 {
        self.src.consumed
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.out_start == self.out_end {
            match self.next_frame() {
                Ok(Some(_)) => {}
                Ok(None) => return Ok(0),
                Err(e) => return Err(e.into()),
            }
        }
        let n = out.len().min(self.out_end - self.out_start);
        out[..n].copy_from_slice(&self.buf[self.out_start..self.out_start + n]);
        self.out_start += n;
        Ok(n)
    }
}

/// A frame's IV must be its sequence number (the ESDK's rule, and the reason a
/// nonce never repeats under a message key: invariant 2). A writer that
/// repeated or chose IVs would still produce tags that verify, so the check is
/// on the bytes themselves, before decryption.
pub(super) fn check_iv(iv: &[u8; IV_LEN], seq: u32) -> Result<(), Error> {
    if *iv == frame_iv(seq) {
        return Ok(());
    }
    Err(Error::FrameIv { sequence: seq })
}

/// Splits the caller's expected context into the header's pairs (which must
/// match) and reproduced pairs (absent from the header, authenticated only).
fn merge_context(
    stored: &EncryptionContext,
    expected: &EncryptionContext,
) -> Result<(EncryptionContext, EncryptionContext), Error> {
    let mut full = stored.clone();
    let mut reproduced = EncryptionContext::new();
    for (k, v) in expected {
        match stored.get(k) {
            Some(sv) if sv == v => {}
            Some(_) => return Err(Error::ContextMismatch { key: k.clone() }),
            None => {
                full.insert(k.clone(), v.clone());
                reproduced.insert(k.clone(), v.clone());
            }
        }
    }
    Ok((full, reproduced))
}

/// Unwraps the data key under the full context. A required pair that the header
/// does not hold is part of the key-wrap AAD, so a wrong pair shows up as a failed
/// unwrap; when the stored context alone unwraps, the key is right and the pair
/// is what is wrong, and the error says so instead of blaming the key.
fn unwrap_data_key(
    provider: &dyn KeyProvider,
    header: &Header,
    full_ctx: &EncryptionContext,
    reproduced: &EncryptionContext,
) -> Result<DataKey, Error> {
    match provider.decrypt_data_key(&header.edks, full_ctx) {
        Ok(k) => Ok(k),
        Err(_)
            if !reproduced.is_empty()
                && provider
                    .decrypt_data_key(&header.edks, &header.context)
                    .is_ok() =>
        {
            // Which of several absent pairs is wrong cannot be told apart: name them all.
            let keys: Vec<&str> = reproduced.keys().map(String::as_str).collect();
            Err(Error::ContextMismatch {
                key: keys.join("', '"),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Checks key commitment and the header tag; returns the content cipher.
fn verify_header(
    header: &Header,
    data_key: &DataKey,
    authenticated: &[u8],
    reproduced: &EncryptionContext,
) -> Result<ContentCipher, Error> {
    let cipher = header
        .suite
        .derive_verified(data_key, &header.message_id, &header.commitment)?;
    let mut aad = authenticated.to_vec();
    aad.extend_from_slice(&context::serialize(reproduced)?);
    cipher
        .open_in_place(&header.auth_iv, &aad, &mut [], &header.auth_tag)
        .map_err(|_| Error::HeaderAuth)?;
    Ok(cipher)
}

/// Decrypts a whole buffer; returns the header and the plaintext.
pub fn decrypt_to_vec(
    provider: &dyn KeyProvider,
    opts: &DecryptOptions,
    message: &[u8],
) -> Result<(Header, Vec<u8>), Error> {
    let mut dec = Decryptor::new(provider, opts, message)?;
    let mut out = Vec::with_capacity(message.len());
    dec.copy_to(&mut out)?;
    Ok((dec.header().clone(), out))
}
