//! Encoding throughput of the IPFIX and NetFlow v9 encoders, in data records per
//! second on one core, for IPv4, IPv6 and mixed slices at the default 1472-octet
//! message size. Run: `cargo bench --bench export_encode`.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use flowgen::export::{ExportProtocol, ExportStream, StreamOptions};
use flowgen::flow::{Address, Flow, Protocol, TcpFlags};

const NOW_MS: u64 = 1_700_000_000_000;
const FLOWS: u32 = 100_000;

fn flow(i: u32, v6: bool) -> Flow {
    let (src, dst) = if v6 {
        let a = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, (i >> 16) as u16, i as u16);
        (Address::V6(a), Address::V6(Ipv6Addr::LOCALHOST))
    } else {
        (
            Address::V4(Ipv4Addr::from(0x0a00_0000 | i)),
            Address::V4(Ipv4Addr::new(192, 0, 2, 1)),
        )
    };
    Flow {
        start_ms: (NOW_MS - 10_000 - u64::from(i % 5_000)) as i64,
        duration_ms: u64::from(i % 3_000),
        protocol: Protocol::TCP,
        src,
        dst,
        src_port: (i % 65_536) as u16,
        dst_port: 443,
        packets: u64::from(i % 100 + 1),
        bytes: u64::from(i % 100 + 1) * 800,
        tcp_flags: TcpFlags(0x1b),
        tos: 0,
        label: None,
    }
}

/// Encodes `flows` over and over for about a second; returns records/s and octets/s.
fn measure(protocol: ExportProtocol, flows: &[Flow]) -> (f64, f64) {
    let mut stream = ExportStream::new(protocol, StreamOptions::default(), NOW_MS);
    let mut out = Vec::with_capacity(2048);
    let started = Instant::now();
    let mut records = 0u64;
    let mut octets = 0u64;
    while started.elapsed() < Duration::from_secs(1) {
        let mut rest = flows;
        while !rest.is_empty() {
            let summary = stream.encode(rest, NOW_MS, &mut out);
            black_box(&out);
            records += summary.data_records as u64;
            octets += summary.octets as u64;
            rest = &rest[summary.flows_consumed..];
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    (records as f64 / seconds, octets as f64 / seconds)
}

fn main() {
    let cases: [(&str, Vec<Flow>); 3] = [
        ("ipv4", (0..FLOWS).map(|i| flow(i, false)).collect()),
        ("ipv6", (0..FLOWS).map(|i| flow(i, true)).collect()),
        (
            "mixed 1/8 ipv6",
            (0..FLOWS).map(|i| flow(i, i % 8 == 0)).collect(),
        ),
    ];
    for protocol in [ExportProtocol::Ipfix, ExportProtocol::Netflow9] {
        for (name, flows) in &cases {
            let (records_per_s, octets_per_s) = measure(protocol, flows);
            println!(
                "{protocol:?} {name}: {:.1} M records/s, {:.0} MB/s",
                records_per_s / 1e6,
                octets_per_s / 1e6
            );
        }
    }
}
