//! Which chunks `verify` reads in full: none, all, or a subset
//! (`--read-data-subset`), with restic's notation.

use std::collections::HashSet;

use rand::seq::SliceRandom;

use crate::repo::ChunkId;

#[derive(Clone, Debug, Default, PartialEq)]
pub enum ReadData {
    /// Structural checks only: headers, IDs and data keys, no content.
    #[default]
    None,
    /// Every frame of every referenced chunk.
    All,
    /// `K/N`: the K-th of N fixed groups, by chunk ID. Running 1/N … N/N
    /// (say one a night) reads everything once; the groups do not change
    /// between runs (new chunks fall into them by their ID).
    Group { k: u64, n: u64 },
    /// `P%`: a random P% of the chunks (rounded up, so never none of a
    /// repository that has any), drawn anew on every run, so that repeated
    /// runs cover the repository over time.
    Percent(f64),
}

impl ReadData {
    /// Parses `K/N` or `P%` (P may have a fraction: `2.5%`).
    pub fn parse_subset(s: &str) -> Result<ReadData, String> {
        let s = s.trim();
        if let Some(p) = s.strip_suffix('%') {
            let p: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("'{s}' is not a percentage; write e.g. 10%"))?;
            if !(p > 0.0 && p <= 100.0) {
                return Err(format!(
                    "the percentage in '{s}' must be above 0 and at most 100"
                ));
            }
            return Ok(ReadData::Percent(p));
        }
        if let Some((k, n)) = s.split_once('/') {
            let k: u64 = k.trim().parse().map_err(|_| bad(s))?;
            let n: u64 = n.trim().parse().map_err(|_| bad(s))?;
            if n == 0 || k == 0 || k > n {
                return Err(format!("in '{s}', K/N needs 1 <= K <= N"));
            }
            return Ok(ReadData::Group { k, n });
        }
        Err(bad(s))
    }

    /// The chunks of `wanted` read in full. For `P%`, exactly P% of them
    /// rounded up, drawn without replacement: a per-chunk coin toss could
    /// read none of a small repository and still report it clean.
    pub fn select(&self, wanted: &HashSet<ChunkId>, rng: &mut impl rand::Rng) -> HashSet<ChunkId> {
        match self {
            ReadData::Percent(p) => {
                let n = ((wanted.len() as f64) * p / 100.0).ceil() as usize;
                let mut ids: Vec<ChunkId> = wanted.iter().copied().collect();
                // Sorted first, so the draw depends on the RNG only.
                ids.sort_unstable_by_key(|id| id.0);
                ids.choose_multiple(rng, n.min(ids.len()))
                    .copied()
                    .collect()
            }
            _ => wanted
                .iter()
                .filter(|id| self.selects(id))
                .copied()
                .collect(),
        }
    }

    /// Whether message `id` is read in full, for the fixed subsets (`P%`
    /// draws from the whole set: see [`Self::select`]).
    fn selects(&self, id: &ChunkId) -> bool {
        match self {
            ReadData::None => false,
            ReadData::All | ReadData::Percent(_) => true,
            ReadData::Group { k, n } => {
                let v = u64::from_be_bytes(id.0[..8].try_into().expect("32 bytes"));
                v % n == k - 1
            }
        }
    }

    /// For the report: `none`, `all`, `group 2/5`, `random 10%`.
    pub fn describe(&self) -> String {
        match self {
            ReadData::None => "none".into(),
            ReadData::All => "all".into(),
            ReadData::Group { k, n } => format!("group {k}/{n}"),
            ReadData::Percent(p) => format!("random {p}%"),
        }
    }
}

fn bad(s: &str) -> String {
    format!("'{s}' is not a subset; write K/N (e.g. 2/5) or a percentage (e.g. 10%)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subsets_parse_and_groups_partition() {
        assert_eq!(ReadData::parse_subset("10%"), Ok(ReadData::Percent(10.0)));
        assert_eq!(
            ReadData::parse_subset("2/5"),
            Ok(ReadData::Group { k: 2, n: 5 })
        );
        for bad in ["0%", "101%", "0/3", "4/3", "x", "1/0", "%"] {
            assert!(ReadData::parse_subset(bad).is_err(), "{bad}");
        }
        // Every ID falls into exactly one of the N groups.
        for seed in 0..50u8 {
            let id = [seed.wrapping_mul(37); 32];
            let hits = (1..=3)
                .filter(|k| ReadData::Group { k: *k, n: 3 }.selects(&crate::repo::ChunkId(id)))
                .count();
            assert_eq!(hits, 1);
        }
    }

    #[test]
    fn a_percentage_reads_that_share_rounded_up() {
        let mut rng = rand::thread_rng();
        let ids = |n: u8| (0..n).map(|i| ChunkId([i; 32])).collect::<HashSet<_>>();
        // 10% of 7 chunks is one chunk, not a coin toss that may read none.
        for _ in 0..20 {
            let picked = ReadData::Percent(10.0).select(&ids(7), &mut rng);
            assert_eq!(picked.len(), 1);
            assert!(ids(7).is_superset(&picked));
        }
        assert_eq!(ReadData::Percent(50.0).select(&ids(10), &mut rng).len(), 5);
        assert_eq!(ReadData::Percent(100.0).select(&ids(9), &mut rng).len(), 9);
        assert!(ReadData::Percent(10.0).select(&ids(0), &mut rng).is_empty());
        assert_eq!(ReadData::All.select(&ids(4), &mut rng).len(), 4);
        assert!(ReadData::None.select(&ids(4), &mut rng).is_empty());
    }
}
