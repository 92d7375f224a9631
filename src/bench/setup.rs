//! The model under test: the pieces each stage needs, from the bundle when it
//! is an E-WGAN-GP bundle, else stand-ins of the same shape.
//!
//! Stand-ins, used until a trained bundle exists: a codebook fitted to the
//! shared CIDDS-001 sample (the vocabulary sizes decoding depends on) and a
//! generator network of the trainer's default shape with random weights,
//! exported to ONNX (the same work per row as a trained one). Without ONNX
//! Runtime the inference stage is skipped, decoding is fed by the same
//! network run in Rust, and the end-to-end runs use a baseline bundle trained
//! on the sample instead.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use super::BenchError;
use crate::address_plan::{AddressPlan, AddressPlanConfig};
use crate::data::{read_all, ReadOptions};
use crate::model::bundle::{Bundle, Manifest, ModelKind};
use crate::model::codebook::{Codebook, CodebookParams, CODEBOOK_FILE};
use crate::model::ewgan::{EwganGenerator, GENERATOR_FILE};
use crate::model::features::FeatureLayout;
use crate::model::output::ColumnActivation;
use crate::model::runtime::{self, GeneratorSession, GeneratorShape, RuntimeOptions};
use crate::model::train::{self, TrainInput};
use crate::model::wgan::{Progress, TrainedGenerator, WganParams};
use crate::model::{FlowGenerator, LoadOptions};

/// Seed of every stand-in and of the noise the stages feed.
const SEED: u64 = 7;

/// The bundled model, relative to the repository root.
pub const DEFAULT_BUNDLE: &str = "models/cidds-001";

/// The CIDDS-001 sample inside the shared folder.
const SAMPLE_IN_SHARED: &str = "data/cidds-001/cidds-001-week3-sample.csv";

/// Where the benchmark takes its model from.
#[derive(Clone, Debug)]
pub struct ModelSource {
    /// The bundle to measure (`models/cidds-001`); stand-ins are built when it is
    /// missing or not an E-WGAN-GP bundle.
    pub bundle: PathBuf,
    /// Flow file the stand-ins are fitted to (the shared CIDDS-001 sample).
    pub sample: PathBuf,
    /// Hidden layer widths of the stand-in generator; `None` for the trainer's default.
    pub stand_in_hidden: Option<Vec<usize>>,
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
            stand_in_hidden: None,
        }
    }
}

/// What the end-to-end runs generate with.
#[derive(Clone, Debug)]
enum EndToEndModel {
    /// The E-WGAN-GP bundle, loaded by [`crate::model::load`].
    Bundle(PathBuf),
    /// The stand-in codebook and ONNX generator.
    StandIn,
    /// A bundle without a generator network (baseline), loaded by [`crate::model::load`].
    Baseline(PathBuf),
}

/// The model's pieces, ready for the stages.
pub struct ModelUnderTest {
    /// What is being measured, for the report.
    pub description: String,
    /// Vocabularies and embeddings for decoding.
    pub codebook: Codebook,
    /// The address plan applied before export (the default `[addresses]`).
    pub addresses: AddressPlan,
    /// The generator's ONNX file.
    pub onnx: PathBuf,
    /// The generator's noise and row widths.
    pub shape: GeneratorShape,
    /// ONNX Runtime settings of the inference stage and the end-to-end runs.
    pub runtime: RuntimeOptions,
    /// Why ONNX Runtime cannot be used, when it cannot.
    pub runtime_unavailable: Option<String>,
    /// The stand-in network, which feeds the decoder when ONNX Runtime is missing.
    stand_in: Option<TrainedGenerator>,
    end_to_end: EndToEndModel,
    /// Scratch folder of the stand-ins, removed on drop.
    _scratch: Option<ScratchDir>,
}

impl ModelUnderTest {
    /// Loads the bundle's pieces, or builds stand-ins where it has none.
    pub fn prepare(
        source: &ModelSource,
        runtime: &RuntimeOptions,
    ) -> Result<ModelUnderTest, BenchError> {
        let addresses = AddressPlan::new(&AddressPlanConfig::default())
            .map_err(|e| BenchError::Setup(format!("default address plan: {e}")))?;
        let runtime_unavailable = runtime::init(runtime.library_path.as_deref())
            .err()
            .map(|e| e.to_string());
        let manifest = Bundle::read_manifest(&source.bundle).ok();
        if let Some(manifest) = manifest.as_ref().filter(|m| m.kind == ModelKind::Ewgan) {
            let codebook = Codebook::read(&source.bundle.join(CODEBOOK_FILE))?;
            let shape = GeneratorShape {
                noise_dim: noise_dim_of(manifest).ok_or_else(|| {
                    BenchError::Setup(format!(
                        "{}: manifest has no hyperparameters.wgan.noise_dim",
                        source.bundle.display()
                    ))
                })?,
                out_dim: codebook.layout.width(),
            };
            return Ok(ModelUnderTest {
                description: format!("{} (ewgan)", source.bundle.display()),
                codebook,
                addresses,
                onnx: source.bundle.join(GENERATOR_FILE),
                shape,
                runtime: runtime.clone(),
                runtime_unavailable,
                stand_in: None,
                end_to_end: EndToEndModel::Bundle(source.bundle.clone()),
                _scratch: None,
            });
        }

        let scratch = ScratchDir::create()?;
        let flows = read_all([&source.sample], ReadOptions::default())?;
        let codebook = Codebook::fit(&flows, &CodebookParams::default(), SEED, Progress::Hidden)
            .map_err(|e| {
                BenchError::Setup(format!("{}: codebook: {e}", source.sample.display()))
            })?;
        let network = stand_in_network(codebook.layout, source.stand_in_hidden.as_deref())?;
        let onnx = scratch.path.join(GENERATOR_FILE);
        crate::model::onnx::write_onnx(&network, &onnx)
            .map_err(|e| BenchError::Setup(format!("stand-in generator: {e}")))?;
        let end_to_end = match (&runtime_unavailable, manifest) {
            (None, _) => EndToEndModel::StandIn,
            (Some(_), Some(_)) => EndToEndModel::Baseline(source.bundle.clone()),
            (Some(_), None) => EndToEndModel::Baseline(train_baseline(
                &source.sample,
                &scratch.path.join("baseline"),
            )?),
        };
        let widths: Vec<String> = std::iter::once(network.noise_dim())
            .chain(network.layers().iter().map(|l| l.out_dim))
            .map(|w| w.to_string())
            .collect();
        let e2e = match &end_to_end {
            EndToEndModel::Baseline(path) => format!("baseline bundle {}", path.display()),
            _ => "the stand-ins".to_owned(),
        };
        Ok(ModelUnderTest {
            description: format!(
                "stand-in (no ewgan bundle at {}): codebook fitted to {}, generator {} with \
                 random weights; end to end with {e2e}",
                source.bundle.display(),
                source.sample.display(),
                widths.join("-"),
            ),
            shape: GeneratorShape {
                noise_dim: network.noise_dim(),
                out_dim: network.out_dim(),
            },
            codebook,
            addresses,
            onnx,
            runtime: runtime.clone(),
            runtime_unavailable,
            stand_in: Some(network),
            end_to_end,
            _scratch: Some(scratch),
        })
    }

    /// The feature layout of the generator's rows.
    pub fn layout(&self) -> FeatureLayout {
        self.codebook.layout
    }

    /// A generator session on the model's ONNX file.
    pub fn session(&self) -> Result<GeneratorSession, BenchError> {
        Ok(GeneratorSession::load(
            &self.onnx,
            self.shape,
            &self.runtime,
        )?)
    }

    /// `batch` rows of generator output: from ONNX Runtime, else the stand-in run in Rust.
    pub fn generator_rows(&self, batch: usize) -> Result<Vec<f32>, BenchError> {
        let noise = normal_noise(
            &mut ChaCha8Rng::seed_from_u64(SEED),
            batch * self.shape.noise_dim,
        );
        match (&self.runtime_unavailable, &self.stand_in) {
            (Some(_), Some(network)) => network
                .forward(&noise, batch)
                .map_err(|e| BenchError::Setup(format!("stand-in generator: {e}"))),
            _ => Ok(self.session()?.run(&noise, batch)?.to_vec()),
        }
    }

    /// A whole flow generator, as a daemon's generator thread runs it.
    pub fn flow_generator(
        &self,
        batch: usize,
        seed: u64,
    ) -> Result<Box<dyn FlowGenerator>, BenchError> {
        let load = |bundle: &Path| {
            let options = LoadOptions {
                seed,
                onnxruntime_path: self.runtime.library_path.clone(),
                device: self.runtime.device.to_string(),
                intra_op_threads: self.runtime.intra_threads,
                batch,
            };
            crate::model::load(bundle, &options)
        };
        Ok(match &self.end_to_end {
            EndToEndModel::Bundle(path) | EndToEndModel::Baseline(path) => load(path)?,
            EndToEndModel::StandIn => Box::new(EwganGenerator::from_parts(
                self.session()?,
                &self.codebook,
                self.onnx.clone(),
                batch,
                seed,
            )?),
        })
    }

    /// Whether the end-to-end runs use the E-WGAN-GP path (not a baseline).
    pub fn end_to_end_is_ewgan(&self) -> bool {
        !matches!(self.end_to_end, EndToEndModel::Baseline(_))
    }
}

/// The generator's noise width recorded in an ewgan manifest.
fn noise_dim_of(manifest: &Manifest) -> Option<usize> {
    let dim = manifest
        .hyperparameters
        .get("wgan")?
        .get("noise_dim")?
        .as_u64()?;
    usize::try_from(dim).ok().filter(|&d| d > 0)
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

/// A generator for `layout` with random weights, of the trainer's default
/// shape unless `hidden` gives other hidden layer widths.
fn stand_in_network(
    layout: FeatureLayout,
    hidden: Option<&[usize]>,
) -> Result<TrainedGenerator, BenchError> {
    let params = WganParams::default();
    let hidden = hidden.unwrap_or(&params.hidden);
    let activations: Vec<ColumnActivation> = layout
        .groups()
        .iter()
        .map(|group| group.activation_range())
        .collect();
    TrainedGenerator::random(params.noise_dim, hidden, layout.width(), &activations, SEED)
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
