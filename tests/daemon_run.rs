//! `flowgen run` as a process: it streams to a local UDP socket, stops cleanly on
//! SIGTERM, reloads on SIGHUP without resetting sequence numbers, serves metrics,
//! talks to systemd, and refuses broken models with a clear error.

mod daemon_common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::{baseline_bundle, free_tcp_port, parse_ipfix, Daemon, IpfixMessage};

/// A config streaming IPFIX from `model` to `127.0.0.1:port`.
fn config_text(model: &Path, port: u16, metrics_port: Option<u16>, rate: u32) -> String {
    let listen = metrics_port.map_or(String::new(), |p| format!("127.0.0.1:{p}"));
    format!(
        "[model]\npath = {model:?}\nbatch = 256\n\
         [rate]\nflows_per_s = {rate}\n\
         [[collector]]\naddress = \"127.0.0.1:{port}\"\nobservation_domain = 7\n\
         [export]\ntemplate_refresh_s = 1\n\
         [metrics]\nlisten = \"{listen}\"\nlog_interval_s = 1\n"
    )
}

/// A UDP socket on 127.0.0.1 the daemon sends to.
fn collector_socket() -> (UdpSocket, u16) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Reads IPFIX messages from `socket` for `span`.
fn receive(
    socket: &UdpSocket,
    span: Duration,
    templates: &mut HashMap<u16, usize>,
) -> Vec<IpfixMessage> {
    let mut buf = vec![0u8; 65_536];
    let mut messages = Vec::new();
    let deadline = Instant::now() + span;
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = parse_ipfix(&buf[..n], templates).expect("a well-formed IPFIX message");
            messages.push(message);
        }
    }
    messages
}

/// Asserts that each message's sequence number counts the data records before it.
fn assert_sequence_continuous(messages: &[IpfixMessage]) {
    for pair in messages.windows(2) {
        let expected = pair[0].sequence.wrapping_add(pair[0].data_records);
        assert_eq!(pair[1].sequence, expected, "sequence jumped: {pair:?}");
    }
}

fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn sigterm_stops_within_seconds_with_exit_code_zero() {
    let (bundle_dir, bundle) = baseline_bundle();
    let (socket, port) = collector_socket();
    let (_dir, path) = daemon_common::write_config(&config_text(&bundle, port, None, 1000));
    let mut daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[],
        bundle_dir.path().join("log"),
    );
    let mut templates = HashMap::new();
    let messages = receive(&socket, Duration::from_secs(2), &mut templates);
    assert!(
        !messages.is_empty(),
        "nothing arrived; log:\n{}",
        daemon.log_text()
    );

    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_for_exit(Duration::from_secs(5));
    let log = daemon.log_text();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{log}");
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
    // The log is a file, not a terminal: no colour escape codes.
    assert!(
        !log.contains('\u{1b}'),
        "ANSI codes in a log file:\n{log:?}"
    );
}

#[test]
fn sighup_reloads_and_keeps_sequence_numbers() {
    let (bundle_dir, bundle) = baseline_bundle();
    let (socket, port) = collector_socket();
    let metrics_port = free_tcp_port();
    let (_dir, path) =
        daemon_common::write_config(&config_text(&bundle, port, Some(metrics_port), 500));
    let daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[],
        bundle_dir.path().join("log"),
    );
    let mut templates = HashMap::new();
    let before = receive(&socket, Duration::from_millis(1500), &mut templates);
    assert!(
        !before.is_empty(),
        "nothing arrived; log:\n{}",
        daemon.log_text()
    );

    // A new rate, so the reload is visible; same collector, so its stream must carry on.
    std::fs::write(&path, config_text(&bundle, port, Some(metrics_port), 2000)).unwrap();
    daemon.signal(libc::SIGHUP);
    assert!(
        daemon.wait_for_log("reloaded", Duration::from_secs(10)),
        "{}",
        daemon.log_text()
    );
    let after = receive(&socket, Duration::from_millis(1500), &mut templates);

    let all: Vec<IpfixMessage> = before.iter().chain(&after).cloned().collect();
    assert_sequence_continuous(&all);
    assert!(all.iter().all(|m| m.domain == 7));
    let records = |ms: &[IpfixMessage]| ms.iter().map(|m| m.data_records).sum::<u32>();
    // 500 flows/s before, 2000 after: the new rate is in force.
    assert!(
        records(&after) > 2 * records(&before),
        "{} then {}",
        records(&before),
        records(&after)
    );
    let metrics = http_get(metrics_port, "/metrics");
    assert!(
        metrics.contains("flowgen_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_broken_config_on_sighup_keeps_the_old_one_running() {
    let (bundle_dir, bundle) = baseline_bundle();
    let (socket, port) = collector_socket();
    let metrics_port = free_tcp_port();
    let (_dir, path) =
        daemon_common::write_config(&config_text(&bundle, port, Some(metrics_port), 1000));
    let daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[],
        bundle_dir.path().join("log"),
    );
    let mut templates = HashMap::new();
    assert!(!receive(&socket, Duration::from_secs(1), &mut templates).is_empty());

    std::fs::write(&path, "[rate]\nflows_per_s = \"fast\"\n").unwrap();
    daemon.signal(libc::SIGHUP);
    assert!(
        daemon.wait_for_log("reload failed", Duration::from_secs(10)),
        "{}",
        daemon.log_text()
    );
    let log = daemon.log_text();
    assert!(
        log.contains("ERROR") && log.contains("rate.flows_per_s"),
        "{log}"
    );
    let after = receive(&socket, Duration::from_secs(1), &mut templates);
    assert!(!after.is_empty(), "stopped sending after a failed reload");
    assert_sequence_continuous(&after);
    let metrics = http_get(metrics_port, "/metrics");
    assert!(
        metrics.contains("flowgen_reloads_total{result=\"failed\"} 1"),
        "{metrics}"
    );
}

#[test]
fn the_metrics_endpoint_serves_total_counters() {
    let (bundle_dir, bundle) = baseline_bundle();
    let (socket, port) = collector_socket();
    let metrics_port = free_tcp_port();
    let (_dir, path) =
        daemon_common::write_config(&config_text(&bundle, port, Some(metrics_port), 2000));
    let daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[],
        bundle_dir.path().join("log"),
    );
    let mut templates = HashMap::new();
    let received: u32 = receive(&socket, Duration::from_secs(2), &mut templates)
        .iter()
        .map(|m| m.data_records)
        .sum();
    assert!(received > 0, "{}", daemon.log_text());

    // A sender counts a message after its system call returns, so the last one
    // received may not be counted yet; counters only grow, so waiting is safe.
    std::thread::sleep(Duration::from_millis(200));
    let response = http_get(metrics_port, "/metrics");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let value = |name: &str| -> u64 {
        let line = response
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("{name} missing from\n{response}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert!(value("flowgen_flows_generated_total") > 0);
    let sent = value(&format!(
        "flowgen_flows_sent_total{{collector=\"127.0.0.1:{port}\""
    ));
    assert!(
        sent >= u64::from(received),
        "sent {sent} < received {received}"
    );
    for name in [
        "flowgen_messages_sent_total",
        "flowgen_send_errors_total",
        "flowgen_flows_dropped_total",
    ] {
        assert!(response.contains(name), "{name} missing");
    }
    assert!(http_get(metrics_port, "/other").starts_with("HTTP/1.1 404"));
    assert!(
        daemon.log_text().contains("flows/s"),
        "no periodic line:\n{}",
        daemon.log_text()
    );
}

#[test]
fn systemd_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;
    let (bundle_dir, bundle) = baseline_bundle();
    let (_socket, port) = collector_socket();
    let notify_path = bundle_dir.path().join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let (_dir, path) = daemon_common::write_config(&config_text(&bundle, port, None, 1000));
    let mut daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[
            ("NOTIFY_SOCKET", notify_path.to_str().unwrap()),
            ("WATCHDOG_USEC", "400000"),
        ],
        bundle_dir.path().join("log"),
    );

    let mut heard = String::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && heard.matches("WATCHDOG=1").count() < 2 {
        if let Ok(n) = notify.recv(&mut buf) {
            heard.push_str(&String::from_utf8_lossy(&buf[..n]));
            heard.push('\n');
        }
    }
    assert!(heard.contains("READY=1"), "{heard}");
    assert!(heard.matches("WATCHDOG=1").count() >= 2, "{heard}");

    daemon.signal(libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && !heard.contains("STOPPING=1") {
        if let Ok(n) = notify.recv(&mut buf) {
            heard.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    }
    assert!(heard.contains("STOPPING=1"), "{heard}");
    assert_eq!(
        daemon
            .wait_for_exit(Duration::from_secs(5))
            .and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
fn a_corrupt_model_is_a_clear_error_and_a_non_zero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("broken");
    std::fs::create_dir(&model).unwrap();
    std::fs::write(model.join("manifest.json"), "{ not json").unwrap();
    let (_socket, port) = collector_socket();
    let (_cdir, path) = daemon_common::write_config(&config_text(&model, port, None, 1000));
    let mut daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[],
        dir.path().join("log"),
    );
    let status = daemon
        .wait_for_exit(Duration::from_secs(10))
        .expect("exits");
    let log = daemon.log_text();
    assert_ne!(status.code(), Some(0), "{log}");
    assert!(log.contains("manifest.json"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_model_directory_without_its_files_is_a_clear_error() {
    let (_bundle_dir, bundle) = baseline_bundle();
    std::fs::remove_file(bundle.join("baseline.json")).unwrap();
    let (_socket, port) = collector_socket();
    let (dir, path) = daemon_common::write_config(&config_text(&bundle, port, None, 1000));
    let mut daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[],
        dir.path().join("log"),
    );
    let status = daemon
        .wait_for_exit(Duration::from_secs(10))
        .expect("exits");
    let log = daemon.log_text();
    assert_ne!(status.code(), Some(0), "{log}");
    assert!(log.contains("baseline.json"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn flags_override_the_config() {
    let (bundle_dir, bundle) = baseline_bundle();
    let (socket, port) = collector_socket();
    // The file points at a port nobody listens on; --collector must win.
    let (_dir, path) = daemon_common::write_config(&config_text(
        &bundle,
        daemon_common::free_udp_port(),
        None,
        10,
    ));
    let collector = format!("127.0.0.1:{port}");
    let _daemon = Daemon::start(
        &[
            "--config",
            path.to_str().unwrap(),
            "--collector",
            &collector,
            "--rate",
            "3000",
        ],
        &[],
        bundle_dir.path().join("log"),
    );
    let mut templates = HashMap::new();
    let _warmup = receive(&socket, Duration::from_millis(700), &mut templates);
    let records: u32 = receive(&socket, Duration::from_secs(1), &mut templates)
        .iter()
        .map(|m| m.data_records)
        .sum();
    // 3000 flows/s, not the file's 10.
    assert!(
        (2500..=3500).contains(&records),
        "{records} flows in one second"
    );
}

#[test]
fn the_diurnal_profile_follows_the_bundles_time_of_day() {
    use chrono::Timelike;
    use flowgen::daemon::config::RateProfile;
    use flowgen::daemon::pipeline::time_of_day_profile;
    use flowgen::daemon::schedule::RateSchedule;

    let (bundle_dir, bundle) = baseline_bundle();
    let weights = time_of_day_profile(&bundle)
        .unwrap()
        .expect("a baseline has a profile");
    let schedule = RateSchedule::new(5000.0, RateProfile::Diurnal, Some(&weights)).unwrap();

    // Put the daemon in a time zone where it is now the midpoint-nearest hour whose
    // rate differs most from the mean, so a flat rate could not pass.
    let mean = weights.iter().sum::<f64>() / 24.0;
    let hour = (0..24)
        .max_by(|&a, &b| {
            (weights[a] - mean)
                .abs()
                .total_cmp(&(weights[b] - mean).abs())
        })
        .unwrap() as i64;
    let utc_hour = i64::from(chrono::Utc::now().hour());
    let offset_h = (hour - utc_hour + 36).rem_euclid(24) - 12;
    // POSIX TZ names the offset west of UTC: "FGT-3" is three hours east.
    let tz = format!(
        "FGT{}{}",
        if offset_h >= 0 { "-" } else { "+" },
        offset_h.abs()
    );

    let (_socket, port) = collector_socket();
    let metrics_port = free_tcp_port();
    let text = config_text(&bundle, port, Some(metrics_port), 5000)
        .replace("[rate]\n", "[rate]\nprofile = \"diurnal\"\n");
    let (_dir, path) = daemon_common::write_config(&text);
    let daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[("TZ", &tz)],
        bundle_dir.path().join("log"),
    );
    assert!(
        daemon.wait_for_log("pipeline started", Duration::from_secs(10)),
        "{}",
        daemon.log_text()
    );
    let metrics = http_get(metrics_port, "/metrics");

    let local = chrono::Utc::now() + chrono::Duration::hours(offset_h);
    let seconds_of_day = f64::from(local.num_seconds_from_midnight());
    let expected = schedule.flows_per_s_at(seconds_of_day).round().max(1.0);
    let gauge: f64 = metrics
        .lines()
        .find(|l| l.starts_with("flowgen_target_rate_flows_per_s "))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no rate gauge in\n{metrics}"));
    assert!(
        (expected - 5000.0).abs() > 500.0,
        "hour {hour} is too close to the mean"
    );
    // Seconds pass between the daemon's reading and ours; the profile moves slowly.
    assert!(
        (gauge - expected).abs() <= 0.01 * expected + 1.0,
        "gauge {gauge}, expected {expected} (TZ {tz})"
    );
}

#[test]
fn sigterm_paces_the_read_ahead_for_at_most_the_drain_limit_then_discards_it() {
    let (bundle_dir, bundle) = baseline_bundle();
    let (socket, port) = collector_socket();
    let rate = 500;
    // Two threads of 4 batches of 4096 flows: about 33 s of read-ahead at 500/s.
    let text = format!(
        "[model]\npath = {bundle:?}\nbatch = 4096\n\
         [rate]\nflows_per_s = {rate}\n\
         [[collector]]\naddress = \"127.0.0.1:{port}\"\n\
         [metrics]\nlisten = \"\"\n\
         [pipeline]\ngenerator_threads = 2\nchannel_batches = 4\n"
    );
    let (_dir, path) = daemon_common::write_config(&text);
    let mut daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[],
        bundle_dir.path().join("log"),
    );
    let mut templates = HashMap::new();
    let started = Instant::now();
    let before: u32 = receive(&socket, Duration::from_secs(1), &mut templates)
        .iter()
        .map(|m| m.data_records)
        .sum();
    assert!(before > 0, "nothing arrived; log:\n{}", daemon.log_text());

    daemon.signal(libc::SIGTERM);
    // The drain limit is 2 s; what arrives after 3 s would be a leak.
    let during_stop: u32 = receive(&socket, Duration::from_secs(3), &mut templates)
        .iter()
        .map(|m| m.data_records)
        .sum();
    let status = daemon.wait_for_exit(Duration::from_secs(5));
    let log = daemon.log_text();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "log:\n{log}");
    // At the rate for the run and the 2 s drain, with slack for start-up; a
    // flush of the read-ahead would send over 16,000.
    let run_s = started.elapsed().as_secs_f64() - 3.0 + 2.0;
    let ceiling = (f64::from(rate) * run_s * 1.3) as u32 + 200;
    assert!(
        before + during_stop <= ceiling,
        "{before} + {during_stop} flows for {run_s:.1} s at {rate}/s; log:\n{log}"
    );
    assert!(
        during_stop >= rate,
        "only {during_stop} flows paced out while stopping; log:\n{log}"
    );
    assert!(log.contains("discarded"), "no discard warning; log:\n{log}");
}
