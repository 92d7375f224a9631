//! The E-WGAN-GP model of Ring et al. (2019): flows as IP2Vec embeddings and
//! one-hot columns (the [`super::codebook`]), a WGAN-GP generator over those
//! vectors exported as ONNX, and nearest-neighbour decoding back into flows.
//!
//! A bundle of this kind holds `manifest.json`, `generator.onnx` (noise
//! `[N, noise_dim]` in, rows `[N, width]` out) and `codebook.json`; the
//! manifest's `hyperparameters.wgan.noise_dim` gives the noise width, its
//! `feature_layout` the columns, and its `eval` the `flowgen eval` report on
//! the held-out flows, Ring's checks on more generated flows
//! (`checks_on_more_flows`) and how training went (`training`).

mod generator;
mod train;

pub use generator::EwganGenerator;
pub use train::{train_ewgan, train_ewgan_with, EwganError, EwganParams, EwganRun};

use super::bundle::Manifest;

/// The generator's file name inside a bundle.
pub const GENERATOR_FILE: &str = "generator.onnx";

/// The generator's noise width recorded in a manifest.
fn noise_dim_of(manifest: &Manifest) -> Option<usize> {
    let wgan = manifest.hyperparameters.get("wgan")?;
    let dim = wgan.get("noise_dim")?.as_u64()?;
    usize::try_from(dim).ok().filter(|&d| d > 0)
}
