//! Models that produce flows: the empirical baseline and the IP2Vec + WGAN-GP
//! generator, their on-disk bundle, and decoding generated vectors into flows.

pub mod adam;
pub mod baseline;
pub mod bins;
pub mod bundle;
pub mod codebook;
pub mod decode;
pub mod ewgan;
pub mod features;
#[cfg(test)]
mod fixtures;
pub mod generate;
pub mod ip2vec;
pub mod mlp;
pub mod onnx;
pub mod output;
pub mod runtime;
pub mod train;
pub mod vocab;
pub mod wgan;

use std::path::{Path, PathBuf};

use crate::flow::Flow;
use bundle::{Bundle, BundleError, ModelKind};

/// A loaded model that produces synthetic flows in batches.
///
/// Start times of generated flows follow the learned time of day; the daemon
/// restamps them to the send time.
pub trait FlowGenerator: Send {
    /// Appends `count` new flows to `out`.
    fn generate(&mut self, count: usize, out: &mut Vec<Flow>) -> Result<(), bundle::BundleError>;

    /// Where inference runs once loaded (`device = "auto"` may have fallen
    /// back to the cpu); `None` for kinds that use no inference runtime.
    fn inference_device(&self) -> Option<runtime::Device> {
        None
    }
}

/// How to load a model bundle; kinds ignore what they do not use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoadOptions {
    /// Seed of every random draw the generator makes: equal seeds, equal flows.
    pub seed: u64,
    /// ONNX Runtime shared library for ewgan bundles; `None` uses the installed default.
    pub onnxruntime_path: Option<PathBuf>,
    /// Where ewgan inference runs: `cpu`, or `cuda` / `cuda:N`.
    pub device: String,
    /// Threads ONNX Runtime uses inside one operator; 0 lets it choose.
    pub intra_op_threads: usize,
    /// Rows per inference call for ewgan bundles.
    pub batch: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            seed: 0,
            onnxruntime_path: None,
            device: "cpu".to_owned(),
            intra_op_threads: 0,
            batch: 4096,
        }
    }
}

/// Loads the model bundle in `dir`, whatever its kind.
pub fn load(dir: &Path, options: &LoadOptions) -> Result<Box<dyn FlowGenerator>, BundleError> {
    let bundle = Bundle::open(dir)?;
    match bundle.manifest().kind {
        ModelKind::Baseline => Ok(Box::new(baseline::BaselineGenerator::load(
            dir,
            options.seed,
        )?)),
        ModelKind::Ewgan => Ok(Box::new(ewgan::EwganGenerator::from_bundle(
            &bundle, options,
        )?)),
    }
}
