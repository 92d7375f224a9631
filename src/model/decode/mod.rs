//! Decoding generator output back into flows: nearest-neighbour lookup of each
//! embedded field in its vocabulary ([`nearest`]), then the values behind the
//! words.
//!
//! Some fields are searched among a subset of their vocabulary chosen by
//! other generated columns of the same row: addresses among the words of the
//! generated address class and, when the codebook has a [`Support`], ports
//! among the words seen in training with the generated protocol and
//! same-side address class, the class pair being the most probable one the
//! training flows have. Rows are grouped by that context and each group is
//! searched in one batch.

pub mod nearest;

use std::ops::Range;

use rand::Rng;

pub use nearest::{Method, NearestIndex};

use super::bins::VolumeTable;
use super::codebook::{Codebook, Support};
use super::features::{
    argmax, day_in_week, flags_from_outputs, EmbeddedField, FeatureLayout, PROTOCOLS,
};
use super::vocab::{Vocabulary, WordId, ADDRESS_CLASSES};
use crate::flow::{Address, Flow, Protocol, TcpFlags};

/// Rows decoded together: a block of generator output stays in cache while
/// all seven fields are looked up.
const BLOCK_ROWS: usize = 256;

/// Why a batch could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The batch holds fewer numbers than its shape needs.
    #[error("generator output has {len} values, {rows} rows of {width} columns need {needed}")]
    ShortBatch {
        /// Values in the batch.
        len: usize,
        /// Rows asked for.
        rows: usize,
        /// Columns per row.
        width: usize,
        /// Values needed.
        needed: usize,
    },
    /// A vocabulary has no word decoding may emit.
    #[error("the {0} vocabulary has no decodable word")]
    EmptyVocabulary(&'static str),
    /// The bins have no training volume to draw from.
    #[error("the volume bins hold no training flow")]
    NoVolumes,
    /// An embedding table does not match its vocabulary.
    #[error("the {kind} embedding table has {rows} rows of {dim} values for {words} words")]
    TableMismatch {
        /// The vocabulary.
        kind: &'static str,
        /// Rows in the table.
        rows: usize,
        /// Values per row.
        dim: usize,
        /// Words in the vocabulary.
        words: usize,
    },
}

/// The generated protocol and address classes of one row, which choose the
/// vocabulary subsets its fields are searched in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct RowContext {
    protocol: usize,
    src_class: usize,
    dst_class: usize,
}

/// Reads [`RowContext`]s off generator rows.
#[derive(Clone, Debug)]
struct ContextReader {
    protocol: Range<usize>,
    src_class: Range<usize>,
    dst_class: Range<usize>,
    /// The class pairs decoding may choose; `None` takes each side's argmax.
    class_pairs: Option<Vec<(usize, usize)>>,
}

impl ContextReader {
    fn read(&self, row: &[f32]) -> RowContext {
        let protocol = argmax(&row[self.protocol.clone()]);
        let src = &row[self.src_class.clone()];
        let dst = &row[self.dst_class.clone()];
        let (src_class, dst_class) = match &self.class_pairs {
            None => (argmax(src), argmax(dst)),
            Some(pairs) => {
                // The most probable pair the training data has.
                let mut best = pairs[0];
                let mut best_p = f32::NEG_INFINITY;
                for &(s, d) in pairs {
                    let p = src[s] * dst[d];
                    if p > best_p {
                        best_p = p;
                        best = (s, d);
                    }
                }
                best
            }
        };
        RowContext {
            protocol,
            src_class,
            dst_class,
        }
    }
}

/// Which part of the row context chooses a field's vocabulary subset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Context {
    /// The whole vocabulary.
    Whole,
    /// The source address class.
    SrcClass,
    /// The destination address class.
    DstClass,
    /// The protocol and the source address class, as in [`Support::port_context`].
    SrcPort,
    /// The protocol and the destination address class.
    DstPort,
}

impl Context {
    fn group(self, row: &RowContext) -> usize {
        match self {
            Context::Whole => 0,
            Context::SrcClass => row.src_class,
            Context::DstClass => row.dst_class,
            Context::SrcPort => Support::port_context(row.protocol, row.src_class),
            Context::DstPort => Support::port_context(row.protocol, row.dst_class),
        }
    }
}

/// The indexes one embedded field is searched with.
#[derive(Clone, Debug)]
struct FieldIndex {
    /// The field's embedding columns start here.
    offset: usize,
    context: Context,
    /// Every decodable word; also for contexts without words of their own.
    whole: NearestIndex,
    /// Per context value, the words it allows.
    groups: Vec<Option<NearestIndex>>,
}

/// Reused buffers of the grouped search.
#[derive(Clone, Debug, Default)]
struct Scratch {
    scores: Vec<f32>,
    rows_by_group: Vec<Vec<u32>>,
    group_words: Vec<WordId>,
}

impl FieldIndex {
    /// Writes the nearest word of each row of `block` (`width` columns) into `out`.
    fn search(
        &self,
        block: &[f32],
        width: usize,
        contexts: &[RowContext],
        out: &mut [WordId],
        scratch: &mut Scratch,
    ) -> Result<(), DecodeError> {
        if self.context == Context::Whole {
            return self
                .whole
                .nearest(block, width, self.offset, out, &mut scratch.scores);
        }
        scratch.rows_by_group.resize(self.groups.len(), Vec::new());
        for rows in &mut scratch.rows_by_group {
            rows.clear();
        }
        for (r, row) in contexts.iter().enumerate() {
            let group = self.context.group(row).min(self.groups.len() - 1);
            scratch.rows_by_group[group].push(r as u32);
        }
        for (group, selected) in scratch.rows_by_group.iter().enumerate() {
            if selected.is_empty() {
                continue;
            }
            let index = self.groups[group].as_ref().unwrap_or(&self.whole);
            scratch.group_words.resize(selected.len(), 0);
            index.nearest_selected(
                block,
                width,
                self.offset,
                selected,
                &mut scratch.group_words,
            )?;
            for (&r, &word) in selected.iter().zip(&scratch.group_words) {
                out[r as usize] = word;
            }
        }
        Ok(())
    }
}

/// Turns batches of generator output into flows with a codebook's vocabularies.
///
/// Holds its scratch buffers, so decoding a batch into a reused `Vec<Flow>`
/// allocates nothing once the buffers have grown to the batch size.
#[derive(Clone, Debug)]
pub struct FlowDecoder {
    layout: FeatureLayout,
    addresses: Vocabulary<Address>,
    ports: Vocabulary<u16>,
    /// One per field of [`EmbeddedField::ALL`].
    fields: Vec<FieldIndex>,
    contexts: ContextReader,
    /// The current block's row contexts.
    row_contexts: Vec<RowContext>,
    volumes: VolumeTable,
    first_day: i64,
    scratch: Scratch,
    /// Decoded word per field and row, field-major.
    words: Vec<WordId>,
}

impl FlowDecoder {
    /// Prepares the indexes of `codebook`.
    pub fn new(codebook: &Codebook) -> Result<FlowDecoder, DecodeError> {
        let mut fields = Vec::new();
        for field in EmbeddedField::ALL {
            fields.push(field_index(codebook, field)?);
        }
        let layout = &codebook.layout;
        let class_pairs = match &codebook.support {
            Some(support) => Some(
                support
                    .class_pair_indexes()
                    .filter(|pairs| !pairs.is_empty())
                    .ok_or(DecodeError::EmptyVocabulary("address class pair"))?,
            ),
            None => None,
        };
        Ok(FlowDecoder {
            layout: codebook.layout,
            addresses: codebook.addresses.clone(),
            ports: codebook.ports.clone(),
            fields,
            contexts: ContextReader {
                protocol: layout.protocol(),
                src_class: layout.src_class(),
                dst_class: layout.dst_class(),
                class_pairs,
            },
            row_contexts: Vec::new(),
            volumes: VolumeTable::new(&codebook.volumes).ok_or(DecodeError::NoVolumes)?,
            first_day: codebook.first_day,
            scratch: Scratch::default(),
            words: Vec::new(),
        })
    }

    /// The layout the decoder expects.
    pub fn layout(&self) -> FeatureLayout {
        self.layout
    }

    /// Decodes `rows` generator rows of `outputs` and appends the flows to `out`.
    pub fn decode(
        &mut self,
        outputs: &[f32],
        rows: usize,
        rng: &mut impl Rng,
        out: &mut Vec<Flow>,
    ) -> Result<(), DecodeError> {
        let width = self.layout.width();
        if outputs.len() < rows * width {
            return Err(DecodeError::ShortBatch {
                len: outputs.len(),
                rows,
                width,
                needed: rows * width,
            });
        }
        self.find_words(outputs, rows)?;
        out.reserve(rows);
        for row in 0..rows {
            let flow = self.assemble(&outputs[row * width..(row + 1) * width], row, rows, rng);
            out.push(flow);
        }
        Ok(())
    }

    /// Nearest words of every embedded field for every row.
    fn find_words(&mut self, outputs: &[f32], rows: usize) -> Result<(), DecodeError> {
        let width = self.layout.width();
        self.words.resize(EmbeddedField::ALL.len() * rows, 0);
        for first in (0..rows).step_by(BLOCK_ROWS) {
            let last = (first + BLOCK_ROWS).min(rows);
            let block = &outputs[first * width..last * width];
            self.row_contexts.clear();
            let contexts = &self.contexts;
            self.row_contexts
                .extend(block.chunks_exact(width).map(|row| contexts.read(row)));
            for (f, index) in self.fields.iter().enumerate() {
                let out = &mut self.words[f * rows + first..f * rows + last];
                index.search(block, width, &self.row_contexts, out, &mut self.scratch)?;
            }
        }
        Ok(())
    }

    fn assemble(&self, row: &[f32], r: usize, rows: usize, rng: &mut impl Rng) -> Flow {
        let word = |field: EmbeddedField| self.words[field as usize * rows + r];
        let layout = &self.layout;

        let protocol = PROTOCOLS[argmax(&row[layout.protocol()])];
        // TCP flags exist only in TCP headers, whatever the generator says.
        let tcp_flags = if protocol == Protocol::TCP {
            flags_from_outputs(&row[layout.flags()])
        } else {
            TcpFlags(0)
        };
        let day = day_in_week(self.first_day, argmax(&row[layout.weekday()]));
        let start_ms = super::features::start_ms(day, row[layout.time_of_day()]);

        let src = self.draw_address(word(EmbeddedField::SrcAddr), rng);
        let dst = self.draw_address(word(EmbeddedField::DstAddr), rng);
        let port = |field, rng: &mut _| self.ports.draw(word(field), rng).copied().unwrap_or(0);
        let mut src_port = port(EmbeddedField::SrcPort, rng);
        let dst_port = port(EmbeddedField::DstPort, rng);
        if protocol.is_icmp() {
            src_port = 0;
        }

        let candidates = self.volumes.candidates(
            word(EmbeddedField::Duration) as usize,
            word(EmbeddedField::Packets) as usize,
            word(EmbeddedField::Bytes) as usize,
        );
        let volume = candidates[rng.random_range(0..candidates.len())];

        Flow {
            start_ms,
            duration_ms: volume.duration_ms,
            protocol,
            src,
            dst,
            src_port,
            dst_port,
            packets: volume.packets,
            bytes: volume.bytes,
            tcp_flags,
            tos: 0,
            label: None,
        }
    }

    fn draw_address(&self, word: WordId, rng: &mut impl Rng) -> Address {
        // Every candidate of the index is decodable, so a draw always succeeds.
        self.addresses
            .draw(word, rng)
            .cloned()
            .unwrap_or(Address::V4(std::net::Ipv4Addr::UNSPECIFIED))
    }
}

/// The indexes of one field: its kind's decodable words, split by context.
fn field_index(codebook: &Codebook, field: EmbeddedField) -> Result<FieldIndex, DecodeError> {
    let layout = &codebook.layout;
    let kind = field.kind();
    let dim = layout.embedding_dim;
    let vectors = codebook.normalised_table(kind);
    let words = codebook.word_count(kind);
    if vectors.len() != words * dim {
        return Err(DecodeError::TableMismatch {
            kind: kind.name(),
            rows: vectors.len() / dim.max(1),
            dim,
            words,
        });
    }
    let decodable: Vec<WordId> = (0..words as WordId)
        .filter(|&w| codebook.is_decodable(kind, w))
        .collect();
    let whole = index_of(&vectors, dim, decodable.clone())
        .ok_or(DecodeError::EmptyVocabulary(kind.name()))?;
    let subset = |keep: &dyn Fn(WordId) -> bool| {
        index_of(
            &vectors,
            dim,
            decodable.iter().copied().filter(|&w| keep(w)).collect(),
        )
    };

    let (context, groups) = match (field, &codebook.support) {
        (EmbeddedField::SrcAddr | EmbeddedField::DstAddr, _) => {
            let groups = (0..ADDRESS_CLASSES.len())
                .map(|class| subset(&|w| codebook.address_word_class(w) == Some(class)))
                .collect();
            let context = if field == EmbeddedField::SrcAddr {
                Context::SrcClass
            } else {
                Context::DstClass
            };
            (context, groups)
        }
        (EmbeddedField::SrcPort | EmbeddedField::DstPort, Some(support)) => {
            let (masks, context) = if field == EmbeddedField::SrcPort {
                (&support.src_ports, Context::SrcPort)
            } else {
                (&support.dst_ports, Context::DstPort)
            };
            let groups = (0..Support::PORT_CONTEXTS)
                .map(|c| subset(&|w| Support::allows(masks, w, c)))
                .collect();
            (context, groups)
        }
        _ => (Context::Whole, Vec::new()),
    };
    Ok(FieldIndex {
        offset: layout.field(field).start,
        context,
        whole,
        groups,
    })
}

/// An index over the rows `words` of a kind's row-major `vectors`.
fn index_of(vectors: &[f32], dim: usize, words: Vec<WordId>) -> Option<NearestIndex> {
    let mut candidates = Vec::with_capacity(words.len() * dim);
    for &w in &words {
        let start = w as usize * dim;
        candidates.extend_from_slice(vectors.get(start..start + dim)?);
    }
    NearestIndex::new(&candidates, dim, words)
}

#[cfg(test)]
mod tests;
