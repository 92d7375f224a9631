//! The two binaries end to end: train a baseline on the shared sample,
//! generate from it, read the output back; and how bad input fails.

mod common;

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use flowgen::data::{read_all, ReadOptions};
use flowgen::flow::Flow;
use sha2::{Digest, Sha256};

fn train(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgen-train"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn flowgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn read(path: &Path) -> Vec<Flow> {
    read_all([path], ReadOptions::default()).unwrap()
}

/// A flow's whole contents as a hashable key.
fn key(flow: &Flow) -> String {
    format!("{flow:?}")
}

#[test]
fn trains_a_baseline_generates_and_reads_back() {
    let sample = common::cidds_sample();
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle");
    let sample_arg = sample.to_str().unwrap();
    let bundle_arg = bundle.to_str().unwrap();

    let out = train(&[
        "--kind",
        "baseline",
        "--data",
        sample_arg,
        "--out",
        bundle_arg,
        "--holdout",
        "0.25",
        "--seed",
        "5",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["kind"], "baseline");
    let data = &manifest["training_data"];
    assert_eq!(data["files"][0]["name"], "cidds-001-week3-sample.csv");
    assert_eq!(data["files"][0]["rows"], 6144);
    assert_eq!(data["training_rows"], 4608);
    assert_eq!(data["held_out_rows"], 1536);
    let digest = hex::encode(Sha256::digest(std::fs::read(&sample).unwrap()));
    assert_eq!(data["files"][0]["sha256"], digest.as_str());

    // The held-out rows are real rows of the sample.
    let real = read(&sample);
    let real_keys: HashSet<String> = real.iter().map(key).collect();
    let held_out = read(&bundle.join("holdout.csv"));
    assert_eq!(held_out.len(), 1536);
    assert!(held_out.iter().all(|f| real_keys.contains(&key(f))));

    let generated_path = dir.path().join("generated.csv");
    let generated_arg = generated_path.to_str().unwrap();
    let out = flowgen(&[
        "generate",
        "--model",
        bundle_arg,
        "--count",
        "3000",
        "--seed",
        "7",
        "--output",
        generated_arg,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let generated = read(&generated_path);
    assert_eq!(generated.len(), 3000);

    // Every attribute value drawn was seen in the training data.
    let sources: HashSet<_> = real.iter().map(|f| f.src.clone()).collect();
    let byte_counts: HashSet<_> = real.iter().map(|f| f.bytes).collect();
    assert!(generated
        .iter()
        .all(|f| sources.contains(&f.src) && byte_counts.contains(&f.bytes)));

    // The same seed writes the same file, to standard output as well.
    let out = flowgen(&[
        "generate", "--model", bundle_arg, "--count", "3000", "--seed", "7",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, std::fs::read(&generated_path).unwrap());
    let other = flowgen(&[
        "generate", "--model", bundle_arg, "--count", "3000", "--seed", "8", "--output", "-",
    ]);
    assert_ne!(other.stdout, out.stdout);
}

fn bad_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("bad.csv");
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "Date first seen,Duration,Proto,Src IP Addr,Src Pt,Dst IP Addr,Dst Pt,Packets,Bytes,Flows,Flags").unwrap();
    writeln!(
        file,
        "2017-04-11 15:31:29.795,0.639,TCP,11529_47,80,192.168.220.14,41413,4,6664,1,.AP..."
    )
    .unwrap();
    writeln!(
        file,
        "2017-04-11 15:31:29.795,0.639,TCP,11529_47,80,192.168.220.14,http,4,6664,1,.AP..."
    )
    .unwrap();
    writeln!(
        file,
        "2017-04-11 15:31:30.000,0.0,UDP,DNS,53,192.168.220.14,41413,1,80,1,......"
    )
    .unwrap();
    path
}

#[test]
fn a_bad_row_fails_naming_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let bad = bad_file(dir.path());
    let out_dir = dir.path().join("bundle");
    let out = train(&[
        "--kind",
        "baseline",
        "--data",
        bad.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let message = stderr(&out);
    assert!(
        message.contains(&format!(
            "{}:3: column 7 (Dst Pt): not a port number (0 to 65535): \"http\"",
            bad.display()
        )),
        "{message}"
    );
    assert!(!out_dir.join("manifest.json").exists());
}

#[test]
fn skipping_bad_rows_trains_and_reports_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let bad = bad_file(dir.path());
    let out_dir = dir.path().join("bundle");
    let out = train(&[
        "--kind",
        "baseline",
        "--data",
        bad.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--skip-bad-rows",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout)
        .contains("2 training flows, 0 held out, 1 bad rows skipped"));
    let manifest = std::fs::read_to_string(out_dir.join("manifest.json")).unwrap();
    assert!(manifest.contains("\"skipped_rows\": 1"), "{manifest}");
}

#[test]
fn missing_inputs_fail_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nowhere.csv");
    let out_dir = dir.path().join("bundle");
    let out = train(&[
        "--kind",
        "baseline",
        "--data",
        missing.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(&missing.display().to_string()),
        "{}",
        stderr(&out)
    );

    let out = flowgen(&[
        "generate",
        "--model",
        dir.path().to_str().unwrap(),
        "--count",
        "1",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("manifest.json: not found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn holdout_fractions_outside_zero_to_one_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let sample = common::cidds_sample();
    let out = train(&[
        "--kind",
        "baseline",
        "--data",
        sample.to_str().unwrap(),
        "--out",
        dir.path().to_str().unwrap(),
        "--holdout",
        "1.5",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("holdout fraction 1.5"),
        "{}",
        stderr(&out)
    );
}
