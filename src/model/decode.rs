//! Decoding generator output back into flows: nearest-neighbour lookup of each
//! embedded field in its vocabulary, then the values behind the words.
//!
//! The word nearest to a generated vector `q` is the one that maximises
//! `q . e - |e|^2 / 2` over the vocabulary's vectors `e`. Two exact methods
//! compute it for a whole batch, never a scan per flow in scalar code: a
//! blocked `sgemm` of the batch against the vocabulary followed by an argmax
//! per row (`matrixmultiply`, which picks AVX/FMA kernels at run time), and
//! a fused kernel that keeps the query in registers, scores eight words per
//! instruction and tracks the argmax in registers, so no score matrix is
//! written (compiled for AVX2 where the CPU has it). The fused kernel is the
//! faster at the vocabulary sizes rare-value pooling keeps (see
//! [`NearestIndex::method`]).

use rand::Rng;

use super::bins::VolumeTable;
use super::codebook::Codebook;
use super::features::{
    argmax, day_in_week, flags_from_outputs, EmbeddedField, FeatureLayout, WordKind, PROTOCOLS,
};
use super::vocab::{Vocabulary, WordId, ADDRESS_CLASSES};
use crate::flow::{Address, Flow, Protocol, TcpFlags};

/// Rows scored per matrix product: the score block (rows x words) stays in cache.
const BLOCK_ROWS: usize = 256;

/// How [`NearestIndex`] scores queries against the vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// A blocked `sgemm` of queries against the vocabulary, then an argmax per row.
    Product,
    /// Distances and argmax fused in registers, eight words at a time
    /// (compiled for AVX2 where the CPU has it); no score matrix is written.
    Fused,
}

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

/// Nearest-neighbour search over one vocabulary's vectors.
#[derive(Clone, Debug)]
pub struct NearestIndex {
    dim: usize,
    /// Candidate vectors, row-major.
    table: Vec<f32>,
    /// `|e|^2 / 2` per candidate.
    half_norms: Vec<f32>,
    /// Word id of each candidate.
    words: Vec<WordId>,
    transposed: Transposed,
}

impl NearestIndex {
    /// An index over the rows of `vectors` (`dim` wide) named by `words`, in order.
    ///
    /// Returns `None` when `words` is empty or does not match the table.
    pub fn new(vectors: &[f32], dim: usize, words: Vec<WordId>) -> Option<NearestIndex> {
        if words.is_empty() || dim == 0 || vectors.len() != words.len() * dim {
            return None;
        }
        let half_norms: Vec<f32> = vectors
            .chunks_exact(dim)
            .map(|e| e.iter().map(|v| v * v).sum::<f32>() / 2.0)
            .collect();
        Some(NearestIndex {
            dim,
            table: vectors.to_vec(),
            transposed: Transposed::new(vectors, dim, &half_norms),
            half_norms,
            words,
        })
    }

    /// Candidate words.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether there are no candidates (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Vector width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The method [`NearestIndex::nearest`] uses.
    ///
    /// Measured on the CIDDS-001 codebook at dimension 8 (`cargo bench --bench
    /// decode`, one core with AVX2, CPU time): 436 addresses, fused 5.3 M vs
    /// product 2.3 M queries/s; 115 ports, 16 M vs 8.8 M; 12 to 21 bins, 30 to
    /// 37 M vs 21 to 33 M. The product path would win for vocabularies of many
    /// thousand words, which rare-value pooling avoids.
    pub fn method(&self) -> Method {
        Method::Fused
    }

    /// The nearest word to each of `out.len()` query vectors, stored at
    /// `queries[r * row_stride + offset..][..dim]`; writes `out`.
    ///
    /// `scratch` is reused between calls to hold the score block.
    pub fn nearest(
        &self,
        queries: &[f32],
        row_stride: usize,
        offset: usize,
        out: &mut [WordId],
        scratch: &mut Vec<f32>,
    ) -> Result<(), DecodeError> {
        self.nearest_with(self.method(), queries, row_stride, offset, out, scratch)
    }

    /// [`NearestIndex::nearest`] with a chosen method (both give the same words
    /// up to rounding on near-ties).
    pub fn nearest_with(
        &self,
        method: Method,
        queries: &[f32],
        row_stride: usize,
        offset: usize,
        out: &mut [WordId],
        scratch: &mut Vec<f32>,
    ) -> Result<(), DecodeError> {
        let rows = out.len();
        let needed = if rows == 0 {
            0
        } else {
            (rows - 1) * row_stride + offset + self.dim
        };
        if queries.len() < needed {
            return Err(DecodeError::ShortBatch {
                len: queries.len(),
                rows,
                width: row_stride,
                needed,
            });
        }
        match method {
            Method::Product => self.nearest_product(queries, row_stride, offset, out, scratch),
            Method::Fused => {
                let rows = QueryRows {
                    queries,
                    stride: row_stride,
                    offset,
                    dim: self.dim,
                    selected: None,
                };
                self.transposed.nearest_rows_dispatch(&rows, out);
                for word in out.iter_mut() {
                    *word = self.words[*word as usize];
                }
            }
        }
        Ok(())
    }

    /// The nearest word to the query vectors of the `selected` rows only
    /// (fused kernel); writes `out[i]` for row `selected[i]`.
    pub fn nearest_selected(
        &self,
        queries: &[f32],
        row_stride: usize,
        offset: usize,
        selected: &[u32],
        out: &mut [WordId],
    ) -> Result<(), DecodeError> {
        let last = selected.iter().copied().max().map_or(0, |r| r as usize + 1);
        let needed = if last == 0 {
            0
        } else {
            (last - 1) * row_stride + offset + self.dim
        };
        if queries.len() < needed || out.len() < selected.len() {
            return Err(DecodeError::ShortBatch {
                len: queries.len(),
                rows: last,
                width: row_stride,
                needed,
            });
        }
        let out = &mut out[..selected.len()];
        let rows = QueryRows {
            queries,
            stride: row_stride,
            offset,
            dim: self.dim,
            selected: Some(selected),
        };
        self.transposed.nearest_rows_dispatch(&rows, out);
        for word in out.iter_mut() {
            *word = self.words[*word as usize];
        }
        Ok(())
    }

    /// Scores blocks of queries with one `sgemm` each; the caller checked the bounds.
    fn nearest_product(
        &self,
        queries: &[f32],
        row_stride: usize,
        offset: usize,
        out: &mut [WordId],
        scratch: &mut Vec<f32>,
    ) {
        let n = self.words.len();
        scratch.resize(BLOCK_ROWS * n, 0.0);
        for (block, out_block) in out.chunks_mut(BLOCK_ROWS).enumerate() {
            let m = out_block.len();
            let first = block * BLOCK_ROWS * row_stride + offset;
            // SAFETY: the caller checked (rows - 1) * row_stride + offset + dim
            // <= queries.len(), which bounds every element sgemm reads of A
            // (m x dim at queries[first..], row stride `row_stride`); B is the
            // dim x n transpose of `table` (n * dim values); C is m x n in
            // `scratch`, which holds BLOCK_ROWS * n >= m * n values.
            unsafe {
                matrixmultiply::sgemm(
                    m,
                    self.dim,
                    n,
                    1.0,
                    queries.as_ptr().add(first),
                    row_stride as isize,
                    1,
                    self.table.as_ptr(),
                    1,
                    self.dim as isize,
                    0.0,
                    scratch.as_mut_ptr(),
                    n as isize,
                    1,
                );
            }
            for (scores, word) in scratch.chunks_exact(n).zip(out_block.iter_mut()) {
                *word = self.words[best_candidate(scores, &self.half_norms)];
            }
        }
    }
}

/// Index maximising `score - half_norm`.
fn best_candidate(scores: &[f32], half_norms: &[f32]) -> usize {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, (s, h)) in scores.iter().zip(half_norms).enumerate() {
        let value = s - h;
        if value > best_value {
            best_value = value;
            best = i;
        }
    }
    best
}

/// Words scored together by the fused kernel: one 256-bit register of f32.
const LANES: usize = 8;

/// The vocabulary in blocks of [`LANES`] words for the fused kernel: block `c`
/// holds dimension `k` of its words at `(c * dim + k) * LANES`, and the last
/// block is padded with words that never win.
#[derive(Clone, Debug)]
struct Transposed {
    columns: Vec<f32>,
    /// `-|e|^2 / 2` per word, `-inf` for padding.
    neg_half_norms: Vec<f32>,
}

impl Transposed {
    fn new(table: &[f32], dim: usize, half_norms: &[f32]) -> Transposed {
        let n = half_norms.len();
        let padded = n.div_ceil(LANES) * LANES;
        let mut columns = vec![0.0; dim * padded];
        for (j, e) in table.chunks_exact(dim).enumerate() {
            let (c, l) = (j / LANES, j % LANES);
            for (k, &v) in e.iter().enumerate() {
                columns[(c * dim + k) * LANES + l] = v;
            }
        }
        let mut neg_half_norms: Vec<f32> = half_norms.iter().map(|h| -h).collect();
        neg_half_norms.resize(padded, f32::NEG_INFINITY);
        Transposed {
            columns,
            neg_half_norms,
        }
    }

    /// Index of the word nearest to `q` (the first on ties), any width.
    #[inline(always)]
    fn nearest_one(&self, q: &[f32]) -> usize {
        let mut best = Best::new();
        let blocks = self.columns.chunks_exact(q.len() * LANES);
        for (c, (block, norms)) in blocks
            .zip(self.neg_half_norms.chunks_exact(LANES))
            .enumerate()
        {
            let mut acc = [0.0f32; LANES];
            acc.copy_from_slice(norms);
            for (&qk, e) in q.iter().zip(block.chunks_exact(LANES)) {
                for l in 0..LANES {
                    acc[l] += qk * e[l];
                }
            }
            best.offer(&acc, c);
        }
        best.index()
    }

    /// [`Transposed::nearest_one`] for a width known at compile time: the
    /// query stays in registers and the loops unroll.
    #[inline(always)]
    fn nearest_one_fixed<const D: usize>(&self, q: &[f32]) -> usize {
        let mut query = [0.0f32; D];
        query.copy_from_slice(&q[..D]);
        let mut best = Best::new();
        let blocks = self.columns.chunks_exact(D * LANES);
        for (c, (block, norms)) in blocks
            .zip(self.neg_half_norms.chunks_exact(LANES))
            .enumerate()
        {
            let mut acc = [0.0f32; LANES];
            acc.copy_from_slice(norms);
            for (k, &qk) in query.iter().enumerate() {
                let e = &block[k * LANES..(k + 1) * LANES];
                for l in 0..LANES {
                    acc[l] += qk * e[l];
                }
            }
            best.offer(&acc, c);
        }
        best.index()
    }

    /// Plain loops rather than iterator adaptors and closures: those would be
    /// compiled as separate functions without the caller's target features.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn nearest_rows(&self, rows: &QueryRows<'_>, out: &mut [u32]) {
        for i in 0..out.len() {
            let r = match rows.selected {
                Some(selected) => selected[i] as usize,
                None => i,
            };
            let start = r * rows.stride + rows.offset;
            let q = &rows.queries[start..start + rows.dim];
            out[i] = match rows.dim {
                8 => self.nearest_one_fixed::<8>(q),
                16 => self.nearest_one_fixed::<16>(q),
                _ => self.nearest_one(q),
            } as u32;
        }
    }

    /// The same loop compiled for AVX2, where the CPU has it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn nearest_rows_avx2(&self, rows: &QueryRows<'_>, out: &mut [u32]) {
        self.nearest_rows(rows, out)
    }

    fn nearest_rows_dispatch(&self, rows: &QueryRows<'_>, out: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { self.nearest_rows_avx2(rows, out) };
            return;
        }
        self.nearest_rows(rows, out)
    }
}

/// Query vectors inside a batch: row `r` at `queries[r * stride + offset..][..dim]`,
/// for every row or for the `selected` ones.
struct QueryRows<'a> {
    queries: &'a [f32],
    stride: usize,
    offset: usize,
    dim: usize,
    selected: Option<&'a [u32]>,
}

/// The running best word per lane of the fused kernel.
struct Best {
    value: [f32; LANES],
    index: [u32; LANES],
}

impl Best {
    #[inline(always)]
    fn new() -> Best {
        Best {
            value: [f32::NEG_INFINITY; LANES],
            index: [0; LANES],
        }
    }

    /// Takes the scores of block `c` (words `c * LANES..`); written as selects so
    /// that it compiles to a compare and two blends.
    #[allow(clippy::needless_range_loop)]
    #[inline(always)]
    fn offer(&mut self, scores: &[f32; LANES], c: usize) {
        let first = (c * LANES) as u32;
        for l in 0..LANES {
            let better = scores[l] > self.value[l];
            self.value[l] = if better { scores[l] } else { self.value[l] };
            self.index[l] = if better {
                first + l as u32
            } else {
                self.index[l]
            };
        }
    }

    /// The best word over all lanes, the lowest index on ties.
    #[inline(always)]
    fn index(&self) -> usize {
        let mut best = 0;
        for l in 1..LANES {
            let tie = self.value[l] == self.value[best] && self.index[l] < self.index[best];
            if self.value[l] > self.value[best] || tie {
                best = l;
            }
        }
        self.index[best] as usize
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
    /// Indexes by [`WordKind::index`] (embedded kinds only).
    indexes: Vec<NearestIndex>,
    /// Address indexes per class of [`ADDRESS_CLASSES`]; `None` for classes
    /// without words, whose rows fall back to every address.
    class_indexes: Vec<Option<NearestIndex>>,
    volumes: VolumeTable,
    first_day: i64,
    scratch: Vec<f32>,
    /// Decoded word per field and row, field-major.
    words: Vec<WordId>,
    /// Rows of the current block per generated address class.
    class_rows: Vec<Vec<u32>>,
    /// Words found for one class's rows.
    class_words: Vec<WordId>,
}

impl FlowDecoder {
    /// Prepares the indexes of `codebook`.
    pub fn new(codebook: &Codebook) -> Result<FlowDecoder, DecodeError> {
        let dim = codebook.layout.embedding_dim;
        let mut indexes = Vec::new();
        let mut address_vectors = Vec::new();
        for kind in WordKind::EMBEDDED {
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
            let decodable = (0..words as WordId).filter(|&w| codebook.is_decodable(kind, w));
            let index = index_of(&vectors, dim, decodable.collect())
                .ok_or(DecodeError::EmptyVocabulary(kind.name()))?;
            indexes.push(index);
            if kind == WordKind::Address {
                address_vectors = vectors;
            }
        }
        let class_indexes = (0..ADDRESS_CLASSES.len())
            .map(|class| {
                let words = (0..codebook.addresses.len() as WordId).filter(|&w| {
                    codebook.is_decodable(WordKind::Address, w)
                        && codebook.address_word_class(w) == Some(class)
                });
                index_of(&address_vectors, dim, words.collect())
            })
            .collect();
        Ok(FlowDecoder {
            layout: codebook.layout,
            addresses: codebook.addresses.clone(),
            ports: codebook.ports.clone(),
            indexes,
            class_indexes,
            volumes: VolumeTable::new(&codebook.volumes).ok_or(DecodeError::NoVolumes)?,
            first_day: codebook.first_day,
            scratch: Vec::new(),
            words: Vec::new(),
            class_rows: vec![Vec::new(); ADDRESS_CLASSES.len()],
            class_words: Vec::new(),
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
        // Row blocks outside, fields inside: each block of generator output is
        // read from cache by all seven lookups.
        for first in (0..rows).step_by(BLOCK_ROWS) {
            let last = (first + BLOCK_ROWS).min(rows);
            let block = &outputs[first * width..last * width];
            for (f, field) in EmbeddedField::ALL.into_iter().enumerate() {
                let out = &mut self.words[f * rows + first..f * rows + last];
                let offset = self.layout.field(field).start;
                let class_columns = match field {
                    EmbeddedField::SrcAddr => self.layout.src_class(),
                    EmbeddedField::DstAddr => self.layout.dst_class(),
                    _ => {
                        let index = &self.indexes[field.kind().index()];
                        index.nearest(block, width, offset, out, &mut self.scratch)?;
                        continue;
                    }
                };
                for rows in &mut self.class_rows {
                    rows.clear();
                }
                for (r, row) in block.chunks_exact(width).enumerate() {
                    self.class_rows[argmax(&row[class_columns.clone()])].push(r as u32);
                }
                for (class, selected) in self.class_rows.iter().enumerate() {
                    if selected.is_empty() {
                        continue;
                    }
                    let index = self.class_indexes[class]
                        .as_ref()
                        .unwrap_or(&self.indexes[WordKind::Address.index()]);
                    self.class_words.resize(selected.len(), 0);
                    index.nearest_selected(
                        block,
                        width,
                        offset,
                        selected,
                        &mut self.class_words,
                    )?;
                    for (&r, &word) in selected.iter().zip(&self.class_words) {
                        out[r as usize] = word;
                    }
                }
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

        let address = |field, rng: &mut _| self.draw_address(word(field), rng);
        let src = address(EmbeddedField::SrcAddr, rng);
        let dst = address(EmbeddedField::DstAddr, rng);
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
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn brute_force(table: &[f32], dim: usize, query: &[f32]) -> usize {
        let distance = |e: &[f32]| {
            e.iter()
                .zip(query)
                .map(|(a, b)| (a - b) * (a - b))
                .sum::<f32>()
        };
        let mut best = 0;
        for (i, e) in table.chunks_exact(dim).enumerate() {
            if distance(e) < distance(&table[best * dim..(best + 1) * dim]) {
                best = i;
            }
        }
        best
    }

    #[test]
    fn blocked_search_agrees_with_brute_force() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let (dim, words, rows, stride, offset) = (8, 300, 700, 21, 5);
        let table: Vec<f32> = (0..words * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let ids: Vec<WordId> = (0..words as WordId).map(|w| w * 2 + 1).collect();
        let index = NearestIndex::new(&table, dim, ids).unwrap();
        let queries: Vec<f32> = (0..rows * stride)
            .map(|_| rng.random_range(-1.2..1.2))
            .collect();

        let mut out = vec![0; rows];
        let mut scratch = Vec::new();
        index
            .nearest(&queries, stride, offset, &mut out, &mut scratch)
            .unwrap();
        for r in 0..rows {
            let q = &queries[r * stride + offset..r * stride + offset + dim];
            assert_eq!(
                out[r],
                brute_force(&table, dim, q) as WordId * 2 + 1,
                "row {r}"
            );
        }
    }

    #[test]
    fn exact_vocabulary_vectors_decode_to_themselves() {
        let table = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, -0.5, -0.5];
        let index = NearestIndex::new(&table, 2, vec![10, 11, 12, 13]).unwrap();
        let mut out = [0; 4];
        index
            .nearest(&table, 2, 0, &mut out, &mut Vec::new())
            .unwrap();
        assert_eq!(out, [10, 11, 12, 13]);
    }

    #[test]
    fn short_batches_are_refused() {
        let index = NearestIndex::new(&[0.0; 4], 2, vec![0, 1]).unwrap();
        let mut out = [0; 3];
        let err = index
            .nearest(&[0.0; 5], 2, 0, &mut out, &mut Vec::new())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "generator output has 5 values, 3 rows of 2 columns need 6"
        );
        assert!(NearestIndex::new(&[0.0; 3], 2, vec![0, 1]).is_none());
        assert!(NearestIndex::new(&[], 2, vec![]).is_none());
    }
}

#[cfg(test)]
mod flow_tests {
    use super::*;
    use crate::model::codebook::{CodebookParams, FlowEncoder};
    use crate::model::fixtures::office_flows;
    use crate::model::vocab::{port_class, Word};
    use crate::model::wgan::Progress;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn encoded_training_flows_decode_to_the_same_words() {
        let flows = office_flows(1500, 5);
        let codebook =
            Codebook::fit(&flows, &CodebookParams::default(), 3, Progress::Hidden).unwrap();
        let encoder = FlowEncoder::new(codebook.clone());
        let width = codebook.layout.width();
        let mut rows = vec![0.0; flows.len() * width];
        for (flow, row) in flows.iter().zip(rows.chunks_exact_mut(width)) {
            assert!(encoder.encode(flow, row));
        }

        let mut decoder = FlowDecoder::new(&codebook).unwrap();
        let mut decoded = Vec::new();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        decoder
            .decode(&rows, flows.len(), &mut rng, &mut decoded)
            .unwrap();
        assert_eq!(decoded.len(), flows.len());

        let classes = &codebook.address_classes;
        for (real, back) in flows.iter().zip(&decoded) {
            assert_eq!(back.protocol, real.protocol);
            assert_eq!(back.tcp_flags, real.tcp_flags);
            assert!(
                (back.start_ms - real.start_ms).abs() < 10,
                "{} vs {}",
                back.start_ms,
                real.start_ms
            );
            // Same word: the value itself, or a value of the same rare class.
            let address_word = |a: &Address| codebook.addresses.encode(a, |a| classes.class_of(a));
            assert_eq!(address_word(&back.src), address_word(&real.src));
            assert_eq!(address_word(&back.dst), address_word(&real.dst));
            for (b, r) in [
                (back.src_port, real.src_port),
                (back.dst_port, real.dst_port),
            ] {
                let word = codebook.ports.encode(&r, port_class);
                assert_eq!(codebook.ports.encode(&b, port_class), word);
                if matches!(codebook.ports.words()[word as usize], Word::Value { .. }) {
                    assert_eq!(b, r);
                }
            }
            assert_eq!(
                codebook
                    .volumes
                    .bins_of(&crate::model::codebook::volume_of(back)),
                codebook
                    .volumes
                    .bins_of(&crate::model::codebook::volume_of(real))
            );
            assert!(42 * back.packets <= back.bytes && back.bytes <= 65_535 * back.packets);
        }
    }

    #[test]
    fn arbitrary_outputs_decode_to_consistent_flows() {
        let flows = office_flows(1000, 6);
        let codebook =
            Codebook::fit(&flows, &CodebookParams::default(), 3, Progress::Hidden).unwrap();
        let width = codebook.layout.width();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let rows = 500;
        let outputs: Vec<f32> = (0..rows * width)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let mut decoder = FlowDecoder::new(&codebook).unwrap();
        let mut decoded = Vec::new();
        decoder
            .decode(&outputs, rows, &mut rng, &mut decoded)
            .unwrap();
        for flow in &decoded {
            assert!(42 * flow.packets <= flow.bytes && flow.bytes <= 65_535 * flow.packets);
            if flow.protocol != Protocol::TCP {
                assert_eq!(flow.tcp_flags, TcpFlags(0));
            }
            let day = super::super::features::epoch_day(flow.start_ms);
            assert!((codebook.first_day..codebook.first_day + 7).contains(&day));
        }
        let err = decoder
            .decode(&outputs[..width * 2 - 1], 2, &mut rng, &mut decoded)
            .unwrap_err();
        assert!(matches!(err, DecodeError::ShortBatch { .. }));
    }
}

#[cfg(test)]
mod class_tests {
    use super::*;
    use crate::model::codebook::{CodebookParams, FlowEncoder};
    use crate::model::fixtures::office_flows;
    use crate::model::wgan::Progress;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn the_generated_class_restricts_the_decoded_address() {
        let flows = office_flows(1000, 8);
        let codebook =
            Codebook::fit(&flows, &CodebookParams::default(), 3, Progress::Hidden).unwrap();
        let layout = codebook.layout;
        let encoder = FlowEncoder::new(codebook.clone());
        // A DNS lookup, whose destination embedding is exactly the DNS word's ...
        let dns = flows.iter().find(|f| f.dst_port == 53).unwrap();
        let mut row = vec![0.0; layout.width()];
        assert!(encoder.encode(dns, &mut row));
        // ... but whose destination class says internal broadcast.
        row[layout.dst_class()].fill(0.0);
        row[layout.dst_class().start + 1] = 1.0;

        let mut decoder = FlowDecoder::new(&codebook).unwrap();
        let mut out = Vec::new();
        decoder
            .decode(&row, 1, &mut ChaCha8Rng::seed_from_u64(1), &mut out)
            .unwrap();
        assert_eq!(out[0].dst.to_string(), "192.168.220.255");
        assert_eq!(out[0].src, dns.src);
    }

    #[test]
    fn selected_rows_match_the_full_search() {
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let (dim, words, rows, stride) = (8, 50, 40, 10);
        let table: Vec<f32> = (0..words * dim)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let index = NearestIndex::new(&table, dim, (0..words as WordId).collect()).unwrap();
        let queries: Vec<f32> = (0..rows * stride)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let mut all = vec![0; rows];
        index
            .nearest(&queries, stride, 2, &mut all, &mut Vec::new())
            .unwrap();
        let selected = [39, 3, 17, 0];
        let mut some = [0; 4];
        index
            .nearest_selected(&queries, stride, 2, &selected, &mut some)
            .unwrap();
        assert_eq!(some, selected.map(|r| all[r as usize]));
        let err = index
            .nearest_selected(&queries, stride, 2, &[40], &mut some)
            .unwrap_err();
        assert!(matches!(err, DecodeError::ShortBatch { .. }));
    }
}
