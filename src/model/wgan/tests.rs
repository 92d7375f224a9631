use super::*;
use crate::model::output::OutputActivation;

fn small_params() -> WganParams {
    WganParams {
        noise_dim: 4,
        hidden: vec![16, 16],
        critic_hidden: vec![16, 16],
        batch: 32,
        n_critic: 5,
        epochs: 2,
        seed: 7,
        ..WganParams::default()
    }
}

/// Rows of (x, y) with x ~ N(2, 0.5) and y = 0/1 with probability 0.3 of 1.
fn two_column_data(rows: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..rows)
        .flat_map(|_| {
            let x: f32 = rng.sample(StandardNormal);
            let y = if rng.random::<f32>() < 0.3 { 1.0 } else { 0.0 };
            [2.0 + 0.5 * x, y]
        })
        .collect()
}

fn flat_params(net: &Mlp) -> Vec<f32> {
    net.layers
        .iter()
        .flat_map(|l| l.w.iter().chain(&l.b).copied())
        .collect()
}

fn set_param(net: &mut Mlp, mut idx: usize, value: f32) -> f32 {
    for layer in &mut net.layers {
        for p in layer.w.iter_mut().chain(layer.b.iter_mut()) {
            if idx == 0 {
                return std::mem::replace(p, value);
            }
            idx -= 1;
        }
    }
    unreachable!("parameter index in range")
}

/// Relative error between the analytic and the numeric gradient vectors.
fn relative_error(analytic: &[f32], numeric: &[f64]) -> f64 {
    let diff: f64 = analytic
        .iter()
        .zip(numeric)
        .map(|(&a, n)| (f64::from(a) - n).powi(2))
        .sum();
    let norm: f64 = numeric.iter().map(|n| n * n).sum();
    (diff / norm).sqrt()
}

fn numeric(net: &Mlp, loss: impl Fn(&Mlp) -> f64) -> Vec<f64> {
    let step = 1e-3_f32;
    let mut probe = net.clone();
    (0..flat_params(net).len())
        .map(|i| {
            let original = set_param(&mut probe, i, 0.0);
            set_param(&mut probe, i, original + step);
            let plus = loss(&probe);
            set_param(&mut probe, i, original - step);
            let minus = loss(&probe);
            set_param(&mut probe, i, original);
            (plus - minus) / (f64::from(original + step) - f64::from(original - step))
        })
        .collect()
}

fn flat_grads(grads: &[Dense]) -> Vec<f32> {
    grads
        .iter()
        .flat_map(|l| l.w.iter().chain(&l.b).copied())
        .collect()
}

#[test]
fn critic_gradient_matches_finite_differences_of_the_critic_loss() {
    let data = two_column_data(64, 1);
    let params = WganParams {
        critic_hidden: vec![6, 5],
        batch: 8,
        ..small_params()
    };
    let mut trainer = Trainer::new(&data, 2, 64, &params).unwrap();
    let (loss, _, _) = trainer.critic_gradients();

    let (stacked, interpolates, batch) = (trainer.stacked.clone(), trainer.interpolates.clone(), 8);
    let critic_loss = |critic: &Mlp| -> f64 {
        let mut tape = Tape::default();
        let scores = critic.forward(&stacked, 2 * batch, &mut tape);
        let w = f64::from(mean(&scores[batch..])) - f64::from(mean(&scores[..batch]));
        critic.forward(&interpolates, batch, &mut tape);
        let mut scratch = critic.zeros_like();
        w + f64::from(critic.gradient_penalty(&mut tape, 10.0, &mut scratch))
    };
    assert!((critic_loss(&trainer.critic) - f64::from(loss)).abs() < 1e-5);
    let error = relative_error(
        &flat_grads(&trainer.critic_grads),
        &numeric(&trainer.critic, critic_loss),
    );
    assert!(error < 1e-2, "relative error {error}");
}

#[test]
fn generator_gradient_matches_finite_differences_through_activations_and_critic() {
    let data = two_column_data(64, 2);
    let params = WganParams {
        hidden: vec![6, 5],
        batch: 8,
        output_activations: vec![ColumnActivation {
            start: 1,
            end: 2,
            activation: OutputActivation::Sigmoid,
        }],
        ..small_params()
    };
    let mut trainer = Trainer::new(&data, 2, 64, &params).unwrap();
    let loss = trainer.generator_gradients();

    let noise = trainer.noise.clone();
    let critic = trainer.critic.clone();
    let segments = trainer.segments.clone();
    let generator_loss = |generator: &Mlp| -> f64 {
        let mut tape = Tape::default();
        let mut fake = Vec::new();
        output::apply(
            &segments,
            2,
            generator.forward(&noise, 8, &mut tape),
            &mut fake,
        );
        -f64::from(mean(critic.forward(&fake, 8, &mut tape)))
    };
    assert!((generator_loss(&trainer.generator) - f64::from(loss)).abs() < 1e-6);
    let error = relative_error(
        &flat_grads(&trainer.generator_grads),
        &numeric(&trainer.generator, generator_loss),
    );
    assert!(error < 1e-2, "relative error {error}");
}

#[test]
fn same_seed_gives_the_same_generator_and_another_seed_does_not() {
    let data = two_column_data(100, 3);
    let a = train(&data, 2, &small_params(), Progress::Hidden).unwrap();
    let b = train(&data, 2, &small_params(), Progress::Hidden).unwrap();
    assert_eq!(a.generator, b.generator);
    assert_eq!(a.history, b.history);
    let other = WganParams {
        seed: 8,
        ..small_params()
    };
    let c = train(&data, 2, &other, Progress::Hidden).unwrap();
    assert_ne!(a.generator, c.generator);
}

#[test]
fn the_thread_count_does_not_change_the_result() {
    // Wide enough that the matrix products are split across threads.
    let data: Vec<f32> = two_column_data(256 * 40, 12)
        .chunks(2)
        .flat_map(|r| [r[0], r[1], r[0] * r[1]])
        .collect();
    let params = WganParams {
        hidden: vec![128, 128],
        critic_hidden: vec![256, 256],
        batch: 256,
        epochs: 1,
        ..small_params()
    };
    let one = train(&data, 3, &params, Progress::Hidden).unwrap();
    let three = train(
        &data,
        3,
        &WganParams {
            threads: 3,
            ..params
        },
        Progress::Hidden,
    )
    .unwrap();
    assert_eq!(one.generator_steps, 8);
    assert_eq!(one.generator, three.generator);
    assert_eq!(one.history, three.history);
}

#[test]
fn epochs_count_critic_passes_over_the_data() {
    let data = two_column_data(330, 4);
    // 330 rows / batch 32 = 11 critic steps per epoch = 3 generator steps (rounded up).
    let run = train(&data, 2, &small_params(), Progress::Hidden).unwrap();
    assert_eq!(run.generator_steps, 6);
    assert_eq!(run.history.len(), 2);
    assert_eq!(run.history[1].epoch, 2);
}

#[test]
fn learns_a_shifted_gaussian_and_a_binary_column() {
    let data = two_column_data(2048, 5);
    let params = WganParams {
        noise_dim: 4,
        hidden: vec![32, 32],
        critic_hidden: vec![32, 32],
        batch: 64,
        epochs: 120,
        lr_critic: 1e-3,
        lr_generator: 5e-4,
        seed: 11,
        output_activations: vec![ColumnActivation {
            start: 1,
            end: 2,
            activation: OutputActivation::Sigmoid,
        }],
        ..WganParams::default()
    };
    let run = train(&data, 2, &params, Progress::Hidden).unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(99);
    let n = 4000;
    let noise: Vec<f32> = (0..n * 4).map(|_| rng.sample(StandardNormal)).collect();
    let rows = run.generator.forward(&noise, n).unwrap();
    let xs: Vec<f32> = rows.iter().step_by(2).copied().collect();
    let ys: Vec<f32> = rows.iter().skip(1).step_by(2).copied().collect();
    let x_mean = mean(&xs);
    let x_sd = (xs.iter().map(|x| (x - x_mean).powi(2)).sum::<f32>() / n as f32).sqrt();
    let y_mean = mean(&ys);

    assert!((x_mean - 2.0).abs() < 0.25, "mean of x {x_mean}");
    assert!((x_sd - 0.5).abs() < 0.25, "spread of x {x_sd}");
    assert!((y_mean - 0.3).abs() < 0.15, "share of y = 1 {y_mean}");
    assert!(
        ys.iter().all(|&y| (0.0..=1.0).contains(&y)),
        "sigmoid column in [0, 1]"
    );
}

#[test]
fn forward_rejects_noise_of_the_wrong_size() {
    let g = TrainedGenerator::random(4, &[8], 3, &[], 1).unwrap();
    assert_eq!(g.forward(&[0.0; 8], 2).unwrap().len(), 6);
    let err = g.forward(&[0.0; 7], 2).unwrap_err();
    assert_eq!(
        err.to_string(),
        "generator noise has 7 values, expected batch 2 x noise_dim 4"
    );
}

#[test]
fn bad_data_and_parameters_are_errors() {
    let p = small_params();
    assert!(matches!(
        train(&[], 2, &p, Progress::Hidden),
        Err(WganError::Empty { .. })
    ));
    assert!(matches!(
        train(&[1.0; 5], 2, &p, Progress::Hidden),
        Err(WganError::Ragged { .. })
    ));
    let err = train(&[1.0, 2.0, f32::NAN, 0.0], 2, &p, Progress::Hidden).unwrap_err();
    assert_eq!(
        err.to_string(),
        "training data row 1 column 0 is not finite (NaN)"
    );

    let data = two_column_data(10, 6);
    let cases: Vec<(WganParams, &str)> = vec![
        (
            WganParams {
                batch: 0,
                ..p.clone()
            },
            "batch",
        ),
        (
            WganParams {
                n_critic: 0,
                ..p.clone()
            },
            "n_critic",
        ),
        (
            WganParams {
                lr_critic: -1.0,
                ..p.clone()
            },
            "lr_critic",
        ),
        (
            WganParams {
                lr_generator: f32::NAN,
                ..p.clone()
            },
            "lr_generator",
        ),
        (
            WganParams {
                betas: (0.5, 1.0),
                ..p.clone()
            },
            "betas",
        ),
        (
            WganParams {
                hidden: vec![8, 0],
                ..p.clone()
            },
            "hidden",
        ),
        (
            WganParams {
                output_activations: vec![ColumnActivation {
                    start: 1,
                    end: 3,
                    activation: OutputActivation::Tanh,
                }],
                ..p.clone()
            },
            "output_activations",
        ),
    ];
    for (params, name) in cases {
        let err = train(&data, 2, &params, Progress::Hidden).unwrap_err();
        assert!(err.to_string().contains(name), "{name}: {err}");
    }
}

#[test]
fn params_round_trip_through_json() {
    let p = WganParams {
        output_activations: vec![ColumnActivation {
            start: 0,
            end: 3,
            activation: OutputActivation::Softmax,
        }],
        ..WganParams::default()
    };
    let json = serde_json::to_string(&p).unwrap();
    assert!(json.contains("\"activation\":\"softmax\""));
    assert_eq!(serde_json::from_str::<WganParams>(&json).unwrap(), p);
}
