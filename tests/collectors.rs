//! Export against real collectors started on 127.0.0.1: nfdump's nfcapd,
//! pmacct's nfacctd and tshark's cflow dissector, each decoding what
//! `flowgen replay` and the export pipeline send.

mod net_support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flowgen::address_plan::AddressPlanConfig;
use flowgen::export::ExportProtocol;
use flowgen::flow::{Address, Flow, Protocol, TcpFlags};
use flowgen::net::{CollectorConfig, ExportConfig, ExportPipeline, Pacing};
use flowgen::pace::PaceSettings;
use flowgen::replay::{replay, ReplayOptions, ReplayPace};
use net_support::*;

const REAL_ROWS: usize = 300;

/// `flowgen replay` into nfcapd; every field of every flow must come back from
/// `nfdump`, with times in the present.
fn nfcapd_stores_every_field(protocol: &str) {
    if !have("nfcapd") || !have("nfdump") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = write_test_input(dir.path(), REAL_ROWS);
    let expected = expected_flows(&input);
    let nfcapd = Nfcapd::start(free_udp_port());

    let started_ms = now_ms();
    let output = Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .args(["replay", "--input"])
        .arg(&input)
        .args(["--collector", &format!("127.0.0.1:{}", nfcapd.port)])
        .args(["--protocol", protocol, "--rate", "20000"])
        .output()
        .unwrap();
    let finished_ms = now_ms();
    let summary = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        summary.contains(&format!("{} records", expected.len())),
        "summary: {summary}"
    );

    // ICMP flows must keep their type and code over both protocols: nfcapd 1.7.1
    // reads them from ICMP_TYPE (32) over v9 and from the destination port over IPFIX.
    assert!(
        expected.iter().any(|f| f.protocol == 1 && f.dst_port != 0),
        "the input has no ICMP flow with a type or code to check"
    );
    let stored = nfcapd.stop_and_read();
    assert_eq!(stored.len(), expected.len(), "flows stored");
    assert_same_flows(&stored, &expected);
    for flow in &stored {
        assert_eq!(flow.end_ms - flow.start_ms, flow.duration_ms, "{flow:?}");
        // Flows end a second before they are sent (export headers count whole seconds).
        assert!(
            flow.end_ms >= started_ms - 1_100 && flow.end_ms <= finished_ms,
            "ends at {} outside the replay's {started_ms}..{finished_ms}: {flow:?}",
            flow.end_ms
        );
    }
}

#[test]
fn nfcapd_stores_every_field_over_ipfix() {
    nfcapd_stores_every_field("ipfix");
}

#[test]
fn nfcapd_stores_every_field_over_netflow9() {
    nfcapd_stores_every_field("netflow9");
}

/// Two nfacctd instances, one IPFIX and one v9, fed by one replay: both
/// aggregate exactly the file's totals per key.
#[test]
fn nfacctd_aggregates_the_whole_file_over_both_protocols() {
    if !have("nfacctd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = write_test_input(dir.path(), REAL_ROWS);
    let expected = expected_flows(&input);
    let mut want: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for flow in &expected {
        let entry = want
            .entry(acct_key(&flow.src, &flow.dst, flow.src_port, flow.dst_port))
            .or_default();
        entry.0 += flow.packets;
        entry.1 += flow.bytes;
    }

    let collectors: Vec<(u16, std::process::Child, std::path::PathBuf)> = [0, 1]
        .iter()
        .map(|i| {
            let port = free_udp_port();
            let out = dir.path().join(format!("nfacctd-{i}"));
            std::fs::create_dir(&out).unwrap();
            let conf = dir.path().join(format!("nfacctd-{i}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "daemonize: false\nnfacctd_ip: 127.0.0.1\nnfacctd_port: {port}\nplugins: print\n\
                     aggregate: src_host,dst_host,src_port,dst_port,proto\nprint_refresh_time: 1\n\
                     print_output: csv\nprint_output_file: {}/%s.csv\n",
                    out.display()
                ),
            )
            .unwrap();
            let log = dir.path().join(format!("nfacctd-{i}.log"));
            let child = Command::new("nfacctd")
                .arg("-f")
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .expect("nfacctd starts");
            wait_for_udp_listener(port);
            // nfacctd binds its socket well before its print plugin takes
            // data, and loses what arrives in between; the plugin's first
            // purge (after one refresh interval) shows it is running.
            wait_for_log(&log, "Purging cache - END");
            (port, child, out)
        })
        .collect();

    let options = ReplayOptions {
        input,
        collectors: vec![
            CollectorConfig::udp(
                format!("127.0.0.1:{}", collectors[0].0),
                ExportProtocol::Ipfix,
            ),
            CollectorConfig::udp(
                format!("127.0.0.1:{}", collectors[1].0),
                ExportProtocol::Netflow9,
            ),
        ],
        export: ExportConfig::default(),
        addresses: AddressPlanConfig::default(),
        pace: ReplayPace::Rate(0),
        reorder_window_flows: 1,
        skip_bad_rows: false,
    };
    let summary = replay(&options).unwrap();
    for (_, counters) in &summary.report.collectors {
        assert_eq!(counters.records_sent, expected.len() as u64);
    }

    for (_, mut child, out) in collectors {
        // nfacctd prints each second; wait until the totals are in (or 10 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = BTreeMap::new();
        while Instant::now() < deadline {
            got = read_nfacctd(&out);
            if got == want {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The totals are read: no need for nfacctd's slow orderly shutdown.
        let _ = child.kill();
        let _ = child.wait();
        let wrong: Vec<_> = want
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(v))
            .take(5)
            .collect();
        assert!(
            wrong.is_empty(),
            "{}: {} keys; wrong totals (want) {wrong:?}; got e.g. {:?}; log: {}",
            out.display(),
            got.len(),
            got.iter().take(3).collect::<Vec<_>>(),
            String::from_utf8_lossy(&std::fs::read(out.with_extension("log")).unwrap_or_default())
                .lines()
                .filter(|l| !l.contains("'--"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        assert_eq!(
            got.len(),
            want.len(),
            "keys aggregated by {}",
            out.display()
        );
    }
}

fn wait_for_log(path: &std::path::Path, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let text = std::fs::read(path).unwrap_or_default();
        if String::from_utf8_lossy(&text).contains(needle) {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("{} never logged {needle:?}", path.display());
}

fn acct_key(src: &str, dst: &str, src_port: u16, dst_port: u16) -> String {
    format!("{src} {dst} {src_port} {dst_port}")
}

/// Sums packets and bytes per key over every interval file nfacctd wrote.
fn read_nfacctd(dir: &std::path::Path) -> BTreeMap<String, (u64, u64)> {
    let mut totals: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    let files = std::fs::read_dir(dir).into_iter().flatten().flatten();
    for file in files {
        let text = std::fs::read_to_string(file.path()).unwrap_or_default();
        for line in text.lines() {
            // SRC_IP,DST_IP,SRC_PORT,DST_PORT,PROTOCOL,PACKETS,BYTES
            let f: Vec<&str> = line.split(',').collect();
            if f.len() != 7 || f[0] == "SRC_IP" {
                continue;
            }
            let (Ok(sp), Ok(dp), Ok(packets), Ok(bytes)) = (
                f[2].parse::<u16>(),
                f[3].parse::<u16>(),
                f[5].parse::<u64>(),
                f[6].parse::<u64>(),
            ) else {
                continue;
            };
            let entry = totals.entry(acct_key(f[0], f[1], sp, dp)).or_default();
            entry.0 += packets;
            entry.1 += bytes;
        }
    }
    totals
}

/// What was sent, written as a pcap and read by tshark's cflow dissector: no
/// malformed packet, no expert warning or error, every record dissected.
#[test]
fn tshark_dissects_everything_cleanly() {
    if !have("tshark") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = write_test_input(dir.path(), REAL_ROWS);
    let expected = expected_flows(&input).len();

    for protocol in [ExportProtocol::Ipfix, ExportProtocol::Netflow9] {
        let sink = Sink::start();
        let options = ReplayOptions {
            input: input.clone(),
            collectors: vec![CollectorConfig::udp(sink.address.to_string(), protocol)],
            export: ExportConfig::default(),
            addresses: AddressPlanConfig::default(),
            pace: ReplayPace::Rate(0),
            reorder_window_flows: 1,
            skip_bad_rows: false,
        };
        replay(&options).unwrap();
        let datagrams: Vec<(SocketAddr, Vec<u8>)> = sink
            .stop()
            .into_iter()
            .map(|(_, from, bytes)| (from, bytes))
            .collect();
        let pcap = dir.path().join(format!("{protocol:?}.pcap"));
        write_pcap(&pcap, &datagrams, sink_port(&options));

        let report = tshark(&pcap, sink_port(&options), &["-q", "-z", "expert"]);
        assert!(
            !report.contains("Error")
                && !report.contains("Warning")
                && !report.contains("Malformed"),
            "{protocol:?}: tshark expert report:\n{report}"
        );
        let sources = tshark(
            &pcap,
            sink_port(&options),
            &[
                "-T",
                "fields",
                "-e",
                "cflow.srcaddr",
                "-e",
                "cflow.srcaddrv6",
            ],
        );
        let records: usize = sources
            .lines()
            .map(|l| {
                l.split([',', '\t'])
                    .filter(|s| !s.trim().is_empty())
                    .count()
            })
            .sum();
        assert_eq!(records, expected, "{protocol:?}: records tshark dissected");
    }

    // The check can fail: a truncated message is reported.
    let sink_port = 4739;
    let bad = dir.path().join("bad.pcap");
    let mut truncated = vec![0x00, 0x0a, 0x00, 0x40];
    truncated.extend_from_slice(&[0; 20]);
    write_pcap(
        &bad,
        &[("127.0.0.1:5000".parse().unwrap(), truncated)],
        sink_port,
    );
    let report = tshark(&bad, sink_port, &["-q", "-z", "expert"]);
    assert!(
        report.contains("Malformed") || report.contains("Error"),
        "{report}"
    );
}

fn sink_port(options: &ReplayOptions) -> u16 {
    options.collectors[0]
        .address
        .parse::<SocketAddr>()
        .map(|a| a.port())
        .unwrap()
}

fn tshark(pcap: &std::path::Path, port: u16, args: &[&str]) -> String {
    let output = Command::new("tshark")
        .arg("-r")
        .arg(pcap)
        .args(["-d", &format!("udp.port=={port},cflow")])
        .args(args)
        .output()
        .expect("tshark runs");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes datagrams to 127.0.0.1:`port` as a pcap of raw IPv4 packets.
fn write_pcap(path: &std::path::Path, datagrams: &[(SocketAddr, Vec<u8>)], port: u16) {
    let mut out = Vec::new();
    // Global header: magic, version 2.4, zone, sigfigs, snaplen, LINKTYPE_RAW.
    out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    for word in [0u32, 0, 65_535, 101] {
        out.extend_from_slice(&word.to_le_bytes());
    }
    for (i, (from, payload)) in datagrams.iter().enumerate() {
        let total = 20 + 8 + payload.len();
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
        ];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        let sum = ip
            .chunks(2)
            .fold(0u32, |s, c| s + u32::from(u16::from_be_bytes([c[0], c[1]])));
        let sum = !(((sum & 0xffff) + (sum >> 16)) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut udp = Vec::with_capacity(8);
        udp.extend_from_slice(&from.port().to_be_bytes());
        udp.extend_from_slice(&port.to_be_bytes());
        udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);

        out.extend_from_slice(&(1_700_000_000u32 + i as u32).to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&(total as u32).to_le_bytes());
        out.extend_from_slice(&ip);
        out.extend_from_slice(&udp);
        out.extend_from_slice(payload);
    }
    std::fs::File::create(path)
        .unwrap()
        .write_all(&out)
        .unwrap();
}

/// A flow numbered by its source port, for finding gaps.
fn numbered_flow(n: u16) -> Flow {
    Flow {
        start_ms: 0,
        duration_ms: 20,
        protocol: Protocol::TCP,
        src: Address::V4("10.9.0.1".parse().unwrap()),
        dst: Address::V4("10.9.0.2".parse().unwrap()),
        src_port: n,
        dst_port: 80,
        packets: 2,
        bytes: 120,
        tcp_flags: TcpFlags(0x12),
        tos: 0,
        label: None,
    }
}

/// Collectors that start after the exporter, one per protocol, decode within
/// one template interval (1 s here) of starting, and lose nothing after that.
#[test]
fn a_collector_started_late_decodes_within_one_template_interval() {
    if !have("nfcapd") || !have("nfdump") {
        return;
    }
    let ports = [free_udp_port(), free_udp_port()];
    let collectors = vec![
        CollectorConfig::udp(format!("127.0.0.1:{}", ports[0]), ExportProtocol::Ipfix),
        CollectorConfig::udp(format!("127.0.0.1:{}", ports[1]), ExportProtocol::Netflow9),
    ];
    let export = ExportConfig {
        template_refresh_s: 1,
        // Only the timer may bring the templates back.
        template_refresh_messages: 1_000_000,
        ..ExportConfig::default()
    };
    let rate = 2_000;
    let (input, output) = crossbeam_channel::bounded(4);
    let pipeline = ExportPipeline::spawn(
        &collectors,
        &export,
        Pacing::Rate(PaceSettings::rate(rate)),
        output,
    )
    .unwrap();

    let feeder = std::thread::spawn(move || {
        // About 3 s of flows, numbered by source port.
        for start in (0..6_000u16).step_by(500) {
            let batch = (start..start + 500).map(numbered_flow).collect();
            if input.send(batch).is_err() {
                return;
            }
        }
    });
    std::thread::sleep(Duration::from_millis(700));
    let started = now_ms();
    let nfcapds: Vec<Nfcapd> = ports.iter().map(|&p| Nfcapd::start(p)).collect();
    feeder.join().unwrap();
    let report = pipeline.join();
    assert!(report
        .collectors
        .iter()
        .all(|(_, c)| c.records_sent == 6_000));

    for (nfcapd, protocol) in nfcapds.into_iter().zip(["ipfix", "netflow9"]) {
        let stored = nfcapd.stop_and_read();
        let numbers: BTreeSet<u16> = stored.iter().map(|f| f.src_port).collect();
        let first = *numbers
            .first()
            .unwrap_or_else(|| panic!("{protocol}: nothing decoded"));
        let missing: Vec<u16> = (first..6_000).filter(|n| !numbers.contains(n)).collect();
        assert!(
            missing.is_empty(),
            "{protocol}: lost {} flows after decoding began",
            missing.len()
        );
        // A flow is stamped to end a second before it is sent.
        let first_sent_ms = stored.iter().map(|f| f.end_ms).min().unwrap_or(0) + 1_000;
        let delay_ms = first_sent_ms - started;
        assert!(
            delay_ms <= 1_000 + 300,
            "{protocol}: decoding began {delay_ms} ms after the collector started"
        );
    }
}

/// One collector refuses (nothing listens: ICMP port unreachable); it is
/// counted, and the healthy one beside it receives everything.
#[test]
fn a_refusing_collector_is_survived_and_counted() {
    let refused = format!("127.0.0.1:{}", free_udp_port());
    let sink = Sink::start();
    let collectors = vec![
        CollectorConfig::udp(refused.clone(), ExportProtocol::Ipfix),
        CollectorConfig::udp(sink.address.to_string(), ExportProtocol::Ipfix),
    ];
    let (input, output) = crossbeam_channel::bounded(4);
    let pipeline = ExportPipeline::spawn(
        &collectors,
        &ExportConfig::default(),
        Pacing::Rate(PaceSettings::rate(20_000)),
        output,
    )
    .unwrap();
    for start in (0..4_000u16).step_by(400) {
        input
            .send((start..start + 400).map(numbered_flow).collect())
            .unwrap();
    }
    drop(input);
    let report = pipeline.join();

    let (name, bad) = &report.collectors[0];
    assert_eq!(name, &refused);
    assert!(bad.send_errors > 0, "refusals counted: {bad:?}");
    let (_, good) = &report.collectors[1];
    assert_eq!(good.records_sent, 4_000);
    assert_eq!(good.send_errors, 0);

    let mut counter = RecordCounter::default();
    let records: usize = sink
        .stop()
        .iter()
        .map(|(_, _, m)| counter.count(m).unwrap().records)
        .sum();
    assert_eq!(records, 4_000, "records the healthy collector received");
}

/// `--rate original` on a shuffled file: flows go out in time order, keep
/// their spacing, and each leaves about a second after its shifted end.
#[test]
fn original_pace_keeps_the_files_timing() {
    if !have("nfcapd") || !have("nfdump") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("timed.csv");
    let mut text = String::from("Date first seen,Duration,Proto,Src IP Addr,Src Pt,Dst IP Addr,Dst Pt,Packets,Bytes,Flows,Flags\n");
    // Forty flows 30 ms apart over 1.2 s, written out of order.
    let mut rows: Vec<u32> = (0..40).collect();
    rows.sort_by_key(|i| (i * 17) % 40);
    for i in &rows {
        let ms = 500 + i * 30;
        text.push_str(&format!(
            "2017-04-05 10:00:{:02}.{:03},0.250,TCP,192.168.220.{},{},11529_47,443,3,200,1,.AP...\n",
            ms / 1000,
            ms % 1000,
            10 + i % 5,
            40_000 + i
        ));
    }
    std::fs::write(&path, text).unwrap();
    let nfcapd = Nfcapd::start(free_udp_port());

    let options = ReplayOptions {
        input: path,
        collectors: vec![CollectorConfig::udp(
            format!("127.0.0.1:{}", nfcapd.port),
            ExportProtocol::Ipfix,
        )],
        export: ExportConfig::default(),
        addresses: AddressPlanConfig::default(),
        pace: ReplayPace::Original,
        reorder_window_flows: 1_000,
        skip_bad_rows: false,
    };
    let started = now_ms();
    let summary = replay(&options).unwrap();
    let elapsed_ms = now_ms() - started;
    assert_eq!(summary.out_of_order_flows, 0);
    assert_eq!(summary.report.pipeline.late_flows, 0);
    // The last flow starts 1.17 s in, lasts 0.25 s and leaves 1 s after its end.
    assert!(
        (2_300..3_500).contains(&elapsed_ms),
        "replay took {elapsed_ms} ms"
    );

    let mut stored = nfcapd.stop_and_read();
    assert_eq!(stored.len(), 40);
    stored.sort_by_key(|f| f.src_port);
    let first_start = stored[0].start_ms;
    assert!(
        (first_start - started).abs() < 200,
        "the file plays from now"
    );
    for (i, flow) in stored.iter().enumerate() {
        assert_eq!(
            flow.start_ms - first_start,
            i as i64 * 30,
            "spacing of flow {i}"
        );
        assert_eq!(flow.duration_ms, 250);
    }
}

/// `flowgen replay --config`: collectors and the address plan come from the
/// file; a mistyped key stops it with the key named and a non-zero exit.
#[test]
fn replay_reads_collectors_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let input = write_test_input(dir.path(), 50);
    let expected = expected_flows(&input).len();
    let sink = Sink::start();
    let config = dir.path().join("flowgen.toml");
    std::fs::write(
        &config,
        format!(
            "[model]\npath = \"ignored by replay\"\n\n[[collector]]\naddress = \"{}\"\nprotocol = \"netflow9\"\n\n\
             [addresses]\ntoken_pools = [\"45.0.0.0/8\"]\n",
            sink.address
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .args(["replay", "--rate", "0", "--input"])
        .arg(&input)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut counter = RecordCounter::default();
    let datagrams = sink.stop();
    let records: usize = datagrams
        .iter()
        .map(|(_, _, m)| counter.count(m).unwrap().records)
        .sum();
    assert_eq!(records, expected);
    assert!(
        datagrams.iter().all(|(_, _, m)| m[..2] == [0, 9]),
        "netflow v9 as configured"
    );

    std::fs::write(
        &config,
        "[[collector]]\naddress = \"127.0.0.1:9\"\nprotocl = \"ipfix\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_flowgen"))
        .args(["replay", "--input"])
        .arg(&input)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains("protocl") && stderr.contains("flowgen.toml"),
        "{stderr}"
    );
}
