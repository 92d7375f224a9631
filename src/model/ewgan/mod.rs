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
//!
//! Where this departs from Ring et al.: rare addresses and ports share one
//! word per class ([`super::vocab`]); the vector carries the source and
//! destination address class as one-hot columns ([`super::features`]);
//! decoding keeps to what the training flows show is possible (address class
//! pairs, ports per protocol and class, real volumes per bin cell; see
//! [`super::codebook::Support`] and [`super::bins`]); and TCP flags are
//! cleared on non-TCP flows and the source port on ICMP flows.
//!
//! Known shortcomings. A generated flow never combines address classes, or a
//! port with a protocol and address class, that no training flow combined,
//! and its addresses, ports and volumes are always values of the training
//! flows: the model recombines, it does not invent hosts or services. Small
//! modes of the data come out under-represented: on the CIDDS-001 sample
//! NetBIOS broadcasts are about 1.1 % of the flows and about 0.45 % of the
//! generated ones. The generated time of day is smoother than the real
//! office-hours profile (scaled EMD about 0.09 against 0.01 between real
//! samples). Training holds its flows in memory (at most
//! `max_training_flows`, a uniform sample beyond).

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
