//! Distances between the reference's and the synthetic set's marginal
//! distributions: Jensen-Shannon divergence for categorical attributes and the
//! 1-D Wasserstein (earth mover's) distance for continuous ones.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::features::{log_bytes, log_duration, log_packets, time_of_day};
use crate::flow::Flow;

/// Jensen-Shannon divergence per categorical attribute (natural log, 0 to ln 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Jsd {
    /// IP protocol.
    pub protocol: f64,
    /// Source address.
    pub src_addr: f64,
    /// Destination address.
    pub dst_addr: f64,
    /// Source port.
    pub src_port: f64,
    /// Destination port.
    pub dst_port: f64,
    /// TCP flags.
    pub flags: f64,
    /// Mean of the six.
    pub mean: f64,
}

impl Jsd {
    /// Compares the six attributes of `reference` and `synthetic`.
    pub fn between(reference: &[Flow], synthetic: &[Flow]) -> Jsd {
        let protocol = jensen_shannon(
            reference.iter().map(|f| f.protocol),
            synthetic.iter().map(|f| f.protocol),
        );
        let src_addr = jensen_shannon(
            reference.iter().map(|f| &f.src),
            synthetic.iter().map(|f| &f.src),
        );
        let dst_addr = jensen_shannon(
            reference.iter().map(|f| &f.dst),
            synthetic.iter().map(|f| &f.dst),
        );
        let src_port = jensen_shannon(
            reference.iter().map(|f| f.src_port),
            synthetic.iter().map(|f| f.src_port),
        );
        let dst_port = jensen_shannon(
            reference.iter().map(|f| f.dst_port),
            synthetic.iter().map(|f| f.dst_port),
        );
        let flags = jensen_shannon(
            reference.iter().map(|f| f.tcp_flags),
            synthetic.iter().map(|f| f.tcp_flags),
        );
        let all = [protocol, src_addr, dst_addr, src_port, dst_port, flags];
        Jsd {
            protocol,
            src_addr,
            dst_addr,
            src_port,
            dst_port,
            flags,
            mean: all.iter().sum::<f64>() / all.len() as f64,
        }
    }
}

/// Wasserstein distance per continuous attribute, each divided by the reference's range.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Emd {
    /// Start time as a fraction of the (UTC) day.
    pub time_of_day: f64,
    /// ln(1 + duration in seconds).
    pub log_duration: f64,
    /// ln(1 + packets).
    pub log_packets: f64,
    /// ln(1 + bytes).
    pub log_bytes: f64,
    /// Mean of the four.
    pub mean: f64,
}

impl Emd {
    /// Compares the four attributes of `reference` and `synthetic`.
    pub fn between(reference: &[Flow], synthetic: &[Flow]) -> Emd {
        let scaled = |value: fn(&Flow) -> f64| {
            let r: Vec<f64> = reference.iter().map(value).collect();
            let s: Vec<f64> = synthetic.iter().map(value).collect();
            scaled_wasserstein(r, s)
        };
        let time_of_day = scaled(time_of_day);
        let log_duration = scaled(log_duration);
        let log_packets = scaled(log_packets);
        let log_bytes = scaled(log_bytes);
        Emd {
            time_of_day,
            log_duration,
            log_packets,
            log_bytes,
            mean: (time_of_day + log_duration + log_packets + log_bytes) / 4.0,
        }
    }
}

/// Jensen-Shannon divergence between the value distributions of `a` and `b`,
/// natural logarithm, over the union of the values seen; scipy's
/// `jensenshannon(p, q) ** 2`. Zero when either side is empty.
pub fn jensen_shannon<K: Ord>(a: impl Iterator<Item = K>, b: impl Iterator<Item = K>) -> f64 {
    // A BTreeMap, not a HashMap, so that the sum runs in a fixed order and
    // the same inputs give the same last digits on every run.
    let mut counts: BTreeMap<K, [u64; 2]> = BTreeMap::new();
    for value in a {
        counts.entry(value).or_default()[0] += 1;
    }
    for value in b {
        counts.entry(value).or_default()[1] += 1;
    }
    let (n_a, n_b) = counts
        .values()
        .fold((0, 0), |(n_a, n_b), [c_a, c_b]| (n_a + c_a, n_b + c_b));
    if n_a == 0 || n_b == 0 {
        return 0.0;
    }

    let mut divergence = 0.0;
    for [c_a, c_b] in counts.values() {
        let p = *c_a as f64 / n_a as f64;
        let q = *c_b as f64 / n_b as f64;
        let m = (p + q) / 2.0;
        divergence += relative_entropy(p, m) + relative_entropy(q, m);
    }
    divergence / 2.0
}

/// `x ln(x / y)`, taken as 0 for `x = 0`.
fn relative_entropy(x: f64, y: f64) -> f64 {
    if x > 0.0 {
        x * (x / y).ln()
    } else {
        0.0
    }
}

/// The 1-D Wasserstein distance between the empirical distributions of `a`
/// and `b` (scipy's `wasserstein_distance`), divided by the range of `a`.
/// When `a` has a single value the distance is returned unscaled.
pub fn scaled_wasserstein(a: Vec<f64>, b: Vec<f64>) -> f64 {
    let range = range(&a);
    let distance = wasserstein(a, b);
    if range > 0.0 {
        distance / range
    } else {
        distance
    }
}

/// Largest minus smallest value, 0 for an empty slice.
fn range(values: &[f64]) -> f64 {
    let (min, max) = values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        });
    if values.is_empty() {
        0.0
    } else {
        max - min
    }
}

/// The 1-D Wasserstein distance: the area between the two empirical CDFs.
/// Zero when either side is empty.
pub fn wasserstein(mut a: Vec<f64>, mut b: Vec<f64>) -> f64 {
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    a.sort_by(f64::total_cmp);
    b.sort_by(f64::total_cmp);
    let mut all: Vec<f64> = a.iter().chain(&b).copied().collect();
    all.sort_by(f64::total_cmp);

    let (mut in_a, mut in_b) = (0usize, 0usize);
    let mut area = 0.0;
    for step in all.windows(2) {
        let x = step[0];
        while in_a < a.len() && a[in_a] <= x {
            in_a += 1;
        }
        while in_b < b.len() && b[in_b] <= x {
            in_b += 1;
        }
        let gap = in_a as f64 / a.len() as f64 - in_b as f64 / b.len() as f64;
        area += gap.abs() * (step[1] - x);
    }
    area
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsd_matches_scipy() {
        // scipy 1.17.1: jensenshannon([3, 1, 0], [1, 1, 2]) ** 2 over the values a, b, c.
        let a = "aaab".chars();
        let b = "abcc".chars();
        assert!((jensen_shannon(a, b) - 0.23869281311055476).abs() < 1e-15);
    }

    #[test]
    fn jsd_by_hand() {
        // p = (1, 0), q = (0, 1): m = (1/2, 1/2), JSD = ln 2.
        let jsd = jensen_shannon([1, 1].into_iter(), [2].into_iter());
        assert!((jsd - std::f64::consts::LN_2).abs() < 1e-15);
        // p = (1/2, 1/2), q = (1, 0): m = (3/4, 1/4);
        // JSD = (1/2 ln(2/3) + 1/2 ln 2 + ln(4/3)) / 2.
        let expected = (0.5 * (2.0f64 / 3.0).ln() + 0.5 * 2.0f64.ln() + (4.0f64 / 3.0).ln()) / 2.0;
        let jsd = jensen_shannon([1, 2].into_iter(), [1, 1, 1].into_iter());
        assert!((jsd - expected).abs() < 1e-15);
        assert_eq!(
            jensen_shannon([5, 6, 5].into_iter(), [6, 5, 5].into_iter()),
            0.0
        );
        assert_eq!(jensen_shannon([5].into_iter(), std::iter::empty()), 0.0);
    }

    #[test]
    fn wasserstein_matches_scipy() {
        // scipy 1.17.1: wasserstein_distance([0, 1, 3], [5, 6, 8]) = 5.0,
        // wasserstein_distance([0.0, 1.0, 3.0, 3.5], [2.0, 0.25, 7.0]) = 1.6666666666666667
        // (by hand: the six gaps between the CDFs add up to 5/3).
        assert!((wasserstein(vec![0.0, 1.0, 3.0], vec![5.0, 6.0, 8.0]) - 5.0).abs() < 1e-12);
        let d = wasserstein(vec![0.0, 1.0, 3.0, 3.5], vec![2.0, 0.25, 7.0]);
        assert!((d - 5.0 / 3.0).abs() < 1e-12, "{d}");
        assert_eq!(wasserstein(vec![1.0, 2.0], vec![2.0, 1.0]), 0.0);
    }

    #[test]
    fn scaled_wasserstein_divides_by_the_reference_range() {
        // Shifting [0, 4] by 1 moves every unit of mass by 1; the range is 4.
        let d = scaled_wasserstein(vec![0.0, 4.0], vec![1.0, 5.0]);
        assert!((d - 0.25).abs() < 1e-12);
        assert!((scaled_wasserstein(vec![2.0, 2.0], vec![3.0]) - 1.0).abs() < 1e-12);
    }
}
