//! One large message on every core, with the disk kept busy: [`encrypt_stream`]
//! and [`decrypt_stream`] run a reader thread (read ahead), the frames of each
//! batch on the rayon pool (in order), and a writer thread (write behind).
//!
//! Frames are independent once the header is known (IV = sequence number, the
//! AAD binds the message ID, the sequence number and final-ness), so a batch
//! of frames seals or opens in parallel; everything order-dependent (sequence
//! numbers, IVs, the final frame, the signature hash, what follows the end)
//! is checked serially, exactly as the streaming [`Decryptor`](super::Decryptor) does. Memory is
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

use super::signing::Signer;
use super::stream::{
    build_header, check_encrypt_options, fresh_message_id, message_context, MessageInfo,
    END_MARKER, FINAL_FRAME_STR, FRAME_STR,
};
use super::suite::{frame_iv, ContentCipher, IV_LEN, TAG_LEN};
use super::{EncryptOptions, Error, KeyProvider};

mod decrypt;
pub use decrypt::{decrypt_in_place, decrypt_stream};

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

/// The main loop of encryption. Every full frame is a regular one and the
/// final frame holds the rest, less than a frame (nothing when the size is a
/// multiple of the frame length, as the official SDKs write), so no batch
/// waits for the next: a batch that is not the last one is full, a whole
/// number of frames; the last one (short, possibly empty) ends with the
/// final frame in the slot after its regular ones.
fn seal_all(
    cipher: &ContentCipher,
    message_id: &[u8],
    frame_len: usize,
    batches: Receiver<io::Result<Plain>>,
    out: &SyncSender<Out>,
) -> Result<u64, Error> {
    let mut seq = 1u32;
    let mut total = 0u64;
    loop {
        let Ok(next) = batches.recv() else {
            return Err(Error::Io(io::Error::other("the input reader stopped")));
        };
        let next = next
            .map_err(|e| Error::Io(io::Error::new(e.kind(), format!("reading the input: {e}"))))?;
        total += next.bytes as u64;
        let ends = next.eof;
        let regular = next.bytes / frame_len;
        debug_assert!(ends || next.bytes == regular * frame_len);
        send(
            out,
            seal_batch(cipher, message_id, frame_len, next, &mut seq, regular, ends)?,
        )?;
        if ends {
            return Ok(total);
        }
    }
}

fn send(out: &SyncSender<Out>, batch: Out) -> Result<(), Error> {
    out.send(batch)
        .map_err(|_| Error::Io(io::Error::other("writing the output failed")))
}

/// Seals the `regular` frames of a batch in place and, when `ends`, the
/// final frame after them (the rest of the batch, less than a frame).
fn seal_batch(
    cipher: &ContentCipher,
    message_id: &[u8],
    frame_len: usize,
    p: Plain,
    seq: &mut u32,
    regular: usize,
    ends: bool,
) -> Result<Out, Error> {
    let slot = frame_len + OVERHEAD;
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

#[cfg(test)]
mod tests;
