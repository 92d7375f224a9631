//! Speed of `flowgen eval` on the shared CIDDS-001 sample: the k-NN balls of
//! the reference, density/coverage of a synthetic set, and a whole
//! evaluation. Prints timings; run with `cargo bench --bench eval`. Under
//! `cargo test` (no `--bench` argument) it only runs one small size, so that
//! the test suite checks it works without spending a minute on it.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use flowgen::data::{read_all, ReadOptions};
use flowgen::eval::{
    evaluate, feature_matrix, EvalOptions, InternalNetwork, Moments, RealBalls, DEFAULT_NEIGHBOURS,
};
use flowgen::flow::Flow;

/// `count` flows cycled from `flows`, each shifted in time and size so that
/// no two are identical.
fn synthetic(flows: &[Flow], count: usize) -> Vec<Flow> {
    (0..count)
        .map(|i| {
            let mut flow = flows[i % flows.len()].clone();
            flow.start_ms += (i as i64 * 7_919) % 3_600_000;
            flow.bytes += (i % 97) as u64;
            flow
        })
        .collect()
}

fn main() {
    let flows = read_all([common::cidds_sample()], ReadOptions::default())
        .expect("the shared CIDDS-001 sample");
    let internal = InternalNetwork::cidds001();
    let options = EvalOptions::default();

    let benchmarking = std::env::args().any(|arg| arg == "--bench");
    let sizes: &[(usize, usize)] = if benchmarking {
        &[(4_096, 2_048), (6_144, 6_144), (6_144, 20_480)]
    } else {
        &[(512, 256)]
    };
    for &(reference_len, synthetic_len) in sizes {
        let reference = &flows[flows.len() - reference_len..];
        let fake = synthetic(&flows, synthetic_len);

        let started = Instant::now();
        let mut real = feature_matrix(reference, &internal);
        let moments = Moments::of(&real);
        moments.standardise(&mut real);
        let balls = RealBalls::new(real, DEFAULT_NEIGHBOURS).expect("enough reference flows");
        let balls_s = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let mut fake_features = feature_matrix(&fake, &internal);
        moments.standardise(&mut fake_features);
        let scored = balls.score(&fake_features);
        let score_s = started.elapsed().as_secs_f64();

        let started = Instant::now();
        let report = evaluate(reference, &fake, Some(&flows), &options).expect("evaluation");
        let evaluate_s = started.elapsed().as_secs_f64();

        println!(
            "reference {reference_len:>5}  synthetic {synthetic_len:>6}: k-NN balls {balls_s:.3} s, \
             density/coverage {score_s:.3} s (density {:.3}, coverage {:.3}), \
             evaluate with yardstick {evaluate_s:.3} s (JSD mean {:.3})",
            scored.density, scored.coverage, report.scores.jsd.mean
        );
    }
}
