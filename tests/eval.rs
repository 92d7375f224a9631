//! `flowgen eval` and the eval library on the shared CIDDS-001 sample: real
//! data passes every check, planted violations are counted exactly, and the
//! figures agree with an independent scipy/numpy computation.

mod common;

use std::path::Path;
use std::process::Command;

use flowgen::data::{read_all, ReadOptions};
use flowgen::eval::{evaluate, run_checks, Check, EvalOptions, InternalNetwork};
use flowgen::flow::Flow;
use flowgen::model::baseline::{BaselineCounter, BaselineGenerator};

fn sample_flows() -> Vec<Flow> {
    read_all([common::cidds_sample()], ReadOptions::default()).expect("shared sample")
}

/// The sample's header and data lines, as text.
fn sample_lines() -> (String, Vec<String>) {
    let text = std::fs::read_to_string(common::cidds_sample()).expect("shared sample");
    let mut lines = text.lines().map(str::to_owned);
    let header = lines.next().expect("header line");
    (header, lines.collect())
}

fn write_csv(path: &Path, header: &str, rows: &[String]) {
    let mut text = format!("{header}\n");
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    std::fs::write(path, text).expect("write test csv");
}

fn flowgen(args: &[&std::ffi::OsStr]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run flowgen")
}

#[test]
fn the_shared_sample_passes_every_check() {
    let checks = run_checks(&sample_flows(), &InternalNetwork::cidds001());
    for (check, score) in checks.iter() {
        assert!(
            score.premise > 0,
            "{} has no premise flows in the sample",
            check.id()
        );
        assert_eq!(score.accuracy, Some(100.0), "{}: {score:?}", check.id());
    }
}

/// Rows that each break exactly one check, and pass every other whose premise they meet.
fn planted_row(check: Check) -> &'static str {
    match check {
        // UDP to the DNS server carrying an ACK flag.
        Check::T1 => "2017-04-05 10:00:00.000,0.0,UDP,192.168.100.5,5000,DNS,53,1,80,1,.A....",
        // Two external endpoints on HTTPS.
        Check::T2 => "2017-04-05 10:00:01.000,0.1,TCP,11529_47,40000,EXT_SERVER,443,2,120,1,.A....",
        // HTTPS over UDP.
        Check::T3 => {
            "2017-04-05 10:00:02.000,0.0,UDP,192.168.200.8,40000,10074_40,443,1,100,1,......"
        }
        // DNS over TCP.
        Check::T4 => "2017-04-05 10:00:03.000,0.0,TCP,192.168.100.5,40000,DNS,53,1,66,1,.A....",
        // A broadcast address as the source.
        Check::T5 => {
            "2017-04-05 10:00:04.000,0.0,UDP,192.168.100.255,5000,192.168.100.5,5000,1,100,1,......"
        }
        // NetBIOS to a unicast address.
        Check::T6 => {
            "2017-04-05 10:00:05.000,0.0,UDP,192.168.100.5,137,192.168.100.6,137,1,100,1,......"
        }
        // Ten packets in 100 bytes.
        Check::T7 => {
            "2017-04-05 10:00:06.000,1.0,TCP,192.168.100.5,40000,11529_47,443,10,100,1,.A...."
        }
    }
}

#[test]
fn eval_counts_exactly_the_planted_violations() {
    let dir = tempfile::tempdir().unwrap();
    let (header, lines) = sample_lines();
    let reference = dir.path().join("reference.csv");
    write_csv(&reference, &header, &lines[2000..4000]);

    // 1 violation of T1, 2 of T2, ..., 7 of T7, among 1,000 real rows.
    let mut rows = lines[..1000].to_vec();
    for (i, check) in Check::ALL.into_iter().enumerate() {
        rows.extend(std::iter::repeat_n(planted_row(check).to_owned(), i + 1));
    }
    let synthetic = dir.path().join("synthetic.csv");
    write_csv(&synthetic, &header, &rows);
    let json = dir.path().join("out.json");

    let out = flowgen(&[
        "eval".as_ref(),
        "--reference".as_ref(),
        reference.as_os_str(),
        "--synthetic".as_ref(),
        synthetic.as_os_str(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("1028 synthetic flows against 2000 reference flows"),
        "{table}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for (i, check) in Check::ALL.into_iter().enumerate() {
        let score = &report["checks"][check.id()];
        let failed = score["premise"].as_u64().unwrap() - score["pass"].as_u64().unwrap();
        assert_eq!(failed, i as u64 + 1, "{}: {score}", check.id());
    }
    assert_eq!(report["memorization"], serde_json::Value::Null);
}

#[test]
fn train_adds_memorization_and_the_real_yardstick() {
    let dir = tempfile::tempdir().unwrap();
    let (header, lines) = sample_lines();
    let (reference, train, synthetic, json) = (
        dir.path().join("reference.csv"),
        dir.path().join("train.csv"),
        dir.path().join("synthetic.csv"),
        dir.path().join("out.json"),
    );
    write_csv(&reference, &header, &lines[4096..]);
    write_csv(&train, &header, &lines[..4096]);
    // 300 copies of training rows and 100 held-out rows.
    let copies: Vec<String> = lines[..300]
        .iter()
        .chain(&lines[5000..5100])
        .cloned()
        .collect();
    write_csv(&synthetic, &header, &copies);

    let out = flowgen(&[
        "eval".as_ref(),
        "--reference".as_ref(),
        reference.as_os_str(),
        "--synthetic".as_ref(),
        synthetic.as_os_str(),
        "--train".as_ref(),
        train.as_os_str(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("real (train)"), "{table}");

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    // Real flows repeat: 4 of the 100 held-out rows and 103 of the 2,048
    // reference rows equal a training row in every compared column (counted
    // with a Python one-liner over the CSV text).
    assert_eq!(report["memorization"], 304.0 / 400.0);
    let yardstick = &report["yardstick"];
    assert_eq!(report["flows"]["yardstick"], 400);
    for check in Check::ALL {
        let accuracy = &yardstick["checks"][check.id()]["accuracy"];
        assert!(
            accuracy.is_null() || accuracy == 100.0,
            "{}: {accuracy}",
            check.id()
        );
    }
    assert_eq!(yardstick["memorization"], 103.0 / 2048.0);
}

#[test]
fn eval_names_the_bad_row_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let (header, lines) = sample_lines();
    let reference = dir.path().join("reference.csv");
    let mut rows = lines[..20].to_vec();
    rows[9] = rows[9]
        .replace(",TCP,", ",NOPE,")
        .replace(",UDP,", ",NOPE,");
    write_csv(&reference, &header, &rows);

    let out = flowgen(&[
        "eval".as_ref(),
        "--reference".as_ref(),
        reference.as_os_str(),
        "--synthetic".as_ref(),
        reference.as_os_str(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reference.csv:11:"), "{stderr}");
}

/// The sample's first 2,048 flows (its rows are shuffled, so a random draw)
/// against the other 4,096, compared with the same metrics computed by
/// scipy 1.17.1 and numpy 2.4.6 (`scripts/eval_reference.py`): JSD with
/// `scipy.spatial.distance.jensenshannon(p, q) ** 2`, EMD with
/// `scipy.stats.wasserstein_distance`, PCD with `numpy.corrcoef`, density and
/// coverage with `scipy.spatial.distance.cdist` as in Naeem et al.'s `prdc`.
#[test]
fn figures_agree_with_scipy_on_the_shared_sample() {
    let flows = sample_flows();
    let (synthetic, reference) = flows.split_at(2048);
    let report = evaluate(reference, synthetic, None, &EvalOptions::default()).unwrap();
    let s = &report.scores;
    let close = |name: &str, got: f64, want: f64| {
        assert!((got - want).abs() < 1e-9, "{name}: {got} != {want}");
    };
    close("jsd protocol", s.jsd.protocol, 9.020782507080478e-05);
    close("jsd src", s.jsd.src_addr, 0.12506499449912337);
    close("jsd dst", s.jsd.dst_addr, 0.12275439165038356);
    close("jsd src port", s.jsd.src_port, 0.31550658875977233);
    close("jsd dst port", s.jsd.dst_port, 0.3103752884296567);
    close("jsd flags", s.jsd.flags, 0.0014240094425336074);
    close("jsd mean", s.jsd.mean, 0.14586924676775673);
    close("emd time of day", s.emd.time_of_day, 0.007433633168472799);
    close("emd duration", s.emd.log_duration, 0.0014683283873431839);
    close("emd packets", s.emd.log_packets, 0.004388360122657298);
    close("emd bytes", s.emd.log_bytes, 0.006731481945574449);
    close("pcd", s.pcd, 0.3243545303809053);
    close("density", s.density, 0.97587890625);
    close("coverage", s.coverage, 0.8759765625);
}

/// Ring et al.'s baseline draws every attribute independently: trained on
/// two thirds of the sample and scored against the other third it breaks
/// the attribute dependencies the checks test, while its marginals stay
/// close. The paper reports T1 14 %, T2 81 %, T3 87 %, T4 15 %, T7 71 %;
/// FINDINGS.md measured density 0.04, coverage 0.11 and PCD 5.8.
#[test]
fn the_independent_baseline_shows_the_papers_pattern() {
    let flows = sample_flows();
    let (reference, train) = flows.split_at(2048);
    let mut counter = BaselineCounter::new();
    train.iter().for_each(|f| counter.add(f));
    let mut generator = BaselineGenerator::from_tables(&counter.finish().tables, 7).unwrap();
    let synthetic: Vec<Flow> = (0..2048).map(|_| generator.draw()).collect();

    let report = evaluate(reference, &synthetic, Some(train), &EvalOptions::default()).unwrap();
    let (s, real) = (&report.scores, report.yardstick.as_ref().unwrap());
    let accuracy = |check| s.checks.get(check).accuracy.unwrap();
    assert!(accuracy(Check::T1) < 30.0, "{report}");
    assert!(accuracy(Check::T2) < 90.0, "{report}");
    assert!(accuracy(Check::T4) < 30.0, "{report}");
    assert!(accuracy(Check::T6) < 25.0, "{report}");
    assert!((65.0..80.0).contains(&accuracy(Check::T7)), "{report}");
    assert!(
        s.density < 0.15 && s.coverage < 0.25 && s.pcd > 4.0,
        "{report}"
    );
    assert!((s.jsd.mean - real.jsd.mean).abs() < 0.02, "{report}");
    assert!(s.memorization.unwrap() < 0.01, "{report}");

    // The yardstick, 2,048 training flows, is what real data scores.
    for (check, score) in real.checks.iter() {
        assert_eq!(score.accuracy, Some(100.0), "{}: {report}", check.id());
    }
    assert!(
        (0.9..1.1).contains(&real.density) && real.coverage > 0.9,
        "{report}"
    );
    assert!(real.pcd < 1.0, "{report}");
}
