//! The flow <-> vector layout shared by the E-WGAN-GP trainer and generator.
//!
//! One flow becomes one row of `FeatureLayout::width()` numbers, in this order:
//!
//! | columns | content | generator activation |
//! | --- | --- | --- |
//! | 1 | time of day, fraction of the UTC day in `[0, 1)` | sigmoid |
//! | 7 | weekday one-hot, Monday first | softmax |
//! | 3 | protocol one-hot: TCP, UDP, ICMP | softmax |
//! | 6 | TCP flag bits in `UAPRSF` order, 0 or 1 | sigmoid |
//! | 7 | source address class one-hot ([`ADDRESS_CLASSES`]) | softmax |
//! | 7 | destination address class one-hot | softmax |
//! | `dim` each | IP2Vec embeddings of source address, destination address, source port, destination port, duration bin, bytes bin, packets bin | tanh |
//!
//! The address class columns are an addition to Ring et al.'s layout:
//! decoding looks for the nearest address only among the words of the
//! generated class, so a slightly-off embedding can no longer turn a DNS
//! server into a subnet broadcast address or an internal host into an
//! external one (the confusions that broke checks T2, T5 and T6 without
//! them); the embedding still picks the host within the class.
//!
//! Embeddings enter the row normalised ([`Normalisation`]): every dimension of a
//! word kind is mapped affinely so that the kind's words span `[-0.9, 0.9]`,
//! inside the range of the generator's tanh, which never reaches +-1.
//!
//! Protocols other than TCP, UDP and ICMP have no column: the trainer leaves
//! such flows out (and counts them), so a model never generates GRE, ESP or
//! ICMPv6 flows. CIDDS-001 holds only the three.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use super::output::{ColumnActivation, OutputActivation};
use super::vocab::ADDRESS_CLASSES;
use crate::flow::{Protocol, TcpFlags};

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The protocols with a one-hot column, in column order.
pub const PROTOCOLS: [Protocol; 3] = [Protocol::TCP, Protocol::UDP, Protocol::ICMP];

/// Weekdays with a one-hot column, Monday first.
pub const WEEKDAYS: usize = 7;

/// Half the span that normalised embedding coordinates cover, inside tanh's range.
pub const EMBEDDING_SPAN: f32 = 0.9;

/// A flow attribute that enters the vector as an IP2Vec embedding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbeddedField {
    /// Source address.
    SrcAddr,
    /// Destination address.
    DstAddr,
    /// Source port.
    SrcPort,
    /// Destination port (ICMP type and code for ICMP flows).
    DstPort,
    /// Duration bin.
    Duration,
    /// Bytes bin.
    Bytes,
    /// Packets bin.
    Packets,
}

impl EmbeddedField {
    /// Every embedded field in column order.
    pub const ALL: [EmbeddedField; 7] = [
        EmbeddedField::SrcAddr,
        EmbeddedField::DstAddr,
        EmbeddedField::SrcPort,
        EmbeddedField::DstPort,
        EmbeddedField::Duration,
        EmbeddedField::Bytes,
        EmbeddedField::Packets,
    ];

    /// The field's name in the manifest's feature layout.
    pub fn name(self) -> &'static str {
        match self {
            EmbeddedField::SrcAddr => "src_addr",
            EmbeddedField::DstAddr => "dst_addr",
            EmbeddedField::SrcPort => "src_port",
            EmbeddedField::DstPort => "dst_port",
            EmbeddedField::Duration => "duration_bin",
            EmbeddedField::Bytes => "bytes_bin",
            EmbeddedField::Packets => "packets_bin",
        }
    }

    /// The vocabulary the field's words come from (addresses and ports share one
    /// between source and destination).
    pub fn kind(self) -> WordKind {
        match self {
            EmbeddedField::SrcAddr | EmbeddedField::DstAddr => WordKind::Address,
            EmbeddedField::SrcPort | EmbeddedField::DstPort => WordKind::Port,
            EmbeddedField::Duration => WordKind::Duration,
            EmbeddedField::Bytes => WordKind::Bytes,
            EmbeddedField::Packets => WordKind::Packets,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A vocabulary of IP2Vec words.
///
/// The first five are embedded into flow vectors; protocol and flags words
/// are context only (IP2Vec learns from them, the vector carries them as
/// one-hot columns and bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WordKind {
    /// Source and destination addresses.
    Address,
    /// Source and destination ports.
    Port,
    /// Duration bins.
    Duration,
    /// Bytes bins.
    Bytes,
    /// Packets bins.
    Packets,
    /// Protocols (context only).
    Protocol,
    /// TCP flag combinations (context only).
    Flags,
}

impl WordKind {
    /// Every kind, in [`WordKind::index`] order.
    pub const ALL: [WordKind; 7] = [
        WordKind::Address,
        WordKind::Port,
        WordKind::Duration,
        WordKind::Bytes,
        WordKind::Packets,
        WordKind::Protocol,
        WordKind::Flags,
    ];

    /// The kinds whose embeddings enter flow vectors.
    pub const EMBEDDED: [WordKind; 5] = [
        WordKind::Address,
        WordKind::Port,
        WordKind::Duration,
        WordKind::Bytes,
        WordKind::Packets,
    ];

    /// Index into per-kind arrays.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The kind's name in files and logs.
    pub fn name(self) -> &'static str {
        match self {
            WordKind::Address => "address",
            WordKind::Port => "port",
            WordKind::Duration => "duration",
            WordKind::Bytes => "bytes",
            WordKind::Packets => "packets",
            WordKind::Protocol => "protocol",
            WordKind::Flags => "flags",
        }
    }
}

/// A named group of consecutive columns, as listed in the manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnGroup {
    /// What the columns hold (`time_of_day`, `weekday`, `src_addr`, ...).
    pub name: String,
    /// First column.
    pub start: usize,
    /// Number of columns.
    pub len: usize,
    /// The generator's output activation over these columns.
    pub activation: OutputActivation,
}

impl ColumnGroup {
    /// The columns as a range.
    pub fn range(&self) -> Range<usize> {
        self.start..self.start + self.len
    }

    /// The group as the generator's output activation over its columns.
    pub fn activation_range(&self) -> ColumnActivation {
        ColumnActivation {
            start: self.start,
            end: self.start + self.len,
            activation: self.activation,
        }
    }
}

/// Where each feature sits in a flow vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureLayout {
    /// Width of every IP2Vec embedding.
    pub embedding_dim: usize,
}

impl FeatureLayout {
    const TIME_OF_DAY: usize = 0;
    const WEEKDAY: usize = 1;
    const PROTOCOL: usize = Self::WEEKDAY + WEEKDAYS;
    const FLAGS: usize = Self::PROTOCOL + PROTOCOLS.len();
    const SRC_CLASS: usize = Self::FLAGS + TcpFlags::UAPRSF.len();
    const DST_CLASS: usize = Self::SRC_CLASS + ADDRESS_CLASSES.len();
    const EMBEDDINGS: usize = Self::DST_CLASS + ADDRESS_CLASSES.len();

    /// A layout with embeddings of `embedding_dim` numbers.
    pub fn new(embedding_dim: usize) -> FeatureLayout {
        FeatureLayout { embedding_dim }
    }

    /// Columns per flow.
    pub fn width(&self) -> usize {
        Self::EMBEDDINGS + EmbeddedField::ALL.len() * self.embedding_dim
    }

    /// The time-of-day column.
    pub fn time_of_day(&self) -> usize {
        Self::TIME_OF_DAY
    }

    /// The weekday one-hot columns.
    pub fn weekday(&self) -> Range<usize> {
        Self::WEEKDAY..Self::WEEKDAY + WEEKDAYS
    }

    /// The protocol one-hot columns.
    pub fn protocol(&self) -> Range<usize> {
        Self::PROTOCOL..Self::PROTOCOL + PROTOCOLS.len()
    }

    /// The TCP flag columns, `UAPRSF` order.
    pub fn flags(&self) -> Range<usize> {
        Self::FLAGS..Self::FLAGS + TcpFlags::UAPRSF.len()
    }

    /// The source address class one-hot columns, [`ADDRESS_CLASSES`] order.
    pub fn src_class(&self) -> Range<usize> {
        Self::SRC_CLASS..Self::SRC_CLASS + ADDRESS_CLASSES.len()
    }

    /// The destination address class one-hot columns, [`ADDRESS_CLASSES`] order.
    pub fn dst_class(&self) -> Range<usize> {
        Self::DST_CLASS..Self::DST_CLASS + ADDRESS_CLASSES.len()
    }

    /// The embedding columns of one field.
    pub fn field(&self, field: EmbeddedField) -> Range<usize> {
        let start = Self::EMBEDDINGS + field.index() * self.embedding_dim;
        start..start + self.embedding_dim
    }

    /// Every column group in order, with its activation: the manifest's feature layout
    /// and the generator's output heads.
    pub fn groups(&self) -> Vec<ColumnGroup> {
        let group = |name: &str, range: Range<usize>, activation| ColumnGroup {
            name: name.to_owned(),
            start: range.start,
            len: range.len(),
            activation,
        };
        let tod = self.time_of_day();
        let mut groups = vec![
            group("time_of_day", tod..tod + 1, OutputActivation::Sigmoid),
            group("weekday", self.weekday(), OutputActivation::Softmax),
            group("protocol", self.protocol(), OutputActivation::Softmax),
            group("tcp_flags", self.flags(), OutputActivation::Sigmoid),
            group(
                "src_addr_class",
                self.src_class(),
                OutputActivation::Softmax,
            ),
            group(
                "dst_addr_class",
                self.dst_class(),
                OutputActivation::Softmax,
            ),
        ];
        for field in EmbeddedField::ALL {
            groups.push(group(
                field.name(),
                self.field(field),
                OutputActivation::Tanh,
            ));
        }
        groups
    }
}

/// The protocol's one-hot column index, `None` for protocols without a column.
pub fn protocol_index(protocol: Protocol) -> Option<usize> {
    PROTOCOLS.iter().position(|&p| p == protocol)
}

/// Fraction of the UTC day at which `start_ms` falls, in `[0, 1)`.
pub fn time_of_day(start_ms: i64) -> f32 {
    (start_ms.rem_euclid(DAY_MS) as f64 / DAY_MS as f64) as f32
}

/// Days since the Unix epoch (UTC) of `start_ms`.
pub fn epoch_day(start_ms: i64) -> i64 {
    start_ms.div_euclid(DAY_MS)
}

/// Weekday of an epoch day, Monday = 0 (1970-01-01 was a Thursday).
pub fn weekday_of_day(epoch_day: i64) -> usize {
    (epoch_day + 3).rem_euclid(7) as usize
}

/// The day within `[first_day, first_day + 7)` that falls on `weekday` (Monday = 0).
pub fn day_in_week(first_day: i64, weekday: usize) -> i64 {
    let offset = (weekday as i64 - weekday_of_day(first_day) as i64).rem_euclid(7);
    first_day + offset
}

/// Start time of a flow on `day` at `fraction` of the day (clamped into the day).
pub fn start_ms(day: i64, fraction: f32) -> i64 {
    let within_ms = (f64::from(fraction) * DAY_MS as f64) as i64;
    day * DAY_MS + within_ms.clamp(0, DAY_MS - 1)
}

/// The six flag bits in `UAPRSF` order as 0.0 / 1.0.
pub fn flag_bits(flags: TcpFlags) -> [f32; 6] {
    TcpFlags::UAPRSF.map(|(bit, _)| if flags.has(bit) { 1.0 } else { 0.0 })
}

/// Flags from generator outputs in `UAPRSF` order: a bit is set above 0.5.
pub fn flags_from_outputs(outputs: &[f32]) -> TcpFlags {
    let mut flags = 0u8;
    for (&(bit, _), &value) in TcpFlags::UAPRSF.iter().zip(outputs) {
        if value > 0.5 {
            flags |= bit;
        }
    }
    TcpFlags(flags)
}

/// Index of the largest value (the first on ties, 0 for an empty slice).
pub fn argmax(values: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate() {
        if v > values[best] {
            best = i;
        }
    }
    best
}

/// Per-dimension affine map between raw IP2Vec vectors and generator space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Raw value that maps to 0, per dimension.
    pub center: Vec<f32>,
    /// Raw distance that maps to [`EMBEDDING_SPAN`], per dimension.
    pub half_range: Vec<f32>,
}

impl Normalisation {
    /// The map that sends the raw `vectors` (row-major, `dim` wide) onto `[-0.9, 0.9]`
    /// per dimension; a dimension with no spread maps to 0.
    pub fn fit(vectors: &[f32], dim: usize) -> Normalisation {
        let mut low = vec![f32::INFINITY; dim];
        let mut high = vec![f32::NEG_INFINITY; dim];
        for row in vectors.chunks_exact(dim) {
            for ((l, h), &v) in low.iter_mut().zip(high.iter_mut()).zip(row) {
                *l = l.min(v);
                *h = h.max(v);
            }
        }
        let center = low.iter().zip(&high).map(|(l, h)| (l + h) / 2.0).collect();
        let half_range = low
            .iter()
            .zip(&high)
            .map(|(l, h)| {
                let half = (h - l) / 2.0;
                if half.is_finite() && half > 0.0 {
                    half
                } else {
                    1.0
                }
            })
            .collect();
        Normalisation { center, half_range }
    }

    /// Dimensions.
    pub fn dim(&self) -> usize {
        self.center.len()
    }

    /// Maps raw vectors (row-major) into generator space.
    pub fn apply(&self, raw: &[f32]) -> Vec<f32> {
        let dim = self.dim();
        let mut out = Vec::with_capacity(raw.len());
        for row in raw.chunks_exact(dim) {
            for ((&v, &c), &h) in row.iter().zip(&self.center).zip(&self.half_range) {
                out.push((v - c) / h * EMBEDDING_SPAN);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_columns_tile_the_row_without_gaps() {
        let layout = FeatureLayout::new(8);
        let groups = layout.groups();
        let mut next = 0;
        for group in &groups {
            assert_eq!(group.start, next, "{} starts after a gap", group.name);
            next += group.len;
        }
        assert_eq!(next, layout.width());
        assert_eq!(layout.width(), 1 + 7 + 3 + 6 + 2 * 7 + 7 * 8);
        assert_eq!(layout.field(EmbeddedField::Packets).end, layout.width());
    }

    #[test]
    fn weekdays_and_days_agree_with_the_calendar() {
        // 2017-04-05 was a Wednesday; 17261 days after the epoch.
        let wednesday = epoch_day(1_491_350_400_000);
        assert_eq!(wednesday, 17_261);
        assert_eq!(weekday_of_day(wednesday), 2);
        assert_eq!(day_in_week(wednesday, 2), wednesday);
        assert_eq!(day_in_week(wednesday, 0), wednesday + 5);
        assert_eq!(day_in_week(wednesday, 1), wednesday + 6);
        assert_eq!(weekday_of_day(day_in_week(wednesday, 6)), 6);
    }

    #[test]
    fn time_of_day_round_trips_through_start_ms() {
        let ms = 1_491_350_400_000 + 15 * 3_600_000 + 31 * 60_000 + 29_795;
        let fraction = time_of_day(ms);
        let back = start_ms(epoch_day(ms), fraction);
        assert!((back - ms).abs() < 10, "{back} vs {ms}");
        assert_eq!(start_ms(0, 1.5), DAY_MS - 1);
        assert_eq!(start_ms(0, -0.5), 0);
    }

    #[test]
    fn flags_round_trip_through_bits() {
        for mask in 0..64u8 {
            let flags = TcpFlags(mask);
            assert_eq!(flags_from_outputs(&flag_bits(flags)), flags);
        }
        assert_eq!(flag_bits(TcpFlags(0x1b)), [0.0, 1.0, 1.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn normalisation_spans_the_tanh_range() {
        let raw = [0.0, 5.0, 2.0, 5.0, 4.0, 5.0];
        let norm = Normalisation::fit(&raw, 2);
        let out = norm.apply(&raw);
        assert_eq!(out, vec![-0.9, 0.0, 0.0, 0.0, 0.9, 0.0]);
    }

    #[test]
    fn only_tcp_udp_icmp_have_columns() {
        assert_eq!(protocol_index(Protocol::UDP), Some(1));
        assert_eq!(protocol_index(Protocol::GRE), None);
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
    }
}
