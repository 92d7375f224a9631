//! Exported generators run through the real ONNX Runtime library (installed by
//! scripts/setup) and match the Rust forward pass.

use flowgen::model::onnx::{self, OnnxError, VERIFY_TOLERANCE};
use flowgen::model::output::{ColumnActivation, OutputActivation};
use flowgen::model::runtime::{
    Device, GeneratorSession, GeneratorShape, RuntimeError, RuntimeOptions,
};
use flowgen::model::wgan::TrainedGenerator;

fn range(start: usize, end: usize, activation: OutputActivation) -> ColumnActivation {
    ColumnActivation {
        start,
        end,
        activation,
    }
}

fn shape_of(g: &TrainedGenerator) -> GeneratorShape {
    GeneratorShape {
        noise_dim: g.noise_dim(),
        out_dim: g.out_dim(),
    }
}

fn exported(g: &TrainedGenerator) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("generator.onnx");
    onnx::write_onnx(g, &path).unwrap();
    (dir, path)
}

#[test]
fn every_activation_kind_matches_the_rust_forward_pass() {
    let activations = [
        range(0, 3, OutputActivation::Softmax),
        range(5, 11, OutputActivation::Sigmoid),
        range(11, 13, OutputActivation::Tanh),
        range(20, 27, OutputActivation::Softmax),
    ];
    let g = TrainedGenerator::random(16, &[32, 24, 32], 30, &activations, 3).unwrap();
    let (_dir, path) = exported(&g);
    let diff = onnx::verify(&g, &path, &RuntimeOptions::default()).unwrap();
    assert!(diff <= VERIFY_TOLERANCE, "max abs diff {diff}");
}

#[test]
fn a_linear_generator_without_hidden_layers_matches() {
    let g = TrainedGenerator::random(4, &[], 6, &[], 4).unwrap();
    let (_dir, path) = exported(&g);
    onnx::verify(&g, &path, &RuntimeOptions::default()).unwrap();
}

#[test]
fn verification_fails_when_the_file_holds_another_generator() {
    let g = TrainedGenerator::random(8, &[16], 5, &[], 5).unwrap();
    let other = TrainedGenerator::random(8, &[16], 5, &[], 6).unwrap();
    let (_dir, path) = exported(&other);
    let err = onnx::verify(&g, &path, &RuntimeOptions::default()).unwrap_err();
    assert!(matches!(err, OnnxError::Mismatch { .. }), "{err}");
    assert!(err.to_string().contains("generator.onnx"), "{err}");
}

#[test]
fn sessions_run_repeatedly_at_any_batch_size() {
    let g = TrainedGenerator::random(
        8,
        &[16, 16],
        5,
        &[range(0, 2, OutputActivation::Sigmoid)],
        7,
    )
    .unwrap();
    let (_dir, path) = exported(&g);
    let options = RuntimeOptions {
        intra_threads: 1,
        ..RuntimeOptions::default()
    };
    let mut session = GeneratorSession::load(&path, shape_of(&g), &options).unwrap();
    assert_eq!(session.device(), Device::Cpu);
    for batch in [3, 1000, 3] {
        let noise: Vec<f32> = (0..batch * 8)
            .map(|i| ((i % 17) as f32 - 8.0) / 4.0)
            .collect();
        let expected = g.forward(&noise, batch).unwrap();
        let got = session.run(&noise, batch).unwrap();
        assert_eq!(got.len(), batch * 5);
        let diff = expected
            .iter()
            .zip(got)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(diff <= VERIFY_TOLERANCE, "batch {batch}: {diff}");
    }
}

#[test]
fn a_generator_of_another_width_is_refused_with_both_shapes() {
    let g = TrainedGenerator::random(8, &[16], 5, &[], 8).unwrap();
    let (_dir, path) = exported(&g);
    let expected = GeneratorShape {
        noise_dim: 8,
        out_dim: 6,
    };
    let err = GeneratorSession::load(&path, expected, &RuntimeOptions::default()).unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, RuntimeError::Signature { .. }), "{message}");
    assert!(message.contains("generator.onnx"), "{message}");
    assert!(message.contains("flows f32 [N, 6]"), "{message}");
    assert!(message.contains("flows [-1, 5]"), "{message}");
}

#[test]
fn noise_of_the_wrong_size_is_an_error() {
    let g = TrainedGenerator::random(8, &[16], 5, &[], 9).unwrap();
    let (_dir, path) = exported(&g);
    let mut session =
        GeneratorSession::load(&path, shape_of(&g), &RuntimeOptions::default()).unwrap();
    let err = session.run(&[0.0; 15], 2).unwrap_err();
    assert!(
        matches!(
            err,
            RuntimeError::NoiseShape {
                values: 15,
                batch: 2,
                noise_dim: 8,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_corrupt_model_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.onnx");
    std::fs::write(&path, b"this is not a protobuf model \x00\x01\x02").unwrap();
    let shape = GeneratorShape {
        noise_dim: 8,
        out_dim: 5,
    };
    let err = GeneratorSession::load(&path, shape, &RuntimeOptions::default()).unwrap_err();
    assert!(matches!(err, RuntimeError::Model { .. }), "{err}");
    assert!(err.to_string().contains("broken.onnx"), "{err}");

    // A truncated real model too.
    let g = TrainedGenerator::random(8, &[16], 5, &[], 10).unwrap();
    let bytes = onnx::to_onnx_bytes(&g);
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = GeneratorSession::load(&path, shape, &RuntimeOptions::default()).unwrap_err();
    assert!(matches!(err, RuntimeError::Model { .. }), "{err}");
}

#[test]
fn a_missing_model_file_is_an_error_naming_it() {
    let shape = GeneratorShape {
        noise_dim: 8,
        out_dim: 5,
    };
    let path = std::path::Path::new("/nonexistent/generator.onnx");
    let err = GeneratorSession::load(path, shape, &RuntimeOptions::default()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "/nonexistent/generator.onnx: generator model not found"
    );
}

#[cfg(not(feature = "cuda"))]
#[test]
fn without_the_cuda_feature_cuda_fails_and_auto_falls_back_to_the_cpu() {
    let g = TrainedGenerator::random(8, &[16], 5, &[], 11).unwrap();
    let (_dir, path) = exported(&g);
    let cuda = RuntimeOptions {
        device: Device::Cuda,
        ..RuntimeOptions::default()
    };
    let err = GeneratorSession::load(&path, shape_of(&g), &cuda).unwrap_err();
    assert!(
        err.to_string().contains("built without the cuda feature"),
        "{err}"
    );

    let auto = RuntimeOptions {
        device: Device::Auto,
        ..RuntimeOptions::default()
    };
    let session = GeneratorSession::load(&path, shape_of(&g), &auto).unwrap();
    assert_eq!(session.device(), Device::Cpu);
}

#[cfg(feature = "cuda")]
#[test]
fn with_the_cuda_feature_cuda_never_falls_back_silently_and_auto_always_runs() {
    let g = TrainedGenerator::random(8, &[16], 5, &[], 11).unwrap();
    let (_dir, path) = exported(&g);
    let cuda = RuntimeOptions {
        device: Device::Cuda,
        ..RuntimeOptions::default()
    };
    // On a CPU-only ONNX Runtime the provider cannot register; with onnxruntime-gpu and a GPU it does.
    match GeneratorSession::load(&path, shape_of(&g), &cuda) {
        Ok(session) => assert_eq!(session.device(), Device::Cuda),
        Err(err) => {
            assert!(matches!(err, RuntimeError::Cuda { .. }), "{err}");
            assert!(
                err.to_string().contains("cuda execution provider failed"),
                "{err}"
            );
        }
    }

    let auto = RuntimeOptions {
        device: Device::Auto,
        ..RuntimeOptions::default()
    };
    let mut session = GeneratorSession::load(&path, shape_of(&g), &auto).unwrap();
    let noise = [0.5; 16];
    let expected = g.forward(&noise, 2).unwrap();
    let got = session.run(&noise, 2).unwrap();
    let diff = expected
        .iter()
        .zip(got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(diff <= VERIFY_TOLERANCE, "{} diff {diff}", session.device());
}

#[test]
fn a_freshly_trained_generator_exports_and_verifies() {
    use flowgen::model::wgan::{train, Progress, WganParams};
    // Four columns: two continuous, then a one-hot pair.
    let data: Vec<f32> = (0..512)
        .flat_map(|i| {
            let t = i as f32 / 512.0;
            let hot = (i % 3 == 0) as u8 as f32;
            [t, 1.0 - t * t, hot, 1.0 - hot]
        })
        .collect();
    let params = WganParams {
        noise_dim: 6,
        hidden: vec![16, 16],
        critic_hidden: vec![16],
        batch: 64,
        epochs: 3,
        output_activations: vec![range(2, 4, OutputActivation::Softmax)],
        ..WganParams::default()
    };
    let run = train(&data, 4, &params, Progress::Hidden).unwrap();
    let (_dir, path) = exported(&run.generator);
    onnx::verify(&run.generator, &path, &RuntimeOptions::default()).unwrap();
}

#[test]
fn sessions_can_move_to_generator_threads() {
    fn assert_send<T: Send>() {}
    assert_send::<GeneratorSession>();
}

#[test]
fn a_generator_emitting_nan_is_an_error_not_garbage() {
    use flowgen::model::mlp::Mlp;
    use rand::SeedableRng;

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut network = Mlp::new(&[4, 8, 3], 0.2, &mut rng);
    // One damaged weight in the output layer spoils column 1 of every row.
    network.layers[1].w[1] = f32::NAN;
    let g = TrainedGenerator::new(network, &[]).unwrap();
    let (_dir, path) = exported(&g);
    let mut session =
        GeneratorSession::load(&path, shape_of(&g), &RuntimeOptions::default()).unwrap();

    let err = session.run(&[0.5; 8], 2).unwrap_err();
    assert!(
        matches!(err, RuntimeError::NonFiniteOutput { row: 0, column: 1, value, .. } if value.is_nan()),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("generator.onnx: generator output row 0 column 1 is NaN"),
        "{err}"
    );
}
