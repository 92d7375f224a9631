//! Generating flows with a trained E-WGAN-GP bundle: Gaussian noise through
//! the ONNX generator (ONNX Runtime), then nearest-neighbour decoding with
//! the codebook.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::super::bundle::{Bundle, BundleError};
use super::super::codebook::{Codebook, CODEBOOK_FILE};
use super::super::decode::FlowDecoder;
use super::super::runtime::{Device, GeneratorSession, GeneratorShape, RuntimeOptions};
use super::super::{FlowGenerator, LoadOptions};
use super::{noise_dim_of, GENERATOR_FILE};
use crate::flow::Flow;

/// A loaded E-WGAN-GP model.
///
/// Holds its noise and output buffers: [`EwganGenerator::generate_batch`] into
/// a reused `Vec<Flow>` allocates nothing once the buffers have grown.
#[derive(Debug)]
pub struct EwganGenerator {
    session: GeneratorSession,
    decoder: FlowDecoder,
    time_of_day_profile: Vec<f64>,
    weekday_profile: Vec<f64>,
    codebook_path: PathBuf,
    batch: usize,
    noise: Vec<f32>,
    rng: ChaCha8Rng,
}

impl EwganGenerator {
    /// Loads the ewgan bundle in `dir`: its codebook and its ONNX generator.
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<EwganGenerator, BundleError> {
        EwganGenerator::from_bundle(&Bundle::open(dir)?, options)
    }

    /// Builds the generator from a bundle already opened (and its files verified),
    /// so that a caller which opened it to read the kind does not hash it again.
    pub fn from_bundle(
        bundle: &Bundle,
        options: &LoadOptions,
    ) -> Result<EwganGenerator, BundleError> {
        let codebook_path = bundle.file(CODEBOOK_FILE);
        let codebook = Codebook::read(&codebook_path)?;
        let manifest = bundle.manifest();
        let noise_dim = noise_dim_of(manifest).ok_or_else(|| BundleError::CorruptManifest {
            path: bundle.file(super::super::bundle::MANIFEST_FILE),
            message: "hyperparameters.wgan.noise_dim is missing".into(),
        })?;
        let device =
            options
                .device
                .parse::<Device>()
                .map_err(|message| BundleError::BadOption {
                    option: "device",
                    message,
                })?;
        let runtime = RuntimeOptions {
            library_path: options.onnxruntime_path.clone(),
            device,
            intra_threads: options.intra_op_threads,
            ..RuntimeOptions::default()
        };
        let shape = GeneratorShape {
            noise_dim,
            out_dim: codebook.layout.width(),
        };
        let session = GeneratorSession::load(&bundle.file(GENERATOR_FILE), shape, &runtime)?;
        EwganGenerator::from_parts(
            session,
            &codebook,
            codebook_path,
            options.batch,
            options.seed,
        )
    }

    /// A generator from a loaded session and its codebook (`codebook_path` names
    /// the codebook in errors); `batch` rows per inference call.
    pub fn from_parts(
        session: GeneratorSession,
        codebook: &Codebook,
        codebook_path: PathBuf,
        batch: usize,
        seed: u64,
    ) -> Result<EwganGenerator, BundleError> {
        let corrupt = |message: String| BundleError::CorruptFile {
            path: codebook_path.clone(),
            message,
        };
        let width = codebook.layout.width();
        if session.shape().out_dim != width {
            return Err(corrupt(format!(
                "the codebook's layout is {width} columns wide, the generator {} emits {}",
                session.path().display(),
                session.shape().out_dim
            )));
        }
        let decoder = FlowDecoder::new(codebook).map_err(|e| corrupt(e.to_string()))?;
        Ok(EwganGenerator {
            session,
            decoder,
            time_of_day_profile: codebook.time_of_day_profile.clone(),
            weekday_profile: codebook.weekday_profile.clone(),
            codebook_path,
            batch: batch.max(1),
            noise: Vec::new(),
            rng: ChaCha8Rng::seed_from_u64(seed),
        })
    }

    /// Appends `count` generated flows to `out`, inferring `batch` rows at a time.
    ///
    /// Start times fall within the training data's first week at the generated
    /// weekday and time of day; the daemon restamps them.
    pub fn generate_batch(&mut self, count: usize, out: &mut Vec<Flow>) -> Result<(), BundleError> {
        let noise_dim = self.session.shape().noise_dim;
        let mut left = count;
        out.reserve(count);
        while left > 0 {
            let rows = left.min(self.batch);
            self.noise.resize(rows * noise_dim, 0.0);
            for v in &mut self.noise {
                *v = self.rng.sample(StandardNormal);
            }
            let outputs = self.session.run(&self.noise, rows)?;
            self.decoder
                .decode(outputs, rows, &mut self.rng, out)
                .map_err(|e| BundleError::CorruptFile {
                    path: self.codebook_path.clone(),
                    message: e.to_string(),
                })?;
            left -= rows;
        }
        Ok(())
    }

    /// Share of training flows per quarter hour of the UTC day (96 values,
    /// summing to 1): the shape of a diurnal send rate.
    pub fn time_of_day_profile(&self) -> &[f64] {
        &self.time_of_day_profile
    }

    /// Share of training flows per weekday, Monday first.
    pub fn weekday_profile(&self) -> &[f64] {
        &self.weekday_profile
    }

    /// Where inference runs.
    pub fn device(&self) -> Device {
        self.session.device()
    }
}

impl FlowGenerator for EwganGenerator {
    fn generate(&mut self, count: usize, out: &mut Vec<Flow>) -> Result<(), BundleError> {
        self.generate_batch(count, out)
    }

    fn inference_device(&self) -> Option<Device> {
        Some(self.device())
    }
}
