//! Density and coverage (Naeem, Oh, Uh, Choi, Yoo, "Reliable fidelity and
//! diversity metrics for generative models", ICML 2020).
//!
//! Every real point gets a ball reaching to its k-th nearest real neighbour.
//! Density is the mean number of real balls a synthetic point falls in,
//! divided by k (about 1 when both sets come from one distribution; above 1
//! when synthetic points crowd dense regions). Coverage is the share of real
//! balls that hold at least one synthetic point. Points on a ball's boundary
//! are outside, as in the authors' `prdc` package.
//!
//! Distances are computed exhaustively: n real x (n real + m synthetic)
//! squared distances in 20 dimensions, spread over the available cores. That
//! takes well under a second for thousands of flows and grows with the product
//! of the set sizes, so evaluating hundreds of thousands of flows takes minutes.

use std::num::NonZeroUsize;
use std::thread;

use super::features::{FeatureVector, FEATURE_COUNT};

/// Density and coverage of a synthetic set with respect to a real one.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DensityCoverage {
    /// Mean number of real k-NN balls holding a synthetic point, divided by k.
    pub density: f64,
    /// Share of real k-NN balls holding at least one synthetic point.
    pub coverage: f64,
}

/// The real points with their k-NN balls, computed once and reused for every
/// synthetic set scored against them.
#[derive(Clone, Debug)]
pub struct RealBalls {
    centres: Vec<FeatureVector>,
    squared_radii: Vec<f64>,
    k: usize,
}

impl RealBalls {
    /// The balls of `real` reaching to each point's `k`-th nearest other point;
    /// `None` when `k` is 0 or `real` has `k` points or fewer.
    pub fn new(real: Vec<FeatureVector>, k: usize) -> Option<RealBalls> {
        if k == 0 || real.len() <= k {
            return None;
        }
        let squared_radii = kth_neighbour_squared_distances(&real, k);
        Some(RealBalls {
            centres: real,
            squared_radii,
            k,
        })
    }

    /// Density and coverage of `fake`; both 0 when `fake` is empty.
    pub fn score(&self, fake: &[FeatureVector]) -> DensityCoverage {
        let (inside_balls, covered) = parallel_chunks(fake, |chunk| self.count_inside(chunk))
            .into_iter()
            .fold(
                (0u64, vec![false; self.centres.len()]),
                |(total, mut covered), (count, part)| {
                    covered.iter_mut().zip(part).for_each(|(c, p)| *c |= p);
                    (total + count, covered)
                },
            );
        let balls_hit = covered.iter().filter(|&&c| c).count();
        DensityCoverage {
            density: inside_balls as f64 / (self.k as f64 * fake.len().max(1) as f64),
            coverage: balls_hit as f64 / self.centres.len() as f64,
        }
    }

    /// How many (ball, fake point) pairs have the point strictly inside the
    /// ball, and which balls hold any of `fake`.
    // Indexing instead of zipped iterators: unoptimised test builds run the
    // zips several times slower, and this loop body runs n * m times.
    #[allow(clippy::needless_range_loop)]
    fn count_inside(&self, fake: &[FeatureVector]) -> (u64, Vec<bool>) {
        let mut covered = vec![false; self.centres.len()];
        let mut count = 0u64;
        for point in fake {
            for i in 0..self.centres.len() {
                let inside = squared_distance(&self.centres[i], point) < self.squared_radii[i];
                count += u64::from(inside);
                covered[i] |= inside;
            }
        }
        (count, covered)
    }
}

/// Density and coverage of `fake` against `real` with `k` neighbours.
///
/// `None` when `k` is 0 or `real` has `k` points or fewer (no k-th neighbour).
pub fn density_coverage(
    real: &[FeatureVector],
    fake: &[FeatureVector],
    k: usize,
) -> Option<DensityCoverage> {
    RealBalls::new(real.to_vec(), k).map(|balls| balls.score(fake))
}

/// For each point of `real`, the squared distance to its k-th nearest other point.
fn kth_neighbour_squared_distances(real: &[FeatureVector], k: usize) -> Vec<f64> {
    let rows: Vec<usize> = (0..real.len()).collect();
    parallel_chunks(&rows, |chunk| {
        let mut nearest = Vec::with_capacity(k + 1);
        chunk
            .iter()
            .map(|&i| {
                nearest.clear();
                for j in 0..real.len() {
                    let distance = squared_distance(&real[i], &real[j]);
                    let full_and_farther = nearest.len() == k && distance >= nearest[k - 1];
                    if j != i && !full_and_farther {
                        keep_smallest(&mut nearest, k, distance);
                    }
                }
                nearest[k - 1]
            })
            .collect::<Vec<f64>>()
    })
    .concat()
}

/// Inserts `value` into the ascending `smallest`, keeping at most `k` values.
fn keep_smallest(smallest: &mut Vec<f64>, k: usize, value: f64) {
    if smallest.len() == k && value >= smallest[k - 1] {
        return;
    }
    let at = smallest.partition_point(|&s| s <= value);
    smallest.insert(at, value);
    smallest.truncate(k);
}

/// Runs `work` on about equal chunks of `items`, one per core, in order.
fn parallel_chunks<T: Sync, R: Send>(items: &[T], work: impl Fn(&[T]) -> R + Sync) -> Vec<R> {
    let threads = thread::available_parallelism().map_or(1, NonZeroUsize::get);
    let chunk_len = items.len().div_ceil(threads).max(1);
    if threads == 1 || items.len() <= chunk_len {
        return vec![work(items)];
    }
    thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .chunks(chunk_len)
            .map(|chunk| scope.spawn(move || work(chunk)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

/// Squared Euclidean distance, summed in four lanes so that it vectorises.
/// Plain indexing rather than iterator adaptors keeps unoptimised (test)
/// builds usable: this runs tens of millions of times per evaluation.
#[inline]
fn squared_distance(a: &FeatureVector, b: &FeatureVector) -> f64 {
    const _: () = assert!(FEATURE_COUNT % 4 == 0);
    let mut lanes = [0.0; 4];
    let mut i = 0;
    while i < FEATURE_COUNT {
        let d = [
            a[i] - b[i],
            a[i + 1] - b[i + 1],
            a[i + 2] - b[i + 2],
            a[i + 3] - b[i + 3],
        ];
        lanes[0] += d[0] * d[0];
        lanes[1] += d[1] * d[1];
        lanes[2] += d[2] * d[2];
        lanes[3] += d[3] * d[3];
        i += 4;
    }
    (lanes[0] + lanes[1]) + (lanes[2] + lanes[3])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn points(xs: &[f64]) -> Vec<FeatureVector> {
        xs.iter()
            .map(|&x| {
                let mut v = [0.0; FEATURE_COUNT];
                v[0] = x;
                v
            })
            .collect()
    }

    #[test]
    fn keeps_the_k_smallest_in_order() {
        let mut smallest = Vec::new();
        for v in [5.0, 1.0, 4.0, 2.0, 3.0, 0.5] {
            keep_smallest(&mut smallest, 3, v);
        }
        assert_eq!(smallest, vec![0.5, 1.0, 2.0]);
    }

    #[test]
    fn radii_by_hand() {
        // On a line at 0, 1, 3, 7 the second-nearest neighbours lie at 3, 2, 3 and 6.
        let radii = kth_neighbour_squared_distances(&points(&[0.0, 1.0, 3.0, 7.0]), 2);
        assert_eq!(radii, vec![9.0, 4.0, 9.0, 36.0]);
    }

    #[test]
    fn density_and_coverage_by_hand() {
        // Real 0, 1, 3, 7 with k = 2: balls of radius 3, 2, 3, 6 around them.
        // Fake 0.5 lies in the balls of 0, 1 and 3 (distance 2.5 < 3); fake 10
        // only in the ball of 7 (3 < 6); fake 20 in none; fake 1 in those of 0, 1, 3.
        // Density = (3 + 1 + 0 + 3) / (2 * 4); every ball holds a point.
        let real = points(&[0.0, 1.0, 3.0, 7.0]);
        let fake = points(&[0.5, 10.0, 20.0, 1.0]);
        let dc = density_coverage(&real, &fake, 2).unwrap();
        assert_eq!(dc.density, 7.0 / 8.0);
        assert_eq!(dc.coverage, 1.0);

        // Fake 13 lies on the boundary of 7's ball (distance 6 = radius): outside.
        // Fake 5 lies in the balls of 3 (2 < 3) and 7 (2 < 6) only.
        let fake = points(&[13.0, 5.0]);
        let dc = density_coverage(&real, &fake, 2).unwrap();
        assert_eq!(dc.density, 2.0 / 4.0);
        assert_eq!(dc.coverage, 2.0 / 4.0);
    }

    #[test]
    fn needs_more_real_points_than_k() {
        let real = points(&[0.0, 1.0]);
        assert_eq!(density_coverage(&real, &real, 2), None);
        assert_eq!(density_coverage(&real, &real, 0), None);
        let none = density_coverage(&real, &[], 1).unwrap();
        assert_eq!((none.density, none.coverage), (0.0, 0.0));
        assert!(density_coverage(&real, &real, 1).is_some());
    }

    #[test]
    fn identical_sets_cover_everything() {
        let real: Vec<FeatureVector> = (0..200)
            .map(|i| std::array::from_fn(|d| ((i * 7 + d * 13) % 17) as f64 + i as f64 * 0.01))
            .collect();
        let dc = density_coverage(&real, &real, 5).unwrap();
        assert_eq!(dc.coverage, 1.0);
        assert!(
            dc.density >= 1.0,
            "each point sits in its own ball and k others: {dc:?}"
        );
    }
}
