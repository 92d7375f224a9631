//! The E-WGAN-GP codebook: everything besides the generator network that
//! maps flows to vectors and back, stored in the bundle as `codebook.json`.
//!
//! ```json
//! {
//!   "format": "flowgen-ewgan-codebook/1",
//!   "layout": {"embedding_dim": 8},
//!   "address_classes": {"internal": ["192.168.0.0/16"]},
//!   "first_date": "2017-04-05",
//!   "time_of_day_profile": [0.004, ...],
//!   "weekday_profile": [0.16, ...],
//!   "addresses": [{"word": "value", "value": "DNS", "count": 690},
//!                 {"word": "rare", "class": "token", "count": 900, "values": ["10011_12", ...]},
//!                 {"word": "unknown"}],
//!   "ports": [{"word": "value", "value": "443", "count": 2140}, ...],
//!   "volumes": {"duration": {"lower_edges": [0, 1, ...]}, "packets": {...}, "bytes": {...},
//!               "cells": [{"duration_bin": 0, "packets_bin": 0, "bytes_bin": 3,
//!                          "volumes": [[0, 1, 66], ...]}, ...]},
//!   "embeddings": {"address": {"vectors": [[0.12, ...], ...],
//!                              "normalisation": {"center": [...], "half_range": [...]}},
//!                  "port": {...}, "duration": {...}, "bytes": {...}, "packets": {...}}
//! }
//! ```
//!
//! - `first_date`: first UTC day of the training flows; generated flows fall
//!   on the day of their generated weekday within the seven days from it.
//! - `time_of_day_profile`: share of training flows starting in each
//!   quarter hour of the UTC day (96 values summing to 1), for a diurnal
//!   send rate; `weekday_profile`: share per weekday, Monday first.
//! - `addresses`, `ports`: vocabularies ([`super::vocab`]), word id = index.
//! - `volumes`: the duration (ms), packets and bytes bins and the real
//!   `[duration_ms, packets, bytes]` triples of each populated bin cell
//!   ([`super::bins`]); the bin index is the word id.
//! - `embeddings`: raw IP2Vec vectors per word, and the per-dimension map
//!   into generator space: `normalised = (raw - center) / half_range * 0.9`.

use std::collections::HashMap;
use std::path::Path;

use chrono::NaiveDate;
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::bins::{BinParams, Volume, VolumeBins};
use super::bundle::{read_json, BundleError};
use super::features::{
    epoch_day, flag_bits, protocol_index, time_of_day, weekday_of_day, EmbeddedField,
    FeatureLayout, Normalisation, WordKind, DAY_MS,
};
use super::ip2vec::{self, Corpus, Embeddings, Ip2VecError, Ip2VecParams, Slot, SLOTS};
use super::vocab::{
    port_class, AddressClasses, VocabParams, Vocabulary, Word, WordId, ADDRESS_CLASSES,
};
use super::wgan::Progress;
use crate::flow::{Address, Flow};

/// The codebook's file name inside a bundle.
pub const CODEBOOK_FILE: &str = "codebook.json";

/// The codebook format this build reads and writes.
pub const CODEBOOK_FORMAT: &str = "flowgen-ewgan-codebook/1";

/// Quarter hours per day in the time-of-day profile.
pub const PROFILE_SLOTS: usize = 96;

/// Flag words: the six `UAPRSF` bits as a number.
pub const FLAG_WORDS: usize = 64;

/// One kind's raw IP2Vec vectors and their map into generator space.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingTable {
    /// One raw vector per word, in word order.
    pub vectors: Vec<Vec<f32>>,
    /// Raw -> generator space.
    pub normalisation: Normalisation,
}

impl EmbeddingTable {
    /// The vectors in generator space, row-major.
    pub fn normalised(&self) -> Vec<f32> {
        let raw: Vec<f32> = self.vectors.iter().flatten().copied().collect();
        self.normalisation.apply(&raw)
    }
}

/// The embedding tables of the embedded kinds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbeddingTables {
    /// Addresses.
    pub address: EmbeddingTable,
    /// Ports.
    pub port: EmbeddingTable,
    /// Duration bins.
    pub duration: EmbeddingTable,
    /// Bytes bins.
    pub bytes: EmbeddingTable,
    /// Packets bins.
    pub packets: EmbeddingTable,
}

impl EmbeddingTables {
    /// The table of an embedded kind; `None` for context-only kinds.
    pub fn get(&self, kind: WordKind) -> Option<&EmbeddingTable> {
        match kind {
            WordKind::Address => Some(&self.address),
            WordKind::Port => Some(&self.port),
            WordKind::Duration => Some(&self.duration),
            WordKind::Bytes => Some(&self.bytes),
            WordKind::Packets => Some(&self.packets),
            WordKind::Protocol | WordKind::Flags => None,
        }
    }
}

/// Vocabularies, bins, embeddings and calendar of a trained E-WGAN-GP model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Codebook {
    /// [`CODEBOOK_FORMAT`].
    pub format: String,
    /// The vector layout.
    pub layout: FeatureLayout,
    /// How addresses were classed for rare-value pooling.
    pub address_classes: AddressClasses,
    /// First UTC day of the training flows, `YYYY-MM-DD`.
    pub first_date: String,
    /// Share of training flows per quarter hour of the UTC day.
    pub time_of_day_profile: Vec<f64>,
    /// Share of training flows per weekday, Monday first.
    pub weekday_profile: Vec<f64>,
    /// Address vocabulary (source and destination).
    pub addresses: Vocabulary<Address>,
    /// Port vocabulary (source and destination).
    pub ports: Vocabulary<u16>,
    /// Duration, packets and bytes bins with their real volumes.
    pub volumes: VolumeBins,
    /// IP2Vec vectors of every embedded kind.
    pub embeddings: EmbeddingTables,
    /// First UTC day as days since the epoch, from `first_date`.
    #[serde(skip)]
    pub first_day: i64,
}

/// Knobs for fitting a codebook to training flows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CodebookParams {
    /// Address vocabulary (counts over source and destination together).
    pub addresses: VocabParams,
    /// Port vocabulary (counts over source and destination together).
    pub ports: VocabParams,
    /// Duration, packets and bytes bins.
    pub bins: BinParams,
    /// The skip-gram.
    pub ip2vec: Ip2VecParams,
    /// How addresses are classed for rare-value pooling.
    pub address_classes: AddressClasses,
}

impl Codebook {
    /// Fits vocabularies, bins and IP2Vec embeddings to the training flows,
    /// reproducibly for a seed; flows of protocols without a column are ignored.
    pub fn fit(
        flows: &[Flow],
        params: &CodebookParams,
        seed: u64,
        progress: Progress,
    ) -> Result<Codebook, Ip2VecError> {
        let flows: Vec<&Flow> = flows
            .iter()
            .filter(|f| protocol_index(f.protocol).is_some())
            .collect();
        let first = flows
            .iter()
            .map(|f| epoch_day(f.start_ms))
            .min()
            .ok_or(Ip2VecError::EmptyCorpus)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let classes = params.address_classes.clone();

        let mut address_counts: HashMap<Address, u64> = HashMap::new();
        let mut port_counts: HashMap<u16, u64> = HashMap::new();
        for flow in &flows {
            for address in [&flow.src, &flow.dst] {
                *address_counts.entry(address.clone()).or_default() += 1;
            }
            for port in [flow.src_port, flow.dst_port] {
                *port_counts.entry(port).or_default() += 1;
            }
        }
        let addresses = Vocabulary::build(
            address_counts,
            &params.addresses,
            |a| classes.class_of(a),
            &mut rng,
        );
        let ports = Vocabulary::build(port_counts, &params.ports, port_class, &mut rng);
        let all_volumes: Vec<Volume> = flows.iter().map(|f| volume_of(f)).collect();
        let volumes = VolumeBins::fit(&all_volumes, &params.bins, |cell, cap| {
            let mut keep = rand::seq::index::sample(&mut rng, cell.len(), cap).into_vec();
            keep.sort_unstable();
            *cell = keep.into_iter().map(|i| cell[i]).collect();
        });
        let (time_of_day_profile, weekday_profile) = calendar_profiles(flows.iter().copied());
        let first_date =
            (NaiveDate::default() + chrono::Days::new(first.max(0) as u64)).to_string();

        let dim = params.ip2vec.dim;
        let placeholder = || EmbeddingTable {
            vectors: Vec::new(),
            normalisation: Normalisation::fit(&[], dim),
        };
        let mut codebook = Codebook {
            format: CODEBOOK_FORMAT.to_owned(),
            layout: FeatureLayout::new(dim),
            address_classes: classes.clone(),
            first_date,
            time_of_day_profile,
            weekday_profile,
            addresses,
            ports,
            volumes,
            embeddings: EmbeddingTables {
                address: placeholder(),
                port: placeholder(),
                duration: placeholder(),
                bytes: placeholder(),
                packets: placeholder(),
            },
            first_day: first,
        };

        let corpus = Corpus {
            vocab_sizes: WordKind::ALL.map(|k| match k {
                WordKind::Protocol => super::features::PROTOCOLS.len(),
                WordKind::Flags => FLAG_WORDS,
                _ => codebook.word_count(k),
            }),
            sentences: flows.iter().filter_map(|f| codebook.words_of(f)).collect(),
        };
        let embeddings = ip2vec::train(&corpus, &params.ip2vec, rng.next_u64(), progress)?;
        codebook.embeddings = codebook.tables_from(&embeddings);
        Ok(codebook)
    }

    /// Embedding tables from trained vectors, normalised over the decodable words.
    fn tables_from(&self, embeddings: &Embeddings) -> EmbeddingTables {
        let dim = embeddings.dim;
        let table = |kind: WordKind| {
            let raw = embeddings.table(kind);
            let decodable: Vec<f32> = raw
                .chunks_exact(dim)
                .enumerate()
                .filter(|(w, _)| self.is_decodable(kind, *w as WordId))
                .flat_map(|(_, v)| v.iter().copied())
                .collect();
            EmbeddingTable {
                vectors: raw.chunks_exact(dim).map(<[f32]>::to_vec).collect(),
                normalisation: Normalisation::fit(&decodable, dim),
            }
        };
        EmbeddingTables {
            address: table(WordKind::Address),
            port: table(WordKind::Port),
            duration: table(WordKind::Duration),
            bytes: table(WordKind::Bytes),
            packets: table(WordKind::Packets),
        }
    }

    /// Reads and checks `codebook.json`.
    pub fn read(path: &Path) -> Result<Codebook, BundleError> {
        let mut codebook: Codebook = read_json(path)?;
        codebook
            .check()
            .map_err(|message| BundleError::CorruptFile {
                path: path.to_path_buf(),
                message,
            })?;
        Ok(codebook)
    }

    /// Checks the parts against each other and fills `first_day`.
    pub fn check(&mut self) -> Result<(), String> {
        if self.format != CODEBOOK_FORMAT {
            return Err(format!(
                "format {:?} is not supported (this flowgen reads {CODEBOOK_FORMAT:?})",
                self.format
            ));
        }
        let date = NaiveDate::parse_from_str(&self.first_date, "%Y-%m-%d")
            .map_err(|e| format!("first_date {:?}: {e}", self.first_date))?;
        self.first_day = date.signed_duration_since(NaiveDate::default()).num_days();
        let dim = self.layout.embedding_dim;
        if dim == 0 {
            return Err("layout.embedding_dim is 0".into());
        }
        for kind in WordKind::EMBEDDED {
            let table = self.embeddings.get(kind).ok_or("missing table")?;
            let words = self.word_count(kind);
            if table.vectors.len() != words {
                return Err(format!(
                    "embeddings.{}: {} vectors for {words} words",
                    kind.name(),
                    table.vectors.len()
                ));
            }
            if let Some(bad) = table.vectors.iter().position(|v| v.len() != dim) {
                return Err(format!(
                    "embeddings.{}: vector {bad} is not {dim} wide",
                    kind.name()
                ));
            }
            let norm = &table.normalisation;
            if norm.center.len() != dim || norm.half_range.len() != dim {
                return Err(format!(
                    "embeddings.{}.normalisation is not {dim} wide",
                    kind.name()
                ));
            }
        }
        if self.volumes.cells.iter().all(|c| c.volumes.is_empty()) {
            return Err("volumes: no populated bin cell".into());
        }
        Ok(())
    }

    /// Words of an embedded kind (bins: one word per bin); 0 for context-only kinds.
    pub fn word_count(&self, kind: WordKind) -> usize {
        match kind {
            WordKind::Address => self.addresses.len(),
            WordKind::Port => self.ports.len(),
            WordKind::Duration => self.volumes.duration.len(),
            WordKind::Bytes => self.volumes.bytes.len(),
            WordKind::Packets => self.volumes.packets.len(),
            WordKind::Protocol | WordKind::Flags => 0,
        }
    }

    /// Whether decoding may emit `word` of `kind` (every bin; no unknown word).
    pub fn is_decodable(&self, kind: WordKind, word: WordId) -> bool {
        let i = word as usize;
        match kind {
            WordKind::Address => self
                .addresses
                .words()
                .get(i)
                .is_some_and(Word::is_decodable),
            WordKind::Port => self.ports.words().get(i).is_some_and(Word::is_decodable),
            _ => i < self.word_count(kind),
        }
    }

    /// The class ([`ADDRESS_CLASSES`] index) of an address word; `None` for the unknown word.
    pub fn address_word_class(&self, word: WordId) -> Option<usize> {
        match self.addresses.words().get(word as usize)? {
            Word::Value { value, .. } => Some(self.address_classes.class_index(value)),
            Word::Rare { class, .. } => ADDRESS_CLASSES.iter().position(|c| c == class),
            Word::Unknown => None,
        }
    }

    /// The generator-space vectors of an embedded kind, row-major.
    pub fn normalised_table(&self, kind: WordKind) -> Vec<f32> {
        self.embeddings
            .get(kind)
            .map(EmbeddingTable::normalised)
            .unwrap_or_default()
    }

    /// The words of a flow in [`Slot::ALL`] order; `None` for protocols without a column.
    pub fn words_of(&self, flow: &Flow) -> Option<[WordId; SLOTS]> {
        let protocol = protocol_index(flow.protocol)? as WordId;
        let classes = &self.address_classes;
        let address = |a: &Address| self.addresses.encode(a, |a| classes.class_of(a));
        let port = |p: u16| self.ports.encode(&p, port_class);
        let [duration, packets, bytes] = self.volumes.bins_of(&volume_of(flow));
        let mut words = [0; SLOTS];
        for slot in Slot::ALL {
            words[slot.index()] = match slot {
                Slot::SrcAddr => address(&flow.src),
                Slot::DstAddr => address(&flow.dst),
                Slot::SrcPort => port(flow.src_port),
                Slot::DstPort => port(flow.dst_port),
                Slot::Protocol => protocol,
                Slot::Flags => flag_word(flow),
                Slot::Duration => duration as WordId,
                Slot::Bytes => bytes as WordId,
                Slot::Packets => packets as WordId,
            };
        }
        Some(words)
    }
}

/// The flow's duration, packets and bytes.
pub fn volume_of(flow: &Flow) -> Volume {
    Volume {
        duration_ms: flow.duration_ms,
        packets: flow.packets,
        bytes: flow.bytes,
    }
}

/// The flag word of a flow: its six `UAPRSF` bits as a number below [`FLAG_WORDS`].
pub fn flag_word(flow: &Flow) -> WordId {
    WordId::from(flow.tcp_flags.0 & 0x3f)
}

/// Share of flows per quarter hour of the UTC day and per weekday.
pub fn calendar_profiles<'a>(flows: impl IntoIterator<Item = &'a Flow>) -> (Vec<f64>, Vec<f64>) {
    let mut quarters = vec![0u64; PROFILE_SLOTS];
    let mut weekdays = vec![0u64; 7];
    for flow in flows {
        let within = flow.start_ms.rem_euclid(DAY_MS);
        quarters[(within * PROFILE_SLOTS as i64 / DAY_MS) as usize] += 1;
        weekdays[weekday_of_day(epoch_day(flow.start_ms))] += 1;
    }
    let shares = |counts: Vec<u64>| {
        let total = counts.iter().sum::<u64>().max(1) as f64;
        counts.into_iter().map(|c| c as f64 / total).collect()
    };
    (shares(quarters), shares(weekdays))
}

/// Turns flows into generator-space rows with a codebook.
#[derive(Clone, Debug)]
pub struct FlowEncoder {
    codebook: Codebook,
    /// Normalised tables by [`WordKind::index`] (empty for context-only kinds).
    tables: Vec<Vec<f32>>,
}

impl FlowEncoder {
    /// Prepares the normalised tables of `codebook`.
    pub fn new(codebook: Codebook) -> FlowEncoder {
        let tables = WordKind::ALL
            .iter()
            .map(|&k| codebook.normalised_table(k))
            .collect();
        FlowEncoder { codebook, tables }
    }

    /// The codebook.
    pub fn codebook(&self) -> &Codebook {
        &self.codebook
    }

    /// Writes the flow's row into `out` (`layout.width()` values); `false`, with
    /// `out` untouched, for protocols without a column.
    pub fn encode(&self, flow: &Flow, out: &mut [f32]) -> bool {
        let Some(words) = self.codebook.words_of(flow) else {
            return false;
        };
        let layout = &self.codebook.layout;
        let dim = layout.embedding_dim;
        out.fill(0.0);
        out[layout.time_of_day()] = time_of_day(flow.start_ms);
        out[layout.weekday().start + weekday_of_day(epoch_day(flow.start_ms))] = 1.0;
        out[layout.protocol().start + words[Slot::Protocol.index()] as usize] = 1.0;
        out[layout.flags()].copy_from_slice(&flag_bits(flow.tcp_flags));
        let classes = &self.codebook.address_classes;
        out[layout.src_class().start + classes.class_index(&flow.src)] = 1.0;
        out[layout.dst_class().start + classes.class_index(&flow.dst)] = 1.0;
        for field in EmbeddedField::ALL {
            let slot = match field {
                EmbeddedField::SrcAddr => Slot::SrcAddr,
                EmbeddedField::DstAddr => Slot::DstAddr,
                EmbeddedField::SrcPort => Slot::SrcPort,
                EmbeddedField::DstPort => Slot::DstPort,
                EmbeddedField::Duration => Slot::Duration,
                EmbeddedField::Bytes => Slot::Bytes,
                EmbeddedField::Packets => Slot::Packets,
            };
            let word = words[slot.index()] as usize;
            let table = &self.tables[field.kind().index()];
            out[layout.field(field)].copy_from_slice(&table[word * dim..(word + 1) * dim]);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::office_flows;

    fn fitted() -> (Vec<Flow>, Codebook) {
        let flows = office_flows(2000, 1);
        let params = CodebookParams {
            ip2vec: Ip2VecParams {
                epochs: 3,
                ..Ip2VecParams::default()
            },
            ..CodebookParams::default()
        };
        let codebook = Codebook::fit(&flows, &params, 9, Progress::Hidden).unwrap();
        (flows, codebook)
    }

    #[test]
    fn fitting_pools_rare_values_and_keeps_frequent_ones() {
        let (flows, codebook) = fitted();
        let dns = Address::parse("DNS").unwrap();
        let dns_word = codebook
            .addresses
            .encode(&dns, |a| codebook.address_classes.class_of(a));
        assert!(
            matches!(&codebook.addresses.words()[dns_word as usize], Word::Value { value, .. } if *value == dns)
        );

        // Client ports are near-unique: they share the rare ephemeral word.
        let ephemeral = codebook.ports.encode(&40000, port_class);
        assert!(
            matches!(&codebook.ports.words()[ephemeral as usize], Word::Rare { class, .. } if class == "ephemeral")
        );
        assert!(
            codebook.ports.len() < 10,
            "{} port words",
            codebook.ports.len()
        );

        assert_eq!(codebook.first_date, "2017-04-05");
        assert!((codebook.time_of_day_profile.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        // Office hours only: nothing before 08:00.
        assert!(codebook.time_of_day_profile[..32].iter().all(|&s| s == 0.0));
        // Every cell keeps its flows' volumes up to the cap.
        let mut per_cell: HashMap<[usize; 3], usize> = HashMap::new();
        for flow in &flows {
            *per_cell
                .entry(codebook.volumes.bins_of(&volume_of(flow)))
                .or_default() += 1;
        }
        let cap = BinParams::default().max_volumes_per_cell;
        for cell in &codebook.volumes.cells {
            let key = [cell.duration_bin, cell.packets_bin, cell.bytes_bin].map(|b| b as usize);
            assert_eq!(cell.volumes.len(), per_cell[&key].min(cap));
        }
        assert_eq!(codebook.volumes.cells.len(), per_cell.len());
    }

    #[test]
    fn codebooks_round_trip_through_json_and_are_checked() {
        let (_, codebook) = fitted();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(CODEBOOK_FILE);
        crate::model::bundle::write_json(&path, &codebook).unwrap();
        assert_eq!(Codebook::read(&path).unwrap(), codebook);

        let mut broken = codebook.clone();
        broken.embeddings.port.vectors.pop();
        crate::model::bundle::write_json(&path, &broken).unwrap();
        let err = Codebook::read(&path).unwrap_err().to_string();
        assert!(
            err.contains("codebook.json: corrupt model file: embeddings.port:"),
            "{err}"
        );
    }

    #[test]
    fn a_seed_reproduces_the_codebook() {
        let flows = office_flows(500, 2);
        let params = CodebookParams::default();
        let a = Codebook::fit(&flows, &params, 4, Progress::Hidden).unwrap();
        assert_eq!(
            a,
            Codebook::fit(&flows, &params, 4, Progress::Hidden).unwrap()
        );
    }

    #[test]
    fn encoded_rows_follow_the_layout() {
        let (flows, codebook) = fitted();
        let layout = codebook.layout;
        let encoder = FlowEncoder::new(codebook);
        let mut row = vec![0.0; layout.width()];
        assert!(encoder.encode(&flows[0], &mut row));
        assert_eq!(row[layout.weekday()].iter().sum::<f32>(), 1.0);
        assert_eq!(row[layout.protocol()].iter().sum::<f32>(), 1.0);
        assert!(row.iter().all(|v| (-0.9001..=1.0).contains(v)));

        let mut gre = flows[0].clone();
        gre.protocol = crate::flow::Protocol::GRE;
        assert!(!encoder.encode(&gre, &mut row));
    }
}
