//! Exact nearest-neighbour search over one vocabulary's vectors, for whole
//! batches of queries.
//!
//! The word nearest to a query `q` maximises `q . e - |e|^2 / 2` over the
//! vocabulary's vectors `e`. Two methods compute it: a blocked `sgemm` of the
//! batch against the vocabulary followed by an argmax per row
//! (`matrixmultiply`, which picks AVX/FMA kernels at run time), and a fused
//! kernel that keeps the query in registers, scores eight words per
//! instruction and tracks the argmax in registers, so no score matrix is
//! written (compiled for AVX2 where the CPU has it). The fused kernel is the
//! faster at the vocabulary sizes rare-value pooling keeps (see
//! [`NearestIndex::method`]).

use super::DecodeError;
use crate::model::vocab::WordId;

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
    /// decode`, one core of a shared AMD EPYC with AVX2, CPU time, over several
    /// runs): 436 addresses, fused 3.6 to 5.3 M vs product 2.2 to 2.6 M
    /// queries/s; 115 ports, 11 to 16 M vs 8.4 to 9.8 M; 12 to 21 bins, 27 to
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
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
