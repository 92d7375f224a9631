//! The seven domain-knowledge checks of Ring et al. (2019), section 5.2.
//!
//! Each check has a premise (which flows it applies to) and a rule that a
//! realistic flow obeys. Accuracy is the share of premise flows that pass.
//! Port rules compare the port fields as stored, so an ICMP flow, whose
//! destination port carries `type * 256 + code`, meets a port premise only
//! when that number happens to equal the port.

use serde::{Deserialize, Serialize};

use super::network::{is_broadcast, is_multicast, InternalNetwork};
use crate::flow::{Address, Flow, Protocol};

/// One of the seven checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Check {
    /// UDP flows carry no TCP flags.
    T1,
    /// Every flow has an internal endpoint.
    T2,
    /// Normal HTTP(S) traffic (port 80 or 443) is TCP.
    T3,
    /// Normal DNS traffic (port 53) is UDP.
    T4,
    /// Multicast and broadcast addresses appear only as destinations.
    T5,
    /// NetBIOS (destination port 137/138) goes from an internal host to an internal broadcast.
    T6,
    /// Bytes per packet lie between 42 and 65535.
    T7,
}

impl Check {
    /// All checks in order.
    pub const ALL: [Check; 7] = [
        Check::T1,
        Check::T2,
        Check::T3,
        Check::T4,
        Check::T5,
        Check::T6,
        Check::T7,
    ];

    /// The name used in reports, `T1` to `T7`.
    pub fn id(self) -> &'static str {
        match self {
            Check::T1 => "T1",
            Check::T2 => "T2",
            Check::T3 => "T3",
            Check::T4 => "T4",
            Check::T5 => "T5",
            Check::T6 => "T6",
            Check::T7 => "T7",
        }
    }

    /// A short description of the rule, for tables.
    pub fn description(self) -> &'static str {
        match self {
            Check::T1 => "UDP flows have no TCP flags",
            Check::T2 => "an endpoint is internal",
            Check::T3 => "normal port 80/443 traffic is TCP",
            Check::T4 => "normal port 53 traffic is UDP",
            Check::T5 => "multicast/broadcast only as destination",
            Check::T6 => "NetBIOS goes internal to internal broadcast",
            Check::T7 => "42 <= bytes/packet <= 65535",
        }
    }

    /// `None` when the premise does not hold for `flow`, else whether it passes.
    pub fn judge(self, flow: &Flow, internal: &InternalNetwork) -> Option<bool> {
        match self {
            Check::T1 => (flow.protocol == Protocol::UDP).then(|| !flow.tcp_flags.any()),
            Check::T2 => Some(internal.contains(&flow.src) || internal.contains(&flow.dst)),
            Check::T3 => (flow.is_normal_or_unlabelled() && has_port(flow, &[80, 443]))
                .then(|| flow.protocol == Protocol::TCP),
            Check::T4 => (flow.is_normal_or_unlabelled() && has_port(flow, &[53]))
                .then(|| flow.protocol == Protocol::UDP),
            Check::T5 => {
                let (src, dst) = (group_address(&flow.src), group_address(&flow.dst));
                (src || dst).then_some(dst && !src)
            }
            Check::T6 => matches!(flow.dst_port, 137 | 138)
                .then(|| internal.contains(&flow.src) && internal.is_internal_broadcast(&flow.dst)),
            Check::T7 => {
                let packets = u128::from(flow.packets);
                let bytes = u128::from(flow.bytes);
                Some(42 * packets <= bytes && bytes <= 65535 * packets)
            }
        }
    }
}

/// Whether either port of `flow` is one of `ports`.
fn has_port(flow: &Flow, ports: &[u16]) -> bool {
    ports.contains(&flow.src_port) || ports.contains(&flow.dst_port)
}

/// Whether `address` addresses a group (multicast or broadcast) rather than a host.
fn group_address(address: &Address) -> bool {
    is_multicast(address) || is_broadcast(address)
}

/// How one check scored on a set of flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckScore {
    /// Percent of premise flows that pass; `None` when no flow meets the premise.
    pub accuracy: Option<f64>,
    /// Flows whose premise holds.
    pub premise: u64,
    /// Premise flows that pass.
    pub pass: u64,
}

impl CheckScore {
    /// Counts one flow's verdict (`None`: premise not met).
    fn record(&mut self, verdict: Option<bool>) {
        if let Some(passed) = verdict {
            self.premise += 1;
            self.pass += u64::from(passed);
        }
    }

    /// Fills in `accuracy` from the counts.
    fn finish(&mut self) {
        self.accuracy = (self.premise > 0).then(|| 100.0 * self.pass as f64 / self.premise as f64);
    }
}

/// The scores of all seven checks, serialised as `{"T1": {...}, ..., "T7": {...}}`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[allow(missing_docs)] // one field per check, named after it
pub struct Checks {
    #[serde(rename = "T1")]
    pub t1: CheckScore,
    #[serde(rename = "T2")]
    pub t2: CheckScore,
    #[serde(rename = "T3")]
    pub t3: CheckScore,
    #[serde(rename = "T4")]
    pub t4: CheckScore,
    #[serde(rename = "T5")]
    pub t5: CheckScore,
    #[serde(rename = "T6")]
    pub t6: CheckScore,
    #[serde(rename = "T7")]
    pub t7: CheckScore,
}

impl Checks {
    /// The score of `check`.
    pub fn get(&self, check: Check) -> &CheckScore {
        match check {
            Check::T1 => &self.t1,
            Check::T2 => &self.t2,
            Check::T3 => &self.t3,
            Check::T4 => &self.t4,
            Check::T5 => &self.t5,
            Check::T6 => &self.t6,
            Check::T7 => &self.t7,
        }
    }

    fn get_mut(&mut self, check: Check) -> &mut CheckScore {
        match check {
            Check::T1 => &mut self.t1,
            Check::T2 => &mut self.t2,
            Check::T3 => &mut self.t3,
            Check::T4 => &mut self.t4,
            Check::T5 => &mut self.t5,
            Check::T6 => &mut self.t6,
            Check::T7 => &mut self.t7,
        }
    }

    /// Each check with its score, T1 first.
    pub fn iter(&self) -> impl Iterator<Item = (Check, &CheckScore)> {
        Check::ALL
            .into_iter()
            .map(move |check| (check, self.get(check)))
    }
}

/// Scores all seven checks on `flows`.
pub fn run_checks(flows: &[Flow], internal: &InternalNetwork) -> Checks {
    let mut checks = Checks::default();
    for flow in flows {
        for check in Check::ALL {
            checks.get_mut(check).record(check.judge(flow, internal));
        }
    }
    for check in Check::ALL {
        checks.get_mut(check).finish();
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::testing::flow;
    use crate::flow::{Label, TcpFlags};

    fn judge(check: Check, flow: &Flow) -> Option<bool> {
        check.judge(flow, &InternalNetwork::cidds001())
    }

    #[test]
    fn t1_udp_without_flags() {
        let udp = flow("UDP", "192.168.1.2", 5000, "DNS", 53);
        assert_eq!(judge(Check::T1, &udp), Some(true));
        let flagged = Flow {
            tcp_flags: TcpFlags(TcpFlags::ACK),
            ..udp.clone()
        };
        assert_eq!(judge(Check::T1, &flagged), Some(false));
        assert_eq!(
            judge(Check::T1, &flow("TCP", "1.2.3.4", 1, "5.6.7.8", 2)),
            None
        );
    }

    #[test]
    fn t2_needs_an_internal_endpoint() {
        assert_eq!(
            judge(Check::T2, &flow("TCP", "192.168.1.2", 1, "DNS", 2)),
            Some(true)
        );
        assert_eq!(
            judge(Check::T2, &flow("TCP", "DNS", 1, "192.168.1.2", 2)),
            Some(true)
        );
        assert_eq!(
            judge(Check::T2, &flow("TCP", "11529_47", 1, "DNS", 2)),
            Some(false)
        );
        assert_eq!(
            judge(Check::T2, &flow("TCP", "10.0.0.1", 1, "8.8.8.8", 2)),
            Some(false)
        );
        let other = InternalNetwork::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let f = flow("TCP", "10.0.0.1", 1, "8.8.8.8", 2);
        assert_eq!(Check::T2.judge(&f, &other), Some(true));
    }

    #[test]
    fn t3_and_t4_skip_labelled_attacks() {
        assert_eq!(
            judge(Check::T3, &flow("TCP", "a", 40000, "b", 443)),
            Some(true)
        );
        assert_eq!(
            judge(Check::T3, &flow("UDP", "a", 80, "b", 40000)),
            Some(false)
        );
        assert_eq!(judge(Check::T3, &flow("UDP", "a", 8080, "b", 40000)), None);
        assert_eq!(
            judge(Check::T4, &flow("UDP", "a", 40000, "b", 53)),
            Some(true)
        );
        assert_eq!(
            judge(Check::T4, &flow("TCP", "a", 53, "b", 40000)),
            Some(false)
        );

        let mut attack = flow("UDP", "a", 40000, "b", 80);
        attack.label = Some(Label {
            class: "attacker".into(),
            ..Label::default()
        });
        assert_eq!(judge(Check::T3, &attack), None);
        attack.label = Some(Label {
            class: "normal".into(),
            ..Label::default()
        });
        assert_eq!(judge(Check::T3, &attack), Some(false));
    }

    #[test]
    fn t5_group_addresses_only_as_destination() {
        let to_mcast = flow("UDP", "192.168.1.2", 5353, "224.0.0.251", 5353);
        assert_eq!(judge(Check::T5, &to_mcast), Some(true));
        let to_bcast = flow("UDP", "192.168.1.2", 68, "255.255.255.255", 67);
        assert_eq!(judge(Check::T5, &to_bcast), Some(true));
        let from_bcast = flow("UDP", "192.168.1.255", 137, "192.168.1.2", 137);
        assert_eq!(judge(Check::T5, &from_bcast), Some(false));
        let both = flow("UDP", "224.0.0.1", 1, "192.168.1.255", 2);
        assert_eq!(judge(Check::T5, &both), Some(false));
        assert_eq!(
            judge(Check::T5, &flow("UDP", "11529_255", 1, "DNS", 2)),
            None
        );
    }

    #[test]
    fn t6_netbios_to_internal_broadcast() {
        let good = flow("UDP", "192.168.100.5", 138, "192.168.100.255", 138);
        assert_eq!(judge(Check::T6, &good), Some(true));
        let unicast = flow("UDP", "192.168.100.5", 137, "192.168.100.6", 137);
        assert_eq!(judge(Check::T6, &unicast), Some(false));
        let external = flow("UDP", "11529_47", 137, "192.168.100.255", 137);
        assert_eq!(judge(Check::T6, &external), Some(false));
        let src_port_only = flow("UDP", "192.168.100.5", 137, "192.168.100.6", 5000);
        assert_eq!(judge(Check::T6, &src_port_only), None);
    }

    #[test]
    fn t7_bytes_per_packet_bounds() {
        let sized = |packets, bytes| Flow {
            packets,
            bytes,
            ..flow("TCP", "a", 1, "b", 2)
        };
        assert_eq!(judge(Check::T7, &sized(2, 84)), Some(true));
        assert_eq!(judge(Check::T7, &sized(2, 83)), Some(false));
        assert_eq!(judge(Check::T7, &sized(1, 65535)), Some(true));
        assert_eq!(judge(Check::T7, &sized(1, 65536)), Some(false));
        assert_eq!(judge(Check::T7, &sized(0, 0)), Some(true));
        assert_eq!(judge(Check::T7, &sized(u64::MAX, u64::MAX)), Some(false));
    }

    #[test]
    fn scores_count_premise_and_pass() {
        let flows = vec![
            flow("UDP", "192.168.1.2", 5000, "DNS", 53),
            Flow {
                tcp_flags: TcpFlags(TcpFlags::SYN),
                ..flow("UDP", "192.168.1.2", 5001, "DNS", 53)
            },
            flow("TCP", "192.168.1.2", 5002, "11529_47", 443),
        ];
        let checks = run_checks(&flows, &InternalNetwork::cidds001());
        assert_eq!(
            checks.t1,
            CheckScore {
                accuracy: Some(50.0),
                premise: 2,
                pass: 1
            }
        );
        assert_eq!(checks.t3.premise, 1);
        assert_eq!(checks.t6.accuracy, None);
        let json = serde_json::to_value(checks).unwrap();
        assert_eq!(json["T1"]["accuracy"], 50.0);
        assert_eq!(json["T6"]["accuracy"], serde_json::Value::Null);
        assert_eq!(json["T2"]["premise"], 3);
    }
}
