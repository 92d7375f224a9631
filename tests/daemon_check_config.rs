//! `flowgen check-config`: good files pass, bad ones fail with every problem and its key.

mod daemon_common;

use daemon_common::{check_config, stderr, write_config};

/// A model bundle at `models/m` next to `conf/`, as the shipped layout has it.
fn with_model(dir: &std::path::Path) {
    let (_trained_dir, trained) = daemon_common::baseline_bundle();
    let model = dir.join("models");
    std::fs::create_dir_all(&model).unwrap();
    std::fs::rename(&trained, model.join("m")).unwrap();
}

#[test]
fn the_shipped_config_is_valid_from_the_repository() {
    let path = daemon_common::repo().join("conf/flowgen.toml");
    let output = check_config(&path);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains(": ok"));
}

#[test]
fn a_valid_file_passes() {
    let (dir, path) = write_config(
        "[model]\npath = \"../models/m\"\n[[collector]]\naddress = \"127.0.0.1:4739\"\n",
    );
    with_model(dir.path());
    let output = check_config(&path);
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let (dir, path) = write_config(
        "[model]\npath = \"../models/m\"\nbatch = 0\n\
         [rate]\nflows_per_s = -5\n\
         [export]\nmax_message_bytes = 70000\n\
         [metrics]\nlisten = \"localhost\"\n\
         [[collector]]\naddress = \"127.0.0.1:4739\"\n\
         [[collector]]\naddress = \"127.0.0.1\"\n\
         [[collector]]\naddress = \"127.0.0.1:2055\"\nprotocol = \"netflow5\"\n",
    );
    with_model(dir.path());
    let output = check_config(&path);
    assert!(!output.status.success());
    let err = stderr(&output);
    for key in [
        "model.batch:",
        "rate.flows_per_s:",
        "export.max_message_bytes:",
        "metrics.listen:",
        "collector[1].address:",
        "collector[2].protocol:",
    ] {
        assert!(err.contains(key), "{key} not in:\n{err}");
    }
    assert!(err.contains("6 problem(s)"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn unknown_keys_are_errors() {
    let (dir, path) = write_config(
        "[model]\npath = \"../models/m\"\nbatchsize = 10\n\
         [[collector]]\naddress = \"127.0.0.1:4739\"\n",
    );
    with_model(dir.path());
    let output = check_config(&path);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(err.contains("model.batchsize: unknown field"), "{err}");
}

#[test]
fn environment_overrides_are_validated_too() {
    let (dir, path) = write_config(
        "[model]\npath = \"../models/m\"\n[[collector]]\naddress = \"127.0.0.1:4739\"\n",
    );
    with_model(dir.path());
    let output = daemon_common::flowgen()
        .args(["check-config", "--config"])
        .arg(&path)
        .env("FLOWGEN_RATE__FLOWS_PER_S", "-1")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("rate.flows_per_s:"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_missing_model_directory_is_reported() {
    let (_dir, path) = write_config(
        "[model]\npath = \"../models/absent\"\n[[collector]]\naddress = \"127.0.0.1:4739\"\n",
    );
    let output = check_config(&path);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("model.path:") && err.contains("absent"),
        "{err}"
    );
}

#[test]
fn a_missing_file_and_bad_toml_are_errors_naming_the_file() {
    let output = check_config(std::path::Path::new("/nonexistent/flowgen.toml"));
    assert!(!output.status.success());
    assert!(stderr(&output).contains("/nonexistent/flowgen.toml"));

    let (_dir, path) = write_config("[model\n");
    let output = check_config(&path);
    assert!(!output.status.success());
    let err = stderr(&output);
    assert!(
        err.contains("flowgen.toml") && err.contains("line 1"),
        "{err}"
    );
}

#[test]
fn a_model_that_validates_but_cannot_load_is_an_error_on_model_path() {
    // The bundled model with its generator cut short, as an interrupted copy leaves it.
    let (dir, path) = write_config(
        "[model]\npath = \"../models/m\"\n[[collector]]\naddress = \"127.0.0.1:4739\"\n",
    );
    let bundle = dir.path().join("models/m");
    std::fs::create_dir_all(&bundle).unwrap();
    let shipped = daemon_common::repo().join("models/cidds-001");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), bundle.join(entry.file_name())).unwrap();
    }
    let onnx = bundle.join("generator.onnx");
    let bytes = std::fs::read(&onnx).unwrap();
    std::fs::write(&onnx, &bytes[..bytes.len() / 2]).unwrap();

    let output = check_config(&path);
    let err = stderr(&output);
    assert!(!output.status.success(), "{err}");
    assert!(
        err.contains("model.path:") && err.contains("cannot be loaded"),
        "{err}"
    );
}
