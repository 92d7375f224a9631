//! Training an E-WGAN-GP bundle: read and split the flows, fit the codebook
//! (vocabularies, bins, IP2Vec), encode the flows as vectors, train the
//! WGAN-GP, export and verify the ONNX generator, score the model on the
//! held-out flows, and write the bundle.

use std::path::Path;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::super::bundle::{write_json, Bundle, BundleError, Manifest, ModelKind};
use super::super::codebook::{Codebook, CodebookParams, FlowEncoder, CODEBOOK_FILE};
use super::super::features::{protocol_index, FeatureLayout, DAY_MS, PROTOCOLS};
use super::super::ip2vec::Ip2VecError;
use super::super::onnx::{self, OnnxError};
use super::super::runtime::{GeneratorSession, GeneratorShape, RuntimeError, RuntimeOptions};
use super::super::train::{self as common, TrainError, TrainInput, HOLDOUT_FILE};
use super::super::wgan::{self, Progress, TrainedGenerator, WganError, WganParams};
use super::generator::EwganGenerator;
use super::GENERATOR_FILE;
use crate::data::{read_all, ReadError, ReadOptions};
use crate::eval::{self, EvalError, EvalOptions};
use crate::flow::Flow;

/// What went wrong training an E-WGAN-GP model.
#[derive(Debug, thiserror::Error)]
pub enum EwganError {
    /// Reading, splitting or writing failed in the steps every kind shares.
    #[error(transparent)]
    Train(Box<TrainError>),
    /// No flow of a protocol the model can represent is left to learn from.
    #[error(
        "no flows to learn from: the input holds {rows} flows, {held_out} held out and \
         {unsupported} of protocols other than TCP, UDP and ICMP"
    )]
    NoFlows {
        /// Flows in the input.
        rows: u64,
        /// Flows held out.
        held_out: u64,
        /// Training flows left out for their protocol.
        unsupported: u64,
    },
    /// An attribute has one value in every training flow: nothing to learn.
    #[error(
        "attribute {attribute} is {value} in all {flows} training flows; the model needs \
         data where every attribute varies"
    )]
    ConstantAttribute {
        /// The attribute.
        attribute: &'static str,
        /// Its only value.
        value: String,
        /// Training flows.
        flows: usize,
    },
    /// The codebook could not be fitted.
    #[error(transparent)]
    Ip2Vec(#[from] Ip2VecError),
    /// The WGAN-GP could not be trained.
    #[error(transparent)]
    Wgan(#[from] WganError),
    /// The generator could not be exported or failed verification.
    #[error(transparent)]
    Onnx(Box<OnnxError>),
    /// ONNX Runtime could not load the exported generator.
    #[error(transparent)]
    Runtime(Box<RuntimeError>),
    /// A bundle file could not be written or read back.
    #[error(transparent)]
    Bundle(Box<BundleError>),
    /// The held-out flows could not be read back.
    #[error(transparent)]
    ReadHoldout(Box<ReadError>),
    /// The held-out evaluation failed.
    #[error("evaluating on the held-out flows: {0}")]
    Eval(#[from] EvalError),
}

/// Boxes the large errors of other modules so that results stay small.
macro_rules! boxed_from {
    ($($variant:ident($ty:ty)),*) => {
        $(impl From<$ty> for EwganError {
            fn from(e: $ty) -> Self {
                EwganError::$variant(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    Train(TrainError),
    Onnx(OnnxError),
    Runtime(RuntimeError),
    Bundle(BundleError),
    ReadHoldout(ReadError)
);

/// Hyper-parameters of an E-WGAN-GP model, written to the manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EwganParams {
    /// Vocabularies, bins and IP2Vec.
    pub codebook: CodebookParams,
    /// The WGAN-GP (its seed and output activations are set by the trainer).
    pub wgan: WganParams,
    /// Most training flows used; a seeded uniform sample of them beyond.
    pub max_training_flows: usize,
    /// Generated flows scored against the held-out flows for the manifest.
    pub eval_flows: usize,
    /// Generated flows Ring's checks are counted on for the manifest.
    pub check_flows: usize,
}

impl Default for EwganParams {
    fn default() -> Self {
        EwganParams {
            codebook: CodebookParams::default(),
            wgan: WganParams::default(),
            max_training_flows: 1_000_000,
            eval_flows: 2048,
            check_flows: 20_000,
        }
    }
}

/// Trains an E-WGAN-GP model on `input` and writes its bundle to `out_dir`.
///
/// `runtime` locates ONNX Runtime, which checks the exported generator against
/// the trained one and generates the flows scored on the held-out part.
pub fn train_ewgan(
    input: &TrainInput,
    out_dir: &Path,
    params: &EwganParams,
    runtime: &RuntimeOptions,
    progress: Progress,
) -> Result<Manifest, EwganError> {
    let started = Instant::now();
    let files = common::scan(input)?;
    common::prepare_out_dir(out_dir)?;

    let mut sample = Reservoir::new(params.max_training_flows, sub_seed(input.seed, 1));
    let mut unsupported = 0u64;
    let split = common::split(input, &files, out_dir, |flow| {
        if protocol_index(flow.protocol).is_some() {
            sample.offer(flow);
        } else {
            unsupported += 1;
        }
    })?;
    let flows = sample.into_flows();
    if flows.is_empty() {
        return Err(EwganError::NoFlows {
            rows: files.iter().map(|f| f.rows).sum(),
            held_out: split.held_out_rows,
            unsupported,
        });
    }
    if unsupported > 0 {
        tracing::warn!(
            flows = unsupported,
            "training flows of protocols other than TCP, UDP and ICMP left out"
        );
    }
    check_variety(&flows)?;

    let codebook = Codebook::fit(&flows, &params.codebook, sub_seed(input.seed, 2), progress)?;
    let layout = codebook.layout;
    let data = encode_all(&codebook, &flows);

    let mut wgan_params = params.wgan.clone();
    wgan_params.seed = sub_seed(input.seed, 3);
    wgan_params.output_activations = layout
        .groups()
        .iter()
        .map(|g| g.activation_range())
        .collect();
    let training = wgan::train(&data, layout.width(), &wgan_params, progress)?;

    let onnx_path = out_dir.join(GENERATOR_FILE);
    onnx::write_onnx(&training.generator, &onnx_path)?;
    let onnx_max_abs_diff = onnx::verify(&training.generator, &onnx_path, runtime)?;
    let codebook_path = out_dir.join(CODEBOOK_FILE);
    write_json(&codebook_path, &codebook)?;

    let mut report = serde_json::Map::new();
    if split.held_out_rows > 0 {
        let context = EvalContext {
            out_dir,
            codebook: &codebook,
            generator: &training.generator,
            train: &flows,
            params,
            runtime,
            seed: sub_seed(input.seed, 4),
        };
        report = context.evaluate()?;
    }
    report.insert(
        "training".into(),
        serde_json::json!({
            "flows": flows.len(),
            "unsupported_protocol_flows": unsupported,
            "generator_steps": training.generator_steps,
            "wgan_seconds": training.elapsed.as_secs_f64(),
            "final_losses": training.history.last(),
            "onnx_max_abs_diff": onnx_max_abs_diff,
        }),
    );

    let mut manifest = common::manifest(ModelKind::Ewgan, input, files, split, started);
    manifest.files = vec![GENERATOR_FILE.to_owned(), CODEBOOK_FILE.to_owned()];
    manifest.hyperparameters = hyperparameters(params, &wgan_params);
    manifest.feature_layout = Some(feature_layout(&layout));
    manifest.eval = Some(serde_json::Value::Object(report));
    Bundle::write_manifest(out_dir, &manifest)?;
    tracing::info!(
        bundle = %out_dir.display(),
        training_flows = flows.len(),
        training_time_s = manifest.training_time_s,
        "ewgan trained"
    );
    Ok(manifest)
}

/// A seed for one step of training, derived from the run's seed (SplitMix64).
fn sub_seed(seed: u64, step: u64) -> u64 {
    let mut z = seed.wrapping_add(step.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform sample of at most `capacity` flows from a stream (Vitter's algorithm R).
struct Reservoir {
    capacity: usize,
    seen: u64,
    flows: Vec<Flow>,
    rng: ChaCha8Rng,
}

impl Reservoir {
    fn new(capacity: usize, seed: u64) -> Reservoir {
        Reservoir {
            capacity: capacity.max(1),
            seen: 0,
            flows: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn offer(&mut self, flow: Flow) {
        self.seen += 1;
        if self.flows.len() < self.capacity {
            self.flows.push(flow);
        } else {
            let slot = self.rng.random_range(0..self.seen);
            if let Some(kept) = self.flows.get_mut(slot as usize) {
                *kept = flow;
            }
        }
    }

    fn into_flows(self) -> Vec<Flow> {
        if self.seen > self.capacity as u64 {
            tracing::info!(
                kept = self.capacity,
                of = self.seen,
                "training on a uniform sample of the flows"
            );
        }
        self.flows
    }
}

/// An attribute the model learns: its name, equality and how to show a value.
type Attribute = (&'static str, fn(&Flow, &Flow) -> bool, fn(&Flow) -> String);

const ATTRIBUTES: [Attribute; 10] = [
    (
        "time_of_day",
        |a, b| a.start_ms.rem_euclid(DAY_MS) == b.start_ms.rem_euclid(DAY_MS),
        |f| format!("{} ms after midnight", f.start_ms.rem_euclid(DAY_MS)),
    ),
    (
        "protocol",
        |a, b| a.protocol == b.protocol,
        |f| f.protocol.name(),
    ),
    ("src_addr", |a, b| a.src == b.src, |f| f.src.to_string()),
    ("dst_addr", |a, b| a.dst == b.dst, |f| f.dst.to_string()),
    (
        "src_port",
        |a, b| a.src_port == b.src_port,
        |f| f.src_port.to_string(),
    ),
    (
        "dst_port",
        |a, b| a.dst_port == b.dst_port,
        |f| f.dst_port.to_string(),
    ),
    (
        "duration",
        |a, b| a.duration_ms == b.duration_ms,
        |f| format!("{} ms", f.duration_ms),
    ),
    (
        "packets",
        |a, b| a.packets == b.packets,
        |f| f.packets.to_string(),
    ),
    ("bytes", |a, b| a.bytes == b.bytes, |f| f.bytes.to_string()),
    (
        "tcp_flags",
        |a, b| a.tcp_flags == b.tcp_flags,
        |f| f.tcp_flags.to_uaprsf(),
    ),
];

/// Refuses training data in which an attribute never varies.
fn check_variety(flows: &[Flow]) -> Result<(), EwganError> {
    let Some(first) = flows.first() else {
        return Ok(());
    };
    for (attribute, same, show) in ATTRIBUTES {
        if flows.iter().all(|f| same(first, f)) {
            return Err(EwganError::ConstantAttribute {
                attribute,
                value: show(first),
                flows: flows.len(),
            });
        }
    }
    Ok(())
}

/// The training matrix: one generator-space row per flow.
fn encode_all(codebook: &Codebook, flows: &[Flow]) -> Vec<f32> {
    let width = codebook.layout.width();
    let encoder = FlowEncoder::new(codebook.clone());
    let mut data = vec![0.0f32; flows.len() * width];
    let mut rows = 0;
    for flow in flows {
        if encoder.encode(flow, &mut data[rows * width..(rows + 1) * width]) {
            rows += 1;
        }
    }
    data.truncate(rows * width);
    data
}

fn hyperparameters(
    params: &EwganParams,
    wgan: &WganParams,
) -> serde_json::Map<String, serde_json::Value> {
    let mut value = serde_json::to_value(params).unwrap_or_default();
    if let Some(map) = value.as_object_mut() {
        map.insert(
            "wgan".into(),
            serde_json::to_value(wgan).unwrap_or_default(),
        );
    }
    match value {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    }
}

fn feature_layout(layout: &FeatureLayout) -> serde_json::Value {
    serde_json::json!({
        "embedding_dim": layout.embedding_dim,
        "width": layout.width(),
        "protocols": PROTOCOLS.iter().map(|p| p.name()).collect::<Vec<_>>(),
        "tcp_flags": "UAPRSF",
        "groups": layout.groups(),
    })
}

/// What scoring the trained model on the held-out flows needs.
struct EvalContext<'a> {
    out_dir: &'a Path,
    codebook: &'a Codebook,
    generator: &'a TrainedGenerator,
    train: &'a [Flow],
    params: &'a EwganParams,
    runtime: &'a RuntimeOptions,
    seed: u64,
}

impl EvalContext<'_> {
    /// Generates flows through ONNX Runtime, as the daemon will, and scores them:
    /// the `flowgen eval` report on `eval_flows` flows, plus Ring's checks on
    /// `check_flows` flows under `checks_on_more_flows`.
    fn evaluate(&self) -> Result<serde_json::Map<String, serde_json::Value>, EwganError> {
        let holdout = read_all([self.out_dir.join(HOLDOUT_FILE)], ReadOptions::default())?;
        let shape = GeneratorShape {
            noise_dim: self.generator.noise_dim(),
            out_dim: self.generator.out_dim(),
        };
        let session =
            GeneratorSession::load(&self.out_dir.join(GENERATOR_FILE), shape, self.runtime)?;
        let codebook_path = self.out_dir.join(CODEBOOK_FILE);
        let mut generator =
            EwganGenerator::from_parts(session, self.codebook, codebook_path, 4096, self.seed)?;
        let count = self.params.check_flows.max(self.params.eval_flows);
        let mut synthetic = Vec::with_capacity(count);
        generator.generate_batch(count, &mut synthetic)?;

        let internal = self.codebook.address_classes.internal.clone();
        let checks = eval::run_checks(&synthetic, &internal);
        let options = EvalOptions {
            internal,
            seed: self.seed,
            ..EvalOptions::default()
        };
        let eval_flows = self.params.eval_flows.min(synthetic.len());
        let report = eval::evaluate(
            &holdout,
            &synthetic[..eval_flows],
            Some(self.train),
            &options,
        )?;
        tracing::info!(
            jsd_mean = report.scores.jsd.mean,
            density = report.scores.density,
            coverage = report.scores.coverage,
            pcd = report.scores.pcd,
            memorization = report.scores.memorization,
            "held-out evaluation"
        );
        let mut value = match serde_json::to_value(&report) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        value.insert(
            "checks_on_more_flows".into(),
            serde_json::json!({"flows": synthetic.len(), "checks": checks}),
        );
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::office_flows;

    #[test]
    fn constant_attributes_are_named() {
        let mut flows = office_flows(50, 1);
        for flow in &mut flows {
            flow.dst_port = 443;
        }
        let err = check_variety(&flows).unwrap_err();
        assert_eq!(
            err.to_string(),
            "attribute dst_port is 443 in all 50 training flows; the model needs data where \
             every attribute varies"
        );
        assert!(check_variety(&office_flows(50, 1)).is_ok());
    }

    #[test]
    fn the_reservoir_keeps_a_uniform_sample() {
        let flows = office_flows(1000, 2);
        let mut reservoir = Reservoir::new(100, 5);
        for flow in flows.iter().cloned() {
            reservoir.offer(flow);
        }
        let kept = reservoir.into_flows();
        assert_eq!(kept.len(), 100);
        // Positions of the kept flows spread over the whole stream.
        let late = kept
            .iter()
            .filter(|k| flows[500..].iter().any(|f| f == *k))
            .count();
        assert!(
            (30..=70).contains(&late),
            "{late} of 100 from the second half"
        );
    }

    #[test]
    fn sub_seeds_differ_per_step_and_seed() {
        assert_ne!(sub_seed(0, 1), sub_seed(0, 2));
        assert_ne!(sub_seed(0, 1), sub_seed(1, 1));
        assert_eq!(sub_seed(7, 3), sub_seed(7, 3));
    }
}
