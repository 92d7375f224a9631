//! The model under test: the pieces each stage needs, from the bundle when it
//! is an E-WGAN-GP bundle, else stand-ins of the same shape.
//!
//! Stand-ins, used until a trained bundle exists: a codebook fitted to the
//! shared CIDDS-001 sample (the vocabulary sizes decoding depends on), a
//! generator network with random weights of the trainer's default shape (the
//! same work per row as a trained one), and, for the end-to-end runs, a
//! baseline bundle trained on the sample.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::BenchError;
use crate::address_plan::{AddressPlan, AddressPlanConfig};
use crate::data::{read_all, ReadOptions};
use crate::flow::Flow;
use crate::model::bundle::{Bundle, ModelKind};
use crate::model::codebook::{Codebook, CodebookParams, CODEBOOK_FILE};
use crate::model::decode::FlowDecoder;
use crate::model::features::{self, FeatureLayout};
use crate::model::output::{ColumnActivation, OutputActivation};
use crate::model::train::{self, TrainInput};
use crate::model::wgan::{TrainedGenerator, WganParams};

/// Seed of every stand-in and of the noise the stages feed.
const SEED: u64 = 7;

/// Where the benchmark takes its model from.
#[derive(Clone, Debug)]
pub struct ModelSource {
    /// The bundle to measure (`models/cidds-001`); a stand-in is built when it is
    /// missing or not an E-WGAN-GP bundle.
    pub bundle: PathBuf,
    /// Flow file the stand-ins are fitted to (the shared CIDDS-001 sample).
    pub sample: PathBuf,
}

impl ModelSource {
    /// The bundled model, and the shared sample found as tests find it:
    /// `FLOWGEN_SHARED`, else `../shared` beside the working directory, else `/work/shared`.
    pub fn default_paths() -> ModelSource {
        let shared = std::env::var_os("FLOWGEN_SHARED")
            .map(PathBuf::from)
            .or_else(|| Some(PathBuf::from("../shared")).filter(|p| p.is_dir()))
            .unwrap_or_else(|| PathBuf::from("/work/shared"));
        ModelSource {
            bundle: PathBuf::from(DEFAULT_BUNDLE),
            sample: shared.join(SAMPLE_IN_SHARED),
        }
    }
}

/// The bundled model, relative to the repository root.
pub const DEFAULT_BUNDLE: &str = "models/cidds-001";

/// The CIDDS-001 sample inside the shared folder.
const SAMPLE_IN_SHARED: &str = "data/cidds-001/cidds-001-week3-sample.csv";

/// The model's pieces, ready for the stages.
pub struct ModelUnderTest {
    /// What is being measured, for the report.
    pub description: String,
    /// Vocabularies and embeddings for decoding.
    pub codebook: Codebook,
    /// The generator network's weights (stand-in) for rows to decode.
    pub network: TrainedGenerator,
    /// The address plan applied before export (the default `[addresses]`).
    pub addresses: AddressPlan,
    /// The bundle the end-to-end runs load with [`crate::model::load`].
    pub e2e_bundle: PathBuf,
    /// Scratch folder of the stand-ins, removed on drop.
    scratch: Option<ScratchDir>,
}

impl ModelUnderTest {
    /// Loads the bundle's pieces, or builds stand-ins where it has none.
    pub fn prepare(source: &ModelSource) -> Result<ModelUnderTest, BenchError> {
        let addresses = AddressPlan::new(&AddressPlanConfig::default())
            .map_err(|e| BenchError::Setup(format!("default address plan: {e}")))?;
        let kind = Bundle::read_manifest(&source.bundle).ok().map(|m| m.kind);
        if kind == Some(ModelKind::Ewgan) {
            let path = source.bundle.join(CODEBOOK_FILE);
            let codebook = Codebook::read(&path)?;
            let network = stand_in_network(codebook.layout)?;
            return Ok(ModelUnderTest {
                description: format!("{} (ewgan)", source.bundle.display()),
                codebook,
                network,
                addresses,
                e2e_bundle: source.bundle.clone(),
                scratch: None,
            });
        }

        let scratch = ScratchDir::create()?;
        let flows = read_all([&source.sample], ReadOptions::default())?;
        let codebook = Codebook::fit(&flows, &CodebookParams::default(), SEED)
            .map_err(|e| BenchError::Setup(format!("{}: codebook: {e}", source.sample.display())))?;
        let network = stand_in_network(codebook.layout)?;
        let e2e_bundle = match kind {
            Some(_) => source.bundle.clone(),
            None => train_baseline(&source.sample, &scratch.path.join("baseline"))?,
        };
        let shape = network
            .layers()
            .iter()
            .map(|l| l.out_dim.to_string())
            .collect::<Vec<_>>()
            .join("-");
        Ok(ModelUnderTest {
            description: format!(
                "stand-in: codebook fitted to {}, random generator {}-{shape}; \
                 end to end with {}",
                source.sample.display(),
                network.noise_dim(),
                e2e_bundle.display(),
            ),
            codebook,
            network,
            addresses,
            e2e_bundle,
            scratch: Some(scratch),
        })
    }

    /// The feature layout of the generator's rows.
    pub fn layout(&self) -> FeatureLayout {
        self.codebook.layout
    }

    /// A scratch folder for files the stages write (ONNX graphs), when there is one.
    pub fn scratch_dir(&self) -> Option<&Path> {
        self.scratch.as_ref().map(|s| s.path.as_path())
    }

    /// `batch` rows of generator output from the stand-in network.
    pub fn generator_rows(&self, batch: usize) -> Result<Vec<f32>, BenchError> {
        let noise = normal_noise(&mut ChaCha8Rng::seed_from_u64(SEED), batch * self.network.noise_dim());
        self.network
            .forward(&noise, batch)
            .map_err(|e| BenchError::Setup(format!("stand-in generator: {e}")))
    }

    /// `batch` decoded flows with the address plan applied: what the encoder gets.
    pub fn export_flows(&self, batch: usize) -> Result<Vec<Flow>, BenchError> {
        let rows = self.generator_rows(batch)?;
        let mut decoder = FlowDecoder::new(&self.codebook)?;
        let mut flows = Vec::with_capacity(batch);
        decoder.decode(&rows, batch, &mut ChaCha8Rng::seed_from_u64(SEED), &mut flows)?;
        for flow in &mut flows {
            self.addresses.apply(flow);
        }
        Ok(flows)
    }
}

/// `count` standard normal numbers.
pub fn normal_noise(rng: &mut ChaCha8Rng, count: usize) -> Vec<f32> {
    let mut noise = vec![0.0; count];
    fill_normal(rng, &mut noise);
    noise
}

/// Overwrites `out` with standard normal numbers.
pub fn fill_normal(rng: &mut ChaCha8Rng, out: &mut [f32]) {
    for value in out {
        *value = StandardNormal.sample(rng);
    }
}

/// A generator of the trainer's default shape for `layout`, with random weights.
fn stand_in_network(layout: FeatureLayout) -> Result<TrainedGenerator, BenchError> {
    let params = WganParams::default();
    let activations: Vec<ColumnActivation> = layout
        .groups()
        .iter()
        .map(|group| ColumnActivation {
            start: group.start,
            end: group.start + group.len,
            activation: match group.activation {
                features::ColumnActivation::Sigmoid => OutputActivation::Sigmoid,
                features::ColumnActivation::Softmax => OutputActivation::Softmax,
                features::ColumnActivation::Tanh => OutputActivation::Tanh,
            },
        })
        .collect();
    TrainedGenerator::random(
        params.noise_dim,
        &params.hidden,
        layout.width(),
        &activations,
        SEED,
    )
    .map_err(|e| BenchError::Setup(format!("stand-in generator: {e}")))
}

fn train_baseline(sample: &Path, out_dir: &Path) -> Result<PathBuf, BenchError> {
    let input = TrainInput {
        data: vec![sample.to_path_buf()],
        read_options: ReadOptions::default(),
        holdout_fraction: 0.0,
        seed: SEED,
    };
    train::train_baseline(&input, out_dir)
        .map_err(|e| BenchError::Setup(format!("baseline from {}: {e}", sample.display())))?;
    Ok(out_dir.to_path_buf())
}

/// A folder under the system's temporary directory, removed on drop.
struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    fn create() -> Result<ScratchDir, BenchError> {
        let path = std::env::temp_dir().join(format!("flowgen-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path).map_err(|source| BenchError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(ScratchDir { path })
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
