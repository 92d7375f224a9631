//! IP2Vec (Ring et al., 2017): skip-gram with negative sampling where every
//! flow is a sentence and its attribute values are the words.
//!
//! Each flow contributes one training pair per entry of the pair set: the
//! input word's vector is pushed towards the context word's output vector and
//! away from `negatives` words of the context's kind drawn from the kind's
//! unigram distribution raised to 0.75 (Mikolov et al., 2013). Sampling
//! negatives within a kind makes words discriminative among the values that
//! compete for the same field, which is what nearest-neighbour decoding needs.
//! Training is single-threaded with a seeded ChaCha generator, so a seed
//! reproduces the embeddings bit for bit.

use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::features::WordKind;
use super::vocab::WordId;
use super::wgan::Progress;

/// A position in a flow sentence.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Slot {
    /// Source address.
    SrcAddr,
    /// Destination address.
    DstAddr,
    /// Source port.
    SrcPort,
    /// Destination port.
    DstPort,
    /// Protocol.
    Protocol,
    /// TCP flag combination.
    Flags,
    /// Duration bin.
    Duration,
    /// Bytes bin.
    Bytes,
    /// Packets bin.
    Packets,
}

/// Words per flow sentence.
pub const SLOTS: usize = 9;

impl Slot {
    /// Every slot, in sentence order.
    pub const ALL: [Slot; SLOTS] = [
        Slot::SrcAddr,
        Slot::DstAddr,
        Slot::SrcPort,
        Slot::DstPort,
        Slot::Protocol,
        Slot::Flags,
        Slot::Duration,
        Slot::Bytes,
        Slot::Packets,
    ];

    /// The vocabulary the slot's words come from.
    pub fn kind(self) -> WordKind {
        match self {
            Slot::SrcAddr | Slot::DstAddr => WordKind::Address,
            Slot::SrcPort | Slot::DstPort => WordKind::Port,
            Slot::Protocol => WordKind::Protocol,
            Slot::Flags => WordKind::Flags,
            Slot::Duration => WordKind::Duration,
            Slot::Bytes => WordKind::Bytes,
            Slot::Packets => WordKind::Packets,
        }
    }

    /// Position in the sentence.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Which (input, context) slot pairs each flow trains: the skip-gram's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairSet {
    /// Every ordered pair of distinct slots: each value predicts all the others.
    All,
    /// The original IP2Vec pairs (source address -> destination address,
    /// source address -> destination port, source address -> protocol,
    /// destination port -> destination address, protocol -> destination
    /// address) in both directions, so that destination addresses are trained
    /// as inputs too, plus every pair with the source port or a bin as input,
    /// which the original does not embed but the generator needs.
    Ip2Vec,
}

impl PairSet {
    /// The (input, context) pairs.
    pub fn pairs(self) -> Vec<(Slot, Slot)> {
        let all = || {
            Slot::ALL
                .into_iter()
                .flat_map(|a| Slot::ALL.into_iter().map(move |b| (a, b)))
                .filter(|(a, b)| a != b)
        };
        match self {
            PairSet::All => all().collect(),
            PairSet::Ip2Vec => {
                let original = [
                    (Slot::SrcAddr, Slot::DstAddr),
                    (Slot::SrcAddr, Slot::DstPort),
                    (Slot::SrcAddr, Slot::Protocol),
                    (Slot::DstPort, Slot::DstAddr),
                    (Slot::Protocol, Slot::DstAddr),
                ];
                let mut pairs: Vec<(Slot, Slot)> = original
                    .iter()
                    .flat_map(|&(a, b)| [(a, b), (b, a)])
                    .collect();
                let extra = [Slot::SrcPort, Slot::Duration, Slot::Bytes, Slot::Packets];
                pairs.extend(all().filter(|(a, _)| extra.contains(a)));
                pairs
            }
        }
    }
}

/// Knobs of the skip-gram.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ip2VecParams {
    /// Embedding width.
    pub dim: usize,
    /// Passes over the flows.
    pub epochs: usize,
    /// Negative samples per training pair.
    pub negatives: usize,
    /// Initial learning rate, decayed linearly to 1e-4 of itself.
    pub learning_rate: f32,
    /// Which slot pairs are trained.
    pub pairs: PairSet,
}

impl Default for Ip2VecParams {
    fn default() -> Self {
        Ip2VecParams {
            dim: 8,
            epochs: 10,
            negatives: 5,
            learning_rate: 0.025,
            pairs: PairSet::All,
        }
    }
}

/// The training sentences: one per flow, word ids local to each slot's kind.
#[derive(Clone, Debug, Default)]
pub struct Corpus {
    /// Words per kind, indexed by [`WordKind::index`].
    pub vocab_sizes: [usize; WordKind::ALL.len()],
    /// One sentence per flow, slots in [`Slot::ALL`] order.
    pub sentences: Vec<[WordId; SLOTS]>,
}

/// Why IP2Vec cannot train.
#[derive(Debug, thiserror::Error)]
pub enum Ip2VecError {
    /// There are no sentences.
    #[error("ip2vec has no flows to learn from")]
    EmptyCorpus,
    /// The embedding width is zero.
    #[error("ip2vec embedding dimension must be at least 1")]
    ZeroDimension,
    /// A sentence names a word beyond its kind's vocabulary.
    #[error("ip2vec sentence {sentence} has word {word} in slot {slot:?}, beyond the {size} {kind} words")]
    WordOutOfRange {
        /// Index of the sentence.
        sentence: usize,
        /// The slot.
        slot: Slot,
        /// The word id.
        word: WordId,
        /// Size of the slot's vocabulary.
        size: usize,
        /// Name of the vocabulary.
        kind: &'static str,
    },
    /// An embedded slot is never an input of a pair, so its vectors would stay random.
    #[error("ip2vec pair set never trains slot {0:?} as input")]
    UntrainedSlot(Slot),
}

/// Learned word vectors, one table per kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Embeddings {
    /// Width of every vector.
    pub dim: usize,
    /// Row-major tables indexed by [`WordKind::index`], one row per word.
    pub tables: Vec<Vec<f32>>,
}

impl Embeddings {
    /// The table of one kind, row-major.
    pub fn table(&self, kind: WordKind) -> &[f32] {
        &self.tables[kind.index()]
    }

    /// The vector of one word.
    pub fn vector(&self, kind: WordKind, word: WordId) -> &[f32] {
        let start = word as usize * self.dim;
        &self.tables[kind.index()][start..start + self.dim]
    }
}

/// Trains IP2Vec on `corpus`, reproducibly for a given `seed`.
///
/// Words that never occur in the corpus (the unknown word, unused flag
/// combinations) get the occurrence-weighted mean vector of their kind, so
/// that encoding an unseen value lands in the middle of its kind.
pub fn train(
    corpus: &Corpus,
    params: &Ip2VecParams,
    seed: u64,
    progress: Progress,
) -> Result<Embeddings, Ip2VecError> {
    validate(corpus, params)?;
    let dim = params.dim;
    let offsets = kind_offsets(&corpus.vocab_sizes);
    let total_words = offsets[WordKind::ALL.len()];
    let counts = word_counts(corpus, &offsets, total_words);
    let noise = NoiseTables::new(&counts, &offsets);

    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let scale = 0.5 / dim as f32;
    let mut input: Vec<f32> = (0..total_words * dim)
        .map(|_| rng.random_range(-scale..scale))
        .collect();
    let mut output = vec![0.0f32; total_words * dim];

    let pairs = params.pairs.pairs();
    let steps_total = (params.epochs * corpus.sentences.len() * pairs.len()).max(1) as f64;
    let mut steps = 0usize;
    let mut order: Vec<usize> = (0..corpus.sentences.len()).collect();
    let mut grad = vec![0.0f32; dim];
    let started = Instant::now();
    let bar = progress_bar(progress, params.epochs);

    for epoch in 0..params.epochs {
        order.shuffle(&mut rng);
        let mut loss = 0.0f64;
        for &s in &order {
            let sentence = &corpus.sentences[s];
            let lr = params.learning_rate * (1.0 - steps as f64 / steps_total).max(1e-4) as f32;
            for &(a, b) in &pairs {
                let w = offsets[a.kind().index()] + sentence[a.index()] as usize;
                let c = offsets[b.kind().index()] + sentence[b.index()] as usize;
                let step = Step {
                    input: w,
                    context: c,
                    kind: b.kind(),
                    lr,
                };
                loss += step.apply(
                    &mut input,
                    &mut output,
                    &mut grad,
                    &noise,
                    params.negatives,
                    dim,
                    &mut rng,
                );
            }
            steps += pairs.len();
        }
        let mean_loss = loss / (corpus.sentences.len() * pairs.len()).max(1) as f64;
        bar.set_message(format!("loss {mean_loss:.4}"));
        bar.inc(1);
        tracing::debug!(epoch, loss = mean_loss, "ip2vec epoch done");
    }
    bar.finish_and_clear();
    tracing::info!(
        words = total_words,
        dim,
        epochs = params.epochs,
        elapsed_s = started.elapsed().as_secs_f64(),
        "ip2vec trained"
    );

    fill_unseen_words(&mut input, &counts, &offsets, dim);
    let tables = WordKind::ALL
        .iter()
        .map(|k| input[offsets[k.index()] * dim..offsets[k.index() + 1] * dim].to_vec())
        .collect();
    Ok(Embeddings { dim, tables })
}

fn validate(corpus: &Corpus, params: &Ip2VecParams) -> Result<(), Ip2VecError> {
    if corpus.sentences.is_empty() {
        return Err(Ip2VecError::EmptyCorpus);
    }
    if params.dim == 0 {
        return Err(Ip2VecError::ZeroDimension);
    }
    let inputs: Vec<Slot> = params.pairs.pairs().into_iter().map(|(a, _)| a).collect();
    for slot in Slot::ALL {
        let embedded = WordKind::EMBEDDED.contains(&slot.kind());
        if embedded && !inputs.contains(&slot) {
            return Err(Ip2VecError::UntrainedSlot(slot));
        }
    }
    for (sentence, words) in corpus.sentences.iter().enumerate() {
        for slot in Slot::ALL {
            let word = words[slot.index()];
            let size = corpus.vocab_sizes[slot.kind().index()];
            if word as usize >= size {
                return Err(Ip2VecError::WordOutOfRange {
                    sentence,
                    slot,
                    word,
                    size,
                    kind: slot.kind().name(),
                });
            }
        }
    }
    Ok(())
}

/// Start of each kind's words in the shared tables, plus the total at the end.
fn kind_offsets(sizes: &[usize; WordKind::ALL.len()]) -> Vec<usize> {
    let mut offsets = vec![0];
    for size in sizes {
        offsets.push(offsets[offsets.len() - 1] + size);
    }
    offsets
}

fn word_counts(corpus: &Corpus, offsets: &[usize], total_words: usize) -> Vec<u64> {
    let mut counts = vec![0u64; total_words];
    for sentence in &corpus.sentences {
        for slot in Slot::ALL {
            counts[offsets[slot.kind().index()] + sentence[slot.index()] as usize] += 1;
        }
    }
    counts
}

/// One kind's negative-sampling table: word ids repeated in proportion to count^0.75.
struct NoiseTables {
    tables: Vec<Vec<u32>>,
}

impl NoiseTables {
    fn new(counts: &[u64], offsets: &[usize]) -> NoiseTables {
        let tables = (0..offsets.len() - 1)
            .map(|k| {
                let words = offsets[k]..offsets[k + 1];
                let weights: Vec<f64> = counts[words.clone()]
                    .iter()
                    .map(|&c| (c as f64).powf(0.75))
                    .collect();
                let sum: f64 = weights.iter().sum();
                if sum == 0.0 {
                    return Vec::new();
                }
                let slots = (words.len() * 64).clamp(1024, 1 << 20);
                let mut table = Vec::with_capacity(slots);
                for (i, w) in weights.iter().enumerate() {
                    let n = (w / sum * slots as f64).round() as usize;
                    table.extend(std::iter::repeat_n(
                        (words.start + i) as u32,
                        n.max(usize::from(*w > 0.0)),
                    ));
                }
                table
            })
            .collect();
        NoiseTables { tables }
    }

    fn draw(&self, kind: WordKind, rng: &mut impl Rng) -> Option<usize> {
        let table = &self.tables[kind.index()];
        (!table.is_empty()).then(|| table[rng.random_range(0..table.len())] as usize)
    }
}

/// One skip-gram update: input word, context word and negatives.
struct Step {
    input: usize,
    context: usize,
    kind: WordKind,
    lr: f32,
}

impl Step {
    /// Applies the update and returns its log loss.
    #[allow(clippy::too_many_arguments)]
    fn apply(
        &self,
        input: &mut [f32],
        output: &mut [f32],
        grad: &mut [f32],
        noise: &NoiseTables,
        negatives: usize,
        dim: usize,
        rng: &mut impl Rng,
    ) -> f64 {
        grad.fill(0.0);
        let mut loss = 0.0f64;
        let w = self.input * dim..(self.input + 1) * dim;
        for n in 0..=negatives {
            let (target, label) = if n == 0 {
                (self.context, 1.0f32)
            } else {
                match noise.draw(self.kind, rng) {
                    Some(t) if t != self.context => (t, 0.0),
                    _ => continue,
                }
            };
            let t = target * dim..(target + 1) * dim;
            let dot: f32 = input[w.clone()]
                .iter()
                .zip(&output[t.clone()])
                .map(|(a, b)| a * b)
                .sum();
            let p = sigmoid(dot);
            loss -= f64::from(if label > 0.5 { p } else { 1.0 - p })
                .max(1e-7)
                .ln();
            let g = (label - p) * self.lr;
            for ((gr, o), &i) in grad.iter_mut().zip(&mut output[t]).zip(&input[w.clone()]) {
                *gr += g * *o;
                *o += g * i;
            }
        }
        for (i, g) in input[w].iter_mut().zip(grad.iter()) {
            *i += g;
        }
        loss
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x.clamp(-30.0, 30.0)).exp())
}

fn fill_unseen_words(input: &mut [f32], counts: &[u64], offsets: &[usize], dim: usize) {
    for k in 0..offsets.len() - 1 {
        let words = offsets[k]..offsets[k + 1];
        let mut mean = vec![0.0f64; dim];
        let total: u64 = counts[words.clone()].iter().sum();
        if total == 0 {
            continue;
        }
        for w in words.clone() {
            for (m, &v) in mean.iter_mut().zip(&input[w * dim..(w + 1) * dim]) {
                *m += v as f64 * counts[w] as f64 / total as f64;
            }
        }
        for w in words.filter(|&w| counts[w] == 0) {
            for (v, &m) in input[w * dim..(w + 1) * dim].iter_mut().zip(&mean) {
                *v = m as f32;
            }
        }
    }
}

fn progress_bar(progress: Progress, epochs: usize) -> ProgressBar {
    if progress == Progress::Hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(epochs as u64);
    if let Ok(style) =
        ProgressStyle::with_template("ip2vec {bar:30} epoch {pos}/{len} {msg} [{elapsed}]")
    {
        bar.set_style(style);
    }
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two populations of flows that share nothing: clients 0..3 talk to server 0
    /// on port 0, clients 3..6 to server 1 on port 1.
    fn two_communities() -> Corpus {
        let mut sentences = Vec::new();
        for i in 0..600u32 {
            let group = i % 2;
            let client = 2 + group * 3 + i % 3;
            sentences.push([
                client,
                group,
                2 + group,
                group,
                group,
                group,
                group,
                group,
                group,
            ]);
        }
        Corpus {
            vocab_sizes: [9, 4, 2, 2, 2, 2, 2],
            sentences,
        }
    }

    fn distance(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y) * (x - y))
            .sum::<f32>()
            .sqrt()
    }

    #[test]
    fn co_occurring_values_end_up_close() {
        let params = Ip2VecParams {
            epochs: 20,
            ..Ip2VecParams::default()
        };
        let emb = train(&two_communities(), &params, 42, Progress::Hidden).unwrap();
        let a = |w| emb.vector(WordKind::Address, w);
        // Clients 2 and 3 (community 0) are nearer each other than to client 5 (community 1).
        let same = distance(a(2), a(3));
        let other = distance(a(2), a(5));
        assert!(same * 2.0 < other, "same {same}, other {other}");
        let p = |w| emb.vector(WordKind::Packets, w);
        assert!(distance(p(0), p(1)) > 0.1);
    }

    #[test]
    fn a_seed_reproduces_the_embeddings() {
        let params = Ip2VecParams {
            epochs: 2,
            ..Ip2VecParams::default()
        };
        let corpus = two_communities();
        let first = train(&corpus, &params, 7, Progress::Hidden).unwrap();
        assert_eq!(first, train(&corpus, &params, 7, Progress::Hidden).unwrap());
        assert_ne!(first, train(&corpus, &params, 8, Progress::Hidden).unwrap());
    }

    #[test]
    fn unseen_words_sit_at_the_weighted_mean() {
        let emb = train(
            &two_communities(),
            &Ip2VecParams::default(),
            1,
            Progress::Hidden,
        )
        .unwrap();
        // Address word 8 never occurs: 0, 1 (servers) and 2..8 (clients) do.
        let unseen = emb.vector(WordKind::Address, 8);
        let mut mean = vec![0.0f32; emb.dim];
        for w in 0..8 {
            let weight = if w < 2 { 300.0 } else { 100.0 } / 1200.0;
            for (m, v) in mean.iter_mut().zip(emb.vector(WordKind::Address, w)) {
                *m += v * weight;
            }
        }
        assert!(distance(unseen, &mean) < 1e-5);
    }

    #[test]
    fn bad_corpora_are_refused() {
        assert!(matches!(
            train(
                &Corpus::default(),
                &Ip2VecParams::default(),
                1,
                Progress::Hidden
            ),
            Err(Ip2VecError::EmptyCorpus)
        ));
        let mut corpus = two_communities();
        corpus.sentences[5][Slot::DstPort.index()] = 9;
        let err = train(&corpus, &Ip2VecParams::default(), 1, Progress::Hidden).unwrap_err();
        assert_eq!(
            err.to_string(),
            "ip2vec sentence 5 has word 9 in slot DstPort, beyond the 4 port words"
        );
    }

    #[test]
    fn every_pair_set_trains_all_embedded_slots() {
        for set in [PairSet::All, PairSet::Ip2Vec] {
            let inputs: Vec<Slot> = set.pairs().iter().map(|p| p.0).collect();
            for slot in Slot::ALL
                .into_iter()
                .filter(|s| WordKind::EMBEDDED.contains(&s.kind()))
            {
                assert!(inputs.contains(&slot), "{set:?} misses {slot:?}");
            }
        }
        assert_eq!(PairSet::All.pairs().len(), SLOTS * (SLOTS - 1));
        assert_eq!(PairSet::Ip2Vec.pairs()[0], (Slot::SrcAddr, Slot::DstAddr));
    }
}
