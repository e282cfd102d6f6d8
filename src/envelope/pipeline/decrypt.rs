//! The reading half of the pipeline: chunks of the body read ahead, their
//! whole frames checked in order and opened in parallel, a frame that
//! straddles two chunks gathered once, the final frame held until the input
//! is known to end (see the parent module).

use std::io::{self, Read, Write};
use std::ops::Range;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use super::{
    fill, for_each_frame, frame_aad, frames_per_batch, next_seq, send, take_buffer, writer, Out,
    Plain, Seg, FINAL_PREFIX, OVERHEAD, POOL,
};
use crate::envelope::decryptor::{check_iv, open, Decryptor, Opened};
use crate::envelope::header::{ContentType, Header};
use crate::envelope::signing::{Verifier, MAX_SIGNATURE_LEN};
use crate::envelope::stream::END_MARKER;
use crate::envelope::suite::{ContentCipher, IV_LEN, TAG_LEN};
use crate::envelope::{DecryptOptions, Error, KeyProvider};

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
            parallel: true,
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

/// Decrypts a whole message held in memory, in place: the checks of
/// [`decrypt_stream`] (tags, sequence numbers, IVs, the final frame, the
/// signature, nothing after the end), the frames opened in parallel when
/// there are enough and `parallel`, and no copy of the body. Returns the header and the
/// ranges of `message` that hold the plaintext, in order. On an error
/// `message` holds partly decrypted bytes: discard it.
pub fn decrypt_in_place(
    provider: &dyn KeyProvider,
    opts: &DecryptOptions,
    message: &mut [u8],
    parallel: bool,
) -> Result<(Header, Vec<Range<usize>>), Error> {
    let o = open(provider, opts, &message[..])?;
    let start = o.header_len as usize;
    if o.header.content_type == ContentType::NonFramed {
        // One block, which envarc never writes: decrypted by the streaming
        // reader and put back where its ciphertext was (which is longer).
        let mut dec = Decryptor::from_opened(o, opts);
        let mut plain = Vec::new();
        dec.copy_to(&mut plain)?;
        let header = dec.header().clone();
        drop(dec);
        let range = start..start + plain.len();
        message[range.clone()].copy_from_slice(&plain);
        return Ok((header, vec![range]));
    }
    let Opened {
        header,
        cipher,
        mut verifier,
        ..
    } = o;
    let mut body = Body {
        cipher: &cipher,
        message_id: &header.message_id,
        frame_len: header.frame_length as usize,
        signed: header.suite.is_signed(),
        parallel,
        seq: 1,
        carry: Vec::new(),
        held: None,
        plaintext: 0,
    };
    let (whole, after) = body.scan(&message[start..]);
    let (segments, last) = body.open_frames(message, start..start + whole, &mut verifier, after)?;
    if !last {
        return Err(Error::Truncated);
    }
    let ranges = segments
        .into_iter()
        .map(|s| match s {
            Seg::Buf(r) => r,
            Seg::Prefix(_) => unreachable!("decrypting makes no prefix segments"),
        })
        .collect();
    Ok((header, ranges))
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

/// What the serial checks found in a run of whole frames.
struct FramePlan {
    /// Sequence numbers of the regular frames, in order.
    regular: Vec<u32>,
    fin: Option<FinalFrame>,
    /// The first failed check (the frames before it are still opened, so
    /// that a bad tag among them is reported first, as when streaming).
    failed: Option<Error>,
}

/// The final frame's place in a run of frames.
struct FinalFrame {
    seq: u32,
    /// Offset of its first byte, its content length, the end of its tag.
    at: usize,
    len: usize,
    end: usize,
    bad_sig: Option<usize>,
}

/// The state of the body being read.
struct Body<'a> {
    cipher: &'a ContentCipher,
    message_id: &'a [u8],
    frame_len: usize,
    signed: bool,
    /// Whether frames may go to the pool (not when the caller's own tasks
    /// are the parallel unit: a worker waiting on frames would steal more
    /// of them, each with its buffer).
    parallel: bool,
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
        let (whole, scan_err) = self.scan(&buf[start..bytes]);
        off += whole;
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

    /// How far the whole frames at the start of `b` reach, and the error a
    /// streaming reader would meet past them (a cut or altered frame start,
    /// bytes after the final frame); the final frame ends the scan.
    fn scan(&self, b: &[u8]) -> (usize, Option<Error>) {
        let mut off = 0;
        let mut expected = self.seq;
        loop {
            match self.extent(&b[off..]) {
                Ok(Extent::Regular) => {
                    off += self.frame_len + OVERHEAD;
                    expected = expected.wrapping_add(1);
                }
                Ok(Extent::Final { total, .. }) => {
                    off += total;
                    let trailing = (off < b.len()).then_some(Error::TrailingData);
                    return (off, trailing);
                }
                Ok(Extent::Need(_)) => return (off, self.early_check(&b[off..], expected).err()),
                Err(e) => return (off, Some(e)),
            }
        }
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
        let plan = self.check_frames(region);
        let split = plan.regular.len() * slot;
        if let Some(v) = verifier.as_mut() {
            v.update(&region[..plan.fin.as_ref().map_or(split, |f| f.at + f.end)]);
        }
        let (frames, final_part) = region.split_at_mut(split);
        self.open_regular(frames, &plan.regular)?;
        if let Some(e) = plan.failed {
            return Err(e);
        }
        let mut segments: Vec<Seg> = (0..plan.regular.len())
            .map(|i| {
                let c = base + i * slot + 4 + IV_LEN;
                Seg::Buf(c..c + self.frame_len)
            })
            .collect();
        let Some(fin) = plan.fin else {
            return match after {
                Some(e) => Err(e),
                None => Ok((segments, false)),
            };
        };
        debug_assert_eq!(fin.at, split);
        self.open_final(final_part, &fin, verifier)?;
        if let Some(e) = after {
            return Err(e);
        }
        let c = base + split + FINAL_PREFIX;
        segments.push(Seg::Buf(c..c + fin.len));
        Ok((segments, true))
    }

    /// The serial checks over the frames of `region` (sequence numbers and
    /// IVs, in order), advancing the expected sequence number; stops at the
    /// final frame or the first failed check.
    fn check_frames(&mut self, region: &[u8]) -> FramePlan {
        let slot = self.frame_len + OVERHEAD;
        let mut plan = FramePlan {
            regular: Vec::new(),
            fin: None,
            failed: None,
        };
        let mut at = 0;
        while at < region.len() && plan.fin.is_none() {
            let checked = self.extent(&region[at..]).and_then(|e| match e {
                Extent::Regular => {
                    let seq = u32::from_be_bytes(region[at..at + 4].try_into().unwrap());
                    self.check_seq(seq)?;
                    check_iv(region[at + 4..at + 16].try_into().unwrap(), seq)?;
                    plan.regular.push(seq);
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
                    plan.fin = Some(FinalFrame {
                        seq,
                        at,
                        len,
                        end,
                        bad_sig,
                    });
                    at += total;
                    Ok(())
                }
                Extent::Need(_) => unreachable!("the caller passes whole frames"),
            });
            if let Err(e) = checked {
                plan.failed = Some(e);
                break;
            }
        }
        plan
    }

    /// Opens regular frames (whole slots, sequence numbers `seqs`) in
    /// parallel; the error is the first failed frame's.
    fn open_regular(&self, frames: &mut [u8], seqs: &[u32]) -> Result<(), Error> {
        let (cipher, id, flen) = (self.cipher, self.message_id, self.frame_len);
        // Zero bytes: below the size at which frames go to the pool.
        let bytes = if self.parallel { frames.len() } else { 0 };
        let items: Vec<(u32, &mut [u8])> = seqs
            .iter()
            .copied()
            .zip(frames.chunks_mut(flen + OVERHEAD))
            .collect();
        let results = for_each_frame(items, bytes, |(s, f): (u32, &mut [u8])| {
            let (aad, n) = frame_aad(id, false, s, flen);
            let (head, body) = f.split_at_mut(4 + IV_LEN);
            let (content, tag) = body.split_at_mut(flen);
            cipher
                .open_in_place(&head[4..], &aad[..n], content, tag)
                .map_err(|_| Error::FrameAuth { sequence: s })
        });
        results
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }

    /// Opens the final frame at the start of `part`, then checks the footer
    /// (a signature's announced length, the signature itself).
    fn open_final(
        &self,
        part: &mut [u8],
        fin: &FinalFrame,
        verifier: &mut Option<Verifier>,
    ) -> Result<(), Error> {
        let (f, footer) = part.split_at_mut(fin.end);
        let (aad, n) = frame_aad(self.message_id, true, fin.seq, fin.len);
        let (head, body) = f.split_at_mut(FINAL_PREFIX);
        let (content, tag) = body.split_at_mut(fin.len);
        self.cipher
            .open_in_place(&head[8..20], &aad[..n], content, tag)
            .map_err(|_| Error::FrameAuth { sequence: fin.seq })?;
        if let Some(sig) = fin.bad_sig {
            return Err(Error::Malformed(format!(
                "the footer announces a {sig}-byte signature; an ECDSA P-384 signature has at most {MAX_SIGNATURE_LEN}"
            )));
        }
        if let Some(v) = verifier.take() {
            v.verify(&footer[2..])?;
        }
        Ok(())
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
