//! Which addresses are internal, multicast or broadcast: the address classes
//! the domain checks and the density/coverage features are built on.
//!
//! Anonymised tokens (`11529_47`, `DNS`, `EXT_SERVER`) are external and never
//! multicast or broadcast: the publishers replace public addresses only.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::flow::Address;

/// An IPv4 or IPv6 network in CIDR notation (`192.168.0.0/16`, `fd00::/8`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix_len: u8,
}

/// Why a text is not a CIDR network.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid network `{text}`: {reason}")]
pub struct CidrError {
    /// The text as given.
    pub text: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Cidr {
    /// The network `address/prefix_len`; host bits of `address` are ignored.
    pub fn new(address: IpAddr, prefix_len: u8) -> Option<Cidr> {
        let max_len = if address.is_ipv4() { 32 } else { 128 };
        (prefix_len <= max_len).then(|| Cidr {
            network: mask(address, prefix_len),
            prefix_len,
        })
    }

    /// Whether `ip` lies inside this network (never across address families).
    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.network.is_ipv4() && mask(ip, self.prefix_len) == self.network
    }
}

/// `address` with all bits after the first `prefix_len` cleared.
fn mask(address: IpAddr, prefix_len: u8) -> IpAddr {
    match address {
        IpAddr::V4(a) => {
            let keep = u32::MAX
                .checked_shl(32 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(u32::from(a) & keep))
        }
        IpAddr::V6(a) => {
            let keep = u128::MAX
                .checked_shl(128 - u32::from(prefix_len))
                .unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(u128::from(a) & keep))
        }
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(text: &str) -> Result<Cidr, CidrError> {
        let error = |reason| CidrError {
            text: text.to_owned(),
            reason,
        };
        let (address, prefix_len) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| error("expected ADDRESS/PREFIX-LENGTH"))?;
        let address: IpAddr = address
            .parse()
            .map_err(|_| error("the address is not IPv4 or IPv6"))?;
        let prefix_len: u8 = prefix_len
            .parse()
            .map_err(|_| error("the prefix length is not a number"))?;
        Cidr::new(address, prefix_len).ok_or_else(|| error("the prefix length is too long"))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// The networks that count as internal: the monitored site's own addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InternalNetwork {
    networks: Vec<Cidr>,
}

impl InternalNetwork {
    /// CIDDS-001's internal network, `192.168.0.0/16`.
    pub fn cidds001() -> InternalNetwork {
        let private = Cidr::new(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 0)), 16);
        InternalNetwork {
            networks: private.into_iter().collect(),
        }
    }

    /// The union of `networks`; an empty list makes every address external.
    pub fn new(networks: Vec<Cidr>) -> InternalNetwork {
        InternalNetwork { networks }
    }

    /// The networks, in the order given.
    pub fn networks(&self) -> &[Cidr] {
        &self.networks
    }

    /// Whether `address` is an IP address inside one of the networks.
    pub fn contains(&self, address: &Address) -> bool {
        ip_of(address).is_some_and(|ip| self.networks.iter().any(|net| net.contains(ip)))
    }

    /// Whether `address` is internal and an IPv4 address ending in `.255`.
    pub fn is_internal_broadcast(&self, address: &Address) -> bool {
        self.contains(address) && address.as_v4().is_some_and(|a| a.octets()[3] == 255)
    }
}

impl Default for InternalNetwork {
    fn default() -> Self {
        InternalNetwork::cidds001()
    }
}

impl fmt::Display for InternalNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.networks.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            net.fmt(f)?;
        }
        Ok(())
    }
}

/// Whether `address` is multicast: `224.0.0.0/4`, or `ff00::/8` for IPv6.
pub fn is_multicast(address: &Address) -> bool {
    ip_of(address).is_some_and(|ip| ip.is_multicast())
}

/// Whether `address` is a broadcast: `255.255.255.255` or any IPv4 address
/// ending in `.255` (Ring et al. assume /24 subnets, as CIDDS-001 has).
pub fn is_broadcast(address: &Address) -> bool {
    address.as_v4().is_some_and(|a| a.octets()[3] == 255)
}

/// The IP address, or `None` for an anonymised token.
fn ip_of(address: &Address) -> Option<IpAddr> {
    match address {
        Address::V4(a) => Some(IpAddr::V4(*a)),
        Address::V6(a) => Some(IpAddr::V6(*a)),
        Address::Token(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> Address {
        Address::parse(text).expect("test address")
    }

    #[test]
    fn cidr_parses_and_masks_host_bits() {
        let net: Cidr = "10.1.2.3/8".parse().unwrap();
        assert_eq!(net.to_string(), "10.0.0.0/8");
        assert!(net.contains("10.255.0.1".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::a00:1".parse().unwrap()));

        let everything: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(everything.contains("203.0.113.9".parse().unwrap()));
        let host: Cidr = "fd00::1/128".parse().unwrap();
        assert!(host.contains("fd00::1".parse().unwrap()));
        assert!(!host.contains("fd00::2".parse().unwrap()));
    }

    #[test]
    fn cidr_rejects_malformed_text() {
        for text in [
            "192.168.0.0",
            "192.168.0.0/33",
            "::/129",
            "x/8",
            "10.0.0.0/a",
        ] {
            assert!(text.parse::<Cidr>().is_err(), "{text}");
        }
        let err = "10.0.0.0/40".parse::<Cidr>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid network `10.0.0.0/40`: the prefix length is too long"
        );
    }

    #[test]
    fn tokens_are_external_and_never_broadcast() {
        let net = InternalNetwork::cidds001();
        for token in ["11529_255", "DNS", "EXT_SERVER", "OPENSTACK_NET"] {
            let a = addr(token);
            assert!(!net.contains(&a));
            assert!(!is_multicast(&a));
            assert!(!is_broadcast(&a));
        }
    }

    #[test]
    fn address_classes() {
        let net = InternalNetwork::cidds001();
        assert!(net.contains(&addr("192.168.220.14")));
        assert!(!net.contains(&addr("192.169.0.1")));
        assert!(net.is_internal_broadcast(&addr("192.168.100.255")));
        assert!(!net.is_internal_broadcast(&addr("10.0.0.255")));
        assert!(!net.is_internal_broadcast(&addr("192.168.100.254")));
        assert!(is_multicast(&addr("224.0.0.252")));
        assert!(is_multicast(&addr("239.255.255.250")));
        assert!(!is_multicast(&addr("240.0.0.1")));
        assert!(is_multicast(&addr("ff02::fb")));
        assert!(is_broadcast(&addr("255.255.255.255")));
        assert!(is_broadcast(&addr("10.0.0.255")));
        assert!(!is_broadcast(&addr("10.0.255.1")));
    }
}
