//! Choosing which rows of a training set are held out for evaluation.
//!
//! The split is a seeded uniform draw of exactly `held_out` rows out of
//! `total`, made one row at a time in file order (selection sampling, Knuth's
//! Algorithm S), so it needs no memory per row and streams over files of any
//! length. It picks the same subsets with the same probabilities as taking
//! the first `held_out` rows of a seeded shuffle.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The number of rows a fraction of `total` holds out, rounded to nearest.
pub fn held_out_rows(total: u64, fraction: f64) -> u64 {
    if !fraction.is_finite() || fraction <= 0.0 {
        return 0;
    }
    ((total as f64 * fraction.min(1.0)).round() as u64).min(total)
}

/// Decides, row by row, whether each row is held out.
#[derive(Debug, Clone)]
pub struct HoldoutSampler {
    rng: ChaCha8Rng,
    rows_left: u64,
    held_out_left: u64,
}

impl HoldoutSampler {
    /// A sampler that holds out exactly `held_out` of the next `total` rows.
    pub fn new(total: u64, held_out: u64, seed: u64) -> HoldoutSampler {
        HoldoutSampler {
            rng: ChaCha8Rng::seed_from_u64(seed),
            rows_left: total,
            held_out_left: held_out.min(total),
        }
    }

    /// Whether the next row is held out; rows past `total` never are.
    pub fn next_is_held_out(&mut self) -> bool {
        if self.rows_left == 0 {
            return false;
        }
        let pick =
            self.held_out_left > 0 && self.rng.random_range(0..self.rows_left) < self.held_out_left;
        self.rows_left -= 1;
        if pick {
            self.held_out_left -= 1;
        }
        pick
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_out_exactly_the_requested_rows() {
        for (total, held_out) in [(0, 0), (10, 0), (10, 10), (1000, 250), (7, 3)] {
            let mut sampler = HoldoutSampler::new(total, held_out, 42);
            let picked = (0..total).filter(|_| sampler.next_is_held_out()).count() as u64;
            assert_eq!(picked, held_out, "total {total}");
            assert!(!sampler.next_is_held_out());
        }
    }

    #[test]
    fn same_seed_same_split_other_seed_other_split() {
        let split = |seed| {
            let mut s = HoldoutSampler::new(500, 100, seed);
            (0..500).map(|_| s.next_is_held_out()).collect::<Vec<_>>()
        };
        assert_eq!(split(1), split(1));
        assert_ne!(split(1), split(2));
    }

    #[test]
    fn every_row_is_about_equally_likely() {
        let mut hits = [0u32; 10];
        for seed in 0..4000 {
            let mut s = HoldoutSampler::new(10, 3, seed);
            for hit in hits.iter_mut() {
                *hit += u32::from(s.next_is_held_out());
            }
        }
        // Each row is held out with probability 0.3: 1200 of 4000 expected.
        assert!(hits.iter().all(|&h| (1080..1320).contains(&h)), "{hits:?}");
    }

    #[test]
    fn fractions_round_and_clamp() {
        assert_eq!(held_out_rows(6144, 0.25), 1536);
        assert_eq!(held_out_rows(10, 0.0), 0);
        assert_eq!(held_out_rows(10, 2.0), 10);
        assert_eq!(held_out_rows(10, f64::NAN), 0);
    }
}
