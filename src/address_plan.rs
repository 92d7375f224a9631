//! The address plan: which IPv4 address a collector sees for each address in a
//! flow, so that anonymised data sets can be exported at all.
//!
//! - Dotted IPv4 addresses are kept, unless a `remap` rule moves their subnet
//!   (192.168.0.0/16 to 10.20.0.0/16 keeps the host part); the longest
//!   matching `from` wins. IPv6 addresses are kept.
//! - CIDDS-001 numbered tokens (`11529_47`: the publishers replaced the first
//!   three octets of a public address by a number) keep their last octet; the
//!   number picks a /24 in the token pools through a fixed permutation, so two
//!   numbers never share a /24 while there are fewer distinct numbers than /24s
//!   in the pools (a /8 holds 65,536).
//! - Named tokens (`DNS`, `EXT_SERVER`, `OPENSTACK_NET`, `ATTACKER1`, ...) take
//!   the address configured for them, matched case-insensitively; a named token
//!   without one is hashed into the token pools.
//!
//! The mapping depends only on the settings: the same token gives the same
//! address in every run and every process.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::Deserialize;

use crate::flow::{Address, Flow};

/// A prime larger than any count of /24s, so that multiplying by it permutes
/// the /24s of any pool.
const PERMUTATION_MULTIPLIER: u64 = 2_654_435_761;

/// Named tokens every CIDDS-001 file has, with the address they get unless
/// configured: a public resolver, and the address `example.com` long had.
const DEFAULT_NAMED: [(&str, Ipv4Addr); 2] = [
    ("DNS", Ipv4Addr::new(9, 9, 9, 9)),
    ("EXT_SERVER", Ipv4Addr::new(93, 184, 216, 34)),
];

/// Settings of the address plan (the `[addresses]` table).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AddressPlanConfig {
    /// IPv4 blocks (prefix length 24 or shorter, not overlapping) that anonymised
    /// tokens map into; default `["20.0.0.0/8"]`, routed public space that
    /// synthetic flows only name and never reach. Change it if your collector
    /// enriches addresses against threat intelligence.
    pub token_pools: Vec<String>,
    /// Addresses for named tokens, e.g. `ATTACKER1 = "203.0.113.7"`; names match
    /// case-insensitively. `DNS` is 9.9.9.9 and `EXT_SERVER` 93.184.216.34
    /// unless set here; default no others.
    pub tokens: BTreeMap<String, String>,
    /// Subnet moves for real IPv4 addresses, e.g.
    /// `{ from = "192.168.0.0/16", to = "10.20.0.0/16" }`; default none.
    pub remap: Vec<SubnetRemap>,
}

impl Default for AddressPlanConfig {
    fn default() -> Self {
        AddressPlanConfig {
            token_pools: vec!["20.0.0.0/8".into()],
            tokens: BTreeMap::new(),
            remap: Vec::new(),
        }
    }
}

/// One subnet move: addresses in `from` go to the same host in `to`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetRemap {
    /// The block real addresses are in, e.g. `192.168.0.0/16`.
    pub from: String,
    /// The block they move to, same prefix length, e.g. `10.20.0.0/16`.
    pub to: String,
}

/// A setting of the address plan that cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct AddressPlanError {
    /// The key, e.g. `addresses.token_pools[1]`.
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

/// An IPv4 CIDR block.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    network: u32,
    prefix_len: u8,
}

impl Ipv4Cidr {
    /// The block's first address.
    pub fn network(self) -> Ipv4Addr {
        Ipv4Addr::from(self.network)
    }

    /// The prefix length.
    pub fn prefix_len(self) -> u8 {
        self.prefix_len
    }

    /// Whether `ip` lies in the block.
    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == self.network
    }

    fn mask(self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    fn overlaps(self, other: Ipv4Cidr) -> bool {
        let shorter = if self.prefix_len <= other.prefix_len {
            self
        } else {
            other
        };
        let longer = if shorter == self { other } else { self };
        shorter.contains(longer.network())
    }
}

impl FromStr for Ipv4Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || format!("`{text}` is not an IPv4 block such as 10.20.0.0/16");
        let (ip, len) = text.trim().split_once('/').ok_or_else(bad)?;
        let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
        let prefix_len: u8 = len.parse().map_err(|_| bad())?;
        if prefix_len > 32 {
            return Err(bad());
        }
        let cidr = Ipv4Cidr {
            network: u32::from(ip),
            prefix_len,
        };
        if cidr.network & !cidr.mask() != 0 {
            return Err(format!(
                "`{text}` has host bits set; did you mean {}/{prefix_len}?",
                { Ipv4Addr::from(cidr.network & cidr.mask()) }
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network(), self.prefix_len)
    }
}

/// The validated plan: maps any flow address to the address exported.
#[derive(Clone, Debug)]
pub struct AddressPlan {
    /// Pools with the number of /24s before each, for slot lookup.
    pools: Vec<(Ipv4Cidr, u64)>,
    slots: u64,
    /// Named tokens, upper-cased.
    named: Vec<(String, Ipv4Addr)>,
    /// Remap rules, longest `from` first.
    remap: Vec<(Ipv4Cidr, Ipv4Cidr)>,
}

impl AddressPlanConfig {
    /// Every problem with the settings, each naming its key under `[addresses]`.
    pub fn validate(&self) -> Vec<AddressPlanError> {
        match AddressPlan::build(self) {
            Ok(_) => Vec::new(),
            Err(problems) => problems,
        }
    }
}

impl AddressPlan {
    /// Builds the plan; the error is the first problem [`AddressPlanConfig::validate`] lists.
    pub fn new(config: &AddressPlanConfig) -> Result<AddressPlan, AddressPlanError> {
        AddressPlan::build(config).map_err(|mut problems| problems.swap_remove(0))
    }

    fn build(config: &AddressPlanConfig) -> Result<AddressPlan, Vec<AddressPlanError>> {
        let mut problems = Vec::new();
        let mut problem =
            |key: String, message: String| problems.push(AddressPlanError { key, message });

        let mut pools: Vec<(Ipv4Cidr, u64)> = Vec::new();
        let mut slots = 0u64;
        if config.token_pools.is_empty() {
            problem(
                "addresses.token_pools".into(),
                "needs at least one block".into(),
            );
        }
        for (i, text) in config.token_pools.iter().enumerate() {
            let key = format!("addresses.token_pools[{i}]");
            match text.parse::<Ipv4Cidr>() {
                Ok(cidr) if cidr.prefix_len > 24 => problem(
                    key,
                    format!("`{text}` is smaller than a /24; tokens keep their last octet"),
                ),
                Ok(cidr) => {
                    if let Some((other, _)) = pools.iter().find(|(p, _)| p.overlaps(cidr)) {
                        problem(key, format!("`{text}` overlaps {other}"));
                        continue;
                    }
                    pools.push((cidr, slots));
                    slots += 1 << (24 - cidr.prefix_len);
                }
                Err(message) => problem(key, message),
            }
        }

        let mut named = Vec::new();
        for (name, text) in &config.tokens {
            match text.trim().parse::<Ipv4Addr>() {
                Ok(ip) => named.push((name.to_ascii_uppercase(), ip)),
                Err(_) => problem(
                    format!("addresses.tokens.{name}"),
                    format!("`{text}` is not an IPv4 address"),
                ),
            }
        }

        for (name, ip) in DEFAULT_NAMED {
            if !named.iter().any(|(n, _)| n == name) {
                named.push((name.to_string(), ip));
            }
        }

        let mut remap = Vec::new();
        for (i, rule) in config.remap.iter().enumerate() {
            let key = |field: &str| format!("addresses.remap[{i}].{field}");
            let from = rule.from.parse::<Ipv4Cidr>().map_err(|m| (key("from"), m));
            let to = rule.to.parse::<Ipv4Cidr>().map_err(|m| (key("to"), m));
            match (from, to) {
                (Ok(from), Ok(to)) if from.prefix_len != to.prefix_len => problem(
                    key("to"),
                    format!("`{to}` must have the prefix length of `{from}`"),
                ),
                (Ok(from), Ok(to)) => remap.push((from, to)),
                (from, to) => {
                    for (key, message) in [from.err(), to.err()].into_iter().flatten() {
                        problem(key, message);
                    }
                }
            }
        }
        remap.sort_by_key(|(from, _)| std::cmp::Reverse(from.prefix_len));

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(AddressPlan {
            pools,
            slots,
            named,
            remap,
        })
    }

    /// The address exported for `address`: tokens become IPv4, IPv4 may move, IPv6 stays.
    pub fn map(&self, address: &Address) -> Address {
        match address {
            Address::V4(ip) => Address::V4(self.map_v4(*ip)),
            Address::V6(ip) => Address::V6(*ip),
            Address::Token(token) => Address::V4(self.map_token(token)),
        }
    }

    /// Maps both addresses of `flow` in place.
    pub fn apply(&self, flow: &mut Flow) {
        if !matches!(flow.src, Address::V6(_)) {
            flow.src = self.map(&flow.src);
        }
        if !matches!(flow.dst, Address::V6(_)) {
            flow.dst = self.map(&flow.dst);
        }
    }

    /// A real IPv4 address after the remap rules.
    pub fn map_v4(&self, ip: Ipv4Addr) -> Ipv4Addr {
        match self.remap.iter().find(|(from, _)| from.contains(ip)) {
            Some((from, to)) => Ipv4Addr::from(to.network | (u32::from(ip) & !from.mask())),
            None => ip,
        }
    }

    /// The address of an anonymised token.
    pub fn map_token(&self, token: &str) -> Ipv4Addr {
        let token = token.trim();
        if let Some((number, octet)) = parse_numbered(token) {
            return self.slot_address(permute(u64::from(number), self.slots), octet);
        }
        if let Some((_, ip)) = self
            .named
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(token))
        {
            return *ip;
        }
        let hash = fnv1a_upper(token);
        // Host octets 1 to 254: a hashed name should not look like a network or broadcast.
        let octet = 1 + ((hash >> 32) % 254) as u8;
        self.slot_address(hash % self.slots, octet)
    }

    fn slot_address(&self, slot: u64, octet: u8) -> Ipv4Addr {
        let index = self.pools.partition_point(|&(_, before)| before <= slot) - 1;
        let (pool, before) = self.pools[index];
        let network = pool.network + (((slot - before) as u32) << 8);
        Ipv4Addr::from(network | u32::from(octet))
    }
}

/// `NNNNN_OCT` as (number, octet).
fn parse_numbered(token: &str) -> Option<(u32, u8)> {
    let (number, octet) = token.split_once('_')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(number) || !digits(octet) {
        return None;
    }
    Some((number.parse().ok()?, octet.parse().ok()?))
}

/// A bijection on `0..slots` applied to `number mod slots`.
fn permute(number: u64, slots: u64) -> u64 {
    ((number % slots) * (PERMUTATION_MULTIPLIER % slots)) % slots
}

/// FNV-1a over the upper-cased bytes: stable across runs and platforms.
fn fnv1a_upper(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte.to_ascii_uppercase())).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn plan() -> AddressPlan {
        AddressPlan::new(&AddressPlanConfig::default()).unwrap()
    }

    fn token(text: &str) -> Address {
        Address::parse(text).unwrap()
    }

    #[test]
    fn numbered_tokens_keep_their_octet_inside_the_pool() {
        let plan = plan();
        let pool: Ipv4Cidr = "20.0.0.0/8".parse().unwrap();
        for (text, octet) in [
            ("11529_47", 47),
            ("10074_40", 40),
            ("17428_0", 0),
            ("1_255", 255),
        ] {
            let ip = plan.map(&token(text)).as_v4().unwrap();
            assert!(pool.contains(ip), "{text} -> {ip}");
            assert_eq!(ip.octets()[3], octet, "{text} -> {ip}");
        }
    }

    #[test]
    fn the_same_token_always_gives_the_same_address() {
        let a = plan();
        let b = AddressPlan::new(&AddressPlanConfig::default()).unwrap();
        for text in ["11529_47", "DNS", "ATTACKER1", "OPENSTACK_NET", "dns"] {
            assert_eq!(a.map(&token(text)), b.map(&token(text)));
        }
        assert_eq!(a.map_token("DNS"), a.map_token("dns"));
    }

    #[test]
    fn distinct_numbers_get_distinct_slash_24s() {
        let plan = plan();
        let networks: HashSet<[u8; 3]> = (10_000..18_000)
            .map(|n| {
                let o = plan.map_token(&format!("{n}_1")).octets();
                [o[0], o[1], o[2]]
            })
            .collect();
        assert_eq!(networks.len(), 8_000);
    }

    #[test]
    fn named_tokens_take_their_configured_addresses() {
        let plan = plan();
        assert_eq!(plan.map_token("DNS"), Ipv4Addr::new(9, 9, 9, 9));
        assert_eq!(
            plan.map_token("EXT_SERVER"),
            Ipv4Addr::new(93, 184, 216, 34)
        );
        // Unconfigured names land in the pool, on a host octet.
        let attacker = plan.map_token("ATTACKER1");
        assert_eq!(attacker.octets()[0], 20);
        assert!((1..=254).contains(&attacker.octets()[3]));
        assert_ne!(attacker, plan.map_token("ATTACKER2"));
    }

    #[test]
    fn several_pools_are_all_used() {
        let config = AddressPlanConfig {
            token_pools: vec![
                "198.51.100.0/24".into(),
                "203.0.113.0/24".into(),
                "45.10.0.0/16".into(),
            ],
            ..AddressPlanConfig::default()
        };
        let plan = AddressPlan::new(&config).unwrap();
        let firsts: HashSet<[u8; 2]> = (0..2_000)
            .map(|n| {
                let o = plan.map_token(&format!("{n}_9")).octets();
                [o[0], o[1]]
            })
            .collect();
        for prefix in [[198, 51], [203, 0], [45, 10]] {
            assert!(
                firsts.contains(&prefix),
                "{prefix:?} never used: {firsts:?}"
            );
        }
    }

    #[test]
    fn subnets_move_and_longest_match_wins() {
        let config = AddressPlanConfig {
            remap: vec![
                SubnetRemap {
                    from: "192.168.0.0/16".into(),
                    to: "10.20.0.0/16".into(),
                },
                SubnetRemap {
                    from: "192.168.100.0/24".into(),
                    to: "172.16.5.0/24".into(),
                },
            ],
            ..AddressPlanConfig::default()
        };
        let plan = AddressPlan::new(&config).unwrap();
        assert_eq!(
            plan.map_v4(Ipv4Addr::new(192, 168, 220, 14)),
            Ipv4Addr::new(10, 20, 220, 14)
        );
        assert_eq!(
            plan.map_v4(Ipv4Addr::new(192, 168, 100, 5)),
            Ipv4Addr::new(172, 16, 5, 5)
        );
        assert_eq!(
            plan.map_v4(Ipv4Addr::new(8, 8, 8, 8)),
            Ipv4Addr::new(8, 8, 8, 8)
        );
    }

    #[test]
    fn every_bad_setting_is_reported_with_its_key() {
        let config = AddressPlanConfig {
            token_pools: vec![
                "10.0.0.0/8".into(),
                "10.1.0.0/16".into(),
                "1.2.3.0/25".into(),
                "x".into(),
            ],
            tokens: BTreeMap::from([("DNS".into(), "not-an-ip".into())]),
            remap: vec![SubnetRemap {
                from: "192.168.0.0/16".into(),
                to: "10.20.0.0/24".into(),
            }],
        };
        let keys: Vec<String> = config.validate().into_iter().map(|p| p.key).collect();
        assert_eq!(
            keys,
            [
                "addresses.token_pools[1]",
                "addresses.token_pools[2]",
                "addresses.token_pools[3]",
                "addresses.tokens.DNS",
                "addresses.remap[0].to",
            ]
        );
        assert!(Ipv4Cidr::from_str("10.0.0.1/8")
            .unwrap_err()
            .contains("10.0.0.0/8"));
    }

    #[test]
    fn flows_are_mapped_in_place() {
        let mut flow = Flow {
            start_ms: 0,
            duration_ms: 0,
            protocol: crate::flow::Protocol::UDP,
            src: token("192.168.220.14"),
            dst: token("DNS"),
            src_port: 5353,
            dst_port: 53,
            packets: 1,
            bytes: 80,
            tcp_flags: Default::default(),
            tos: 0,
            label: None,
        };
        plan().apply(&mut flow);
        assert_eq!(flow.src, Address::V4(Ipv4Addr::new(192, 168, 220, 14)));
        assert_eq!(flow.dst, Address::V4(Ipv4Addr::new(9, 9, 9, 9)));
    }

    #[test]
    fn the_config_crate_reads_the_table() {
        let text = r#"
            [addresses]
            token_pools = ["45.0.0.0/8"]
            remap = [{ from = "192.168.0.0/16", to = "10.20.0.0/16" }]
            [addresses.tokens]
            DNS = "1.1.1.1"
        "#;
        #[derive(Deserialize)]
        struct File {
            addresses: AddressPlanConfig,
        }
        let file: File = config::Config::builder()
            .add_source(config::File::from_str(text, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .unwrap();
        let plan = AddressPlan::new(&file.addresses).unwrap();
        assert_eq!(plan.map_token("DNS"), Ipv4Addr::new(1, 1, 1, 1));
        assert_eq!(
            plan.map_token("EXT_SERVER"),
            Ipv4Addr::new(93, 184, 216, 34)
        );
        assert_eq!(plan.map_token("11529_47").octets()[0], 45);
        assert_eq!(
            plan.map_v4(Ipv4Addr::new(192, 168, 1, 2)),
            Ipv4Addr::new(10, 20, 1, 2)
        );

        let typo = "[addresses]\ntoken_pool = [\"45.0.0.0/8\"]\n";
        let err = config::Config::builder()
            .add_source(config::File::from_str(typo, config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize::<File>)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("token_pool"), "{err}");
    }
}
