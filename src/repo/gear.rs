//! FastCDC's cut-point search (v2020), with exactly the cuts the `fastcdc`
//! crate's `cut_gear` makes, found by several gear hashes side by side.
//!
//! `cut_gear` runs one gear hash over the bytes after the minimum size:
//! `h = (h << 1) + gear[byte]`, and cuts before the first byte whose hash
//! has none of the mask's bits set (a harder mask before the average size,
//! an easier one after). That is one chain of dependent additions, which
//! keeps a core waiting on each step: it was a quarter of a large backup's
//! CPU time. But a byte's term is shifted out of the 64-bit hash 64 bytes
//! later, so the hash at any byte follows from the 64 bytes before it alone.
//! [`cut`] therefore cuts its range into blocks and runs one hash per block,
//! [`LANES`] interleaved in one loop, each started [`WINDOW`] bytes before
//! its block: independent chains that one core runs at once (1.5–1.65× the
//! speed of `cut_gear` on this project's machine, data in cache). A group of
//! blocks with a match in any of them is then searched byte by byte from
//! its start, so the cut is the first match, as `cut_gear`'s is; the tests
//! compare the two on random data, sizes and masks.

/// Bytes after which a byte no longer counts in the hash.
const WINDOW: usize = 64;
/// Hashes run side by side.
const LANES: usize = 4;
/// Bytes each hash covers per group: large against the [`WINDOW`] bytes each
/// one re-reads to start, small against the group searched again on a match.
const BLOCK: usize = 4096;

/// The length of the first chunk of `data`: what `fastcdc::v2020::cut_gear`
/// returns for the same sizes, masks and gear table (its `mask_s_ls` and
/// `mask_l_ls` being the masks shifted left by one, and its `gear_ls` the
/// table shifted left by one, as FastCDC's own callers give them).
pub fn cut(
    data: &[u8],
    (min, avg, max): (usize, usize, usize),
    (mask_s, mask_l): (u64, u64),
    gear: &[u64; 256],
) -> usize {
    let mut remaining = data.len();
    if remaining <= min {
        return remaining;
    }
    let mut center = avg;
    if remaining > max {
        remaining = max;
    } else if remaining < center {
        center = remaining;
    }
    // `cut_gear` steps over pairs of bytes: it starts at an even offset and
    // ends (and switches masks) at even offsets too.
    let start = min / 2 * 2;
    let switch = (center / 2 * 2).max(start);
    let end = remaining / 2 * 2;
    let hashes = Hashes { data, start, gear };
    hashes
        .first_match(start, switch, mask_s)
        .or_else(|| hashes.first_match(switch, end, mask_l))
        .unwrap_or(remaining)
}

/// The gear hash of `data` from `start` on.
struct Hashes<'a> {
    data: &'a [u8],
    start: usize,
    gear: &'a [u64; 256],
}

impl Hashes<'_> {
    /// The hash of the bytes before `at` (those since `start`; only the last
    /// [`WINDOW`] count).
    fn before(&self, at: usize) -> u64 {
        let from = at.saturating_sub(WINDOW).max(self.start);
        self.data[from..at]
            .iter()
            .fold(0u64, |h, &b| (h << 1).wrapping_add(self.gear[b as usize]))
    }

    /// The first offset in `from..to` whose hash has no bit of `mask` set.
    fn first_match(&self, from: usize, to: usize, mask: u64) -> Option<usize> {
        const GROUP: usize = LANES * BLOCK;
        let mut at = from;
        while to - at >= GROUP {
            if self.group_matches(at, mask) {
                return self.scan(at, at + GROUP, mask);
            }
            at += GROUP;
        }
        self.scan(at, to, mask)
    }

    /// Whether any offset in the group of [`LANES`] blocks at `at` matches.
    fn group_matches(&self, at: usize, mask: u64) -> bool {
        let blocks: [&[u8; BLOCK]; LANES] = std::array::from_fn(|j| {
            let b = at + j * BLOCK;
            self.data[b..b + BLOCK].try_into().expect("BLOCK bytes")
        });
        let mut h: [u64; LANES] = std::array::from_fn(|j| self.before(at + j * BLOCK));
        // `i` indexes every lane's block at once: no iterator says that.
        #[allow(clippy::needless_range_loop)]
        for i in 0..BLOCK {
            for j in 0..LANES {
                h[j] = (h[j] << 1).wrapping_add(self.gear[blocks[j][i] as usize]);
                // A branch, not a flag: it is almost never taken, and leaving
                // at once keeps the loop to four operations a byte.
                if h[j] & mask == 0 {
                    return true;
                }
            }
        }
        false
    }

    /// The first match in `from..to`, one byte after another.
    fn scan(&self, from: usize, to: usize, mask: u64) -> Option<usize> {
        let mut h = self.before(from);
        for (i, &b) in self.data[from..to].iter().enumerate() {
            h = (h << 1).wrapping_add(self.gear[b as usize]);
            if h & mask == 0 {
                return Some(from + i);
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fastcdc::v2020::{cut_gear, MASKS};
    use proptest::prelude::*;

    fn table(seed: u64) -> [u64; 256] {
        let mut x = seed | 1;
        std::array::from_fn(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        })
    }

    fn theirs(
        data: &[u8],
        sizes: (usize, usize, usize),
        masks: (u64, u64),
        gear: &[u64; 256],
    ) -> usize {
        let gear_ls: [u64; 256] = std::array::from_fn(|i| gear[i] << 1);
        let (min, avg, max) = sizes;
        let (s, l) = masks;
        cut_gear(data, min, avg, max, s, l, s << 1, l << 1, gear, &gear_ls).1
    }

    /// Every cut of `data`, by `f`.
    fn cuts(data: &[u8], f: impl Fn(&[u8]) -> usize) -> Vec<usize> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let n = f(&data[at..]);
            out.push(n);
            at += n;
        }
        out
    }

    #[test]
    fn cuts_as_fastcdc_does_at_envarcs_sizes() {
        let sizes = (128 << 10, 512 << 10, 2 << 20);
        let masks = (MASKS[20], MASKS[18]);
        let gear = table(7);
        let data = crate::repo::test_noise(24 << 20, 3);
        let ours = cuts(&data, |d| cut(d, sizes, masks, &gear));
        assert_eq!(ours, cuts(&data, |d| theirs(d, sizes, masks, &gear)));
        assert!(ours.len() > 20, "{} chunks", ours.len());
    }

    #[test]
    fn cuts_as_fastcdc_does_where_nothing_matches_and_on_repeated_bytes() {
        // A mask of 48 bits all but never matches: every chunk runs to the
        // maximum (or the end), through many groups of blocks.
        let gear = table(9);
        let sizes = (4096, 16384, 65536);
        let never = (1u64 << 48) - 1;
        let data = crate::repo::test_noise(300_001, 4);
        let ours = cuts(&data, |d| cut(d, sizes, (never, never), &gear));
        assert_eq!(
            ours,
            cuts(&data, |d| theirs(d, sizes, (never, never), &gear))
        );
        assert_eq!(&ours[..4], &[65536; 4]);
        assert_eq!(ours.iter().sum::<usize>(), data.len());
        // One byte over and over: the hash settles on one value.
        let zeros = vec![0u8; 300_001];
        let masks = (MASKS[15], MASKS[13]);
        let ours = cuts(&zeros, |d| cut(d, sizes, masks, &gear));
        assert_eq!(ours, cuts(&zeros, |d| theirs(d, sizes, masks, &gear)));
    }

    #[test]
    fn the_hash_before_an_offset_needs_only_the_window_before_it() {
        let gear = table(11);
        let data = crate::repo::test_noise(5000, 5);
        let hashes = Hashes {
            data: &data,
            start: 100,
            gear: &gear,
        };
        let mut h = 0u64;
        for at in 100..data.len() {
            assert_eq!(hashes.before(at), h, "at {at}");
            h = (h << 1).wrapping_add(gear[data[at] as usize]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn cuts_as_fastcdc_does(
            seed in any::<u64>(),
            len in 0usize..400_000,
            min in 64usize..20_000,
            avg_extra in 0usize..40_000,
            max_extra in 0usize..100_000,
            bits in 6usize..16,
        ) {
            let gear = table(seed);
            let data = crate::repo::test_noise(len, seed);
            let avg = min + avg_extra;
            let sizes = (min, avg, avg + max_extra);
            let masks = (MASKS[bits + 1], MASKS[bits - 1]);
            let ours = cuts(&data, |d| cut(d, sizes, masks, &gear));
            prop_assert_eq!(ours, cuts(&data, |d| theirs(d, sizes, masks, &gear)));
        }
    }
}
