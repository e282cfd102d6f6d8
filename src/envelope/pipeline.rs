//! One large message on every core, with the disk kept busy: [`encrypt_stream`]
//! and [`decrypt_stream`] run a reader thread (read ahead), the frames of each
//! batch on the rayon pool (in order), and a writer thread (write behind).
//!
//! Frames are independent once the header is known (IV = sequence number, the
//! AAD binds the message ID, the sequence number and final-ness), so a batch
//! of frames seals or opens in parallel; everything order-dependent (sequence
//! numbers, IVs, the final frame, the signature hash, what follows the end)
//! is checked serially, exactly as the streaming [`Decryptor`] does. Memory is
//! bounded by `POOL` buffers of one batch each (about 4 MiB of frames each).
//!
//! Copies: a frame is read into its place in a batch buffer, sealed or opened
//! there, and written from there. The only copies are the bytes read past the
//! header (the first chunk, at most 64 KiB) and, on reading, a frame that
//! straddles two chunks (the final one at most, as chunks are whole frames).

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use rayon::prelude::*;

use super::decryptor::{check_iv, open, Decryptor, Opened};
use super::header::{ContentType, Header};
use super::signing::{Signer, Verifier, MAX_SIGNATURE_LEN};
use super::stream::{
    build_header, check_encrypt_options, fresh_message_id, message_context, MessageInfo,
    END_MARKER, FINAL_FRAME_STR, FRAME_STR,
};
use super::suite::{frame_iv, ContentCipher, IV_LEN, TAG_LEN};
use super::{DecryptOptions, EncryptOptions, Error, KeyProvider};

/// Target bytes of frames per batch: large enough that the per-batch costs
/// (a rayon split, a channel hop, one write) vanish, small enough that
/// `POOL` batches stay far below the 64 MiB memory target.
const BATCH_BYTES: usize = 4 << 20;
/// Batch buffers in existence at once: the reader's, the main loop's (two
/// while encrypting, which holds a full batch until the next shows whether it
/// ends the message), the writer's. Six measured no faster here (A/B, 2 GiB
/// on tmpfs) and cost 8 MiB more.
const POOL: usize = 4;
/// Below this many bytes in a batch, frames are sealed or opened on the
/// calling thread: handing them to the pool would cost more than it saves.
const PARALLEL_MIN: usize = 256 << 10;
/// Regular-frame bytes around the content: sequence number, IV, tag.
const OVERHEAD: usize = 4 + IV_LEN + TAG_LEN;
/// Final-frame prefix: end marker, sequence number, IV, content length.
const FINAL_PREFIX: usize = 4 + 4 + IV_LEN + 4;

/// Frames per batch for a frame length (`batch_frames` overrides, for tests).
fn frames_per_batch(frame_len: usize, batch_frames: Option<usize>) -> usize {
    batch_frames
        .unwrap_or(BATCH_BYTES / (frame_len + OVERHEAD))
        .max(1)
}

/// A frame's AAD without allocating (each pool thread builds its own).
fn frame_aad(message_id: &[u8], last: bool, seq: u32, len: usize) -> ([u8; 96], usize) {
    let kind = if last { FINAL_FRAME_STR } else { FRAME_STR };
    let mut aad = [0u8; 96];
    let mut n = 0;
    for part in [
        message_id,
        kind,
        &seq.to_be_bytes(),
        &(len as u64).to_be_bytes(),
    ] {
        aad[n..n + part.len()].copy_from_slice(part);
        n += part.len();
    }
    (aad, n)
}

fn next_seq(seq: u32) -> Result<u32, Error> {
    seq.checked_add(1)
        .filter(|s| *s != END_MARKER)
        .ok_or_else(|| Error::Malformed("more than 2^32 - 2 frames".into()))
}

/// Runs `f` over `items` on the pool when the batch is large enough to pay.
fn for_each_frame<T: Send, E: Send>(
    items: Vec<T>,
    batch_bytes: usize,
    f: impl Fn(T) -> Result<(), E> + Sync + Send,
) -> Vec<Result<(), E>> {
    if batch_bytes >= PARALLEL_MIN && rayon::current_num_threads() > 1 {
        items.into_par_iter().map(f).collect()
    } else {
        items.into_iter().map(f).collect()
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match input.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A buffer from the pool, or a new one while fewer than `POOL` exist.
fn take_buffer(free: &Receiver<Vec<u8>>, made: &mut usize, len: usize) -> Option<Vec<u8>> {
    let mut buf = if *made < POOL {
        *made += 1;
        Vec::new()
    } else {
        free.recv().ok()?
    };
    buf.resize(len, 0);
    Some(buf)
}

/// One piece of output: a range of the batch buffer, or a final frame's prefix.
enum Seg {
    Buf(Range<usize>),
    Prefix([u8; FINAL_PREFIX]),
}

/// What the writer writes: `segments` of `buf`, in order.
struct Out {
    buf: Vec<u8>,
    segments: Vec<Seg>,
    last: bool,
}

impl Out {
    fn plaintext_len(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| match s {
                Seg::Buf(r) => r.len() as u64,
                Seg::Prefix(_) => 0,
            })
            .sum()
    }
}

/// The writer thread: writes each batch, hashes it for a signature, hands the
/// buffer back. Returns the output and the bytes written.
fn writer<W: Write>(
    mut output: W,
    batches: Receiver<Out>,
    free: SyncSender<Vec<u8>>,
    mut signer: Option<Signer>,
) -> Result<(W, u64), Error> {
    let mut written = 0u64;
    for out in batches {
        let mut slices: Vec<IoSlice> = out
            .segments
            .iter()
            .map(|seg| match seg {
                Seg::Buf(r) => IoSlice::new(&out.buf[r.clone()]),
                Seg::Prefix(p) => IoSlice::new(&p[..]),
            })
            .collect();
        for s in &slices {
            if let Some(signer) = signer.as_mut() {
                signer.update(s);
            }
            written += s.len() as u64;
        }
        write_all_vectored(&mut output, &mut slices)?;
        if out.last {
            if let Some(s) = signer.take() {
                let footer = s.footer()?;
                output.write_all(&footer)?;
                written += footer.len() as u64;
            }
        }
        // Buffers not from the pool (a carried frame) are dropped when it is full.
        let _ = free.try_send(out.buf);
    }
    output.flush()?;
    Ok((output, written))
}

/// Writes every slice, as few system calls as the writer allows (a batch of
/// frames' plaintexts in one `writev` rather than one `write` per frame).
fn write_all_vectored(output: &mut impl Write, mut slices: &mut [IoSlice<'_>]) -> io::Result<()> {
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match output.write_vectored(slices) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A batch of plaintext as read: frame `i` at `i * slot + 4 + IV_LEN`.
struct Plain {
    buf: Vec<u8>,
    bytes: usize,
    eof: bool,
}

/// Encrypts `input` into one message on `output` (see the module docs), with
/// the same header, frames and footer as [`super::Encryptor`] would write.
pub fn encrypt_stream<R: Read + Send, W: Write + Send>(
    provider: &dyn KeyProvider,
    opts: &EncryptOptions,
    input: R,
    output: W,
    batch_frames: Option<usize>,
) -> Result<(W, MessageInfo), Error> {
    check_encrypt_options(opts)?;
    let mut signer = opts.suite.is_signed().then(Signer::generate);
    let ctx = message_context(opts, signer.as_ref());
    let (data_key, edks) = provider.generate_data_key(&ctx)?;
    let message_id = fresh_message_id();
    let (_, cipher, header) = build_header(opts, ctx, &data_key, edks, message_id)?;
    drop(data_key);
    if let Some(s) = signer.as_mut() {
        s.update(&header);
    }
    let frame_len = opts.frame_length as usize;
    let slot = frame_len + OVERHEAD;
    let frames = frames_per_batch(frame_len, batch_frames);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(POOL + 1);
    let (plain_tx, plain_rx) = sync_channel::<io::Result<Plain>>(1);
    let (out_tx, out_rx) = sync_channel::<Out>(1);
    let mut output = output;
    output.write_all(&header)?;
    let header_len = header.len() as u64;
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_plain(input, free_rx, plain_tx, frames, slot));
        let wfree = free_tx.clone();
        let writer = scope.spawn(move || writer(output, out_rx, wfree, signer));
        let sealed = seal_all(&cipher, &message_id, frame_len, plain_rx, &out_tx);
        drop(out_tx);
        drop(free_tx);
        let read = reader.join().expect("the reader thread does not panic");
        let written = writer.join().expect("the writer thread does not panic");
        // The writer's own error first: the main loop only saw it stop.
        let (output, body_len) = written?;
        let plaintext_len = sealed?;
        read?;
        Ok((
            output,
            MessageInfo {
                message_id,
                header_len,
                total_len: header_len + body_len,
                plaintext_len,
            },
        ))
    })
}

/// The encrypting reader: fills each frame's content area of a batch.
fn read_plain<R: Read>(
    mut input: R,
    free: Receiver<Vec<u8>>,
    out: SyncSender<io::Result<Plain>>,
    frames: usize,
    slot: usize,
) -> io::Result<()> {
    let content = slot - OVERHEAD;
    let mut made = 0;
    loop {
        let Some(mut buf) = take_buffer(&free, &mut made, frames * slot) else {
            return Ok(()); // the main thread stopped
        };
        // One readv per batch into the frames' content areas.
        let total = frames * content;
        let mut bytes = 0;
        {
            let mut slices: Vec<IoSliceMut> = buf
                .chunks_mut(slot)
                .map(|f| IoSliceMut::new(&mut f[4 + IV_LEN..4 + IV_LEN + content]))
                .collect();
            let mut rest = &mut slices[..];
            while bytes < total {
                match input.read_vectored(rest) {
                    Ok(0) => break,
                    Ok(n) => {
                        bytes += n;
                        IoSliceMut::advance_slices(&mut rest, n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        let _ = out.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                }
            }
        }
        let eof = bytes < total;
        if out.send(Ok(Plain { buf, bytes, eof })).is_err() || eof {
            return Ok(());
        }
    }
}

/// The main loop of encryption: a full batch waits until the next one shows
/// whether its last frame is the final one (a message whose size is a
/// multiple of the frame length ends with a full final frame).
fn seal_all(
    cipher: &ContentCipher,
    message_id: &[u8],
    frame_len: usize,
    batches: Receiver<io::Result<Plain>>,
    out: &SyncSender<Out>,
) -> Result<u64, Error> {
    let mut seq = 1u32;
    let mut total = 0u64;
    let mut pending: Option<Plain> = None;
    loop {
        let Ok(next) = batches.recv() else {
            return Err(Error::Io(io::Error::other("the input reader stopped")));
        };
        let next = next
            .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("reading the input: {e}"))))?;
        total += next.bytes as u64;
        if let Some(p) = pending.take() {
            let ends = next.bytes == 0;
            let n = p.bytes.div_ceil(frame_len);
            let batch = seal_batch(cipher, message_id, frame_len, p, &mut seq, n, ends)?;
            send(out, batch)?;
            if ends {
                return Ok(total);
            }
        }
        if next.eof {
            let n = next.bytes.div_ceil(frame_len).max(1);
            send(
                out,
                seal_batch(cipher, message_id, frame_len, next, &mut seq, n, true)?,
            )?;
            return Ok(total);
        }
        pending = Some(next);
    }
}

fn send(out: &SyncSender<Out>, batch: Out) -> Result<(), Error> {
    out.send(batch)
        .map_err(|_| Error::Io(io::Error::other("writing the output failed")))
}

/// Seals the `n` frames of a batch (the last one final when `ends`) in place.
fn seal_batch(
    cipher: &ContentCipher,
    message_id: &[u8],
    frame_len: usize,
    p: Plain,
    seq: &mut u32,
    n: usize,
    ends: bool,
) -> Result<Out, Error> {
    let slot = frame_len + OVERHEAD;
    let regular = if ends { n - 1 } else { n };
    let first = *seq;
    for _ in 0..regular {
        *seq = next_seq(*seq).map_err(|_| {
            Error::Invalid(
                "message too large: more than 2^32 - 2 frames; use a larger frame length".into(),
            )
        })?;
    }
    let mut buf = p.buf;
    let (frames, rest) = buf.split_at_mut(regular * slot);
    let items: Vec<(u32, &mut [u8])> = frames
        .chunks_mut(slot)
        .enumerate()
        .map(|(i, f)| (first + i as u32, f))
        .collect();
    for_each_frame(items, regular * slot, |(s, f): (u32, &mut [u8])| {
        let iv = frame_iv(s);
        let (aad, n) = frame_aad(message_id, false, s, frame_len);
        let (head, body) = f.split_at_mut(4 + IV_LEN);
        let (content, tag) = body.split_at_mut(frame_len);
        tag.copy_from_slice(&cipher.seal_in_place(&iv, &aad[..n], content));
        head[..4].copy_from_slice(&s.to_be_bytes());
        head[4..].copy_from_slice(&iv);
        Ok::<(), ()>(())
    });
    let mut segments = vec![Seg::Buf(0..regular * slot)];
    if ends {
        // The final frame's content sits in slot `regular`, sealed in place;
        // its longer prefix (end marker, seq, IV, length) is its own segment.
        let len = p.bytes - regular * frame_len;
        let s = *seq;
        let iv = frame_iv(s);
        let (aad, an) = frame_aad(message_id, true, s, len);
        let at = 4 + IV_LEN;
        let tag = cipher.seal_in_place(&iv, &aad[..an], &mut rest[at..at + len]);
        rest[at + len..at + len + TAG_LEN].copy_from_slice(&tag);
        let mut prefix = [0u8; FINAL_PREFIX];
        prefix[..4].copy_from_slice(&END_MARKER.to_be_bytes());
        prefix[4..8].copy_from_slice(&s.to_be_bytes());
        prefix[8..20].copy_from_slice(&iv);
        prefix[20..].copy_from_slice(&(len as u32).to_be_bytes());
        let start = regular * slot + at;
        segments.push(Seg::Prefix(prefix));
        segments.push(Seg::Buf(start..start + len + TAG_LEN));
    }
    Ok(Out {
        buf,
        segments,
        last: ends,
    })
}

/// Decrypts one message from `input` to `output` (see the module docs). A
/// frame's plaintext reaches `output` only after it authenticated, the final
/// frame only after the signature (signed suites) verified and the input
/// ended; on an error the output holds a prefix of authentic frames and the
/// caller must discard it (or, on stdout, report the failure).
pub fn decrypt_stream<R: Read + Send, W: Write + Send>(
    provider: &dyn KeyProvider,
    opts: &DecryptOptions,
    input: R,
    mut output: W,
    batch_frames: Option<usize>,
) -> Result<(Header, W, u64), Error> {
    let o = open(provider, opts, input)?;
    if o.header.content_type == ContentType::NonFramed {
        let mut dec = Decryptor::from_opened(o, opts);
        let n = dec.copy_to(&mut output)?;
        output.flush()?;
        return Ok((dec.header().clone(), output, n));
    }
    let Opened {
        header,
        cipher,
        mut verifier,
        rest,
        inner,
        ..
    } = o;
    let frame_len = header.frame_length as usize;
    let chunk = frames_per_batch(frame_len, batch_frames) * (frame_len + OVERHEAD);
    let (free_tx, free_rx) = sync_channel::<Vec<u8>>(POOL + 1);
    let (in_tx, in_rx) = sync_channel::<io::Result<Plain>>(1);
    let (out_tx, out_rx) = sync_channel::<Out>(1);
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || read_chunks(inner, rest, free_rx, in_tx, chunk));
        let wfree = free_tx.clone();
        let writer = scope.spawn(move || writer(output, out_rx, wfree, None));
        let mut body = Body {
            cipher: &cipher,
            message_id: &header.message_id,
            frame_len,
            signed: header.suite.is_signed(),
            seq: 1,
            carry: Vec::new(),
            held: None,
            plaintext: 0,
        };
        let opened = body.run(in_rx, &out_tx, &mut verifier);
        drop(out_tx);
        drop(free_tx);
        let read = reader.join().expect("the reader thread does not panic");
        let written = writer.join().expect("the writer thread does not panic");
        let (output, _) = written?;
        opened?;
        read?;
        Ok((header.clone(), output, body.plaintext))
    })
}

/// The decrypting reader: whole chunks of the body, the first one starting
/// with the bytes read past the header.
fn read_chunks<R: Read>(
    mut input: R,
    rest: Vec<u8>,
    free: Receiver<Vec<u8>>,
    out: SyncSender<io::Result<Plain>>,
    chunk: usize,
) -> io::Result<()> {
    let mut made = 0;
    let mut first = Some(rest);
    loop {
        let Some(mut buf) = take_buffer(&free, &mut made, chunk) else {
            return Ok(());
        };
        let mut bytes = 0;
        if let Some(rest) = first.take() {
            if rest.len() > buf.len() {
                buf.resize(rest.len(), 0);
            }
            buf[..rest.len()].copy_from_slice(&rest);
            bytes = rest.len();
        }
        let n = match fill(&mut input, &mut buf[bytes..]) {
            Ok(n) => n,
            Err(e) => {
                let _ = out.send(Err(io::Error::new(e.kind(), e.to_string())));
                return Err(e);
            }
        };
        bytes += n;
        let eof = bytes < buf.len();
        if out.send(Ok(Plain { buf, bytes, eof })).is_err() || eof {
            return Ok(());
        }
    }
}

/// How far a frame that starts at the beginning of `b` reaches.
enum Extent {
    /// At least this many bytes are needed to tell.
    Need(usize),
    Regular,
    /// The final frame: content length, and the end of the frame (before the
    /// footer) and of the footer.
    /// `bad_sig`: the footer announces a signature longer than any; the
    /// frame ends the message there, and the error comes after its tag check.
    Final {
        len: usize,
        end: usize,
        total: usize,
        bad_sig: Option<usize>,
    },
}

/// The state of the body being read.
struct Body<'a> {
    cipher: &'a ContentCipher,
    message_id: &'a [u8],
    frame_len: usize,
    signed: bool,
    seq: u32,
    /// A frame that straddles two chunks, gathered here.
    carry: Vec<u8>,
    /// The batch with the authenticated final frame, held until the input is
    /// known to end there (as the streaming reader checks before releasing).
    held: Option<Out>,
    plaintext: u64,
}

impl Body<'_> {
    fn extent(&self, b: &[u8]) -> Result<Extent, Error> {
        if b.len() < 4 {
            return Ok(Extent::Need(4));
        }
        if u32::from_be_bytes(b[..4].try_into().unwrap()) != END_MARKER {
            let n = self.frame_len + OVERHEAD;
            return Ok(if b.len() >= n {
                Extent::Regular
            } else {
                Extent::Need(n)
            });
        }
        if b.len() < FINAL_PREFIX {
            return Ok(Extent::Need(FINAL_PREFIX));
        }
        let len = u32::from_be_bytes(b[20..24].try_into().unwrap()) as usize;
        if len > self.frame_len {
            return Err(Error::Malformed(format!(
                "final frame holds {len} bytes, more than the frame length {}",
                self.frame_len
            )));
        }
        let end = FINAL_PREFIX + len + TAG_LEN;
        let mut bad_sig = None;
        let total = if !self.signed {
            end
        } else if b.len() < end + 2 {
            return Ok(Extent::Need(end + 2));
        } else {
            let sig = u16::from_be_bytes([b[end], b[end + 1]]) as usize;
            if sig > MAX_SIGNATURE_LEN {
                bad_sig = Some(sig);
                end + 2
            } else {
                end + 2 + sig
            }
        };
        Ok(if b.len() >= total {
            Extent::Final {
                len,
                end,
                total,
                bad_sig,
            }
        } else {
            Extent::Need(total)
        })
    }

    /// The checks the streaming reader makes on the first bytes of a frame
    /// it has not fully read (sequence number, IV), so that a message cut or
    /// altered there fails with the same error here.
    fn early_check(&self, b: &[u8], expected: u32) -> Result<(), Error> {
        let (seq_at, iv_at) = match b.get(..4) {
            Some(w) if w == END_MARKER.to_be_bytes() => (4, 8),
            Some(_) => (0, 4),
            None => return Ok(()),
        };
        if let Some(w) = b.get(seq_at..seq_at + 4) {
            let found = u32::from_be_bytes(w.try_into().unwrap());
            if found != expected {
                return Err(Error::Sequence { expected, found });
            }
        }
        if let Some(iv) = b.get(iv_at..iv_at + IV_LEN) {
            check_iv(iv.try_into().unwrap(), expected)?;
        }
        Ok(())
    }

    fn run(
        &mut self,
        chunks: Receiver<io::Result<Plain>>,
        out: &SyncSender<Out>,
        verifier: &mut Option<Verifier>,
    ) -> Result<(), Error> {
        loop {
            let Ok(c) = chunks.recv() else {
                return Err(Error::Io(io::Error::other("the input reader stopped")));
            };
            let c = c.map_err(|e| {
                Error::Io(io::Error::new(e.kind(), format!("reading the input: {e}")))
            })?;
            if self.held.is_some() {
                if c.bytes > 0 {
                    return Err(Error::TrailingData);
                }
            } else {
                self.chunk(c.buf, c.bytes, out, verifier)?;
            }
            if c.eof {
                let Some(last) = self.held.take() else {
                    return Err(Error::Truncated);
                };
                self.plaintext += last.plaintext_len();
                return send(out, last);
            }
        }
    }

    /// Opens every whole frame of one chunk, after finishing a carried one.
    fn chunk(
        &mut self,
        mut buf: Vec<u8>,
        bytes: usize,
        out: &SyncSender<Out>,
        verifier: &mut Option<Verifier>,
    ) -> Result<(), Error> {
        let mut off = 0;
        if !self.carry.is_empty() {
            while let Extent::Need(need) = self.extent(&self.carry)? {
                let take = (need - self.carry.len()).min(bytes - off);
                if take == 0 {
                    // This chunk is used up: wait for the next.
                    return self.early_check(&self.carry, self.seq);
                }
                self.carry.extend_from_slice(&buf[off..off + take]);
                off += take;
            }
            let mut carried = std::mem::take(&mut self.carry);
            let len = carried.len();
            let (segments, last) = self.open_frames(&mut carried, 0..len, verifier, None)?;
            self.release(out, carried, segments, last)?;
            if last {
                return if off < bytes {
                    Err(Error::TrailingData)
                } else {
                    Ok(())
                };
            }
        }
        let start = off;
        let mut scan_err = None;
        let mut last = false;
        let mut expected = self.seq;
        while !last {
            match self.extent(&buf[off..bytes]) {
                Ok(Extent::Regular) => {
                    off += self.frame_len + OVERHEAD;
                    expected = expected.wrapping_add(1);
                }
                Ok(Extent::Final { total, .. }) => {
                    off += total;
                    last = true;
                }
                Ok(Extent::Need(_)) => {
                    scan_err = self.early_check(&buf[off..bytes], expected).err();
                    break;
                }
                Err(e) => {
                    scan_err = Some(e);
                    break;
                }
            }
        }
        if last && off < bytes {
            scan_err.get_or_insert(Error::TrailingData);
        }
        let (segments, last) = self.open_frames(&mut buf, start..off, verifier, scan_err)?;
        if !last {
            self.carry = buf[off..bytes].to_vec();
        }
        self.release(out, buf, segments, last)
    }

    /// Sends what authenticated; a batch with the final frame is held.
    fn release(
        &mut self,
        out: &SyncSender<Out>,
        buf: Vec<u8>,
        segments: Vec<Seg>,
        last: bool,
    ) -> Result<(), Error> {
        let batch = Out {
            buf,
            segments,
            last,
        };
        if last {
            self.held = Some(batch);
            return Ok(());
        }
        self.plaintext += batch.plaintext_len();
        send(out, batch)
    }

    /// Checks and opens the whole frames in `buf[range]`: sequence numbers
    /// and IVs in order, the tags in parallel, the final frame and signature
    /// last. The error is the one the streaming reader would meet first: of
    /// the frame checks, the tags before a failed check, and `after` (an
    /// error found past the frames). Returns the plaintext ranges and whether
    /// the final frame was among them.
    fn open_frames(
        &mut self,
        buf: &mut [u8],
        range: Range<usize>,
        verifier: &mut Option<Verifier>,
        after: Option<Error>,
    ) -> Result<(Vec<Seg>, bool), Error> {
        let base = range.start;
        let region = &mut buf[range];
        let slot = self.frame_len + OVERHEAD;
        let mut regular = Vec::new();
        let mut fin = None;
        let mut failed = None;
        let mut at = 0;
        while at < region.len() && fin.is_none() {
            let checked = self.extent(&region[at..]).and_then(|e| match e {
                Extent::Regular => {
                    let seq = u32::from_be_bytes(region[at..at + 4].try_into().unwrap());
                    self.check_seq(seq)?;
                    check_iv(region[at + 4..at + 16].try_into().unwrap(), seq)?;
                    regular.push(seq);
                    self.seq = next_seq(seq)?;
                    at += slot;
                    Ok(())
                }
                Extent::Final {
                    len,
                    end,
                    total,
                    bad_sig,
                } => {
                    let seq = u32::from_be_bytes(region[at + 4..at + 8].try_into().unwrap());
                    self.check_seq(seq)?;
                    check_iv(region[at + 8..at + 20].try_into().unwrap(), seq)?;
                    fin = Some((seq, at, len, end, bad_sig));
                    at += total;
                    Ok(())
                }
                Extent::Need(_) => unreachable!("the caller passes whole frames"),
            });
            if let Err(e) = checked {
                failed = Some(e);
                break;
            }
        }
        let split = regular.len() * slot;
        if let Some(v) = verifier.as_mut() {
            v.update(&region[..fin.map_or(split, |(_, a, _, end, _)| a + end)]);
        }
        let (frames, final_part) = region.split_at_mut(split);
        let (cipher, id, flen) = (self.cipher, self.message_id, self.frame_len);
        let items: Vec<(u32, &mut [u8])> = regular
            .iter()
            .copied()
            .zip(frames.chunks_mut(slot))
            .collect();
        let results = for_each_frame(items, split, |(s, f): (u32, &mut [u8])| {
            let (aad, n) = frame_aad(id, false, s, flen);
            let (head, body) = f.split_at_mut(4 + IV_LEN);
            let (content, tag) = body.split_at_mut(flen);
            cipher
                .open_in_place(&head[4..], &aad[..n], content, tag)
                .map_err(|_| Error::FrameAuth { sequence: s })
        });
        if let Some(e) = results.into_iter().find_map(Result::err) {
            return Err(e);
        }
        if let Some(e) = failed {
            return Err(e);
        }
        let mut segments: Vec<Seg> = (0..regular.len())
            .map(|i| {
                let c = base + i * slot + 4 + IV_LEN;
                Seg::Buf(c..c + flen)
            })
            .collect();
        let Some((seq, a, len, end, bad_sig)) = fin else {
            return match after {
                Some(e) => Err(e),
                None => Ok((segments, false)),
            };
        };
        debug_assert_eq!(a, split);
        let (f, footer) = final_part.split_at_mut(end);
        let (aad, n) = frame_aad(id, true, seq, len);
        let (head, body) = f.split_at_mut(FINAL_PREFIX);
        let (content, tag) = body.split_at_mut(len);
        cipher
            .open_in_place(&head[8..20], &aad[..n], content, tag)
            .map_err(|_| Error::FrameAuth { sequence: seq })?;
        if let Some(sig) = bad_sig {
            return Err(Error::Malformed(format!(
                "the footer announces a {sig}-byte signature; an ECDSA P-384 signature has at most {MAX_SIGNATURE_LEN}"
            )));
        }
        if let Some(v) = verifier.take() {
            v.verify(&footer[2..])?;
        }
        if let Some(e) = after {
            return Err(e);
        }
        let c = base + split + FINAL_PREFIX;
        segments.push(Seg::Buf(c..c + len));
        Ok((segments, true))
    }

    fn check_seq(&self, found: u32) -> Result<(), Error> {
        if found != self.seq {
            return Err(Error::Sequence {
                expected: self.seq,
                found,
            });
        }
        Ok(())
    }
}
