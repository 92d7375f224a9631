//! The numeric view of a flow that the correlation and neighbour metrics use,
//! and its standardisation.

use super::network::InternalNetwork;
use crate::flow::{Flow, Protocol, TcpFlags};

/// Number of numeric features per flow.
pub const FEATURE_COUNT: usize = 20;

/// A flow as numbers, in the order of [`FEATURE_NAMES`].
pub type FeatureVector = [f64; FEATURE_COUNT];

/// Names of the numeric features, in vector order.
pub const FEATURE_NAMES: [&str; FEATURE_COUNT] = [
    "time_of_day",
    "log_duration",
    "log_packets",
    "log_bytes",
    "proto_tcp",
    "proto_udp",
    "proto_icmp",
    "proto_other",
    "flag_urg",
    "flag_ack",
    "flag_psh",
    "flag_rst",
    "flag_syn",
    "flag_fin",
    "src_port",
    "dst_port",
    "src_internal",
    "dst_internal",
    "src_port_well_known",
    "dst_port_well_known",
];

const MS_PER_DAY: i64 = 86_400_000;

/// Ports below this are IANA system ("well-known") ports.
const WELL_KNOWN_PORT_LIMIT: u16 = 1024;

/// Start time as a fraction of the day, in `[0, 1)`.
///
/// Flow files without a time zone (CIDDS-001) are read as UTC, so this is
/// the time of day where they were captured.
pub fn time_of_day(flow: &Flow) -> f64 {
    flow.start_ms.rem_euclid(MS_PER_DAY) as f64 / MS_PER_DAY as f64
}

/// ln(1 + duration in seconds), seconds being the unit CIDDS-001 writes.
pub fn log_duration(flow: &Flow) -> f64 {
    (flow.duration_ms as f64 / 1000.0).ln_1p()
}

/// ln(1 + packets).
pub fn log_packets(flow: &Flow) -> f64 {
    (flow.packets as f64).ln_1p()
}

/// ln(1 + bytes).
pub fn log_bytes(flow: &Flow) -> f64 {
    (flow.bytes as f64).ln_1p()
}

/// The features of `flow`: time of day, ln(1 + duration s), ln(1 + packets),
/// ln(1 + bytes), protocol one-hot (TCP, UDP, ICMP or ICMPv6, other), the six
/// `UAPRSF` flag bits, ports / 65535, internal source and destination, and
/// well-known (below 1024) source and destination port; booleans are 0 or 1.
pub fn feature_vector(flow: &Flow, internal: &InternalNetwork) -> FeatureVector {
    let protocol = [
        flow.protocol == Protocol::TCP,
        flow.protocol == Protocol::UDP,
        flow.protocol.is_icmp(),
        !matches!(flow.protocol, Protocol::TCP | Protocol::UDP) && !flow.protocol.is_icmp(),
    ];
    let flags = TcpFlags::UAPRSF.map(|(bit, _)| flow.tcp_flags.has(bit));
    let indicators = [
        internal.contains(&flow.src),
        internal.contains(&flow.dst),
        flow.src_port < WELL_KNOWN_PORT_LIMIT,
        flow.dst_port < WELL_KNOWN_PORT_LIMIT,
    ];

    let mut features = [0.0; FEATURE_COUNT];
    features[..4].copy_from_slice(&[
        time_of_day(flow),
        log_duration(flow),
        log_packets(flow),
        log_bytes(flow),
    ]);
    for (slot, on) in features[4..14]
        .iter_mut()
        .zip(protocol.iter().chain(&flags))
    {
        *slot = f64::from(u8::from(*on));
    }
    features[14] = f64::from(flow.src_port) / 65535.0;
    features[15] = f64::from(flow.dst_port) / 65535.0;
    for (slot, on) in features[16..].iter_mut().zip(indicators) {
        *slot = f64::from(u8::from(on));
    }
    features
}

/// The feature vectors of `flows`.
pub fn feature_matrix(flows: &[Flow], internal: &InternalNetwork) -> Vec<FeatureVector> {
    flows.iter().map(|f| feature_vector(f, internal)).collect()
}

/// Per-feature mean and standard deviation (population) of a set of vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct Moments {
    /// Mean of each feature.
    pub mean: FeatureVector,
    /// Standard deviation of each feature (divided by n, not n - 1).
    pub std: FeatureVector,
}

impl Moments {
    /// The moments of `rows`; all zero for no rows.
    pub fn of(rows: &[FeatureVector]) -> Moments {
        let n = rows.len().max(1) as f64;
        let mut mean = [0.0; FEATURE_COUNT];
        for row in rows {
            for (m, x) in mean.iter_mut().zip(row) {
                *m += x / n;
            }
        }
        let mut var = [0.0; FEATURE_COUNT];
        for row in rows {
            for ((v, x), m) in var.iter_mut().zip(row).zip(&mean) {
                *v += (x - m) * (x - m) / n;
            }
        }
        Moments {
            mean,
            std: var.map(f64::sqrt),
        }
    }

    /// Subtracts the mean and divides by the deviation, in place. A feature
    /// that does not vary is only centred, so that a set that does vary in it
    /// still stands apart from one that does not.
    pub fn standardise(&self, rows: &mut [FeatureVector]) {
        for row in rows {
            for ((x, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *x = if *s > 0.0 { (*x - m) / s } else { *x - m };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::testing::flow;

    #[test]
    fn vector_layout() {
        let f = Flow {
            start_ms: 1_491_868_800_000 + 6 * 3_600_000, // 2017-04-11 06:00 UTC
            duration_ms: 1500,
            packets: 3,
            bytes: 200,
            tcp_flags: TcpFlags(TcpFlags::ACK | TcpFlags::FIN),
            ..flow("TCP", "192.168.1.2", 40000, "11529_47", 443)
        };
        let v = feature_vector(&f, &InternalNetwork::cidds001());
        assert!((v[0] - 0.25).abs() < 1e-12);
        assert!((v[1] - 2.5f64.ln()).abs() < 1e-12);
        assert!((v[2] - 4f64.ln()).abs() < 1e-12);
        assert!((v[3] - 201f64.ln()).abs() < 1e-12);
        assert_eq!(&v[4..8], &[1.0, 0.0, 0.0, 0.0]);
        assert_eq!(&v[8..14], &[0.0, 1.0, 0.0, 0.0, 0.0, 1.0]);
        assert_eq!(v[14], 40000.0 / 65535.0);
        assert_eq!(v[15], 443.0 / 65535.0);
        assert_eq!(&v[16..], &[1.0, 0.0, 0.0, 1.0]);

        let other = feature_vector(&flow("GRE", "a", 0, "b", 0), &InternalNetwork::cidds001());
        assert_eq!(&other[4..8], &[0.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn time_of_day_before_the_epoch() {
        let f = Flow {
            start_ms: -MS_PER_DAY / 4,
            ..flow("TCP", "a", 1, "b", 2)
        };
        assert!((time_of_day(&f) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn standardise_with_given_moments() {
        let mut a = [0.0; FEATURE_COUNT];
        let mut b = [0.0; FEATURE_COUNT];
        a[0] = 1.0;
        b[0] = 3.0;
        a[1] = 5.0;
        b[1] = 5.0;
        let moments = Moments::of(&[a, b]);
        assert_eq!((moments.mean[0], moments.std[0]), (2.0, 1.0));
        assert_eq!((moments.mean[1], moments.std[1]), (5.0, 0.0));

        let mut other = [[0.0; FEATURE_COUNT]];
        other[0][0] = 4.0;
        other[0][1] = 6.0;
        moments.standardise(&mut other);
        assert_eq!(other[0][0], 2.0);
        assert_eq!(other[0][1], 1.0);
    }
}
