//! The flow record every other module speaks: addresses (real or anonymised),
//! ports, counters, TCP flags and an optional ground-truth label.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

/// An IP protocol number (IANA "Assigned Internet Protocol Numbers").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Protocol(pub u8);

impl Protocol {
    /// Internet Control Message Protocol.
    pub const ICMP: Protocol = Protocol(1);
    /// Internet Group Management Protocol.
    pub const IGMP: Protocol = Protocol(2);
    /// Transmission Control Protocol.
    pub const TCP: Protocol = Protocol(6);
    /// User Datagram Protocol.
    pub const UDP: Protocol = Protocol(17);
    /// Generic Routing Encapsulation.
    pub const GRE: Protocol = Protocol(47);
    /// ICMP for IPv6.
    pub const ICMPV6: Protocol = Protocol(58);

    /// The name CIDDS-001 and nfdump print for this protocol, or its number.
    pub fn name(self) -> String {
        match self {
            Protocol::ICMP => "ICMP".into(),
            Protocol::IGMP => "IGMP".into(),
            Protocol::TCP => "TCP".into(),
            Protocol::UDP => "UDP".into(),
            Protocol::GRE => "GRE".into(),
            Protocol::ICMPV6 => "ICMP6".into(),
            Protocol(n) => n.to_string(),
        }
    }

    /// Parses a protocol name (case-insensitive, surrounding spaces ignored) or number.
    pub fn parse(text: &str) -> Option<Protocol> {
        let text = text.trim();
        let known = match text.to_ascii_uppercase().as_str() {
            "ICMP" => Some(Protocol::ICMP),
            "IGMP" => Some(Protocol::IGMP),
            "TCP" => Some(Protocol::TCP),
            "UDP" => Some(Protocol::UDP),
            "GRE" => Some(Protocol::GRE),
            "ICMP6" | "IPV6-ICMP" | "ICMPV6" => Some(Protocol::ICMPV6),
            _ => None,
        };
        known.or_else(|| text.parse::<u8>().ok().map(Protocol))
    }

    /// Whether the port fields carry ICMP type and code instead of ports.
    pub fn is_icmp(self) -> bool {
        self == Protocol::ICMP || self == Protocol::ICMPV6
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// TCP control bits as in the TCP header's flags octet (RFC 9293, RFC 3168).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from sender.
    pub const FIN: u8 = 0x01;
    /// Synchronise sequence numbers.
    pub const SYN: u8 = 0x02;
    /// Reset the connection.
    pub const RST: u8 = 0x04;
    /// Push function.
    pub const PSH: u8 = 0x08;
    /// Acknowledgment field significant.
    pub const ACK: u8 = 0x10;
    /// Urgent pointer field significant.
    pub const URG: u8 = 0x20;
    /// ECN echo.
    pub const ECE: u8 = 0x40;
    /// Congestion window reduced.
    pub const CWR: u8 = 0x80;

    /// The six classic flags in CIDDS-001's `UAPRSF` column order, most significant first.
    pub const UAPRSF: [(u8, char); 6] = [
        (Self::URG, 'U'),
        (Self::ACK, 'A'),
        (Self::PSH, 'P'),
        (Self::RST, 'R'),
        (Self::SYN, 'S'),
        (Self::FIN, 'F'),
    ];

    /// Whether any flag is set.
    pub fn any(self) -> bool {
        self.0 != 0
    }

    /// Whether the given bit (one of the constants above) is set.
    pub fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// The six-character `UAPRSF` mask CIDDS-001 writes, `.` for an unset flag.
    pub fn to_uaprsf(self) -> String {
        Self::UAPRSF
            .iter()
            .map(|&(bit, c)| if self.has(bit) { c } else { '.' })
            .collect()
    }
}

/// A host address as flow files carry it.
///
/// Public data sets anonymise addresses into tokens (`11529_47`, `DNS`,
/// `EXT_SERVER`); those stay tokens until an address plan maps them.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Address {
    /// A dotted IPv4 address.
    V4(Ipv4Addr),
    /// An IPv6 address.
    V6(Ipv6Addr),
    /// An anonymised token, kept verbatim.
    Token(Arc<str>),
}

impl Address {
    /// Parses an IP address, or keeps the trimmed text as an anonymised token.
    ///
    /// Returns `None` for empty text or text with characters no token uses
    /// (anything but ASCII letters, digits, `_`, `-`, `.` and `:`).
    pub fn parse(text: &str) -> Option<Address> {
        let text = text.trim();
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Some(ip.into());
        }
        let token_like = !text.is_empty()
            && text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'));
        token_like.then(|| Address::Token(Arc::from(text)))
    }

    /// The IPv4 address, if this is one.
    pub fn as_v4(&self) -> Option<Ipv4Addr> {
        match self {
            Address::V4(a) => Some(*a),
            _ => None,
        }
    }

    /// Whether this is an anonymised token rather than an IP address.
    pub fn is_token(&self) -> bool {
        matches!(self, Address::Token(_))
    }
}

impl From<IpAddr> for Address {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Address::V4(a),
            IpAddr::V6(a) => Address::V6(a),
        }
    }
}

impl From<Ipv4Addr> for Address {
    fn from(ip: Ipv4Addr) -> Self {
        Address::V4(ip)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::V4(a) => a.fmt(f),
            Address::V6(a) => a.fmt(f),
            Address::Token(t) => f.write_str(t),
        }
    }
}

/// Ground truth attached to labelled flows (CIDDS-001's last four columns).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Label {
    /// `normal`, `attacker`, `victim`, `suspicious` or `unknown`.
    pub class: String,
    /// `---` for normal flows, else e.g. `portScan`, `dos`.
    pub attack_type: String,
    /// Identifier of the attack, `---` when none.
    pub attack_id: String,
    /// Free-text description, `---` when none.
    pub attack_description: String,
}

impl Label {
    /// Whether the flow is labelled normal user behaviour.
    pub fn is_normal(&self) -> bool {
        self.class.eq_ignore_ascii_case("normal")
    }
}

/// One unidirectional flow.
///
/// For ICMP flows the source port is 0 and the destination port carries
/// `type * 256 + code`, the convention nfdump and most exporters use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Flow {
    /// First packet, milliseconds since the Unix epoch (UTC).
    pub start_ms: i64,
    /// Time from first to last packet, milliseconds.
    pub duration_ms: u64,
    /// IP protocol.
    pub protocol: Protocol,
    /// Source address.
    pub src: Address,
    /// Destination address.
    pub dst: Address,
    /// Source port (0 for ICMP).
    pub src_port: u16,
    /// Destination port, or ICMP `type * 256 + code`.
    pub dst_port: u16,
    /// Packets in the flow.
    pub packets: u64,
    /// Octets in the flow, IP headers included.
    pub bytes: u64,
    /// Union of the TCP flags seen (0 for other protocols).
    pub tcp_flags: TcpFlags,
    /// IP type of service octet.
    pub tos: u8,
    /// Ground truth, where the source file has it.
    pub label: Option<Label>,
}

impl Flow {
    /// Last packet, milliseconds since the Unix epoch.
    pub fn end_ms(&self) -> i64 {
        self.start_ms
            .saturating_add(self.duration_ms.min(i64::MAX as u64) as i64)
    }

    /// ICMP type and code, for ICMP flows.
    pub fn icmp_type_code(&self) -> Option<(u8, u8)> {
        self.protocol
            .is_icmp()
            .then_some(((self.dst_port >> 8) as u8, self.dst_port as u8))
    }

    /// Whether the flow is unlabelled or labelled normal.
    pub fn is_normal_or_unlabelled(&self) -> bool {
        self.label.as_ref().is_none_or(Label::is_normal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_ips_and_tokens() {
        assert_eq!(
            Address::parse("192.168.1.5"),
            Some(Address::V4(Ipv4Addr::new(192, 168, 1, 5)))
        );
        assert!(matches!(Address::parse("::1"), Some(Address::V6(_))));
        assert_eq!(
            Address::parse(" 11529_47 ").unwrap().to_string(),
            "11529_47"
        );
        assert!(Address::parse("EXT_SERVER").unwrap().is_token());
        assert_eq!(Address::parse(""), None);
        assert_eq!(Address::parse("a b"), None);
    }

    #[test]
    fn flags_print_as_uaprsf() {
        assert_eq!(TcpFlags(0x1b).to_uaprsf(), ".AP.SF");
        assert_eq!(TcpFlags(0).to_uaprsf(), "......");
    }

    #[test]
    fn protocols_parse_padded_names_and_numbers() {
        assert_eq!(Protocol::parse("TCP  "), Some(Protocol::TCP));
        assert_eq!(Protocol::parse("17"), Some(Protocol::UDP));
        assert_eq!(Protocol::parse("bogus"), None);
    }
}
