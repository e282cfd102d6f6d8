//! Per-chunk compression: zstd before encryption, when it pays.
//!
//! A chunk message's encryption context says what its plaintext is
//! (`envarc-compression`): `none` (the chunk itself) or `zstd` (one zstd
//! frame that decompresses to the chunk, RFC 8878). The value is the same
//! for every chunk of one file in one backup, because every chunk of a file
//! is a message under the file's single data key, and an EDK is bound to the
//! exact context it was wrapped for (the keyring and KMS use the context as
//! the wrap's AAD). So "when it pays" is decided per chunk *inside* the zstd
//! format: a chunk that does not compress is stored as a zstd frame of raw
//! blocks (3 bytes per 128 KiB plus a 9-byte header) rather than with a
//! different context. That also keeps compressibility out of the clear
//! context, where anyone holding the storage could read it per chunk.

use std::cell::RefCell;
use std::fmt;
use std::io::{self, Write};
use std::ops::Range;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The `envarc-compression` context key.
pub const CONTEXT_COMPRESSION: &str = "envarc-compression";

/// What `--compression` chooses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Store chunks as they are (context `none`).
    Off,
    /// zstd level 3 for chunks that a sample shows compressible.
    Auto,
    /// zstd level 12 for every chunk: slower, smaller.
    Max,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::Off => "off",
            Compression::Auto => "auto",
            Compression::Max => "max",
        }
    }

    /// The context value of chunks written with this setting.
    pub fn context_value(self) -> &'static str {
        match self {
            Compression::Off => "none",
            Compression::Auto | Compression::Max => "zstd",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Compression::Off),
            "auto" => Ok(Compression::Auto),
            "max" => Ok(Compression::Max),
            _ => Err(format!("unknown compression '{s}'; use off, auto or max")),
        }
    }
}

/// Bytes of each of the [`SAMPLES`] probes of a chunk: a 32nd of it,
/// between 1 and 4 KiB (zstd still finds 10% in 1 KiB of text), so that a
/// small file's chunk is not compressed half over just to decide.
fn sample_len(len: usize) -> usize {
    (len / 32).clamp(1024, 4 * 1024)
}
const SAMPLES: usize = 4;
const RAW_BLOCK_MAX: usize = 128 * 1024;

thread_local! {
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

fn compress(data: &[u8], level: i32) -> Vec<u8> {
    COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let z = match c.as_mut() {
            Some(z) => z,
            None => c.insert(zstd::bulk::Compressor::new(level).expect("zstd context")),
        };
        z.set_compression_level(level).expect("valid level");
        z.compress(data).expect("zstd compresses any input")
    })
}

/// Whether compressing the chunk is worth it: one of four probes spread
/// over it (start, a third, two thirds, end) compresses below 90%. One probe
/// at the start would miss a chunk that begins in random bytes and goes on
/// into text or zeros (disk images). The probes cost about 2% of the
/// chunk's encryption.
fn pays(data: &[u8]) -> bool {
    let sample = sample_len(data.len());
    if data.len() <= SAMPLES * sample {
        return (compress(data, 1).len() as f64) < 0.9 * data.len() as f64;
    }
    (0..SAMPLES).any(|i| {
        let at = (data.len() - sample) * i / (SAMPLES - 1);
        let probe = &data[at..at + sample];
        (compress(probe, 1).len() as f64) < 0.9 * sample as f64
    })
}

/// The plaintext of a chunk message for `data` (see the module docs).
pub fn encode(c: Compression, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / RAW_BLOCK_MAX * 3 + 16);
    encode_into(c, data, &mut out).expect("writing to a Vec does not fail");
    out
}

/// [`encode`], written to `w` (a message being encrypted): a chunk stored
/// as it is goes there without an intermediate copy.
pub fn encode_into(c: Compression, data: &[u8], w: &mut impl Write) -> io::Result<()> {
    match c {
        Compression::Off => w.write_all(data),
        Compression::Auto if !pays(data) => stored_frame_into(data, w),
        Compression::Auto | Compression::Max => {
            let level = if c == Compression::Max { 12 } else { 3 };
            let z = compress(data, level);
            if z.len() < data.len() {
                w.write_all(&z)
            } else {
                stored_frame_into(data, w)
            }
        }
    }
}

/// A zstd frame holding `data` in raw blocks: single segment, 4-byte
/// content size, no checksum (the message's AEAD authenticates it).
pub fn stored_frame(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + data.len() / RAW_BLOCK_MAX * 3 + 16);
    stored_frame_into(data, &mut out).expect("writing to a Vec does not fail");
    out
}

fn stored_frame_into(data: &[u8], w: &mut impl Write) -> io::Result<()> {
    let mut head = [0u8; 9];
    head[..4].copy_from_slice(&0xFD2F_B528u32.to_le_bytes());
    head[4] = 0b1010_0000; // 4-byte Frame_Content_Size, Single_Segment
    head[5..].copy_from_slice(&(data.len() as u32).to_le_bytes());
    w.write_all(&head)?;
    let mut parts = data.chunks(RAW_BLOCK_MAX).peekable();
    if parts.peek().is_none() {
        w.write_all(&[1, 0, 0])?; // one empty last raw block
    }
    while let Some(part) = parts.next() {
        let last = u32::from(parts.peek().is_none());
        let header = ((part.len() as u32) << 3) | last; // Block_Type 0: raw
        w.write_all(&header.to_le_bytes()[..3])?;
        w.write_all(part)?;
    }
    Ok(())
}

/// Turns a chunk message's plaintext back into the chunk, which must be
/// exactly `raw_len` bytes. `context` is the message's `envarc-compression`.
pub fn decode(context: &str, body: Vec<u8>, raw_len: usize) -> Result<Vec<u8>, String> {
    let out = match context {
        "none" => body,
        "zstd" => DECOMPRESSOR.with(|d| {
            let mut d = d.borrow_mut();
            let z = match d.as_mut() {
                Some(z) => z,
                None => d.insert(zstd::bulk::Decompressor::new().expect("zstd context")),
            };
            z.decompress(&body, raw_len)
                .map_err(|e| format!("its zstd frame does not decompress: {e}"))
        })?,
        other => {
            return Err(format!(
                "its context names an unknown compression '{other}'"
            ))
        }
    };
    if out.len() != raw_len {
        return Err(format!(
            "it holds {} bytes where the index says {raw_len}",
            out.len()
        ));
    }
    Ok(out)
}

/// A chunk's plaintext as [`decode_parts`] found it: ranges of the buffer
/// that held the message (no copy), or decompressed bytes.
pub enum Decoded {
    Parts(Vec<Range<usize>>),
    Owned(Vec<u8>),
}

/// [`decode`] for a message body that lies in `parts` of `buf` (a message
/// decrypted in place: one part per frame). A `none` body and a stored frame
/// of raw blocks as [`stored_frame`] writes it (the shape of incompressible
/// chunks) come back as ranges of `buf`, without copying; any other zstd
/// frame is gathered and decompressed exactly as [`decode`] does, so that
/// what is accepted does not change.
pub fn decode_parts(
    context: &str,
    buf: &[u8],
    parts: &[Range<usize>],
    raw_len: usize,
) -> Result<Decoded, String> {
    let body = Spread { buf, parts };
    if context == "zstd" {
        if let Some(blocks) = raw_blocks(&body, raw_len) {
            return Ok(Decoded::Parts(body.map(&blocks)));
        }
    }
    let len = body.len();
    if context == "none" && len == raw_len {
        return Ok(Decoded::Parts(parts.to_vec()));
    }
    let mut whole = Vec::with_capacity(len);
    for p in parts {
        whole.extend_from_slice(&buf[p.clone()]);
    }
    decode(context, whole, raw_len).map(Decoded::Owned)
}

/// Logical bytes spread over ranges of one buffer.
struct Spread<'a> {
    buf: &'a [u8],
    parts: &'a [Range<usize>],
}

impl Spread<'_> {
    fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len()).sum()
    }

    /// Logical bytes `at..at + N`, when there are that many.
    fn get<const N: usize>(&self, at: usize) -> Option<[u8; N]> {
        let mut out = [0u8; N];
        let mut skip = at;
        let mut got = 0;
        for p in self.parts {
            if skip >= p.len() {
                skip -= p.len();
                continue;
            }
            let piece = &self.buf[p.start + skip..p.end];
            let n = piece.len().min(N - got);
            out[got..got + n].copy_from_slice(&piece[..n]);
            got += n;
            skip = 0;
            if got == N {
                return Some(out);
            }
        }
        None
    }

    /// The ranges of `buf` that hold logical ranges `wanted` (in order).
    fn map(&self, wanted: &[Range<usize>]) -> Vec<Range<usize>> {
        let mut out = Vec::with_capacity(wanted.len() + self.parts.len());
        let mut base = 0;
        let mut parts = self.parts.iter().peekable();
        for w in wanted {
            let mut from = w.start;
            while from < w.end {
                let p = parts.peek().expect("wanted ranges lie inside the body");
                if from >= base + p.len() {
                    base += p.len();
                    parts.next();
                    continue;
                }
                let to = w.end.min(base + p.len());
                out.push(p.start + from - base..p.start + to - base);
                from = to;
            }
        }
        out
    }
}

/// The logical ranges of a stored frame's raw blocks, when `body` is exactly
/// such a frame (header, raw blocks of at most 128 KiB, the last flagged,
/// nothing after it) of `raw_len` bytes; `None` for anything else.
fn raw_blocks(body: &Spread, raw_len: usize) -> Option<Vec<Range<usize>>> {
    let head: [u8; 9] = body.get(0)?;
    let magic = u32::from_le_bytes(head[..4].try_into().ok()?);
    let size = u32::from_le_bytes(head[5..].try_into().ok()?) as usize;
    if magic != 0xFD2F_B528 || head[4] != 0b1010_0000 || size != raw_len {
        return None;
    }
    let (len, mut at, mut total) = (body.len(), 9, 0);
    let mut blocks = Vec::with_capacity(raw_len / RAW_BLOCK_MAX + 1);
    loop {
        let h: [u8; 3] = body.get(at)?;
        let h = u32::from_le_bytes([h[0], h[1], h[2], 0]);
        let n = (h >> 3) as usize;
        if (h >> 1) & 3 != 0 || n > RAW_BLOCK_MAX || at + 3 + n > len {
            return None;
        }
        blocks.push(at + 3..at + 3 + n);
        at += 3 + n;
        total += n;
        if h & 1 == 1 {
            return (at == len && total == raw_len).then_some(blocks);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn util_noise(n: usize) -> Vec<u8> {
        crate::repo::test_noise(n, 0x9E37_79B9_7F4A_7C15)
    }

    #[test]
    fn stored_frames_are_zstd_and_compressible_chunks_shrink() {
        for n in [
            1usize,
            1000,
            RAW_BLOCK_MAX,
            RAW_BLOCK_MAX + 1,
            3 * RAW_BLOCK_MAX + 7,
        ] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7919 % 251) as u8).collect();
            let f = stored_frame(&data);
            assert_eq!(zstd::stream::decode_all(&f[..]).unwrap(), data, "{n}");
        }
        let text = b"the quick brown fox jumps over the lazy dog\n".repeat(5000);
        let z = encode(Compression::Auto, &text);
        assert!(z.len() < text.len() / 10);
        assert_eq!(decode("zstd", z, text.len()).unwrap(), text);
        // Random bytes, then text: the probes past the start find the text.
        let mut mixed = util_noise(60_000);
        mixed.extend_from_slice(&text[..60_000]);
        let z = encode(Compression::Auto, &mixed);
        assert!(z.len() < 70_000, "{}", z.len());
        assert_eq!(decode("zstd", z, mixed.len()).unwrap(), mixed);
        let noise = util_noise(100_000);
        let s = encode(Compression::Auto, &noise);
        assert!(s.len() <= noise.len() + 9 + 3 * 2);
        assert_eq!(decode("zstd", s, noise.len()).unwrap(), noise);
        assert!(decode("zstd", encode(Compression::Auto, &noise), 5).is_err());
        assert!(decode("lz4", noise.clone(), noise.len()).is_err());
    }

    fn whole_of(b: &[u8]) -> Vec<Range<usize>> {
        std::iter::once(0..b.len()).collect()
    }

    /// Joins the parts `decode_parts` returns.
    fn joined(buf: &[u8], d: Decoded) -> Vec<u8> {
        match d {
            Decoded::Parts(ps) => ps.into_iter().flat_map(|p| buf[p].to_vec()).collect(),
            Decoded::Owned(v) => v,
        }
    }

    #[test]
    fn decoding_in_parts_matches_decode_and_copies_no_stored_frame() {
        let noise = util_noise(3 * RAW_BLOCK_MAX + 5);
        let text = b"compressible text, again and again; ".repeat(9000);
        for (data, stored) in [(&noise, true), (&text, false)] {
            let body = encode(Compression::Auto, data);
            // The body spread over parts with gaps between them (as frames
            // opened in place leave them), cut at awkward places.
            for cut in [1usize, 2, 3, 7, 4096, 65536] {
                let mut buf = Vec::new();
                let mut parts = Vec::new();
                for piece in body.chunks(cut) {
                    buf.extend_from_slice(&[0xEE; 5]);
                    parts.push(buf.len()..buf.len() + piece.len());
                    buf.extend_from_slice(piece);
                }
                let d = decode_parts("zstd", &buf, &parts, data.len()).unwrap();
                assert_eq!(matches!(d, Decoded::Parts(_)), stored, "cut {cut}");
                assert_eq!(&joined(&buf, d), data, "cut {cut}");
                assert!(decode_parts("zstd", &buf, &parts, data.len() + 1).is_err());
            }
            // Any change to a stored frame's structure goes to zstd, which
            // decides as before.
            for at in [0, 4, 5, 9, 10, 11, body.len() - 1] {
                let mut bad = body.clone();
                bad[at] ^= 0x08;
                let whole = decode("zstd", bad.clone(), data.len());
                let parts = decode_parts("zstd", &bad, &whole_of(&bad), data.len());
                assert_eq!(whole.is_ok(), parts.is_ok(), "byte {at}");
                if let (Ok(a), Ok(b)) = (whole, parts) {
                    assert_eq!(a, joined(&bad, b));
                }
            }
            let mut long = body.clone();
            long.push(0);
            assert!(decode_parts("zstd", &long, &whole_of(&long), data.len()).is_err());
        }
        let d = decode_parts("none", &noise, &[0..10, 20..noise.len()], noise.len() - 10);
        assert!(matches!(d, Ok(Decoded::Parts(p)) if p.len() == 2));
        assert!(decode_parts("none", &noise, &whole_of(&noise[..10]), 11).is_err());
    }
}
