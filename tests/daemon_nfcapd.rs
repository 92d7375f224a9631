//! End to end: the shipped configuration and a model bundle, streaming IPFIX
//! into a real `nfcapd` on 127.0.0.1; what nfcapd stored is checked for the
//! rate, the timestamps and the flows themselves (Ring et al.'s domain checks,
//! which must score as the model's own output does: export loses nothing).

mod daemon_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use daemon_common::{free_udp_port, Daemon};
use flowgen::address_plan::AddressPlan;
use flowgen::daemon::config::{Config, Overrides};
use flowgen::eval::{run_checks, Check, InternalNetwork};
use flowgen::flow::Flow;
use flowgen::model::LoadOptions;

/// Flows per second asked of the daemon.
const RATE_FLOWS_PER_S: u64 = 2000;
/// How long the daemon streams.
const RUN: Duration = Duration::from_secs(6);

/// `nfcapd` writing into `dir`, stopped (and flushed) on drop.
struct Nfcapd(Child);

impl Nfcapd {
    fn start(port: u16, dir: &Path) -> Nfcapd {
        let child = Command::new("nfcapd")
            .args(["-p", &port.to_string(), "-b", "127.0.0.1", "-l"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfcapd is not installed: run scripts/setup");
        Nfcapd(child)
    }

    /// SIGTERM, which makes nfcapd write its current file, and wait.
    fn stop(mut self) {
        // SAFETY: kill(2) has no memory-safety preconditions.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One flow as nfdump prints it.
#[derive(Debug)]
struct Stored {
    start_ms: i64,
    end_ms: i64,
    duration_ms: i64,
}

/// Reads every flow nfcapd stored under `dir`, with millisecond timestamps.
fn nfdump(dir: &Path) -> Vec<Stored> {
    let output = Command::new("nfdump")
        .arg("-R")
        .arg(dir)
        .args(["-q", "-N", "-o", "fmt:%ts,%te,%td"])
        .output()
        .expect("nfdump is not installed: run scripts/setup");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let time = |s: &str| {
                chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.3f")
                    .map(|t| {
                        t.and_local_timezone(chrono::Local)
                            .unwrap()
                            .timestamp_millis()
                    })
                    .unwrap_or_else(|e| panic!("{s}: {e}"))
            };
            let duration_s: f64 = fields[2].parse().expect("duration");
            Stored {
                start_ms: time(fields[0]),
                end_ms: time(fields[1]),
                duration_ms: (duration_s * 1000.0).round() as i64,
            }
        })
        .collect()
}

/// Every flow nfcapd stored, read back through flowgen's own nfdump CSV reader.
fn stored_flows(dir: &Path, scratch: &Path) -> Vec<Flow> {
    let output = Command::new("nfdump")
        .arg("-R")
        .arg(dir)
        .args(["-o", "csv"])
        .env("TZ", "UTC")
        .output()
        .expect("nfdump is not installed: run scripts/setup");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let csv = scratch.join("stored.csv");
    std::fs::write(&csv, &output.stdout).unwrap();
    flowgen::data::read_all([&csv], Default::default()).expect("nfdump CSV reads back")
}

/// The model's own flows, generated in-process and put through the shipped address plan.
fn model_flows(bundle: &Path, count: usize) -> Vec<Flow> {
    let config = Config::load(
        &daemon_common::repo().join("conf/flowgen.toml"),
        [],
        &Overrides {
            model: Some(bundle.to_path_buf()),
            ..Overrides::default()
        },
    )
    .unwrap();
    let plan = AddressPlan::new(&config.settings.addresses).unwrap();
    let options = LoadOptions {
        seed: 99,
        ..LoadOptions::default()
    };
    let mut generator = flowgen::model::load(bundle, &options).unwrap();
    let mut flows = Vec::with_capacity(count);
    generator.generate(count, &mut flows).unwrap();
    flows.iter_mut().for_each(|f| plan.apply(f));
    flows
}

/// Asserts that each check scores the same on both sets, within sampling noise.
fn assert_same_check_scores(stored: &[Flow], model: &[Flow]) {
    let internal = InternalNetwork::cidds001();
    let (got, want) = (run_checks(stored, &internal), run_checks(model, &internal));
    for check in Check::ALL {
        let (g, w) = (got.get(check), want.get(check));
        let (Some(g_acc), Some(w_acc)) = (g.accuracy, w.accuracy) else {
            assert_eq!(g.premise == 0, w.premise == 0, "{check:?}: {g:?} vs {w:?}");
            continue;
        };
        // Four standard errors of the difference of two proportions, plus a point.
        let p = w_acc / 100.0;
        let se = (p * (1.0 - p) * (1.0 / g.premise as f64 + 1.0 / w.premise as f64)).sqrt();
        let tolerance = 100.0 * 4.0 * se + 1.0;
        assert!(
            (g_acc - w_acc).abs() <= tolerance,
            "{}: {g_acc:.1} % after export, {w_acc:.1} % from the model (premise {} vs {})",
            check.id(),
            g.premise,
            w.premise
        );
    }
}

/// Flows per second of end time, for failure messages.
fn per_second(flows: &[Stored]) -> Vec<(i64, usize)> {
    let mut counts = std::collections::BTreeMap::new();
    for flow in flows {
        *counts.entry(flow.end_ms / 1000).or_insert(0) += 1;
    }
    counts.into_iter().collect()
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn the_shipped_config_streams_into_nfcapd_at_the_rate_with_current_timestamps() {
    // The bundled model once the repository has it; a baseline trained here until then.
    let bundled = daemon_common::repo().join("models/cidds-001");
    let (bundle_dir, bundle) = if bundled.join("manifest.json").is_file() {
        (tempfile::tempdir().unwrap(), bundled)
    } else {
        daemon_common::baseline_bundle()
    };
    let store = bundle_dir.path().join("nfcapd");
    std::fs::create_dir(&store).unwrap();
    let port = free_udp_port();
    let nfcapd = Nfcapd::start(port, &store);
    std::thread::sleep(Duration::from_millis(500));

    let config = daemon_common::repo().join("conf/flowgen.toml");
    let collector = format!("127.0.0.1:{port}");
    let rate = RATE_FLOWS_PER_S.to_string();
    let started_ms = unix_ms();
    let mut args = vec!["--config", config.to_str().unwrap()];
    args.extend(["--collector", &collector, "--rate", &rate]);
    if !bundle.starts_with(daemon_common::repo()) {
        args.extend(["--model", bundle.to_str().unwrap()]);
    }
    let mut daemon = Daemon::start(
        &args,
        &[("FLOWGEN_METRICS__LISTEN", "")],
        bundle_dir.path().join("log"),
    );
    std::thread::sleep(RUN);
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_for_exit(Duration::from_secs(5));
    let stopped_ms = unix_ms();
    let log = daemon.log_text();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    nfcapd.stop();

    let flows = nfdump(&store);
    assert!(
        !flows.is_empty(),
        "nfcapd stored nothing; daemon log:\n{log}"
    );

    // Timestamps: now (nfdump prints local time), a flow ends when it is sent
    // and starts its duration earlier.
    for flow in &flows {
        assert!(
            flow.end_ms >= started_ms - 1000 && flow.end_ms <= stopped_ms + 1000,
            "flow ends at {} outside the run {started_ms}..{stopped_ms}",
            flow.end_ms
        );
        assert!(
            (flow.end_ms - flow.start_ms - flow.duration_ms).abs() <= 1,
            "{flow:?}"
        );
    }

    // The rate, over whole seconds of steady streaming: the first second (start-up)
    // and the last (the flush at shutdown) left out.
    let first_s = flows.iter().map(|f| f.end_ms / 1000).min().unwrap();
    let last_s = flows.iter().map(|f| f.end_ms / 1000).max().unwrap();
    let steady = first_s + 1..last_s;
    let seconds = (steady.end - steady.start) as f64;
    assert!(seconds >= 3.0, "only {seconds} steady seconds");
    let counted = flows
        .iter()
        .filter(|f| steady.contains(&(f.end_ms / 1000)))
        .count() as f64;
    let rate = counted / seconds;
    let expected = RATE_FLOWS_PER_S as f64;
    assert!(
        (rate - expected).abs() <= 0.05 * expected,
        "nfcapd stored {rate:.0} flows/s, asked for {expected}; per second {:?}; log:\n{log}",
        per_second(&flows)
    );

    // The flows themselves: every one that was sent arrived, and Ring's checks
    // score on them as on the model's own output.
    let stored = stored_flows(&store, bundle_dir.path());
    assert_eq!(stored.len(), flows.len());
    assert_same_check_scores(&stored, &model_flows(&bundle, stored.len()));
}
