//! The E-WGAN-GP trainer end to end on the shared CIDDS-001 sample (with tiny
//! networks so that it runs in seconds), loading its bundle through
//! `model::load`, and the errors for data it cannot learn from.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use flowgen::data::ReadOptions;
use flowgen::eval::{run_checks, InternalNetwork};
use flowgen::flow::{Flow, Protocol, TcpFlags};
use flowgen::model::bundle::{Bundle, ModelKind};
use flowgen::model::codebook::{Codebook, CODEBOOK_FILE};
use flowgen::model::ewgan::{train_ewgan, train_ewgan_with, EwganError, EwganParams, EwganRun};
use flowgen::model::features::epoch_day;
use flowgen::model::runtime::RuntimeOptions;
use flowgen::model::train::TrainInput;
use flowgen::model::wgan::Progress;
use flowgen::model::{load, LoadOptions};

fn tiny_params() -> EwganParams {
    let mut params = EwganParams::default();
    params.codebook.ip2vec.epochs = 1;
    params.codebook.ip2vec.dim = 4;
    params.wgan.hidden = vec![16];
    params.wgan.critic_hidden = vec![16];
    params.wgan.noise_dim = 8;
    params.wgan.epochs = 2;
    params.wgan.batch = 64;
    params.check_flows = 2048;
    params
}

fn input(data: Vec<PathBuf>, holdout_fraction: f64, skip_bad_rows: bool) -> TrainInput {
    TrainInput {
        data,
        read_options: ReadOptions { skip_bad_rows },
        holdout_fraction,
        seed: 11,
    }
}

fn train(input: &TrainInput, out: &Path) -> Result<flowgen::model::bundle::Manifest, EwganError> {
    train_ewgan(
        input,
        out,
        &tiny_params(),
        &RuntimeOptions::default(),
        Progress::Hidden,
    )
}

#[test]
fn trains_on_the_sample_and_generates_through_model_load() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let manifest = train(&input(vec![common::cidds_sample()], 0.2, false), &out).unwrap();

    assert_eq!(manifest.kind, ModelKind::Ewgan);
    assert_eq!(
        manifest.training_data.training_rows + manifest.training_data.held_out_rows,
        6144
    );
    assert_eq!(manifest.files, ["generator.onnx", "codebook.json"]);
    let eval = manifest.eval.as_ref().unwrap();
    assert!(eval["jsd"]["mean"].as_f64().is_some(), "{eval}");
    assert_eq!(eval["checks_on_more_flows"]["flows"], 2048);
    assert!(eval["training"]["onnx_max_abs_diff"].as_f64().unwrap() <= 1e-4);
    assert_eq!(
        manifest.feature_layout.as_ref().unwrap()["width"],
        17 + 2 * 7 + 7 * 4
    );
    let read_back = Bundle::read_manifest(&out).unwrap();
    assert_eq!(read_back.training_data, manifest.training_data);
    assert_eq!(read_back.hyperparameters, manifest.hyperparameters);

    let bundle_bytes: u64 = ["generator.onnx", "codebook.json", "manifest.json"]
        .iter()
        .map(|f| std::fs::metadata(out.join(f)).unwrap().len())
        .sum();
    assert!(bundle_bytes < 4 << 20, "bundle is {bundle_bytes} bytes");

    let codebook = Codebook::read(&out.join(CODEBOOK_FILE)).unwrap();
    let options = LoadOptions {
        seed: 5,
        batch: 300,
        ..LoadOptions::default()
    };
    let mut generator = load(&out, &options).unwrap();
    let mut flows = Vec::new();
    generator.generate(1000, &mut flows).unwrap();
    assert_eq!(flows.len(), 1000);
    check_structure(&flows, codebook.first_day);

    // The same seed gives the same flows.
    let mut again = Vec::new();
    load(&out, &options)
        .unwrap()
        .generate(1000, &mut again)
        .unwrap();
    assert_eq!(again, flows);
}

/// What holds for every decoded flow whatever the generator learned.
fn check_structure(flows: &[Flow], first_day: i64) {
    let checks = run_checks(flows, &InternalNetwork::cidds001());
    assert_eq!(
        checks.t7.pass, 1000,
        "bytes and packets come from one real flow"
    );
    assert_eq!(
        checks.t1.pass, checks.t1.premise,
        "no TCP flags outside TCP"
    );
    for flow in flows {
        assert!([Protocol::TCP, Protocol::UDP, Protocol::ICMP].contains(&flow.protocol));
        assert!((first_day..first_day + 7).contains(&epoch_day(flow.start_ms)));
        if flow.protocol != Protocol::TCP {
            assert_eq!(flow.tcp_flags, TcpFlags(0));
        }
    }
}

const HEADER: &str =
    "Date first seen,Duration,Proto,Src IP Addr,Src Pt,Dst IP Addr,Dst Pt,Packets,Bytes,Flows,Flags";

fn write_file(dir: &Path, name: &str, rows: &[String]) -> PathBuf {
    let path = dir.join(name);
    let mut file = std::fs::File::create(&path).unwrap();
    writeln!(file, "{HEADER}").unwrap();
    for row in rows {
        writeln!(file, "{row}").unwrap();
    }
    path
}

#[test]
fn an_empty_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "empty.csv", &[]);
    let err = train(&input(vec![path], 0.0, false), &dir.path().join("out")).unwrap_err();
    let message = err.to_string();
    assert!(
        message.contains("no training flows") || message.contains("no flows"),
        "{message}"
    );
    assert!(!dir.path().join("out/manifest.json").exists());
}

#[test]
fn a_constant_attribute_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = (0..40)
        .map(|i| {
            format!(
                "2017-04-05 10:{:02}:00.000,0.{i},TCP,192.168.1.{},{},EXT_SERVER,443,{},{},1,.AP...",
                i % 60,
                i % 7 + 1,
                40000 + i,
                i % 5 + 1,
                (i % 5 + 1) * 100
            )
        })
        .collect();
    let path = write_file(dir.path(), "constant.csv", &rows);
    let err = train(&input(vec![path], 0.0, false), &dir.path().join("out")).unwrap_err();
    assert!(
        matches!(
            err,
            EwganError::ConstantAttribute {
                attribute: "protocol",
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("attribute protocol is TCP in all 40 training flows"),
        "{err}"
    );
}

#[test]
fn a_file_of_bad_rows_leaves_nothing_to_learn() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        "not,a,flow".to_owned(),
        "2017-04-05 10:00:00.000,x,TCP".to_owned(),
    ];
    let path = write_file(dir.path(), "bad.csv", &rows);
    let out = dir.path().join("out");

    let err = train(&input(vec![path.clone()], 0.0, false), &out).unwrap_err();
    assert!(err.to_string().contains("bad.csv"), "names the file: {err}");

    let err = train(&input(vec![path], 0.0, true), &out).unwrap_err();
    assert!(
        err.to_string().contains("no training flows") || err.to_string().contains("no flows"),
        "{err}"
    );
}

#[test]
fn a_bundle_can_drop_its_held_out_flows_after_scoring_them() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("bundle");
    let run = EwganRun {
        progress: Progress::Hidden,
        keep_holdout_file: false,
        ..EwganRun::default()
    };
    let input = input(vec![common::cidds_sample()], 0.1, false);
    let manifest = train_ewgan_with(&input, &out, &tiny_params(), &run).unwrap();
    assert!(!out.join("holdout.csv").exists());
    assert_eq!(manifest.training_data.held_out_file, None);
    assert_eq!(manifest.training_data.held_out_rows, 614);
    assert!(manifest.eval.unwrap()["coverage"].as_f64().is_some());
}

#[test]
fn the_trainer_binary_fails_clearly_on_data_it_cannot_learn() {
    let dir = tempfile::tempdir().unwrap();
    let rows: Vec<String> = (0..20)
        .map(|i| {
            format!("2017-04-05 10:00:{i:02}.000,0.0,UDP,DNS,53,192.168.1.{i},40000,1,80,1,......")
        })
        .collect();
    let path = write_file(dir.path(), "udp.csv", &rows);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_flowgen-train"))
        .args(["--kind", "ewgan", "--data"])
        .arg(&path)
        .arg("--out")
        .arg(dir.path().join("bundle"))
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("error: attribute protocol is UDP in all 20 training flows"),
        "{stderr}"
    );
}
