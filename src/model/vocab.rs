//! Vocabularies of the categorical flow attributes (addresses and ports).
//!
//! A value seen at least `min_count` times in training gets its own word.
//! Rarer values share one word per class (rare internal address, rare
//! anonymised token, rare ephemeral port, ...): their individual embeddings
//! would be noise, and near-unique values such as client ports carry no
//! pattern beyond their class. Decoding a rare word draws uniformly from the
//! training values of its class, so generated flows keep the class's real
//! values while the vocabulary, and with it decoding cost, stays small.
//! Values never seen whose class has no rare word map to the explicit
//! unknown word, which decoding never emits.

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use rand::Rng;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::eval::{is_broadcast, is_multicast, Cidr, InternalNetwork};
use crate::flow::Address;

/// Index of a word within its vocabulary.
pub type WordId = u32;

/// A value a vocabulary holds, written as text in the bundle.
pub trait VocabValue: Clone + Eq + Hash + Ord {
    /// The value as the bundle writes it.
    fn to_text(&self) -> String;
    /// Parses what [`VocabValue::to_text`] wrote.
    fn from_text(text: &str) -> Option<Self>;
}

impl VocabValue for Address {
    fn to_text(&self) -> String {
        self.to_string()
    }

    fn from_text(text: &str) -> Option<Self> {
        Address::parse(text)
    }
}

impl VocabValue for u16 {
    fn to_text(&self) -> String {
        self.to_string()
    }

    fn from_text(text: &str) -> Option<Self> {
        text.parse().ok()
    }
}

/// One word of a vocabulary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Word<T> {
    /// A frequent value with its own word.
    Value {
        /// The value.
        value: T,
        /// Training occurrences.
        count: u64,
    },
    /// The rare values of one class.
    Rare {
        /// The class (`internal`, `ephemeral`, ...).
        class: String,
        /// Training occurrences of all the class's rare values.
        count: u64,
        /// Distinct rare values decoding draws from (a seeded sample when capped).
        values: Vec<T>,
    },
    /// Values never seen in training; never decoded.
    Unknown,
}

impl<T> Word<T> {
    /// Training occurrences behind the word.
    pub fn count(&self) -> u64 {
        match self {
            Word::Value { count, .. } | Word::Rare { count, .. } => *count,
            Word::Unknown => 0,
        }
    }

    /// Whether decoding may emit this word.
    pub fn is_decodable(&self) -> bool {
        match self {
            Word::Value { .. } => true,
            Word::Rare { values, .. } => !values.is_empty(),
            Word::Unknown => false,
        }
    }
}

/// Knobs for building a vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VocabParams {
    /// Fewest training occurrences for a value to get its own word.
    pub min_count: u64,
    /// Most distinct values kept behind one rare word (bounds the bundle size).
    pub max_rare_values: usize,
}

impl Default for VocabParams {
    fn default() -> Self {
        VocabParams {
            min_count: 3,
            max_rare_values: 4096,
        }
    }
}

/// Frequent values, rare-class words and the unknown word of one attribute kind.
#[derive(Clone, Debug, PartialEq)]
pub struct Vocabulary<T: VocabValue> {
    words: Vec<Word<T>>,
    lookup: HashMap<T, WordId>,
    rare_by_class: HashMap<String, WordId>,
    unknown: WordId,
}

impl<T: VocabValue> Vocabulary<T> {
    /// Builds the vocabulary from training counts; `class_of` names a value's class,
    /// and `rng` samples rare classes down to `params.max_rare_values`.
    pub fn build(
        counts: HashMap<T, u64>,
        params: &VocabParams,
        class_of: impl Fn(&T) -> &'static str,
        rng: &mut impl Rng,
    ) -> Vocabulary<T> {
        let mut entries: Vec<(T, u64)> = counts.into_iter().collect();
        entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));

        let mut words = Vec::new();
        let mut rare: BTreeMap<&'static str, (u64, Vec<T>)> = BTreeMap::new();
        for (value, count) in entries {
            if count >= params.min_count.max(1) {
                words.push(Word::Value { value, count });
            } else {
                let class = rare.entry(class_of(&value)).or_default();
                class.0 += count;
                class.1.push(value);
            }
        }
        for (class, (count, mut values)) in rare {
            values.sort();
            if values.len() > params.max_rare_values {
                let mut keep =
                    rand::seq::index::sample(rng, values.len(), params.max_rare_values).into_vec();
                keep.sort_unstable();
                values = keep.into_iter().map(|i| values[i].clone()).collect();
            }
            words.push(Word::Rare {
                class: class.to_owned(),
                count,
                values,
            });
        }
        words.push(Word::Unknown);
        Self::from_words(words)
    }

    fn from_words(words: Vec<Word<T>>) -> Vocabulary<T> {
        let mut lookup = HashMap::new();
        let mut rare_by_class = HashMap::new();
        let mut unknown = None;
        for (id, word) in words.iter().enumerate() {
            let id = id as WordId;
            match word {
                Word::Value { value, .. } => {
                    lookup.insert(value.clone(), id);
                }
                Word::Rare { class, values, .. } => {
                    rare_by_class.insert(class.clone(), id);
                    for value in values {
                        lookup.entry(value.clone()).or_insert(id);
                    }
                }
                Word::Unknown => unknown = Some(id),
            }
        }
        let mut words = words;
        let unknown = unknown.unwrap_or_else(|| {
            words.push(Word::Unknown);
            (words.len() - 1) as WordId
        });
        Vocabulary {
            words,
            lookup,
            rare_by_class,
            unknown,
        }
    }

    /// Number of words, the unknown word included.
    pub fn len(&self) -> usize {
        self.words.len()
    }

    /// Whether the vocabulary has no word (never: the unknown word is always there).
    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Every word, indexed by [`WordId`].
    pub fn words(&self) -> &[Word<T>] {
        &self.words
    }

    /// The unknown word.
    pub fn unknown(&self) -> WordId {
        self.unknown
    }

    /// The word of a value: its own, its class's rare word, or the unknown word.
    pub fn encode(&self, value: &T, class_of: impl Fn(&T) -> &'static str) -> WordId {
        if let Some(&id) = self.lookup.get(value) {
            return id;
        }
        self.rare_by_class
            .get(class_of(value))
            .copied()
            .unwrap_or(self.unknown)
    }

    /// A value for a word: the word's own, or a uniform draw from its rare class;
    /// `None` for the unknown word and out-of-range ids.
    pub fn draw(&self, word: WordId, rng: &mut impl Rng) -> Option<&T> {
        match self.words.get(word as usize)? {
            Word::Value { value, .. } => Some(value),
            Word::Rare { values, .. } if !values.is_empty() => {
                Some(&values[rng.random_range(0..values.len())])
            }
            _ => None,
        }
    }
}

/// A vocabulary word as the bundle writes it.
#[derive(Serialize, Deserialize)]
#[serde(tag = "word", rename_all = "snake_case")]
enum WordFile {
    Value {
        value: String,
        count: u64,
    },
    Rare {
        class: String,
        count: u64,
        values: Vec<String>,
    },
    Unknown,
}

impl<T: VocabValue> Serialize for Vocabulary<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let words: Vec<WordFile> = self
            .words
            .iter()
            .map(|word| match word {
                Word::Value { value, count } => WordFile::Value {
                    value: value.to_text(),
                    count: *count,
                },
                Word::Rare {
                    class,
                    count,
                    values,
                } => WordFile::Rare {
                    class: class.clone(),
                    count: *count,
                    values: values.iter().map(T::to_text).collect(),
                },
                Word::Unknown => WordFile::Unknown,
            })
            .collect();
        words.serialize(serializer)
    }
}

impl<'de, T: VocabValue> Deserialize<'de> for Vocabulary<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let files = Vec::<WordFile>::deserialize(deserializer)?;
        let parse = |text: &str| {
            T::from_text(text)
                .ok_or_else(|| D::Error::custom(format!("bad vocabulary value {text:?}")))
        };
        let mut words = Vec::with_capacity(files.len());
        for file in files {
            words.push(match file {
                WordFile::Value { value, count } => Word::Value {
                    value: parse(&value)?,
                    count,
                },
                WordFile::Rare {
                    class,
                    count,
                    values,
                } => Word::Rare {
                    class,
                    count,
                    values: values.iter().map(|v| parse(v)).collect::<Result<_, _>>()?,
                },
                WordFile::Unknown => Word::Unknown,
            });
        }
        Ok(Self::from_words(words))
    }
}

/// Sorts addresses into the classes that rare addresses are pooled by.
///
/// Broadcast and multicast addresses get classes of their own so that a rare
/// one is never decoded where a unicast host belongs (Ring's checks T5, T6);
/// the classes follow the definitions of [`crate::eval`].
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct AddressClasses {
    /// Networks whose hosts count as internal.
    pub internal: InternalNetwork,
}

/// The address classes, in the order of their one-hot columns.
pub const ADDRESS_CLASSES: [&str; 7] = [
    "internal",
    "internal-broadcast",
    "broadcast",
    "multicast",
    "external",
    "external-v6",
    "token",
];

impl AddressClasses {
    /// The index of an address's class in [`ADDRESS_CLASSES`].
    pub fn class_index(&self, address: &Address) -> usize {
        let class = self.class_of(address);
        ADDRESS_CLASSES
            .iter()
            .position(|&c| c == class)
            .unwrap_or(0)
    }

    /// The class of an address: `internal`, `internal-broadcast`, `broadcast`,
    /// `multicast`, `external`, `external-v6` or `token`.
    pub fn class_of(&self, address: &Address) -> &'static str {
        let internal = self.internal.contains(address);
        match address {
            Address::Token(_) => "token",
            _ if is_broadcast(address) && internal => "internal-broadcast",
            _ if is_broadcast(address) => "broadcast",
            _ if is_multicast(address) => "multicast",
            _ if internal => "internal",
            Address::V4(_) => "external",
            Address::V6(_) => "external-v6",
        }
    }
}

/// [`AddressClasses`] as the bundle writes it: networks in CIDR notation.
#[derive(Serialize, Deserialize)]
struct AddressClassesFile {
    internal: Vec<String>,
}

impl Serialize for AddressClasses {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let internal = self
            .internal
            .networks()
            .iter()
            .map(Cidr::to_string)
            .collect();
        AddressClassesFile { internal }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for AddressClasses {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let file = AddressClassesFile::deserialize(deserializer)?;
        let networks = file
            .internal
            .iter()
            .map(|text| text.parse::<Cidr>().map_err(D::Error::custom))
            .collect::<Result<_, _>>()?;
        Ok(AddressClasses {
            internal: InternalNetwork::new(networks),
        })
    }
}

/// The class of a port: `well-known` below 1024, `registered` below 32768,
/// else `ephemeral` (Linux's default ephemeral range starts at 32768, below
/// IANA's 49152, and CIDDS-001's clients use it).
pub fn port_class(port: &u16) -> &'static str {
    match *port {
        0..=1023 => "well-known",
        1024..=32767 => "registered",
        _ => "ephemeral",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn params(min_count: u64) -> VocabParams {
        VocabParams {
            min_count,
            max_rare_values: 1000,
        }
    }

    fn port_vocab() -> Vocabulary<u16> {
        let counts = HashMap::from([
            (443, 50),
            (80, 20),
            (53, 3),
            (60001, 1),
            (60002, 2),
            (999, 1),
        ]);
        Vocabulary::build(
            counts,
            &params(3),
            port_class,
            &mut ChaCha8Rng::seed_from_u64(1),
        )
    }

    #[test]
    fn frequent_values_get_words_and_rare_ones_pool_by_class() {
        let vocab = port_vocab();
        let labels: Vec<String> = vocab
            .words()
            .iter()
            .map(|w| match w {
                Word::Value { value, .. } => value.to_string(),
                Word::Rare { class, .. } => format!("rare:{class}"),
                Word::Unknown => "unknown".into(),
            })
            .collect();
        assert_eq!(
            labels,
            [
                "443",
                "80",
                "53",
                "rare:ephemeral",
                "rare:well-known",
                "unknown"
            ]
        );
        assert_eq!(vocab.words()[3].count(), 3);

        assert_eq!(vocab.encode(&443, port_class), 0);
        assert_eq!(vocab.encode(&60002, port_class), 3);
        // Never seen, but its class has a rare word.
        assert_eq!(vocab.encode(&65000, port_class), 3);
        // Never seen and no rare registered port in training.
        assert_eq!(vocab.encode(&8080, port_class), vocab.unknown());
    }

    #[test]
    fn rare_words_draw_their_class_values_and_unknown_draws_nothing() {
        let vocab = port_vocab();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            seen.insert(*vocab.draw(3, &mut rng).unwrap());
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), [60001, 60002]);
        assert_eq!(vocab.draw(0, &mut rng), Some(&443));
        assert_eq!(vocab.draw(vocab.unknown(), &mut rng), None);
        assert_eq!(vocab.draw(999, &mut rng), None);
    }

    #[test]
    fn rare_pools_are_capped_deterministically() {
        let counts: HashMap<u16, u64> = (40000..41000).map(|p| (p, 1)).collect();
        let capped = VocabParams {
            min_count: 2,
            max_rare_values: 10,
        };
        let build = |seed| {
            Vocabulary::build(
                counts.clone(),
                &capped,
                port_class,
                &mut ChaCha8Rng::seed_from_u64(seed),
            )
        };
        let vocab = build(3);
        assert_eq!(vocab, build(3));
        match &vocab.words()[0] {
            Word::Rare { values, count, .. } => {
                assert_eq!(values.len(), 10);
                assert_eq!(*count, 1000);
            }
            other => panic!("expected a rare word, got {other:?}"),
        }
    }

    #[test]
    fn vocabularies_round_trip_through_json() {
        let vocab = port_vocab();
        let json = serde_json::to_string(&vocab).unwrap();
        assert!(json.contains(
            r#"{"word":"rare","class":"ephemeral","count":3,"values":["60001","60002"]}"#
        ));
        let back: Vocabulary<u16> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, vocab);

        let bad = r#"[{"word":"value","value":"http","count":3}]"#;
        let err = serde_json::from_str::<Vocabulary<u16>>(bad).unwrap_err();
        assert!(
            err.to_string().contains("bad vocabulary value \"http\""),
            "{err}"
        );
    }

    #[test]
    fn addresses_fall_into_classes() {
        let classes = AddressClasses::default();
        let class = |text: &str| classes.class_of(&Address::parse(text).unwrap());
        assert_eq!(class("192.168.220.14"), "internal");
        assert_eq!(class("192.168.220.255"), "internal-broadcast");
        assert_eq!(class("255.255.255.255"), "broadcast");
        assert_eq!(class("10.0.0.255"), "broadcast");
        assert_eq!(class("224.0.0.251"), "multicast");
        assert_eq!(class("8.8.8.8"), "external");
        assert_eq!(class("11529_47"), "token");
        assert_eq!(class("fe80::1"), "external-v6");
        for (i, name) in ADDRESS_CLASSES.iter().enumerate() {
            let example = [
                "192.168.1.1",
                "192.168.1.255",
                "10.1.1.255",
                "224.0.0.1",
                "8.8.8.8",
                "::1",
                "DNS",
            ][i];
            assert_eq!(class(example), *name);
            assert_eq!(classes.class_index(&Address::parse(example).unwrap()), i);
        }
    }

    #[test]
    fn address_classes_round_trip_through_json() {
        let classes = AddressClasses::default();
        let json = serde_json::to_string(&classes).unwrap();
        assert_eq!(json, r#"{"internal":["192.168.0.0/16"]}"#);
        assert_eq!(
            serde_json::from_str::<AddressClasses>(&json).unwrap(),
            classes
        );
        let bad = serde_json::from_str::<AddressClasses>(r#"{"internal":["10.0.0.0/99"]}"#);
        assert!(bad.unwrap_err().to_string().contains("10.0.0.0/99"));
    }
}
