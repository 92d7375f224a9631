//! Scoring synthetic flows against real ones: the domain checks of Ring et
//! al. (2019), distances between marginal distributions (JSD, EMD), the
//! pairwise correlation difference, density and coverage, and how many
//! synthetic flows copy a training flow.
//!
//! Real data is the yardstick: given the training flows, [`evaluate`] also
//! scores a same-size random draw of them against the reference, which shows
//! what a perfect generator would score on each metric. Compare with it, not
//! with zero: JSD, density and coverage depend on the set sizes. On the
//! CIDDS-001 sample, 2,048 real flows against 4,096 others score JSD 0.145
//! and coverage 0.87; against 2,048 others JSD 0.152 and coverage 0.97.
//!
//! Everything is held in memory and density/coverage grows with the product
//! of the set sizes: this is meant for samples of up to some tens of
//! thousands of flows, not for whole data sets.

mod checks;
mod correlation;
mod distance;
mod features;
mod neighbours;
mod network;
mod table;

use std::collections::HashSet;

use rand::SeedableRng;
use serde::{Deserialize, Serialize};

pub use checks::{run_checks, Check, CheckScore, Checks};
pub use correlation::{correlation_matrix, pairwise_correlation_difference, CorrelationMatrix};
pub use distance::{jensen_shannon, scaled_wasserstein, wasserstein, Emd, Jsd};
pub use features::{
    feature_matrix, feature_vector, FeatureVector, Moments, FEATURE_COUNT, FEATURE_NAMES,
};
pub use neighbours::{density_coverage, DensityCoverage, RealBalls};
pub use network::{is_broadcast, is_multicast, Cidr, CidrError, InternalNetwork};

use crate::flow::{Address, Flow, Protocol, TcpFlags};

/// Neighbours per real point for density and coverage, as Naeem et al. use.
pub const DEFAULT_NEIGHBOURS: usize = 5;

/// Settings of an evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalOptions {
    /// Networks that count as internal (default: CIDDS-001's 192.168.0.0/16).
    pub internal: InternalNetwork,
    /// k of the k-nearest-neighbour balls for density and coverage (default 5).
    pub neighbours: usize,
    /// Seed of the random draw of training flows for the yardstick (default 0).
    pub seed: u64,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            internal: InternalNetwork::cidds001(),
            neighbours: DEFAULT_NEIGHBOURS,
            seed: 0,
        }
    }
}

/// Why an evaluation could not be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EvalError {
    /// One of the sets has no flows.
    #[error("the {set} set has no flows")]
    Empty {
        /// `reference`, `synthetic` or `train`.
        set: &'static str,
    },
    /// Too few reference flows for a k-th nearest neighbour.
    #[error("density and coverage with k = {k} need more than {k} reference flows, got {flows}")]
    TooFewReference {
        /// Reference flows given.
        flows: usize,
        /// Neighbours asked for.
        k: usize,
    },
}

/// All scores of one set of flows against the reference.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// The seven domain checks.
    pub checks: Checks,
    /// Jensen-Shannon divergences of the categorical attributes.
    pub jsd: Jsd,
    /// Range-scaled Wasserstein distances of the continuous attributes.
    pub emd: Emd,
    /// Pairwise correlation difference over all features.
    pub pcd: f64,
    /// Density (Naeem et al. 2020); about 1 for real data.
    pub density: f64,
    /// Coverage (Naeem et al. 2020), 0 to 1.
    pub coverage: f64,
    /// Share (0 to 1) of flows that exactly copy a training flow; `None`
    /// without training flows. For the yardstick: the share of reference
    /// flows that coincide with a training flow, i.e. what chance gives.
    pub memorization: Option<f64>,
}

/// How many flows each set had.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowCounts {
    /// Reference (held-out real) flows.
    pub reference: u64,
    /// Synthetic flows.
    pub synthetic: u64,
    /// Training flows, when given.
    pub train: Option<u64>,
    /// Training flows drawn for the yardstick, when given.
    pub yardstick: Option<u64>,
}

/// The settings an evaluation ran with, kept with its figures.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalSettings {
    /// Internal networks in CIDR notation.
    pub internal: Vec<String>,
    /// k of density and coverage.
    pub neighbours: usize,
    /// Seed of the yardstick draw.
    pub seed: u64,
}

/// The outcome of [`evaluate`]; serialises to the JSON `flowgen eval --json` writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Set sizes.
    pub flows: FlowCounts,
    /// Settings used.
    pub settings: EvalSettings,
    /// The synthetic set's scores.
    #[serde(flatten)]
    pub scores: Scores,
    /// A random draw of training flows, as large as the synthetic set,
    /// scored the same way: what real data scores. `None` without training flows.
    pub yardstick: Option<Scores>,
}

/// Scores `synthetic` against `reference`; with `train`, also counts copies
/// of training flows and scores a draw of training flows as the yardstick.
pub fn evaluate(
    reference: &[Flow],
    synthetic: &[Flow],
    train: Option<&[Flow]>,
    options: &EvalOptions,
) -> Result<Report, EvalError> {
    for (set, flows) in [
        ("reference", Some(reference)),
        ("synthetic", Some(synthetic)),
        ("train", train),
    ] {
        if flows.is_some_and(<[Flow]>::is_empty) {
            return Err(EvalError::Empty { set });
        }
    }
    let judge = Judge::new(reference, options)?;
    let copies = train.map(TrainingIndex::new);

    let mut scores = judge.score(synthetic);
    scores.memorization = copies.as_ref().map(|index| index.share_copied(synthetic));

    let drawn = train.map(|train| draw(train, synthetic.len(), options.seed));
    let yardstick = drawn.as_ref().map(|drawn| Scores {
        memorization: copies.as_ref().map(|index| index.share_copied(reference)),
        ..judge.score(drawn)
    });

    Ok(Report {
        flows: FlowCounts {
            reference: reference.len() as u64,
            synthetic: synthetic.len() as u64,
            train: train.map(|t| t.len() as u64),
            yardstick: drawn.as_ref().map(|d| d.len() as u64),
        },
        settings: EvalSettings {
            internal: options
                .internal
                .networks()
                .iter()
                .map(Cidr::to_string)
                .collect(),
            neighbours: options.neighbours,
            seed: options.seed,
        },
        scores,
        yardstick,
    })
}

/// The reference set prepared once (features, standardisation, k-NN balls)
/// for scoring any number of other sets against it.
struct Judge<'a> {
    reference: &'a [Flow],
    raw_features: Vec<FeatureVector>,
    moments: Moments,
    balls: RealBalls,
    internal: &'a InternalNetwork,
}

impl<'a> Judge<'a> {
    fn new(reference: &'a [Flow], options: &'a EvalOptions) -> Result<Judge<'a>, EvalError> {
        let raw_features = feature_matrix(reference, &options.internal);
        let moments = Moments::of(&raw_features);
        let mut standardised = raw_features.clone();
        moments.standardise(&mut standardised);
        let balls =
            RealBalls::new(standardised, options.neighbours).ok_or(EvalError::TooFewReference {
                flows: reference.len(),
                k: options.neighbours,
            })?;
        Ok(Judge {
            reference,
            raw_features,
            moments,
            balls,
            internal: &options.internal,
        })
    }

    /// Every score but memorization, which needs the training flows.
    fn score(&self, flows: &[Flow]) -> Scores {
        let raw_features = feature_matrix(flows, self.internal);
        let mut standardised = raw_features.clone();
        self.moments.standardise(&mut standardised);
        let fidelity = self.balls.score(&standardised);
        Scores {
            checks: run_checks(flows, self.internal),
            jsd: Jsd::between(self.reference, flows),
            emd: Emd::between(self.reference, flows),
            pcd: pairwise_correlation_difference(&self.raw_features, &raw_features),
            density: fidelity.density,
            coverage: fidelity.coverage,
            memorization: None,
        }
    }
}

/// The attributes that make a flow a copy of another: everything but time.
type CopyKey<'a> = (
    Protocol,
    &'a Address,
    &'a Address,
    u16,
    u16,
    u64,
    u64,
    TcpFlags,
);

fn copy_key(f: &Flow) -> CopyKey<'_> {
    (
        f.protocol,
        &f.src,
        &f.dst,
        f.src_port,
        f.dst_port,
        f.packets,
        f.bytes,
        f.tcp_flags,
    )
}

/// The training flows, indexed for exact-copy look-ups.
struct TrainingIndex<'a> {
    keys: HashSet<CopyKey<'a>>,
}

impl<'a> TrainingIndex<'a> {
    fn new(train: &'a [Flow]) -> TrainingIndex<'a> {
        TrainingIndex {
            keys: train.iter().map(copy_key).collect(),
        }
    }

    /// Share of `flows` equal to a training flow in protocol, addresses,
    /// ports, packets, bytes and flags; 0 for no flows.
    fn share_copied(&self, flows: &[Flow]) -> f64 {
        let copied = flows
            .iter()
            .filter(|f| self.keys.contains(&copy_key(f)))
            .count();
        copied as f64 / flows.len().max(1) as f64
    }
}

/// Share of `synthetic` flows that exactly copy one of `train` (protocol,
/// addresses, ports, packets, bytes, flags); 0 for no synthetic flows.
pub fn memorization(train: &[Flow], synthetic: &[Flow]) -> f64 {
    TrainingIndex::new(train).share_copied(synthetic)
}

/// `count` flows (all of them when fewer) drawn from `flows` without
/// replacement, reproducibly for a given `seed`.
fn draw(flows: &[Flow], count: usize, seed: u64) -> Vec<Flow> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let count = count.min(flows.len());
    rand::seq::index::sample(&mut rng, flows.len(), count)
        .into_iter()
        .map(|i| flows[i].clone())
        .collect()
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::flow::{Address, Flow, Protocol, TcpFlags};

    /// A one-packet, 60-byte flow at the epoch; panics on a bad literal (tests only).
    pub(crate) fn flow(protocol: &str, src: &str, src_port: u16, dst: &str, dst_port: u16) -> Flow {
        Flow {
            start_ms: 0,
            duration_ms: 0,
            protocol: Protocol::parse(protocol).expect("test protocol"),
            src: Address::parse(src).expect("test address"),
            dst: Address::parse(dst).expect("test address"),
            src_port,
            dst_port,
            packets: 1,
            bytes: 60,
            tcp_flags: TcpFlags(0),
            tos: 0,
            label: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::flow;
    use super::*;

    /// 40 distinct plausible flows: TCP to port 443 with varying sizes and times.
    fn real_like(n: u64, offset: u64) -> Vec<Flow> {
        (0..n)
            .map(|i| Flow {
                start_ms: ((i * 7919 + offset) % 86_400) as i64 * 1000,
                duration_ms: (i * 37 + offset) % 5000,
                packets: 1 + (i + offset) % 9,
                bytes: 60 * (1 + (i + offset) % 9) + (i * 13) % 50,
                ..flow(
                    "TCP",
                    "192.168.1.2",
                    (40000 + i + offset) as u16,
                    "11529_47",
                    443,
                )
            })
            .collect()
    }

    #[test]
    fn memorization_counts_exact_copies_ignoring_time() {
        let train = real_like(10, 0);
        let mut synthetic = train[..3].to_vec();
        synthetic[0].start_ms += 12_345;
        synthetic[2].bytes += 1;
        synthetic.push(flow("UDP", "a", 1, "b", 2));
        assert_eq!(memorization(&train, &synthetic), 0.5);
        assert_eq!(memorization(&train, &[]), 0.0);
    }

    #[test]
    fn evaluate_rejects_empty_and_tiny_sets() {
        let real = real_like(40, 0);
        let options = EvalOptions::default();
        assert_eq!(
            evaluate(&[], &real, None, &options),
            Err(EvalError::Empty { set: "reference" })
        );
        assert_eq!(
            evaluate(&real, &[], None, &options),
            Err(EvalError::Empty { set: "synthetic" })
        );
        assert_eq!(
            evaluate(&real, &real, Some(&[]), &options),
            Err(EvalError::Empty { set: "train" })
        );
        assert_eq!(
            evaluate(&real[..5], &real, None, &options),
            Err(EvalError::TooFewReference { flows: 5, k: 5 })
        );
    }

    #[test]
    fn a_set_scored_against_itself_is_perfect() {
        let real = real_like(40, 0);
        let report = evaluate(&real, &real, Some(&real), &EvalOptions::default()).unwrap();
        let s = &report.scores;
        assert_eq!(s.jsd.mean, 0.0);
        assert_eq!(s.emd.mean, 0.0);
        assert!(s.pcd < 1e-9, "{}", s.pcd);
        assert_eq!(s.coverage, 1.0);
        assert_eq!(s.memorization, Some(1.0));
        assert_eq!(s.checks.t2.accuracy, Some(100.0));

        let yardstick = report.yardstick.as_ref().unwrap();
        assert_eq!(
            yardstick.jsd.mean, 0.0,
            "the draw is the whole set, reordered"
        );
        assert_eq!(report.flows.yardstick, Some(40));
    }

    #[test]
    fn yardstick_draw_is_seeded_and_sized_like_the_synthetic_set() {
        let real = real_like(40, 0);
        let train = real_like(200, 1000);
        let synthetic = real_like(30, 500);
        let options = EvalOptions::default();
        let a = evaluate(&real, &synthetic, Some(&train), &options).unwrap();
        let b = evaluate(&real, &synthetic, Some(&train), &options).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.flows.yardstick, Some(30));
        assert_eq!(a.flows.train, Some(200));

        let other_seed = EvalOptions { seed: 1, ..options };
        let c = evaluate(&real, &synthetic, Some(&train), &other_seed).unwrap();
        assert_ne!(a.yardstick, c.yardstick);
        assert_eq!(a.scores, c.scores);
    }

    #[test]
    fn report_json_has_the_documented_keys() {
        let real = real_like(40, 0);
        let report = evaluate(&real, &real_like(20, 3), None, &EvalOptions::default()).unwrap();
        let json = serde_json::to_value(&report).unwrap();
        for key in [
            "checks",
            "jsd",
            "emd",
            "pcd",
            "density",
            "coverage",
            "memorization",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["memorization"], serde_json::Value::Null);
        assert_eq!(json["yardstick"], serde_json::Value::Null);
        assert!(json["checks"]["T7"]["premise"].is_u64());
        assert!(json["jsd"]["mean"].is_f64());
        assert!(json["emd"]["time_of_day"].is_f64());
        assert_eq!(json["settings"]["internal"][0], "192.168.0.0/16");

        let back: Report = serde_json::from_value(json).unwrap();
        assert_eq!(back, report);
    }
}
