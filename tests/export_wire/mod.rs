//! Test-side readers for what the encoders write: a small structural walk of
//! headers and sets, and adapters over the independent decoders (`ipfix`,
//! `netflow_parser`) that turn each data record into element id -> value.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::IpAddr;

use netflow_parser::variable_versions::field_value::{DataNumber, DurationValue, FieldValue};
use netflow_parser::variable_versions::v9::FlowSetBody;
use netflow_parser::{NetflowPacket, NetflowParser};

/// One data record: information element id -> value (addresses as integers).
pub type Record = BTreeMap<u16, u128>;

/// The header and set layout of one message, read straight from the octets.
#[derive(Debug, Clone)]
pub struct Walk {
    pub version: u16,
    /// IPFIX length, or v9 record count.
    pub length_or_count: u16,
    /// v9 sysUpTime; 0 for IPFIX.
    pub sys_uptime_ms: u32,
    pub export_time_s: u32,
    pub sequence: u32,
    pub domain: u32,
    /// (set id, set length) in order.
    pub sets: Vec<(u16, u16)>,
}

impl Walk {
    pub fn carries_templates(&self) -> bool {
        self.sets.iter().any(|&(id, _)| id == 0 || id == 2)
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Walks a message's header and sets, asserting that the sets tile it exactly.
pub fn walk(message: &[u8]) -> Walk {
    let version = be16(message, 0);
    let (header_len, walk) = match version {
        10 => (
            16,
            Walk {
                version,
                length_or_count: be16(message, 2),
                sys_uptime_ms: 0,
                export_time_s: be32(message, 4),
                sequence: be32(message, 8),
                domain: be32(message, 12),
                sets: Vec::new(),
            },
        ),
        9 => (
            20,
            Walk {
                version,
                length_or_count: be16(message, 2),
                sys_uptime_ms: be32(message, 4),
                export_time_s: be32(message, 8),
                sequence: be32(message, 12),
                domain: be32(message, 16),
                sets: Vec::new(),
            },
        ),
        other => panic!("unexpected version {other}"),
    };
    if version == 10 {
        assert_eq!(
            usize::from(walk.length_or_count),
            message.len(),
            "IPFIX length field"
        );
    }
    let mut walk = walk;
    let mut at = header_len;
    while at < message.len() {
        assert!(at + 4 <= message.len(), "truncated set header at {at}");
        let (id, len) = (be16(message, at), be16(message, at + 2));
        assert!(len >= 4, "set length {len} at {at}");
        walk.sets.push((id, len));
        at += usize::from(len);
    }
    assert_eq!(at, message.len(), "sets overrun the message");
    walk
}

/// Record length of each data set id, octets, as the templates define them.
pub fn record_len(set_id: u16) -> usize {
    match set_id {
        // Addresses, 28 octets of ports to counters, 16 (IPFIX) or 8 (v9) of times.
        256 => 8 + 28 + 16,
        257 => 32 + 28 + 16,
        258 => 8 + 28 + 8,
        259 => 32 + 28 + 8,
        other => panic!("unknown data set id {other}"),
    }
}

fn address(text: &str) -> u128 {
    match text.parse::<IpAddr>().expect("decoder printed an address") {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// Decodes IPFIX messages with the `ipfix` crate, keeping template state across calls.
#[derive(Default)]
pub struct IpfixCrateDecoder {
    consumer: Option<ipfix::IpfixConsumer>,
}

impl IpfixCrateDecoder {
    /// The data records of one message, in order.
    pub fn decode(&mut self, message: &[u8]) -> Vec<Record> {
        let consumer = self.consumer.get_or_insert_with(ipfix::IpfixConsumer::new);
        let printer = ipfix::IpfixPrinter::new();
        let datasets = consumer
            .parse_message(message)
            .expect("ipfix crate parses the message");
        let mut records = Vec::new();
        for dataset in datasets {
            for json in printer.print_json(dataset) {
                let object: serde_json::Map<String, serde_json::Value> =
                    serde_json::from_str(&json).expect("ipfix crate prints JSON");
                let mut record = Record::new();
                for (name, value) in object {
                    let id = ipfix_element_id(&name);
                    let value = match value {
                        serde_json::Value::String(s) => address(&s),
                        serde_json::Value::Number(n) => u128::from(n.as_u64().expect("u64")),
                        other => panic!("unexpected JSON value {other}"),
                    };
                    record.insert(id, value);
                }
                records.push(record);
            }
        }
        records
    }
}

fn ipfix_element_id(name: &str) -> u16 {
    match name {
        "octetDeltaCount" => 1,
        "packetDeltaCount" => 2,
        "protocolIdentifier" => 4,
        "classOfServiceIPv4" => 5,
        "tcpControlBits" => 6,
        "sourceTransportPort" => 7,
        "sourceIPv4Address" => 8,
        "destinationTransportPort" => 11,
        "destinationIPv4Address" => 12,
        "sourceIPv6Address" => 27,
        "destinationIPv6Address" => 28,
        "icmpTypeCodeIPv4" => 32,
        "ipVersion" => 60,
        "flowDirection" => 61,
        "icmpTypeCodeIPv6" => 139,
        "flowStartMilliSeconds" => 152,
        "flowEndMilliSeconds" => 153,
        other => panic!("unexpected IPFIX element {other}"),
    }
}

/// One v9 packet as `netflow_parser` decodes it.
pub struct V9Packet {
    pub sys_uptime_ms: u32,
    pub unix_secs: u32,
    pub sequence: u32,
    pub source_id: u32,
    pub count: u16,
    pub records: Vec<Record>,
    /// (element id, wire width) of every TCP_FLAGS value seen.
    pub tcp_flag_widths: Vec<u8>,
}

/// Decodes NetFlow v9 packets with `netflow_parser`, keeping template state.
#[derive(Default)]
pub struct V9Decoder {
    parser: NetflowParser,
}

impl V9Decoder {
    /// Decodes one export packet whose templates the decoder has seen.
    pub fn decode(&mut self, packet: &[u8]) -> V9Packet {
        self.decode_inner(packet, false)
    }

    /// Decodes one export packet, dropping data sets whose template is unknown,
    /// as a collector that started after the exporter does.
    pub fn decode_late(&mut self, packet: &[u8]) -> V9Packet {
        self.decode_inner(packet, true)
    }

    fn decode_inner(&mut self, packet: &[u8], late: bool) -> V9Packet {
        let result = self.parser.parse_bytes(packet);
        assert!(result.error.is_none(), "netflow_parser: {:?}", result.error);
        assert_eq!(result.packets.len(), 1);
        let Some(NetflowPacket::V9(v9)) = result.packets.into_iter().next() else {
            panic!("not a v9 packet");
        };
        let mut out = V9Packet {
            sys_uptime_ms: v9.header.sys_up_time,
            unix_secs: v9.header.unix_secs,
            sequence: v9.header.sequence_number,
            source_id: v9.header.source_id,
            count: v9.header.count,
            records: Vec::new(),
            tcp_flag_widths: Vec::new(),
        };
        for flowset in v9.flowsets {
            match flowset.body {
                FlowSetBody::Data(data) => {
                    for fields in data.fields {
                        let mut record = Record::new();
                        for (field, value) in fields {
                            if let FieldValue::TcpControlBits(_, width) = value {
                                out.tcp_flag_widths.push(width);
                            }
                            record.insert(u16::from(field), field_value(&value));
                        }
                        out.records.push(record);
                    }
                }
                FlowSetBody::Template(_) => {}
                FlowSetBody::NoTemplate(_) if late => {}
                FlowSetBody::NoTemplate(info) => panic!("data before its template: {info:?}"),
                other => panic!("unexpected flowset {other:?}"),
            }
        }
        out
    }
}

fn field_value(value: &FieldValue) -> u128 {
    match value {
        FieldValue::DataNumber(n) => data_number(n),
        FieldValue::Ip4Addr(a) => u128::from(u32::from(*a)),
        FieldValue::Ip6Addr(a) => u128::from(*a),
        FieldValue::ProtocolType(p) => u128::from(u8::from(*p)),
        FieldValue::TcpControlBits(bits, _) => u128::from(u16::from(*bits)),
        FieldValue::Duration(DurationValue::Millis { value, .. }) => u128::from(*value),
        FieldValue::Vec(bytes) => bytes.iter().fold(0u128, |acc, &b| acc << 8 | u128::from(b)),
        other => panic!("unexpected field value {other:?}"),
    }
}

fn data_number(n: &DataNumber) -> u128 {
    match n {
        DataNumber::U8(v) => u128::from(*v),
        DataNumber::U16(v) => u128::from(*v),
        DataNumber::U24(v) | DataNumber::U32(v) => u128::from(*v),
        DataNumber::U64(v) => u128::from(*v),
        DataNumber::U128(v) => *v,
        other => panic!("unexpected signed or raw number {other:?}"),
    }
}
