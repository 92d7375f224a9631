//! One flow as the fields every template shares: its addresses, the 28 octets of
//! ports, protocol, flags, ToS, ICMP type/code, IP version, direction and
//! counters, and its clamped start and end times.

use super::template::AddressFamily;
use crate::flow::{Address, Flow};

/// The longest data record of any layout (IPFIX IPv6), octets.
pub(super) const MAX_RECORD_LEN: usize = 76;

/// Source and destination address in network byte order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Addresses {
    /// Both addresses IPv4.
    V4([u8; 4], [u8; 4]),
    /// Both addresses IPv6 (an IPv4 one among them mapped to `::ffff:a.b.c.d`).
    V6([u8; 16], [u8; 16]),
}

impl Addresses {
    /// The addresses of a flow, or `None` when either is an anonymised token.
    ///
    /// A flow with one IPv4 and one IPv6 address goes out under the IPv6 template
    /// with the IPv4 address mapped (RFC 4291 section 2.5.5.2), since no template
    /// mixes families.
    pub(super) fn of(flow: &Flow) -> Option<Addresses> {
        match (&flow.src, &flow.dst) {
            (Address::V4(src), Address::V4(dst)) => Some(Addresses::V4(src.octets(), dst.octets())),
            (Address::Token(_), _) | (_, Address::Token(_)) => None,
            (src, dst) => Some(Addresses::V6(v6_octets(src)?, v6_octets(dst)?)),
        }
    }

    /// The family, and so the template, these addresses go out under.
    pub(super) fn family(&self) -> AddressFamily {
        match self {
            Addresses::V4(..) => AddressFamily::V4,
            Addresses::V6(..) => AddressFamily::V6,
        }
    }

    /// Writes source then destination at the front of `record`; returns octets written.
    pub(super) fn write(&self, record: &mut [u8; MAX_RECORD_LEN]) -> usize {
        match self {
            Addresses::V4(src, dst) => {
                record[0..4].copy_from_slice(src);
                record[4..8].copy_from_slice(dst);
                8
            }
            Addresses::V6(src, dst) => {
                record[0..16].copy_from_slice(src);
                record[16..32].copy_from_slice(dst);
                32
            }
        }
    }
}

fn v6_octets(address: &Address) -> Option<[u8; 16]> {
    match address {
        Address::V4(a) => Some(a.to_ipv6_mapped().octets()),
        Address::V6(a) => Some(a.octets()),
        Address::Token(_) => None,
    }
}

/// flowDirection (IANA IE 61, v9 DIRECTION) 0: observed where the packets
/// entered, as an ingress-configured router reports it.
const DIRECTION_INGRESS: u8 = 0;

/// The fields between addresses and times, in template order: source port,
/// destination port, protocol, tcpControlBits (two octets), ToS, ICMP type and
/// code (two octets), IP version, flow direction, octet and packet delta counts
/// (eight octets each). Returns the octets written after `at`.
///
/// An ICMP or ICMPv6 flow carries `type * 256 + code` both in the ICMP element
/// and in the destination port, as routers export it: collectors read it from
/// one or the other (nfcapd 1.7.1 takes it from ICMP_TYPE over v9 and from the
/// port over IPFIX). Other flows carry 0 in the ICMP element.
pub(super) fn write_common(
    flow: &Flow,
    family: AddressFamily,
    record: &mut [u8; MAX_RECORD_LEN],
    at: usize,
) -> usize {
    let r = &mut record[at..at + 28];
    r[0..2].copy_from_slice(&flow.src_port.to_be_bytes());
    r[2..4].copy_from_slice(&flow.dst_port.to_be_bytes());
    r[4] = flow.protocol.0;
    r[5..7].copy_from_slice(&u16::from(flow.tcp_flags.0).to_be_bytes());
    r[7] = flow.tos;
    r[8..10].copy_from_slice(&icmp_type_code(flow).to_be_bytes());
    r[10] = match family {
        AddressFamily::V4 => 4,
        AddressFamily::V6 => 6,
    };
    r[11] = DIRECTION_INGRESS;
    r[12..20].copy_from_slice(&flow.bytes.to_be_bytes());
    r[20..28].copy_from_slice(&flow.packets.to_be_bytes());
    28
}

/// ICMP type and code as `type * 256 + code` for ICMP and ICMPv6 flows (which
/// [`Flow`] keeps in the destination port), 0 for every other protocol.
fn icmp_type_code(flow: &Flow) -> u16 {
    if flow.protocol.is_icmp() {
        flow.dst_port
    } else {
        0
    }
}

/// A flow's start and end after clamping, Unix ms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FlowTimes {
    /// First packet.
    pub start_ms: u64,
    /// Last packet.
    pub end_ms: u64,
    /// Whether the flow ended after the export time and was moved back.
    pub shifted: bool,
}

impl FlowTimes {
    /// Clamps a flow into `[floor_ms, export_ms]` so that start <= end <= export time.
    ///
    /// A flow that ends after the export time (a generator that dates flows ahead,
    /// a replay running early) is moved back whole so that it ends at the export
    /// time: its duration survives, which matters more to collectors than a start
    /// a little early. What still falls before `floor_ms` (before the epoch, or in
    /// v9 before sysUpTime zero) is cut off at `floor_ms`.
    pub(super) fn clamp(flow: &Flow, export_ms: u64, floor_ms: u64) -> FlowTimes {
        let export_ms = i128::from(export_ms);
        let floor_ms = i128::from(floor_ms).min(export_ms);
        let mut start = i128::from(flow.start_ms);
        let mut end = start + i128::from(flow.duration_ms);
        let shifted = end > export_ms;
        if shifted {
            start -= end - export_ms;
            end = export_ms;
        }
        start = start.max(floor_ms);
        end = end.max(start);
        // Both now lie in [floor_ms, export_ms], which came from u64 values.
        FlowTimes {
            start_ms: start as u64,
            end_ms: end as u64,
            shifted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Protocol, TcpFlags};
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::sync::Arc;

    fn flow(start_ms: i64, duration_ms: u64) -> Flow {
        Flow {
            start_ms,
            duration_ms,
            protocol: Protocol::TCP,
            src: Address::V4(Ipv4Addr::new(10, 0, 0, 1)),
            dst: Address::V4(Ipv4Addr::new(10, 0, 0, 2)),
            src_port: 1,
            dst_port: 2,
            packets: 1,
            bytes: 40,
            tcp_flags: TcpFlags(0),
            tos: 0,
            label: None,
        }
    }

    #[test]
    fn past_flows_keep_their_times() {
        let t = FlowTimes::clamp(&flow(1_000, 500), 10_000, 0);
        assert_eq!((t.start_ms, t.end_ms, t.shifted), (1_000, 1_500, false));
    }

    #[test]
    fn future_flows_move_back_whole() {
        let t = FlowTimes::clamp(&flow(9_800, 500), 10_000, 0);
        assert_eq!((t.start_ms, t.end_ms, t.shifted), (9_500, 10_000, true));
    }

    #[test]
    fn times_before_the_floor_are_cut() {
        let t = FlowTimes::clamp(&flow(-5, 10), 10_000, 0);
        assert_eq!((t.start_ms, t.end_ms), (0, 5));
        let t = FlowTimes::clamp(&flow(100, 10), 10_000, 5_000);
        assert_eq!((t.start_ms, t.end_ms), (5_000, 5_000));
        let t = FlowTimes::clamp(&flow(i64::MAX, u64::MAX), 10_000, 0);
        assert_eq!((t.start_ms, t.end_ms), (0, 10_000));
    }

    #[test]
    fn icmp_type_and_code_ride_in_the_icmp_element_and_the_port() {
        let mut f = flow(0, 0);
        f.protocol = Protocol::ICMPV6;
        f.src_port = 0;
        f.dst_port = 128 * 256 + 3;
        let mut record = [0xffu8; MAX_RECORD_LEN];
        assert_eq!(write_common(&f, AddressFamily::V6, &mut record, 32), 28);
        #[rustfmt::skip]
        let expected: [u8; 28] = [
            0x00, 0x00,             // source port 0
            0x80, 0x03,             // destination port: type 128, code 3
            0x3a,                   // ICMPv6 (58)
            0x00, 0x00,             // no TCP flags
            0x00,                   // ToS
            0x80, 0x03,             // icmpTypeCodeIPv6: type 128, code 3
            0x06,                   // IP version 6
            0x00,                   // direction: ingress
            0, 0, 0, 0, 0, 0, 0, 40, // 40 octets
            0, 0, 0, 0, 0, 0, 0, 1,  // 1 packet
        ];
        assert_eq!(record[32..60], expected);

        // A UDP flow keeps its port and carries no ICMP type.
        f.protocol = Protocol::UDP;
        write_common(&f, AddressFamily::V4, &mut record, 8);
        assert_eq!(record[10..12], [0x80, 0x03]);
        assert_eq!(record[16..20], [0x00, 0x00, 0x04, 0x00]);
    }

    #[test]
    fn mixed_families_map_ipv4_into_ipv6_and_tokens_are_refused() {
        let mut f = flow(0, 0);
        f.dst = Address::V6(Ipv6Addr::LOCALHOST);
        let Some(Addresses::V6(src, _)) = Addresses::of(&f) else {
            panic!("expected IPv6 addresses");
        };
        assert_eq!(
            Ipv6Addr::from(src),
            Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped()
        );
        f.src = Address::Token(Arc::from("DNS"));
        assert_eq!(Addresses::of(&f), None);
    }
}
