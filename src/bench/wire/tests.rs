use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;

use super::*;
use crate::export::{ExportProtocol, ExportStream, StreamOptions};
use crate::flow::{Address, Flow, Protocol, TcpFlags};

const NOW_MS: u64 = 1_700_000_000_500;

fn exporter() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

fn flow(i: u32) -> Flow {
    let (src, dst) = if i % 5 == 0 {
        (
            Address::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16)),
            Address::V6(Ipv6Addr::LOCALHOST),
        )
    } else {
        (
            Address::V4(Ipv4Addr::from(0x0a00_0000 | i)),
            Address::V4(Ipv4Addr::new(192, 0, 2, 1)),
        )
    };
    Flow {
        start_ms: NOW_MS as i64 - 5_000,
        duration_ms: 1_000,
        protocol: Protocol::TCP,
        src,
        dst,
        src_port: i as u16,
        dst_port: 443,
        packets: 3,
        bytes: 180,
        tcp_flags: TcpFlags(0x1b),
        tos: 0,
        label: None,
    }
}

/// Encodes `flows` into as many messages as they need.
fn messages(protocol: ExportProtocol, flows: &[Flow]) -> Vec<Vec<u8>> {
    let mut stream = ExportStream::new(protocol, StreamOptions::default(), NOW_MS);
    let mut out = Vec::new();
    let mut rest = flows;
    while !rest.is_empty() {
        let mut message = Vec::new();
        let taken = stream.encode_message(rest, NOW_MS, &mut message);
        rest = &rest[taken..];
        out.push(message);
    }
    out
}

/// A hand-written IPFIX message (RFC 7011): one template of sourceIPv4Address (4)
/// and sourceTransportPort (2), then a data set of two 6-octet records and two
/// octets of padding.
#[rustfmt::skip]
const LITERAL: [u8; 50] = [
    0x00, 0x0a, 0x00, 0x32,             // version 10, length 50
    0x65, 0x53, 0xf1, 0x00,             // export time
    0x00, 0x00, 0x00, 0x07,             // sequence 7
    0x00, 0x00, 0x00, 0x01,             // observation domain 1
    0x00, 0x02, 0x00, 0x10,             // template set, 16 octets
    0x01, 0x00, 0x00, 0x02,             // template 256, two fields
    0x00, 0x08, 0x00, 0x04,             // sourceIPv4Address, 4
    0x00, 0x07, 0x00, 0x02,             // sourceTransportPort, 2
    0x01, 0x00, 0x00, 0x12,             // data set 256, 18 octets
    0xc0, 0x00, 0x02, 0x01, 0x01, 0xbb, // 192.0.2.1:443
    0xc0, 0x00, 0x02, 0x02, 0x00, 0x35, // 192.0.2.2:53
    0x00, 0x00,                         // padding
];

#[test]
fn a_literal_message_counts_its_records() {
    let mut counter = WireCounter::new();
    let count = counter.count(exporter(), &LITERAL).unwrap();
    assert_eq!(
        count,
        MessageCount {
            data_records: 2,
            template_records: 1,
            unknown_template_sets: 0,
            sequence_gap: 0,
        }
    );
}

#[test]
fn data_before_its_template_is_counted_as_unknown() {
    let data_only: Vec<u8> = [&LITERAL[..16], &LITERAL[32..]].concat();
    let mut message = data_only.clone();
    message[2..4].copy_from_slice(&(data_only.len() as u16).to_be_bytes());
    let count = WireCounter::new().count(exporter(), &message).unwrap();
    assert_eq!(count.data_records, 0);
    assert_eq!(count.unknown_template_sets, 1);
}

#[test]
fn encoded_streams_count_back_to_their_flows() {
    let flows: Vec<Flow> = (0..5_000).map(flow).collect();
    for protocol in [ExportProtocol::Ipfix, ExportProtocol::Netflow9] {
        let mut counter = WireCounter::new();
        let mut total = MessageCount::default();
        for message in messages(protocol, &flows) {
            let count = counter.count(exporter(), &message).unwrap();
            total.data_records += count.data_records;
            total.template_records += count.template_records;
            total.sequence_gap += count.sequence_gap;
            total.unknown_template_sets += count.unknown_template_sets;
        }
        assert_eq!(total.data_records, 5_000, "{protocol:?}");
        assert_eq!(total.unknown_template_sets, 0, "{protocol:?}");
        assert_eq!(total.sequence_gap, 0, "{protocol:?}");
        assert!(total.template_records >= 2, "{protocol:?}");
    }
}

#[test]
fn a_lost_message_shows_as_a_sequence_gap() {
    let flows: Vec<Flow> = (1..=400).map(|i| flow(i * 5 + 1)).collect();
    for (protocol, expected_gap) in [
        (ExportProtocol::Ipfix, None),
        (ExportProtocol::Netflow9, Some(1)),
    ] {
        let all = messages(protocol, &flows);
        assert!(all.len() >= 3);
        let mut counter = WireCounter::new();
        counter.count(exporter(), &all[0]).unwrap();
        let mut witness = WireCounter::new();
        witness.count(exporter(), &all[0]).unwrap();
        let lost = witness.count(exporter(), &all[1]).unwrap();
        assert!(lost.data_records > 0);
        let after = counter.count(exporter(), &all[2]).unwrap();
        // IPFIX counts records, v9 packets.
        let expected = expected_gap.unwrap_or(lost.data_records);
        assert_eq!(after.sequence_gap, expected, "{protocol:?}");
    }
}

#[test]
fn streams_are_kept_apart_by_exporter() {
    let flows: Vec<Flow> = (1..=100).map(|i| flow(i * 5 + 1)).collect();
    let all = messages(ExportProtocol::Ipfix, &flows);
    let mut counter = WireCounter::new();
    let first = counter.count(exporter(), &all[0]).unwrap();
    // Templates learnt from one exporter do not decode another's data.
    let mut data_only = all[0].clone();
    let template_set_len = usize::from(u16::from_be_bytes([data_only[18], data_only[19]]));
    data_only.drain(16..16 + template_set_len);
    let len = data_only.len() as u16;
    data_only[2..4].copy_from_slice(&len.to_be_bytes());
    let other = counter
        .count("127.0.0.1:40001".parse().unwrap(), &data_only)
        .unwrap();
    assert_eq!((other.data_records, other.unknown_template_sets), (0, 1));
    let same = counter.count(exporter(), &data_only).unwrap();
    assert_eq!(
        (same.data_records, same.unknown_template_sets),
        (first.data_records, 0)
    );
    assert!(first.data_records > 0);
}

#[test]
fn malformed_messages_are_refused() {
    let mut counter = WireCounter::new();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (LITERAL[..10].to_vec(), "shorter"),
        ([&[0x00, 0x05], &LITERAL[2..]].concat(), "version 5"),
        (LITERAL[..48].to_vec(), "header says 50"),
        (
            {
                let mut m = LITERAL.to_vec();
                m[48] = 1;
                m
            },
            "not whole records",
        ),
        (
            {
                let mut m = LITERAL.to_vec();
                m[35] = 0x30;
                m
            },
            "has length 48",
        ),
        (
            {
                let mut m = LITERAL.to_vec();
                m[16..18].copy_from_slice(&[0, 4]);
                m
            },
            "reserved",
        ),
        (
            {
                let mut m = LITERAL.to_vec();
                m[20..22].copy_from_slice(&[0, 9]);
                m
            },
            "template record",
        ),
    ];
    for (message, expected) in cases {
        let err = counter.count(exporter(), &message).unwrap_err().to_string();
        assert!(err.contains(expected), "{err} should say {expected}");
    }
}

#[test]
fn netflow9_counts_must_agree_with_the_packet() {
    let flows: Vec<Flow> = (0..10).map(flow).collect();
    let mut message = messages(ExportProtocol::Netflow9, &flows).remove(0);
    message[2..4].copy_from_slice(&99u16.to_be_bytes());
    let err = WireCounter::new().count(exporter(), &message).unwrap_err();
    assert!(matches!(err, WireError::Count { header: 99, .. }), "{err}");
}

#[test]
fn variable_length_records_are_walked() {
    #[rustfmt::skip]
    let message: Vec<u8> = vec![
        0x00, 0x0a, 0x00, 0x2c, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
        0x00, 0x02, 0x00, 0x0c,             // template set, 12 octets
        0x01, 0x01, 0x00, 0x01,             // template 257, one field
        0x00, 0x52, 0xff, 0xff,             // interfaceName, variable length
        0x01, 0x01, 0x00, 0x10,             // data set 257, 16 octets
        0x03, b'e', b't', b'h',             // "eth"
        0xff, 0x00, 0x02, b'l', b'o',       // "lo" in the three-octet form
        0x00, 0x00, 0x00,                   // three empty strings
    ];
    let count = WireCounter::new().count(exporter(), &message).unwrap();
    assert_eq!(count.data_records, 5);
    let mut cut = message.clone();
    cut[37] = 0x09; // "lo" claims 9 octets: runs past the set
    assert!(WireCounter::new().count(exporter(), &cut).is_err());
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut counter = WireCounter::new();
        let _ = counter.count(exporter(), &bytes);
        let mut ipfix = bytes.clone();
        if ipfix.len() >= 16 {
            ipfix[0..2].copy_from_slice(&[0, 10]);
            let len = ipfix.len() as u16;
            ipfix[2..4].copy_from_slice(&len.to_be_bytes());
            let _ = counter.count(exporter(), &ipfix);
            ipfix[0..2].copy_from_slice(&[0, 9]);
            let _ = counter.count(exporter(), &ipfix);
        }
    }
}
