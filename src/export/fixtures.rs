//! Flows shared by the encoder unit tests.

use std::net::Ipv4Addr;

use crate::flow::{Address, Flow, Protocol, TcpFlags};

/// 2023-11-14T22:13:20.500Z: the `now` of the literal-byte tests.
pub(super) const NOW_MS: u64 = 1_700_000_000_500;

/// One TCP flow whose counters need more than 32 bits and whose flags need the
/// full octet: 192.168.1.10:443 -> 10.0.0.1:51234, ended 766 ms before `NOW_MS`.
pub(super) fn known_v4_flow() -> Flow {
    Flow {
        start_ms: 1_699_999_998_000,
        duration_ms: 1_234,
        protocol: Protocol::TCP,
        src: Address::V4(Ipv4Addr::new(192, 168, 1, 10)),
        dst: Address::V4(Ipv4Addr::new(10, 0, 0, 1)),
        src_port: 443,
        dst_port: 51_234,
        packets: 5_000_000_000,
        bytes: 7_000_000_000_000,
        tcp_flags: TcpFlags(TcpFlags::ACK | TcpFlags::PSH | TcpFlags::SYN | TcpFlags::FIN),
        tos: 0x28,
        label: None,
    }
}
