//! ONNX Runtime that is missing or broken gives errors, never panics. This file is its own
//! test process so that no test here can load the real library first.

use std::path::Path;

use flowgen::model::runtime::{
    find_library, library_candidates, GeneratorSession, GeneratorShape, LibrarySource,
    RuntimeError, RuntimeOptions,
};

const SHAPE: GeneratorShape = GeneratorShape {
    noise_dim: 8,
    out_dim: 5,
};

#[test]
fn a_configured_library_that_does_not_exist_is_an_error_listing_where_it_looked() {
    let options = RuntimeOptions {
        library_path: Some("/nonexistent/libonnxruntime.so.1.31.1".into()),
        ..RuntimeOptions::default()
    };
    let err = GeneratorSession::load(Path::new("generator.onnx"), SHAPE, &options).unwrap_err();
    let message = err.to_string();
    assert!(
        matches!(err, RuntimeError::LibraryNotFound { .. }),
        "{message}"
    );
    assert!(
        message.contains("/nonexistent/libonnxruntime.so.1.31.1 (configured)"),
        "{message}"
    );
    assert!(message.contains("scripts/setup"), "{message}");
    assert!(message.contains("pip download"), "{message}");
}

#[test]
fn a_file_that_is_not_a_library_is_a_load_error() {
    let dir = tempfile::tempdir().unwrap();
    let fake = dir.path().join("libonnxruntime.so.1.31.1");
    std::fs::write(&fake, b"not an ELF file").unwrap();
    let options = RuntimeOptions {
        library_path: Some(fake.clone()),
        ..RuntimeOptions::default()
    };
    let err = GeneratorSession::load(Path::new("generator.onnx"), SHAPE, &options).unwrap_err();
    assert!(matches!(err, RuntimeError::LibraryLoad { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&fake.display().to_string()),
        "{err}"
    );
}

#[test]
fn lookup_order_is_configured_then_environment_then_set_up_locations() {
    let configured = library_candidates(Some(Path::new("/opt/ort.so")));
    assert_eq!(
        configured,
        vec![("/opt/ort.so".into(), LibrarySource::Configured)]
    );

    // The only test in this process that reads the environment.
    std::env::set_var("ORT_DYLIB_PATH", "/nonexistent/from-env.so");
    let from_env = find_library(None).unwrap_err().to_string();
    std::env::remove_var("ORT_DYLIB_PATH");
    assert!(
        from_env.contains("/nonexistent/from-env.so (ORT_DYLIB_PATH)"),
        "{from_env}"
    );

    let defaults = library_candidates(None);
    assert_eq!(
        defaults[0].0,
        Path::new("/usr/local/lib/flowgen/libonnxruntime.so.1.31.1")
    );
    if let Some(home) = std::env::var_os("HOME") {
        let user = Path::new(&home).join(".local/lib/flowgen/libonnxruntime.so.1.31.1");
        assert_eq!(defaults[1].0, user);
    }
}
