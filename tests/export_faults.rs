//! The faults that deployed exporters shipped and collectors reported, each
//! pinned by a test: sequence numbers counting the wrong thing, templates sent
//! only once, relative IPFIX timestamps, 4-octet counters, 1-octet TCP flags,
//! oversize messages, over-long padding and the v9 sysUpTime wrap.

mod export_wire;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use export_wire::{record_len, walk, IpfixCrateDecoder, V9Decoder};
use flowgen::export::{AddressFamily, ExportError, ExportProtocol, ExportStream, StreamOptions};
use flowgen::flow::{Address, Flow, Protocol, TcpFlags};

const T0_MS: u64 = 1_700_000_000_000;
const PROTOCOLS: [ExportProtocol; 2] = [ExportProtocol::Ipfix, ExportProtocol::Netflow9];

fn flow_v4(i: u32, end_ms: u64) -> Flow {
    Flow {
        start_ms: end_ms as i64 - 2_000,
        duration_ms: 2_000,
        protocol: Protocol::UDP,
        src: Address::V4(Ipv4Addr::from(0x0a00_0000 + i)),
        dst: Address::V4(Ipv4Addr::new(192, 0, 2, 1)),
        src_port: 40_000,
        dst_port: 53,
        packets: 2,
        bytes: 150,
        tcp_flags: TcpFlags(0),
        tos: 0,
        label: None,
    }
}

fn flow_v6(i: u32, end_ms: u64) -> Flow {
    Flow {
        src: Address::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16)),
        dst: Address::V6(Ipv6Addr::LOCALHOST),
        ..flow_v4(i, end_ms)
    }
}

fn token_flow(end_ms: u64) -> Flow {
    Flow {
        src: Address::Token(Arc::from("11529_47")),
        ..flow_v4(0, end_ms)
    }
}

fn stream(protocol: ExportProtocol, options: StreamOptions) -> ExportStream {
    ExportStream::new(protocol, options, T0_MS)
}

fn flows_v4(count: u32, end_ms: u64) -> Vec<Flow> {
    (0..count).map(|i| flow_v4(i, end_ms)).collect()
}

#[test]
fn ipfix_sequence_counts_data_records_before_the_message_not_templates() {
    let mut s = stream(ExportProtocol::Ipfix, StreamOptions::default());
    let mut out = Vec::new();
    let mut sequences = Vec::new();
    let mut step = |s: &mut ExportStream, flows: &[Flow], out: &mut Vec<u8>| {
        let summary = s.encode(flows, T0_MS, out);
        sequences.push(walk(out).sequence);
        summary
    };
    assert!(step(&mut s, &[], &mut out).carried_templates);
    step(&mut s, &flows_v4(5, T0_MS), &mut out);
    step(&mut s, &flows_v4(3, T0_MS), &mut out);
    s.resend_templates();
    let templates_only = step(&mut s, &[], &mut out);
    assert_eq!(
        (
            templates_only.carried_templates,
            templates_only.data_records
        ),
        (true, 0)
    );
    step(&mut s, &flows_v4(1, T0_MS), &mut out);
    step(&mut s, &flows_v4(1, T0_MS), &mut out);
    assert_eq!(sequences, [0, 0, 5, 8, 8, 9]);
    assert_eq!(s.stats().data_records, 10);
}

#[test]
fn v9_sequence_counts_export_packets_before_this_one() {
    let mut s = stream(ExportProtocol::Netflow9, StreamOptions::default());
    let mut out = Vec::new();
    let mut sequences = Vec::new();
    for flows in [vec![], flows_v4(5, T0_MS), flows_v4(3, T0_MS)] {
        s.encode_message(&flows, T0_MS, &mut out);
        sequences.push(walk(&out).sequence);
    }
    s.resend_templates();
    s.encode_message(&[], T0_MS, &mut out);
    sequences.push(walk(&out).sequence);
    s.encode_message(&flows_v4(1, T0_MS), T0_MS, &mut out);
    sequences.push(walk(&out).sequence);
    assert_eq!(sequences, [0, 1, 2, 3, 4]);
}

#[test]
fn templates_recur_on_the_timer() {
    for protocol in PROTOCOLS {
        let options = StreamOptions {
            template_refresh_s: 10,
            template_refresh_messages: 0,
            ..StreamOptions::default()
        };
        let mut s = stream(protocol, options);
        let mut out = Vec::new();
        let one = flows_v4(1, T0_MS);
        let carried: Vec<bool> = [0, 9_999, 10_000, 15_000, 19_999, 20_000, 20_001]
            .iter()
            .map(|&dt| s.encode(&one, T0_MS + dt, &mut out).carried_templates)
            .collect();
        assert_eq!(
            carried,
            [true, false, true, false, false, true, false],
            "{protocol:?}"
        );
    }
}

#[test]
fn templates_recur_every_n_messages() {
    for protocol in PROTOCOLS {
        let options = StreamOptions {
            template_refresh_s: 0,
            template_refresh_messages: 4,
            ..StreamOptions::default()
        };
        let mut s = stream(protocol, options);
        let mut out = Vec::new();
        let one = flows_v4(1, T0_MS);
        let carrying: Vec<usize> = (0..10)
            .filter(|_| s.encode(&one, T0_MS, &mut out).carried_templates)
            .collect();
        assert_eq!(carrying, [0, 4, 8], "{protocol:?}");
        assert_eq!(s.stats().template_messages, 3);
    }
}

#[test]
fn templates_go_out_again_when_asked_and_on_an_idle_timer() {
    for protocol in PROTOCOLS {
        let mut s = stream(protocol, StreamOptions::default());
        let mut out = Vec::new();
        s.encode_message(&flows_v4(1, T0_MS), T0_MS, &mut out);
        assert!(!s.templates_due(T0_MS));
        s.encode_message(&[], T0_MS, &mut out);
        assert!(out.is_empty(), "nothing due, nothing to send");
        s.resend_templates();
        assert!(
            s.encode(&flows_v4(1, T0_MS), T0_MS, &mut out)
                .carried_templates
        );
        // An idle stream still refreshes: an empty slice gives a templates-only message.
        assert!(s.templates_due(T0_MS + 60_000));
        let summary = s.encode(&[], T0_MS + 60_000, &mut out);
        assert!(summary.carried_templates && summary.data_records == 0 && !out.is_empty());
    }
}

#[test]
fn a_collector_started_late_decodes_after_the_next_refresh() {
    let options = StreamOptions {
        template_refresh_s: 5,
        template_refresh_messages: 0,
        ..Default::default()
    };
    let mut ipfix = stream(ExportProtocol::Ipfix, options.clone());
    let mut v9 = stream(ExportProtocol::Netflow9, options);
    let (mut ipfix_late, mut v9_late) = (IpfixCrateDecoder::default(), V9Decoder::default());
    let mut out = Vec::new();
    let (mut ipfix_seen, mut v9_seen) = (0, 0);
    // The collectors listen from t = 2 s; templates went out at 0 and are due at 5 s.
    for t_s in 0..12u64 {
        let now_ms = T0_MS + t_s * 1000;
        let flows = flows_v4(3, now_ms);
        ipfix.encode_message(&flows, now_ms, &mut out);
        if t_s >= 2 {
            ipfix_seen += ipfix_late.decode(&out).len();
        }
        v9.encode_message(&flows, now_ms, &mut out);
        if t_s >= 2 {
            v9_seen += v9_late.decode_late(&out).records.len();
        }
    }
    // From 5 s to 11 s: 7 messages of 3 records each decode.
    assert_eq!(ipfix_seen, 21);
    assert_eq!(v9_seen, 21);
}

#[test]
fn ipfix_timestamps_are_absolute_milliseconds() {
    let mut s = stream(ExportProtocol::Ipfix, StreamOptions::default());
    let mut f = flow_v4(1, 0);
    f.start_ms = 1_699_999_990_123;
    f.duration_ms = 4_567;
    let mut out = Vec::new();
    s.encode_message(&[f.clone()], T0_MS + 999, &mut out);
    let records = IpfixCrateDecoder::default().decode(&out);
    // Not offsets from the export time or from the exporter's start.
    assert_eq!(records[0][&152], 1_699_999_990_123);
    assert_eq!(records[0][&153], 1_699_999_994_690);
    assert_eq!(template_field_length(&out, 152), Some(8));
    assert_eq!(template_field_length(&out, 153), Some(8));
}

/// The length the first template in `message` gives element `id`.
fn template_field_length(message: &[u8], id: u16) -> Option<u16> {
    let header_len = if message[1] == 10 { 16 } else { 20 };
    let field_count = usize::from(u16::from_be_bytes([
        message[header_len + 6],
        message[header_len + 7],
    ]));
    let fields = &message[header_len + 8..header_len + 8 + 4 * field_count];
    fields
        .chunks(4)
        .find(|c| u16::from_be_bytes([c[0], c[1]]) == id)
        .map(|c| u16::from_be_bytes([c[2], c[3]]))
}

#[test]
fn counters_beyond_four_octets_survive() {
    let mut f = flow_v4(1, T0_MS);
    f.bytes = u64::MAX - 1;
    f.packets = (1 << 32) + 1;
    let mut out = Vec::new();

    stream(ExportProtocol::Ipfix, StreamOptions::default()).encode_message(
        &[f.clone()],
        T0_MS,
        &mut out,
    );
    let r = &IpfixCrateDecoder::default().decode(&out)[0];
    assert_eq!((r[&1], r[&2]), (u128::from(u64::MAX - 1), (1 << 32) + 1));
    assert_eq!(template_field_length(&out, 1), Some(8));
    assert_eq!(template_field_length(&out, 2), Some(8));

    stream(ExportProtocol::Netflow9, StreamOptions::default()).encode_message(
        &[f],
        T0_MS,
        &mut out,
    );
    let r = &V9Decoder::default().decode(&out).records[0];
    assert_eq!((r[&1], r[&2]), (u128::from(u64::MAX - 1), (1 << 32) + 1));
    assert_eq!(template_field_length(&out, 1), Some(8));
}

#[test]
fn tcp_control_bits_take_two_octets() {
    let mut f = flow_v4(1, T0_MS);
    f.protocol = Protocol::TCP;
    f.tcp_flags = TcpFlags(TcpFlags::CWR | TcpFlags::ECE | TcpFlags::SYN);
    let mut out = Vec::new();

    stream(ExportProtocol::Ipfix, StreamOptions::default()).encode_message(
        &[f.clone()],
        T0_MS,
        &mut out,
    );
    assert_eq!(template_field_length(&out, 6), Some(2));
    assert_eq!(IpfixCrateDecoder::default().decode(&out)[0][&6], 0xc2);

    stream(ExportProtocol::Netflow9, StreamOptions::default()).encode_message(
        &[f],
        T0_MS,
        &mut out,
    );
    assert_eq!(template_field_length(&out, 6), Some(2));
    let packet = V9Decoder::default().decode(&out);
    assert_eq!(packet.records[0][&6], 0xc2);
    assert_eq!(packet.tcp_flag_widths, [2]);
}

#[test]
fn no_message_exceeds_the_limit_and_each_is_filled() {
    // Runs of each family, so that set headers fall at awkward places.
    let flows: Vec<Flow> = (0..3_000u32)
        .map(|i| {
            if (i / 7) % 3 == 0 {
                flow_v6(i, T0_MS)
            } else {
                flow_v4(i, T0_MS)
            }
        })
        .collect();
    let min = StreamOptions::MIN_MESSAGE_BYTES;
    let limits = [
        min,
        min + 1,
        min + 3,
        300,
        576,
        1_400,
        1_472,
        1_500,
        8_972,
        65_535,
    ];
    for protocol in PROTOCOLS {
        for max_message_bytes in limits {
            let options = StreamOptions {
                max_message_bytes,
                template_refresh_messages: 5,
                ..Default::default()
            };
            let mut s = stream(protocol, options);
            let mut rest = &flows[..];
            let mut out = Vec::new();
            while !rest.is_empty() {
                let consumed = s.encode_message(rest, T0_MS, &mut out);
                assert!(
                    out.len() <= max_message_bytes,
                    "{protocol:?}: {} > {max_message_bytes}",
                    out.len()
                );
                rest = &rest[consumed..];
                if let Some(next) = rest.first() {
                    // The next flow did not fit: the message was as full as it could be.
                    let last_set = walk(&out).sets.last().map(|&(id, _)| id);
                    let family = if next.src.as_v4().is_some() {
                        AddressFamily::V4
                    } else {
                        AddressFamily::V6
                    };
                    let template = protocol.template(family);
                    let set_header = if last_set == Some(template.template_id) {
                        0
                    } else {
                        4
                    };
                    assert!(out.len() + set_header + template.record_len() > max_message_bytes);
                }
            }
        }
    }
}

#[test]
fn sets_carry_no_padding() {
    let flows: Vec<Flow> = (0..40u32)
        .map(|i| {
            if i % 5 == 0 {
                flow_v6(i, T0_MS)
            } else {
                flow_v4(i, T0_MS)
            }
        })
        .collect();
    for protocol in PROTOCOLS {
        let mut s = stream(
            protocol,
            StreamOptions {
                max_message_bytes: 9_000,
                ..Default::default()
            },
        );
        let mut out = Vec::new();
        assert_eq!(s.encode_message(&flows, T0_MS, &mut out), flows.len());
        let sets = walk(&out).sets;
        assert_eq!(
            sets[0],
            (
                if protocol == ExportProtocol::Ipfix {
                    2
                } else {
                    0
                },
                // Set header, then two templates of 4 octets + 14 fields of 4.
                4 + 2 * (4 + 14 * 4)
            )
        );
        let mut records = 0;
        for &(id, len) in &sets[1..] {
            let body = usize::from(len) - 4;
            assert_eq!(
                body % record_len(id),
                0,
                "set {id} of {len} octets is padded"
            );
            records += body / record_len(id);
        }
        assert_eq!(records, flows.len());
        // 8 runs of v4 and 8 single v6 flows: one set each, in order.
        assert_eq!(sets.len(), 1 + 16);
    }
}

#[test]
fn v9_uptime_wraps_and_switched_times_stay_consistent() {
    // The stream starts at T (not a whole second); the messages straddle T + 2^32 ms.
    let t_ms = T0_MS + 250;
    let boot_ms = T0_MS;
    let wrap_ms = boot_ms + (1u64 << 32);
    let mut s = ExportStream::new(ExportProtocol::Netflow9, StreamOptions::default(), t_ms);
    let mut decoder = V9Decoder::default();
    let mut out = Vec::new();
    let mut uptimes = Vec::new();
    let mut now_ms = wrap_ms - 10_000;
    while now_ms <= wrap_ms + 10_000 {
        // Ended 1.5 s ago after 3 s: some start before the wrap and end after it.
        let mut f = flow_v4(1, now_ms - 1_500);
        f.duration_ms = 3_000;
        f.start_ms = (now_ms - 4_500) as i64;
        s.encode_message(&[f.clone()], now_ms, &mut out);
        let packet = decoder.decode(&out);
        let export_ms = now_ms - now_ms % 1000;
        assert_eq!(u64::from(packet.unix_secs) * 1000, export_ms);
        assert_eq!(packet.sys_uptime_ms, (export_ms - boot_ms) as u32);
        let (first, last) = (packet.records[0][&22] as u32, packet.records[0][&21] as u32);
        // Mod 2^32 the age and the duration are what the flow says, on both sides.
        assert_eq!(
            u64::from(packet.sys_uptime_ms.wrapping_sub(last)),
            export_ms - f.end_ms() as u64
        );
        assert_eq!(last.wrapping_sub(first), 3_000);
        uptimes.push(packet.sys_uptime_ms);
        now_ms += 700;
    }
    let wraps = uptimes.windows(2).filter(|w| w[1] < w[0]).count();
    assert_eq!(wraps, 1, "sysUpTime wraps once: {uptimes:?}");
}

#[test]
fn token_flows_are_skipped_counted_and_consumed() {
    for protocol in PROTOCOLS {
        let mut s = stream(protocol, StreamOptions::default());
        let mut out = Vec::new();
        let flows = [token_flow(T0_MS), flow_v4(1, T0_MS), token_flow(T0_MS)];
        let summary = s.encode(&flows, T0_MS, &mut out);
        assert_eq!(
            (
                summary.flows_consumed,
                summary.data_records,
                summary.skipped_token_flows
            ),
            (3, 1, 2)
        );
        let summary = s.encode(&[token_flow(T0_MS)], T0_MS, &mut out);
        assert_eq!((summary.flows_consumed, summary.octets), (1, 0));
        assert!(out.is_empty());
        assert_eq!(s.stats().skipped_token_flows, 3);
        assert_eq!(s.stats().messages, 1);
    }
}

#[test]
fn flows_ending_after_the_export_time_move_back_whole() {
    let mut s = stream(ExportProtocol::Ipfix, StreamOptions::default());
    let mut out = Vec::new();
    let now_ms = T0_MS + 400;
    // Dated to end 5 s in the future.
    let f = flow_v4(1, T0_MS + 5_000);
    s.encode_message(std::slice::from_ref(&f), now_ms, &mut out);
    let r = &IpfixCrateDecoder::default().decode(&out)[0];
    assert_eq!(r[&153], u128::from(T0_MS), "ends at the export time");
    assert_eq!(
        r[&153] - r[&152],
        u128::from(f.duration_ms),
        "keeps its duration"
    );
    assert_eq!(s.stats().shifted_flows, 1);
}

#[test]
fn message_size_outside_the_workable_range_is_reported_and_clamped() {
    let tiny = StreamOptions {
        max_message_bytes: 100,
        ..StreamOptions::default()
    };
    assert!(matches!(
        tiny.validate(),
        Err(ExportError::MessageSizeOutOfRange { .. })
    ));
    assert!(StreamOptions::default().validate().is_ok());
    assert_eq!(StreamOptions::default().max_message_bytes, 1472);
    let s = ExportStream::new(ExportProtocol::Ipfix, tiny, T0_MS);
    assert_eq!(
        s.options().max_message_bytes,
        StreamOptions::MIN_MESSAGE_BYTES
    );
    // Even at the smallest size, a first message holds templates and one IPv6 record.
    for protocol in PROTOCOLS {
        let mut s = ExportStream::new(protocol, s.options().clone(), T0_MS);
        let mut out = Vec::new();
        assert_eq!(s.encode_message(&[flow_v6(1, T0_MS)], T0_MS, &mut out), 1);
    }
}
