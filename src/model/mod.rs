//! Models that produce flows: the empirical baseline and the IP2Vec + WGAN-GP
//! generator, their on-disk bundle, and decoding generated vectors into flows.

pub mod adam;
pub mod bundle;
pub mod mlp;
pub mod onnx;
pub mod output;
pub mod runtime;
pub mod wgan;

use crate::flow::Flow;

/// A loaded model that produces synthetic flows in batches.
///
/// Start times of generated flows follow the learned time of day; the daemon
/// restamps them to the send time.
pub trait FlowGenerator: Send {
    /// Appends `count` new flows to `out`.
    fn generate(&mut self, count: usize, out: &mut Vec<Flow>) -> Result<(), bundle::BundleError>;
}
