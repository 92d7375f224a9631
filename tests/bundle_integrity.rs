//! A trained bundle records the SHA-256 of its model files, and loading it refuses
//! a damaged file instead of generating garbage flows from it.

mod common;

use std::path::{Path, PathBuf};

use flowgen::model::bundle::{sha256_file, BundleError, MANIFEST_FILE};
use flowgen::model::train::{train_baseline, TrainInput};
use flowgen::model::{load, LoadOptions};

const BASELINE_FILE: &str = "baseline.json";

/// A baseline trained on the shared CIDDS-001 sample, in a fresh directory.
fn baseline_bundle() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("baseline");
    let input = TrainInput {
        data: vec![common::cidds_sample()],
        read_options: Default::default(),
        holdout_fraction: 0.0,
        seed: 3,
    };
    train_baseline(&input, &out).unwrap();
    (dir, out)
}

fn load_error(dir: &Path) -> BundleError {
    match load(dir, &LoadOptions::default()) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(err) => err,
    }
}

fn generates(dir: &Path) {
    let mut generator = load(dir, &LoadOptions::default()).unwrap();
    let mut flows = Vec::new();
    generator.generate(64, &mut flows).unwrap();
    assert_eq!(flows.len(), 64);
}

#[test]
fn an_intact_bundle_records_its_checksums_and_loads() {
    let (_dir, bundle) = baseline_bundle();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bundle.join(MANIFEST_FILE)).unwrap())
            .unwrap();
    let digest = sha256_file(&bundle.join(BASELINE_FILE)).unwrap();
    assert_eq!(manifest["file_sha256"][BASELINE_FILE], digest.as_str());
    generates(&bundle);
}

#[test]
fn a_flipped_byte_in_a_model_file_fails_the_load_naming_the_file() {
    let (_dir, bundle) = baseline_bundle();
    let file = bundle.join(BASELINE_FILE);
    let recorded = sha256_file(&file).unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    // Inside a number, so the JSON still parses: only the checksum can notice.
    let digit = bytes.iter().rposition(u8::is_ascii_digit).unwrap();
    bytes[digit] = if bytes[digit] == b'1' { b'2' } else { b'1' };
    std::fs::write(&file, &bytes).unwrap();

    let err = load_error(&bundle);
    assert!(
        matches!(err, BundleError::ChecksumMismatch { ref path, .. } if path == &file),
        "{err}"
    );
    let message = err.to_string();
    let actual = sha256_file(&file).unwrap();
    assert!(
        message.starts_with(&format!(
            "{}: checksum mismatch (manifest sha256 {recorded}, file {actual})",
            file.display()
        )),
        "{message}"
    );
}

#[test]
fn a_missing_model_file_fails_the_load_naming_the_file() {
    let (_dir, bundle) = baseline_bundle();
    let file = bundle.join(BASELINE_FILE);
    std::fs::remove_file(&file).unwrap();
    let err = load_error(&bundle);
    assert!(
        matches!(err, BundleError::MissingFile { ref path } if path == &file),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("baseline.json: listed in manifest.json but missing"));
}

#[test]
fn a_manifest_from_before_checksums_still_loads() {
    let (_dir, bundle) = baseline_bundle();
    let path = bundle.join(MANIFEST_FILE);
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(manifest
        .as_object_mut()
        .unwrap()
        .remove("file_sha256")
        .is_some());
    std::fs::write(&path, manifest.to_string()).unwrap();
    generates(&bundle);
}
