//! `flowgen bench` on a tiny configuration, and `flowgen bench sink` counting
//! messages sent to it. No speed is asserted: only that the numbers are
//! there, that flows reached the sink intact, and that the sink counts right.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use flowgen::export::{ExportProtocol, ExportStream, StreamOptions};
use flowgen::flow::{Address, Flow, Protocol, TcpFlags};

fn flowgen(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// A model folder that does not exist, so the bench builds its stand-ins.
fn no_bundle() -> String {
    std::env::temp_dir()
        .join(format!(
            "flowgen-bench-test-no-bundle-{}",
            std::process::id()
        ))
        .display()
        .to_string()
}

/// The first rows of the shared sample: enough for a codebook, quick to fit in a debug build.
fn small_sample() -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::cidds_sample()).unwrap();
    let head: String = text.lines().take(1_001).map(|l| format!("{l}\n")).collect();
    let path = std::env::temp_dir().join(format!(
        "flowgen-bench-test-sample-{}-{:?}.csv",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&path, head).unwrap();
    path
}

fn tiny(extra: &[&str]) -> Output {
    let sample = small_sample();
    let model = no_bundle();
    let mut args = vec![
        "bench",
        "--model",
        &model,
        "--sample",
        sample.to_str().unwrap(),
        "--batch",
        "256",
        "--threads",
        "1",
        "--stage-seconds",
        "0.05",
        "--warm-up-seconds",
        "0.2",
        "--e2e-seconds",
        "0.5",
    ];
    args.extend_from_slice(extra);
    let output = flowgen(&args);
    let _ = std::fs::remove_file(&sample);
    output
}

#[test]
fn a_tiny_run_prints_every_table() {
    let output = tiny(&[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for stage in [
        "noise",
        "decode",
        "address plan",
        "encode (ipfix)",
        "encode+send (udp)",
    ] {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(stage))
            .unwrap_or_else(|| panic!("no {stage} row in\n{stdout}"));
        assert!(row.contains(" 256 "), "{row}");
    }
    assert!(stdout.contains("ipfix -> sink"), "{stdout}");
    assert!(
        stdout.contains("peak resident memory (VmHWM): "),
        "{stdout}"
    );
    assert!(stdout.contains("machine: "), "{stdout}");
}

#[test]
fn json_output_holds_the_measurements_and_the_sink_saw_intact_records() {
    let output = tiny(&["--json", "--no-stages", "--protocol", "netflow9"]);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["stages"].as_array().unwrap().len(), 0);
    let runs = report["end_to_end"].as_array().unwrap();
    assert_eq!(runs.len(), 1);
    let sink = &runs[0]["sink"];
    assert!(sink["data_records"].as_u64().unwrap() > 0, "{sink}");
    assert_eq!(sink["malformed"].as_u64(), Some(0), "{sink}");
    assert_eq!(runs[0]["case"]["protocol"], "netflow9");
    assert!(report["memory"]["peak_resident_kib"].as_u64().unwrap() > 0);
    assert!(!report["memory"]["samples"].as_array().unwrap().is_empty());
}

#[test]
fn bad_options_fail_with_the_flag_named() {
    let output = tiny(&["--batch", "0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--batch"), "{stderr}");
}

fn flow(i: u32, now_ms: u64) -> Flow {
    Flow {
        start_ms: now_ms as i64 - 3_000,
        duration_ms: 500,
        protocol: Protocol::TCP,
        src: Address::V4(std::net::Ipv4Addr::from(0x0a00_0000 | i)),
        dst: Address::V4(std::net::Ipv4Addr::new(192, 0, 2, 1)),
        src_port: 40_000,
        dst_port: 443,
        packets: 4,
        bytes: 400,
        tcp_flags: TcpFlags(0x12),
        tos: 0,
        label: None,
    }
}

#[test]
fn the_sink_subcommand_counts_records_sent_to_it() {
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .args([
            "bench",
            "sink",
            "--listen",
            &listen,
            "--seconds",
            "2",
            "--json",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));

    let now_ms = flowgen::net::unix_now_ms();
    let flows: Vec<Flow> = (0..1_000).map(|i| flow(i, now_ms)).collect();
    let mut stream = ExportStream::new(ExportProtocol::Ipfix, StreamOptions::default(), now_ms);
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rest = &flows[..];
    let mut message = Vec::new();
    while !rest.is_empty() {
        let taken = stream.encode_message(rest, now_ms, &mut message);
        socket.send_to(&message, &listen).unwrap();
        rest = &rest[taken..];
    }
    socket.send_to(b"garbage", &listen).unwrap();

    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "two seconds and the totals: {stdout}");
    let totals = &lines[2]["counts"];
    assert_eq!(totals["data_records"].as_u64(), Some(1_000), "{stdout}");
    assert_eq!(totals["malformed"].as_u64(), Some(1), "{stdout}");
    assert_eq!(totals["sequence_gap"].as_u64(), Some(0), "{stdout}");
}
