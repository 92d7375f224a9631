//! Constructed flows for the model's unit tests: a small office network with
//! DNS lookups, web sessions to anonymised external hosts and NetBIOS broadcasts.

use std::net::Ipv4Addr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::flow::{Address, Flow, Protocol, TcpFlags};

/// 2017-04-05 00:00 UTC, a Wednesday.
pub const WEDNESDAY_MS: i64 = 1_491_350_400_000;

/// `count` flows with realistic structure, reproducible for a seed.
pub fn office_flows(count: usize, seed: u64) -> Vec<Flow> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count).map(|_| office_flow(&mut rng)).collect()
}

fn office_flow(rng: &mut impl Rng) -> Flow {
    let client = Address::V4(Ipv4Addr::new(192, 168, 220, rng.random_range(2..12)));
    let day = rng.random_range(0..7i64);
    let start_ms =
        WEDNESDAY_MS + day * 86_400_000 + rng.random_range(8 * 3_600_000..18 * 3_600_000);
    let ephemeral = rng.random_range(32768..61000u16);
    let kind = rng.random_range(0..10);
    let base = Flow {
        start_ms,
        duration_ms: 0,
        protocol: Protocol::UDP,
        src: client.clone(),
        dst: Address::parse("DNS").expect("a token"),
        src_port: ephemeral,
        dst_port: 53,
        packets: 1,
        bytes: rng.random_range(60..90),
        tcp_flags: TcpFlags(0),
        tos: 0,
        label: None,
    };
    match kind {
        0..=2 => base,
        3..=8 => {
            let packets = rng.random_range(1..30u64);
            let server = format!(
                "{}_{}",
                rng.random_range(10000..10006),
                rng.random_range(1..250)
            );
            Flow {
                protocol: Protocol::TCP,
                dst: Address::parse(&server).expect("a token"),
                dst_port: if kind % 2 == 0 { 443 } else { 80 },
                duration_ms: if packets == 1 {
                    0
                } else {
                    rng.random_range(1..5000)
                },
                packets,
                bytes: packets * rng.random_range(52..1400),
                tcp_flags: TcpFlags(if packets == 1 { 0x10 } else { 0x1b }),
                ..base
            }
        }
        _ => Flow {
            dst: Address::V4(Ipv4Addr::new(192, 168, 220, 255)),
            src_port: 138,
            dst_port: 138,
            bytes: rng.random_range(200..250),
            ..base
        },
    }
}
