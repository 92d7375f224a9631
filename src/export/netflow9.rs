//! The NetFlow v9 packet header and time fields (RFC 3954).
//!
//! sysUpTime zero is the whole second in which the stream was created, and the
//! header's sysUpTime is taken at the whole second `unix_secs` names, so a
//! collector's `unix_secs * 1000 - sysUpTime` recovers the zero exactly and
//! FIRST/LAST_SWITCHED turn back into the flow's own milliseconds.
//!
//! After 2^32 ms (about 49.7 days) sysUpTime wraps, and FIRST/LAST_SWITCHED wrap
//! with it. A collector that subtracts mod 2^32 reads every flow correctly across
//! the wrap; one that adds FIRST_SWITCHED to the derived boot time misplaces, for
//! the few seconds around each wrap, flows that began before it (as it would with
//! a router). A flow that began before sysUpTime zero, which no router could
//! report, is cut to start there.

use super::record::{FlowTimes, MAX_RECORD_LEN};

/// NetFlow v9 packet header length, octets (RFC 3954 section 5.1).
pub(super) const HEADER_LEN: usize = 20;

/// The version number of NetFlow v9 (RFC 3954 section 5.1).
pub(super) const VERSION: u16 = 9;

/// The header fields of one export packet.
pub(super) struct Header {
    /// Template and data records in the packet (RFC 3954 section 5.1 "Count").
    pub record_count: u16,
    /// Milliseconds since sysUpTime zero, mod 2^32.
    pub sys_uptime_ms: u32,
    /// Time the packet leaves the exporter, seconds since the Unix epoch.
    pub unix_secs: u32,
    /// Export packets sent in this stream before this one, mod 2^32.
    pub sequence: u32,
    /// Source id (the observation domain).
    pub source_id: u32,
}

/// Writes the header (RFC 3954 section 5.1) over the first 20 octets of `packet`.
pub(super) fn write_header(packet: &mut [u8], header: &Header) {
    packet[0..2].copy_from_slice(&VERSION.to_be_bytes());
    packet[2..4].copy_from_slice(&header.record_count.to_be_bytes());
    packet[4..8].copy_from_slice(&header.sys_uptime_ms.to_be_bytes());
    packet[8..12].copy_from_slice(&header.unix_secs.to_be_bytes());
    packet[12..16].copy_from_slice(&header.sequence.to_be_bytes());
    packet[16..20].copy_from_slice(&header.source_id.to_be_bytes());
}

/// sysUpTime at Unix time `t_ms`: ms since `boot_ms`, wrapping after 2^32 ms
/// like a router's 32-bit uptime counter (about 49.7 days).
pub(super) fn uptime_ms(boot_ms: u64, t_ms: u64) -> u32 {
    // Truncation is the wrap.
    t_ms.saturating_sub(boot_ms) as u32
}

/// Writes FIRST_SWITCHED (22) and LAST_SWITCHED (21) at `at`: the sysUpTime of
/// the first and last packet, four octets each (RFC 3954 section 8).
///
/// Both wrap with sysUpTime, so `sysUpTime - LAST_SWITCHED` computed mod 2^32 is
/// the flow's age at export on either side of a wrap.
pub(super) fn write_times(
    record: &mut [u8; MAX_RECORD_LEN],
    at: usize,
    times: FlowTimes,
    boot_ms: u64,
) -> usize {
    record[at..at + 4].copy_from_slice(&uptime_ms(boot_ms, times.start_ms).to_be_bytes());
    record[at + 4..at + 8].copy_from_slice(&uptime_ms(boot_ms, times.end_ms).to_be_bytes());
    8
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::{known_v4_flow, NOW_MS};
    use super::super::{ExportProtocol, ExportStream, StreamOptions};
    use super::uptime_ms;

    /// The stream starts 10_000 s before `NOW_MS`, on a whole second.
    const BOOT_MS: u64 = 1_699_990_000_000;

    /// One NetFlow v9 export packet, every octet written out by hand from RFC 3954.
    #[rustfmt::skip]
    const EXPECTED: [u8; 192] = [
        // Packet header (section 5.1).
        0x00, 0x09,             // version 9
        0x00, 0x03,             // count: 2 template records + 1 data record
        0x00, 0x98, 0x96, 0x80, // sysUpTime 10_000_000 ms (1_700_000_000_000 - BOOT_MS)
        0x65, 0x53, 0xf1, 0x00, // unix_secs 1_700_000_000
        0x00, 0x00, 0x00, 0x00, // sequence 0: no packets before this one
        0x00, 0x00, 0x00, 0x2a, // source id 42
        // Template flowset (section 5.2): id 0, length 4 + 2 * (4 + 14 * 4) = 124.
        0x00, 0x00, 0x00, 0x7c,
        0x01, 0x02, 0x00, 0x0e, // template 258 (IPv4), 14 fields
        0x00, 0x08, 0x00, 0x04, // IPV4_SRC_ADDR, 4
        0x00, 0x0c, 0x00, 0x04, // IPV4_DST_ADDR, 4
        0x00, 0x07, 0x00, 0x02, // L4_SRC_PORT, 2
        0x00, 0x0b, 0x00, 0x02, // L4_DST_PORT, 2
        0x00, 0x04, 0x00, 0x01, // PROTOCOL, 1
        0x00, 0x06, 0x00, 0x02, // TCP_FLAGS, 2
        0x00, 0x05, 0x00, 0x01, // SRC_TOS, 1
        0x00, 0x20, 0x00, 0x02, // ICMP_TYPE (32), 2
        0x00, 0x3c, 0x00, 0x01, // IP_PROTOCOL_VERSION (60), 1
        0x00, 0x3d, 0x00, 0x01, // DIRECTION (61), 1
        0x00, 0x01, 0x00, 0x08, // IN_BYTES, 8
        0x00, 0x02, 0x00, 0x08, // IN_PKTS, 8
        0x00, 0x16, 0x00, 0x04, // FIRST_SWITCHED (22), 4
        0x00, 0x15, 0x00, 0x04, // LAST_SWITCHED (21), 4
        0x01, 0x03, 0x00, 0x0e, // template 259 (IPv6), 14 fields
        0x00, 0x1b, 0x00, 0x10, // IPV6_SRC_ADDR (27), 16
        0x00, 0x1c, 0x00, 0x10, // IPV6_DST_ADDR (28), 16
        0x00, 0x07, 0x00, 0x02,
        0x00, 0x0b, 0x00, 0x02,
        0x00, 0x04, 0x00, 0x01,
        0x00, 0x06, 0x00, 0x02,
        0x00, 0x05, 0x00, 0x01,
        0x00, 0x20, 0x00, 0x02, // ICMP_TYPE (32) for ICMPv6 too: v9 has no other
        0x00, 0x3c, 0x00, 0x01,
        0x00, 0x3d, 0x00, 0x01,
        0x00, 0x01, 0x00, 0x08,
        0x00, 0x02, 0x00, 0x08,
        0x00, 0x16, 0x00, 0x04,
        0x00, 0x15, 0x00, 0x04,
        // Data flowset (section 5.3): id 258, length 4 + 44, no padding.
        0x01, 0x02, 0x00, 0x30,
        0xc0, 0xa8, 0x01, 0x0a, // 192.168.1.10
        0x0a, 0x00, 0x00, 0x01, // 10.0.0.1
        0x01, 0xbb,             // port 443
        0xc8, 0x22,             // port 51234
        0x06,                   // TCP
        0x00, 0x1b,             // ACK|PSH|SYN|FIN
        0x28,                   // ToS
        0x00, 0x00,             // ICMP_TYPE 0: not an ICMP flow
        0x04,                   // IP version 4
        0x00,                   // direction: ingress
        0x00, 0x00, 0x06, 0x5d, 0xd0, 0x83, 0x70, 0x00, // 7_000_000_000_000 octets
        0x00, 0x00, 0x00, 0x01, 0x2a, 0x05, 0xf2, 0x00, // 5_000_000_000 packets
        0x00, 0x98, 0x8e, 0xb0, // FIRST_SWITCHED 9_998_000 (start - BOOT_MS)
        0x00, 0x98, 0x93, 0x82, // LAST_SWITCHED 9_999_234 (end - BOOT_MS)
    ];

    #[test]
    fn one_ipv4_flow_encodes_to_the_literal_bytes() {
        let options = StreamOptions {
            observation_domain: 42,
            ..StreamOptions::default()
        };
        let mut stream = ExportStream::new(ExportProtocol::Netflow9, options, BOOT_MS + 400);
        let mut out = Vec::new();
        assert_eq!(
            stream.encode_message(&[known_v4_flow()], NOW_MS, &mut out),
            1
        );
        assert_eq!(out, EXPECTED);
    }

    #[test]
    fn uptime_wraps_after_two_to_the_32_ms() {
        let wrap = 1u64 << 32;
        assert_eq!(uptime_ms(BOOT_MS, BOOT_MS + wrap - 1), u32::MAX);
        assert_eq!(uptime_ms(BOOT_MS, BOOT_MS + wrap), 0);
        assert_eq!(uptime_ms(BOOT_MS, BOOT_MS + wrap + 7), 7);
        assert_eq!(uptime_ms(BOOT_MS, BOOT_MS - 1), 0);
    }
}
