//! Ring et al.'s baseline: every attribute drawn independently from its
//! empirical distribution in the training flows.
//!
//! The bundle stores one value-to-count table per attribute in
//! `baseline.json` (written on one line; shown indented here):
//!
//! ```json
//! {
//!   "about": "...",
//!   "flows": 4608,
//!   "tables": {
//!     "start_day": [["2017-04-05", 612], ...],
//!     "start_second_of_day": [[0, 3], ...],
//!     "start_millisecond": [[0, 9], ...],
//!     "duration_ms": [[0, 2634], ...],
//!     "protocol": [[6, 3907], [17, 700], [1, 1]],
//!     "src_addr": [["192.168.220.14", 101], ["DNS", 40], ...],
//!     "dst_addr": [...], "src_port": [[80, 77], ...], "dst_port": [...],
//!     "packets": [[1, 1760], ...], "bytes": [[66, 590], ...],
//!     "tcp_flags": [[16, 1650], ...], "tos": [[0, 4608]]
//!   }
//! }
//! ```
//!
//! Each table lists `[value, count]` pairs sorted by value; a value is drawn
//! with probability count / total. The start time is split into UTC day,
//! second of the day and millisecond, each drawn on its own. Flags are the
//! TCP flags octet, protocols IANA numbers, addresses as the file spelled
//! them. Because attributes are independent, generated flows break the
//! rules real traffic follows (UDP flows with TCP flags, byte counts that
//! packets cannot carry): that is the point of the baseline. The one
//! exception is the record's ICMP convention: ICMP flows get source port 0,
//! and their destination port, drawn like any other, is read as type and code.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::path::Path;

use chrono::{DateTime, NaiveDate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::bundle::{read_json, write_json_compact, BundleError};
use super::FlowGenerator;
use crate::flow::{Address, Flow, Protocol, TcpFlags};

/// The baseline's file name inside a bundle.
pub const BASELINE_FILE: &str = "baseline.json";

const MS_PER_DAY: i64 = 86_400_000;

/// What `baseline.json` says about itself, for a reader who opens it.
const ABOUT: &str = "flowgen empirical baseline (Ring et al. 2019): each table maps an attribute \
                     value to its count in the training flows; generation draws every attribute \
                     independently with probability count / total";

/// `[value, count]` pairs, sorted by value.
pub type Table<V> = Vec<(V, u64)>;

/// The per-attribute tables as stored in `baseline.json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BaselineTables {
    /// UTC day of the start, `YYYY-MM-DD`.
    pub start_day: Table<String>,
    /// Seconds since UTC midnight of the start, 0 to 86399.
    pub start_second_of_day: Table<u32>,
    /// Millisecond within the second of the start, 0 to 999.
    pub start_millisecond: Table<u16>,
    /// Duration, milliseconds.
    pub duration_ms: Table<u64>,
    /// IANA protocol number.
    pub protocol: Table<u8>,
    /// Source address or anonymised token.
    pub src_addr: Table<String>,
    /// Destination address or anonymised token.
    pub dst_addr: Table<String>,
    /// Source port.
    pub src_port: Table<u16>,
    /// Destination port (ICMP type * 256 + code for ICMP flows).
    pub dst_port: Table<u16>,
    /// Packets per flow.
    pub packets: Table<u64>,
    /// Bytes per flow.
    pub bytes: Table<u64>,
    /// TCP flags octet.
    pub tcp_flags: Table<u8>,
    /// Type-of-service octet.
    pub tos: Table<u8>,
}

/// The whole `baseline.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineFile {
    /// A sentence explaining the file.
    pub about: String,
    /// Training flows counted into the tables.
    pub flows: u64,
    /// One table per attribute.
    pub tables: BaselineTables,
}

/// Counts attribute values of training flows, one flow at a time.
#[derive(Debug, Default)]
pub struct BaselineCounter {
    flows: u64,
    start_day: HashMap<i64, u64>,
    start_second_of_day: HashMap<u32, u64>,
    start_millisecond: HashMap<u16, u64>,
    duration_ms: HashMap<u64, u64>,
    protocol: HashMap<u8, u64>,
    src_addr: HashMap<Address, u64>,
    dst_addr: HashMap<Address, u64>,
    src_port: HashMap<u16, u64>,
    dst_port: HashMap<u16, u64>,
    packets: HashMap<u64, u64>,
    bytes: HashMap<u64, u64>,
    tcp_flags: HashMap<u8, u64>,
    tos: HashMap<u8, u64>,
}

impl BaselineCounter {
    /// An empty counter.
    pub fn new() -> BaselineCounter {
        BaselineCounter::default()
    }

    /// Counts one training flow.
    pub fn add(&mut self, flow: &Flow) {
        fn bump<K: Hash + Eq>(map: &mut HashMap<K, u64>, key: K) {
            *map.entry(key).or_insert(0) += 1;
        }
        let day = flow.start_ms.div_euclid(MS_PER_DAY);
        let ms_of_day = flow.start_ms.rem_euclid(MS_PER_DAY);
        self.flows += 1;
        bump(&mut self.start_day, day);
        bump(&mut self.start_second_of_day, (ms_of_day / 1000) as u32);
        bump(&mut self.start_millisecond, (ms_of_day % 1000) as u16);
        bump(&mut self.duration_ms, flow.duration_ms);
        bump(&mut self.protocol, flow.protocol.0);
        bump(&mut self.src_addr, flow.src.clone());
        bump(&mut self.dst_addr, flow.dst.clone());
        bump(&mut self.src_port, flow.src_port);
        bump(&mut self.dst_port, flow.dst_port);
        bump(&mut self.packets, flow.packets);
        bump(&mut self.bytes, flow.bytes);
        bump(&mut self.tcp_flags, flow.tcp_flags.0);
        bump(&mut self.tos, flow.tos);
    }

    /// Flows counted so far.
    pub fn flows(&self) -> u64 {
        self.flows
    }

    /// The tables as `baseline.json` stores them.
    pub fn finish(self) -> BaselineFile {
        fn sorted<K: Ord, V>(map: HashMap<K, u64>, name: impl Fn(K) -> V) -> Table<V> {
            let ordered: BTreeMap<K, u64> = map.into_iter().collect();
            ordered.into_iter().map(|(k, n)| (name(k), n)).collect()
        }
        let day_name = |day: i64| {
            DateTime::from_timestamp_millis(day.saturating_mul(MS_PER_DAY))
                .map_or_else(|| day.to_string(), |d| d.format("%Y-%m-%d").to_string())
        };
        BaselineFile {
            about: ABOUT.to_owned(),
            flows: self.flows,
            tables: BaselineTables {
                start_day: sorted(self.start_day, day_name),
                start_second_of_day: sorted(self.start_second_of_day, |v| v),
                start_millisecond: sorted(self.start_millisecond, |v| v),
                duration_ms: sorted(self.duration_ms, |v| v),
                protocol: sorted(self.protocol, |v| v),
                src_addr: sorted(self.src_addr, |a| a.to_string()),
                dst_addr: sorted(self.dst_addr, |a| a.to_string()),
                src_port: sorted(self.src_port, |v| v),
                dst_port: sorted(self.dst_port, |v| v),
                packets: sorted(self.packets, |v| v),
                bytes: sorted(self.bytes, |v| v),
                tcp_flags: sorted(self.tcp_flags, |v| v),
                tos: sorted(self.tos, |v| v),
            },
        }
    }
}

/// Writes `baseline.json` into a bundle folder.
pub fn write(dir: &Path, file: &BaselineFile) -> Result<(), BundleError> {
    write_json_compact(&dir.join(BASELINE_FILE), file)
}

/// Draws values of one attribute with their empirical probabilities.
#[derive(Clone, Debug)]
struct Empirical<V> {
    values: Vec<V>,
    /// Running total of counts up to and including each value.
    cumulative: Vec<u64>,
}

impl<V: Clone> Empirical<V> {
    /// Builds the sampler, converting each value; `Err` names what is wrong.
    fn new<S>(
        name: &str,
        table: &Table<S>,
        convert: impl Fn(&S) -> Option<V>,
    ) -> Result<Empirical<V>, String>
    where
        S: std::fmt::Debug,
    {
        let mut values = Vec::with_capacity(table.len());
        let mut cumulative = Vec::with_capacity(table.len());
        let mut total = 0u64;
        for (value, count) in table.iter().filter(|(_, count)| *count > 0) {
            let converted =
                convert(value).ok_or_else(|| format!("table {name}: bad value {value:?}"))?;
            total = total
                .checked_add(*count)
                .ok_or_else(|| format!("table {name}: counts overflow"))?;
            values.push(converted);
            cumulative.push(total);
        }
        if total == 0 {
            return Err(format!("table {name} is empty"));
        }
        Ok(Empirical { values, cumulative })
    }

    fn draw(&self, rng: &mut impl Rng) -> V {
        let total = self.cumulative.last().copied().unwrap_or(0);
        let ticket = rng.random_range(0..total.max(1));
        let index = self.cumulative.partition_point(|&c| c <= ticket);
        self.values[index.min(self.values.len() - 1)].clone()
    }
}

fn copy_value<V: Copy>(value: &V) -> Option<V> {
    Some(*value)
}

/// The baseline, loaded and ready to draw flows.
#[derive(Clone, Debug)]
pub struct BaselineGenerator {
    rng: ChaCha8Rng,
    start_day: Empirical<i64>,
    start_second_of_day: Empirical<u32>,
    start_millisecond: Empirical<u16>,
    duration_ms: Empirical<u64>,
    protocol: Empirical<u8>,
    src_addr: Empirical<Address>,
    dst_addr: Empirical<Address>,
    src_port: Empirical<u16>,
    dst_port: Empirical<u16>,
    packets: Empirical<u64>,
    bytes: Empirical<u64>,
    tcp_flags: Empirical<u8>,
    tos: Empirical<u8>,
}

impl BaselineGenerator {
    /// Loads `baseline.json` from a bundle folder; the seed fixes every draw.
    pub fn load(dir: &Path, seed: u64) -> Result<BaselineGenerator, BundleError> {
        let path = dir.join(BASELINE_FILE);
        let file: BaselineFile = read_json(&path)?;
        BaselineGenerator::from_tables(&file.tables, seed)
            .map_err(|message| BundleError::CorruptFile { path, message })
    }

    /// Builds the generator from tables; `Err` says which table is wrong.
    pub fn from_tables(tables: &BaselineTables, seed: u64) -> Result<BaselineGenerator, String> {
        let day = |text: &String| {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis() / MS_PER_DAY)
        };
        let address = |text: &String| Address::parse(text);
        Ok(BaselineGenerator {
            rng: ChaCha8Rng::seed_from_u64(seed),
            start_day: Empirical::new("start_day", &tables.start_day, day)?,
            start_second_of_day: Empirical::new(
                "start_second_of_day",
                &tables.start_second_of_day,
                |&s: &u32| (s < 86_400).then_some(s),
            )?,
            start_millisecond: Empirical::new(
                "start_millisecond",
                &tables.start_millisecond,
                |&ms: &u16| (ms < 1000).then_some(ms),
            )?,
            duration_ms: Empirical::new("duration_ms", &tables.duration_ms, copy_value)?,
            protocol: Empirical::new("protocol", &tables.protocol, copy_value)?,
            src_addr: Empirical::new("src_addr", &tables.src_addr, address)?,
            dst_addr: Empirical::new("dst_addr", &tables.dst_addr, address)?,
            src_port: Empirical::new("src_port", &tables.src_port, copy_value)?,
            dst_port: Empirical::new("dst_port", &tables.dst_port, copy_value)?,
            packets: Empirical::new("packets", &tables.packets, copy_value)?,
            bytes: Empirical::new("bytes", &tables.bytes, copy_value)?,
            tcp_flags: Empirical::new("tcp_flags", &tables.tcp_flags, copy_value)?,
            tos: Empirical::new("tos", &tables.tos, copy_value)?,
        })
    }

    /// Draws one flow.
    pub fn draw(&mut self) -> Flow {
        let rng = &mut self.rng;
        let start_ms = self.start_day.draw(rng).saturating_mul(MS_PER_DAY)
            + i64::from(self.start_second_of_day.draw(rng)) * 1000
            + i64::from(self.start_millisecond.draw(rng));
        let duration_ms = self.duration_ms.draw(rng);
        let protocol = Protocol(self.protocol.draw(rng));
        let src = self.src_addr.draw(rng);
        let dst = self.dst_addr.draw(rng);
        let src_port = self.src_port.draw(rng);
        let dst_port = self.dst_port.draw(rng);
        Flow {
            start_ms,
            duration_ms,
            protocol,
            src,
            dst,
            src_port: if protocol.is_icmp() { 0 } else { src_port },
            dst_port,
            packets: self.packets.draw(rng),
            bytes: self.bytes.draw(rng),
            tcp_flags: TcpFlags(self.tcp_flags.draw(rng)),
            tos: self.tos.draw(rng),
            label: None,
        }
    }
}

impl FlowGenerator for BaselineGenerator {
    fn generate(&mut self, count: usize, out: &mut Vec<Flow>) -> Result<(), BundleError> {
        out.reserve(count);
        for _ in 0..count {
            out.push(self.draw());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(start_ms: i64, protocol: Protocol, src: &str, dst_port: u16, flags: u8) -> Flow {
        Flow {
            start_ms,
            duration_ms: 5,
            protocol,
            src: Address::parse(src).unwrap(),
            dst: Address::parse("192.168.100.3").unwrap(),
            src_port: 40000,
            dst_port,
            packets: 2,
            bytes: 120,
            tcp_flags: TcpFlags(flags),
            tos: 0,
            label: None,
        }
    }

    fn counted(flows: &[Flow]) -> BaselineFile {
        let mut counter = BaselineCounter::new();
        flows.iter().for_each(|f| counter.add(f));
        counter.finish()
    }

    #[test]
    fn tables_count_each_attribute() {
        // 2017-04-11 15:31:29.795 UTC, and the same time one day earlier.
        let t = 1_491_924_689_795;
        let file = counted(&[
            flow(t, Protocol::TCP, "DNS", 443, 0x1b),
            flow(t - MS_PER_DAY, Protocol::UDP, "DNS", 53, 0),
            flow(t, Protocol::TCP, "11529_47", 443, 0x10),
        ]);
        let tables = &file.tables;
        assert_eq!(file.flows, 3);
        assert_eq!(
            tables.start_day,
            vec![("2017-04-10".into(), 1), ("2017-04-11".into(), 2)]
        );
        assert_eq!(
            tables.start_second_of_day,
            vec![(15 * 3600 + 31 * 60 + 29, 3)]
        );
        assert_eq!(tables.start_millisecond, vec![(795, 3)]);
        assert_eq!(tables.protocol, vec![(6, 2), (17, 1)]);
        assert_eq!(
            tables.src_addr,
            vec![("11529_47".into(), 1), ("DNS".into(), 2)]
        );
        assert_eq!(tables.dst_port, vec![(53, 1), (443, 2)]);
        assert_eq!(tables.tcp_flags, vec![(0, 1), (16, 1), (27, 1)]);
    }

    #[test]
    fn draws_follow_the_counts_and_repeat_with_the_seed() {
        let t = 1_491_924_689_795;
        let mut flows = vec![flow(t, Protocol::TCP, "DNS", 443, 0x1b); 3];
        flows.push(flow(t, Protocol::UDP, "10.0.0.1", 53, 0));
        let tables = counted(&flows).tables;

        let mut generator = BaselineGenerator::from_tables(&tables, 9).unwrap();
        let mut drawn = Vec::new();
        generator.generate(8000, &mut drawn).unwrap();
        let tcp = drawn.iter().filter(|f| f.protocol == Protocol::TCP).count();
        // Expected 6000 of 8000 (probability 3/4); four standard deviations is about 155.
        assert!((5845..6155).contains(&tcp), "{tcp}");
        assert!(drawn.iter().all(|f| f.start_ms == t));

        let mut again = Vec::new();
        BaselineGenerator::from_tables(&tables, 9)
            .unwrap()
            .generate(8000, &mut again)
            .unwrap();
        assert_eq!(drawn, again);
        let mut other = Vec::new();
        BaselineGenerator::from_tables(&tables, 10)
            .unwrap()
            .generate(8000, &mut other)
            .unwrap();
        assert_ne!(drawn, other);
    }

    #[test]
    fn icmp_flows_keep_source_port_zero() {
        let t = 1_491_924_689_795;
        let tables = counted(&[
            flow(t, Protocol::ICMP, "DNS", 771, 0),
            flow(t, Protocol::TCP, "DNS", 443, 0),
        ])
        .tables;
        let mut drawn = Vec::new();
        BaselineGenerator::from_tables(&tables, 1)
            .unwrap()
            .generate(200, &mut drawn)
            .unwrap();
        assert!(drawn
            .iter()
            .filter(|f| f.protocol.is_icmp())
            .all(|f| f.src_port == 0));
        assert!(drawn.iter().any(|f| f.protocol.is_icmp()));
    }

    #[test]
    fn corrupt_tables_name_the_table() {
        let mut tables = counted(&[flow(0, Protocol::TCP, "DNS", 443, 0)]).tables;
        tables.src_addr = vec![("not an address".into(), 1)];
        let err = BaselineGenerator::from_tables(&tables, 0).unwrap_err();
        assert!(err.contains("table src_addr"), "{err}");
        tables.src_addr = vec![];
        let err = BaselineGenerator::from_tables(&tables, 0).unwrap_err();
        assert_eq!(err, "table src_addr is empty");
    }

    #[test]
    fn baseline_files_round_trip_through_a_bundle() {
        let dir = tempfile::tempdir().unwrap();
        let file = counted(&[flow(0, Protocol::TCP, "DNS", 443, 0x12)]);
        write(dir.path(), &file).unwrap();
        let mut generator = BaselineGenerator::load(dir.path(), 3).unwrap();
        assert_eq!(generator.draw(), flow(0, Protocol::TCP, "DNS", 443, 0x12));

        std::fs::write(dir.path().join(BASELINE_FILE), "{}").unwrap();
        let err = BaselineGenerator::load(dir.path(), 3).unwrap_err();
        assert!(
            err.to_string()
                .contains("baseline.json: corrupt model file"),
            "{err}"
        );
    }
}
