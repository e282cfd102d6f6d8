//! Content-defined chunking and chunk identity.
//!
//! Boundaries come from FastCDC (v2020: the `fastcdc` crate's `cut_gear`,
//! whose cuts `repo::gear` finds faster) with a gear table derived
//! from the repository's chunker key instead of the public one, so that
//! where a known file is cut depends on a secret: an observer of chunk
//! sizes cannot compute the sizes a known file would give (the attack on
//! unkeyed CDC that borg 2 and bupstash also answer with a keyed chunker). A chunk's ID is keyed BLAKE3 of its plaintext under the
//! MAC key: equal chunks get equal IDs inside one repository, and nothing
//! outside an encrypted message is a plain hash of plaintext.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::config::Secrets;

/// Chunk size bounds in bytes (FastCDC's min, average and max).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkerParams {
    pub min: u32,
    pub avg: u32,
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 128 KiB – 512 KiB – 2 MiB. Measured on a 96 MiB image-like file
    /// (thirds random, zero and text in 1 MiB regions) with 4 MiB rewritten
    /// (first backup / added by the rewrite): avg 256 KiB 59.4 / 5.4 MB,
    /// 512 KiB 89.6 / 5.9 MB, 1 MiB 95.4 / 9.7 MB, 2 MiB 94.6 / 13.0 MB.
    /// 512 KiB keeps most of the small-chunk gain at half the chunk count
    /// (index memory, per-chunk overhead of about 350 bytes) of 256 KiB.
    fn default() -> Self {
        ChunkerParams {
            min: 128 * 1024,
            avg: 512 * 1024,
            max: 2 * 1024 * 1024,
        }
    }
}

impl ChunkerParams {
    /// Within what FastCDC supports, and ordered.
    pub fn check(&self) -> Result<(), String> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.max)
            && self.min <= self.avg
            && self.avg <= self.max;
        if ok {
            Ok(())
        } else {
            Err(format!(
                "chunker sizes min {} avg {} max {} are outside what FastCDC allows or out of order",
                self.min, self.avg, self.max
            ))
        }
    }
}

/// A chunk's identity: keyed BLAKE3 of its plaintext.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.short())
    }
}

/// Cuts content into chunks and names them; built from the repository
/// secrets. No `Debug`: it holds the MAC key and the secret gear table.
pub struct Chunker {
    params: ChunkerParams,
    gear: Box<[u64; 256]>,
    mask_s: u64,
    mask_l: u64,
    mac: blake3::Hasher,
}

impl Drop for Chunker {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        self.gear.zeroize();
    }
}

/// FastCDC's normalization level 1 (the crate's default): most chunks fall
/// between half and twice the average.
const NORMALIZATION_BITS: u32 = 1;

impl Chunker {
    pub fn new(params: ChunkerParams, secrets: &Secrets) -> Chunker {
        let mut gear = Box::new([0u64; 256]);
        let mut xof = blake3::Hasher::new_derive_key("envarc 2 chunker gear table")
            .update(&secrets.chunker_key)
            .finalize_xof();
        let mut bytes = zeroize::Zeroizing::new([0u8; 256 * 8]);
        xof.fill(bytes.as_mut());
        for (g, b) in gear.iter_mut().zip(bytes.chunks_exact(8)) {
            *g = u64::from_le_bytes(b.try_into().expect("8 bytes"));
        }
        let bits = fastcdc::v2020::logarithm2(params.avg);
        Chunker {
            params,
            gear,
            mask_s: fastcdc::v2020::MASKS[(bits + NORMALIZATION_BITS) as usize],
            mask_l: fastcdc::v2020::MASKS[(bits - NORMALIZATION_BITS) as usize],
            mac: blake3::Hasher::new_keyed(&secrets.mac_key),
        }
    }

    pub fn params(&self) -> ChunkerParams {
        self.params
    }

    /// The length of the next chunk at the start of `data`, or `None` when
    /// `data` may continue (not `eof`) and holds less than a maximal chunk.
    pub fn cut(&self, data: &[u8], eof: bool) -> Option<usize> {
        if data.is_empty() || (!eof && data.len() < self.params.max as usize) {
            return None;
        }
        let p = self.params;
        Some(super::gear::cut(
            data,
            (p.min as usize, p.avg as usize, p.max as usize),
            (self.mask_s, self.mask_l),
            &self.gear,
        ))
    }

    /// Every chunk of a whole buffer, as lengths (for tests and small files).
    pub fn split<'a>(&self, mut data: &'a [u8]) -> Vec<&'a [u8]> {
        let mut out = Vec::new();
        while let Some(n) = self.cut(data, true) {
            out.push(&data[..n]);
            data = &data[n..];
        }
        out
    }

    /// The ID of a chunk with this plaintext.
    pub fn id(&self, plaintext: &[u8]) -> ChunkId {
        // One core per chunk (BLAKE3 still uses its SIMD lanes): the chunk
        // pipeline already spreads chunks over every core.
        let mut h = self.mac.clone();
        h.update(plaintext);
        ChunkId(*h.finalize().as_bytes())
    }

    /// [`Chunker::id`] of the concatenation of `parts` (a chunk read in
    /// place, in pieces).
    pub fn id_of_parts<'a>(&self, parts: impl IntoIterator<Item = &'a [u8]>) -> ChunkId {
        let mut h = self.mac.clone();
        for p in parts {
            h.update(p);
        }
        ChunkId(*h.finalize().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_depend_on_the_secret_and_resynchronise_after_an_edit() {
        let params = ChunkerParams::default();
        let (a, b) = (Secrets::generate(), Secrets::generate());
        let (ca, cb) = (Chunker::new(params, &a), Chunker::new(params, &b));
        let d = crate::repo::test_noise(32 << 20, 1);
        let la: Vec<usize> = ca.split(&d).iter().map(|c| c.len()).collect();
        let lb: Vec<usize> = cb.split(&d).iter().map(|c| c.len()).collect();
        assert_ne!(la, lb, "another secret cuts elsewhere");
        assert!(la.iter().all(|&n| n <= params.max as usize));
        assert_eq!(la.iter().sum::<usize>(), d.len());
        // An insertion early on changes only the chunks around it.
        let mut e = d.clone();
        e.splice(1000..1000, [9u8; 100]);
        let ids = |c: &Chunker, v: &[u8]| -> Vec<ChunkId> {
            c.split(v).iter().map(|x| c.id(x)).collect()
        };
        let (x, y) = (ids(&ca, &d), ids(&ca, &e));
        let shared = y.iter().filter(|i| x.contains(i)).count();
        assert!(
            shared + 2 >= x.len(),
            "{shared} of {} chunks shared",
            x.len()
        );
        assert_ne!(ca.id(b"abc"), cb.id(b"abc"), "IDs are keyed");
    }
}
