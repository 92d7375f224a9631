//! The IPFIX message header and time fields (RFC 7011).

use super::record::{FlowTimes, MAX_RECORD_LEN};

/// IPFIX message header length, octets (RFC 7011 section 3.1).
pub(super) const HEADER_LEN: usize = 16;

/// The version number of IPFIX (RFC 7011 section 3.1).
pub(super) const VERSION: u16 = 10;

/// The header fields of one message.
pub(super) struct Header {
    /// Time the message leaves the exporter, seconds since the Unix epoch.
    pub export_time_s: u32,
    /// Data records sent in this stream and domain before this message, mod 2^32.
    pub sequence: u32,
    /// Observation domain id.
    pub observation_domain: u32,
}

/// Writes the header (RFC 7011 section 3.1) over the first 16 octets of `message`,
/// taking the length from the message itself.
pub(super) fn write_header(message: &mut [u8], header: &Header) {
    // The stream never lets a message grow past u16::MAX octets.
    let length = message.len() as u16;
    message[0..2].copy_from_slice(&VERSION.to_be_bytes());
    message[2..4].copy_from_slice(&length.to_be_bytes());
    message[4..8].copy_from_slice(&header.export_time_s.to_be_bytes());
    message[8..12].copy_from_slice(&header.sequence.to_be_bytes());
    message[12..16].copy_from_slice(&header.observation_domain.to_be_bytes());
}

/// Writes flowStartMilliseconds and flowEndMilliseconds (IE 152, 153) at `at`:
/// absolute dateTimeMilliseconds, eight octets each (RFC 7011 section 6.1.8).
pub(super) fn write_times(record: &mut [u8; MAX_RECORD_LEN], at: usize, times: FlowTimes) -> usize {
    record[at..at + 8].copy_from_slice(&times.start_ms.to_be_bytes());
    record[at + 8..at + 16].copy_from_slice(&times.end_ms.to_be_bytes());
    16
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{known_v4_flow, NOW_MS};
    use super::super::{ExportProtocol, ExportStream, StreamOptions};

    /// One IPFIX message, every octet written out by hand from RFC 7011.
    #[rustfmt::skip]
    const EXPECTED: [u8; 196] = [
        // Message header (section 3.1).
        0x00, 0x0a,             // version 10
        0x00, 0xc4,             // length 196 = 16 header + 124 template set + 56 data set
        0x65, 0x53, 0xf1, 0x00, // export time 1_700_000_000 s (NOW_MS rounded down)
        0x00, 0x00, 0x00, 0x00, // sequence 0: no data records before this message
        0x00, 0x00, 0x00, 0x2a, // observation domain 42
        // Template set (sections 3.3.2, 3.4.1): id 2, length 4 + 2 * (4 + 14 * 4) = 124.
        0x00, 0x02, 0x00, 0x7c,
        0x01, 0x00, 0x00, 0x0e, // template 256 (IPv4), 14 fields
        0x00, 0x08, 0x00, 0x04, // sourceIPv4Address, 4
        0x00, 0x0c, 0x00, 0x04, // destinationIPv4Address, 4
        0x00, 0x07, 0x00, 0x02, // sourceTransportPort, 2
        0x00, 0x0b, 0x00, 0x02, // destinationTransportPort, 2
        0x00, 0x04, 0x00, 0x01, // protocolIdentifier, 1
        0x00, 0x06, 0x00, 0x02, // tcpControlBits, 2 (RFC 7125)
        0x00, 0x05, 0x00, 0x01, // ipClassOfService, 1
        0x00, 0x20, 0x00, 0x02, // icmpTypeCodeIPv4 (32), 2
        0x00, 0x3c, 0x00, 0x01, // ipVersion (60), 1
        0x00, 0x3d, 0x00, 0x01, // flowDirection (61), 1
        0x00, 0x01, 0x00, 0x08, // octetDeltaCount, 8
        0x00, 0x02, 0x00, 0x08, // packetDeltaCount, 8
        0x00, 0x98, 0x00, 0x08, // flowStartMilliseconds (152), 8
        0x00, 0x99, 0x00, 0x08, // flowEndMilliseconds (153), 8
        0x01, 0x01, 0x00, 0x0e, // template 257 (IPv6), 14 fields
        0x00, 0x1b, 0x00, 0x10, // sourceIPv6Address (27), 16
        0x00, 0x1c, 0x00, 0x10, // destinationIPv6Address (28), 16
        0x00, 0x07, 0x00, 0x02,
        0x00, 0x0b, 0x00, 0x02,
        0x00, 0x04, 0x00, 0x01,
        0x00, 0x06, 0x00, 0x02,
        0x00, 0x05, 0x00, 0x01,
        0x00, 0x8b, 0x00, 0x02, // icmpTypeCodeIPv6 (139), 2
        0x00, 0x3c, 0x00, 0x01,
        0x00, 0x3d, 0x00, 0x01,
        0x00, 0x01, 0x00, 0x08,
        0x00, 0x02, 0x00, 0x08,
        0x00, 0x98, 0x00, 0x08,
        0x00, 0x99, 0x00, 0x08,
        // Data set (section 3.3.2): id 256, length 4 + 52, no padding.
        0x01, 0x00, 0x00, 0x38,
        0xc0, 0xa8, 0x01, 0x0a, // 192.168.1.10
        0x0a, 0x00, 0x00, 0x01, // 10.0.0.1
        0x01, 0xbb,             // port 443
        0xc8, 0x22,             // port 51234
        0x06,                   // TCP
        0x00, 0x1b,             // ACK|PSH|SYN|FIN in two octets
        0x28,                   // ToS
        0x00, 0x00,             // ICMP type/code 0: not an ICMP flow
        0x04,                   // IP version 4
        0x00,                   // direction: ingress
        0x00, 0x00, 0x06, 0x5d, 0xd0, 0x83, 0x70, 0x00, // 7_000_000_000_000 octets
        0x00, 0x00, 0x00, 0x01, 0x2a, 0x05, 0xf2, 0x00, // 5_000_000_000 packets
        0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x60, 0x30, // start 1_699_999_998_000 ms
        0x00, 0x00, 0x01, 0x8b, 0xcf, 0xe5, 0x65, 0x02, // end 1_699_999_999_234 ms
    ];

    #[test]
    fn one_ipv4_flow_encodes_to_the_literal_bytes() {
        let options = StreamOptions {
            observation_domain: 42,
            ..StreamOptions::default()
        };
        let mut stream = ExportStream::new(ExportProtocol::Ipfix, options, NOW_MS - 10_000);
        let mut out = Vec::new();
        assert_eq!(
            stream.encode_message(&[known_v4_flow()], NOW_MS, &mut out),
            1
        );
        assert_eq!(out, EXPECTED);
    }
}
