//! End to end: the shipped configuration and a model bundle, streaming IPFIX
//! into a real `nfcapd` on 127.0.0.1; what nfcapd stored is checked for the
//! rate, the timestamps and the flows themselves.

mod daemon_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use daemon_common::{free_udp_port, Daemon};

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

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn the_shipped_config_streams_into_nfcapd_at_the_rate_with_current_timestamps() {
    let (bundle_dir, bundle) = daemon_common::baseline_bundle();
    let store = bundle_dir.path().join("nfcapd");
    std::fs::create_dir(&store).unwrap();
    let port = free_udp_port();
    let nfcapd = Nfcapd::start(port, &store);
    std::thread::sleep(Duration::from_millis(500));

    let config = daemon_common::repo().join("conf/flowgen.toml");
    let collector = format!("127.0.0.1:{port}");
    let rate = RATE_FLOWS_PER_S.to_string();
    let started_ms = unix_ms();
    let mut daemon = Daemon::start(
        &[
            "--config",
            config.to_str().unwrap(),
            "--model",
            bundle.to_str().unwrap(),
            "--collector",
            &collector,
            "--rate",
            &rate,
        ],
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
        (rate - expected).abs() <= 0.03 * expected,
        "nfcapd stored {rate:.0} flows/s, asked for {expected}; log:\n{log}"
    );
}
