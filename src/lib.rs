//! flowgen: realistic synthetic network flows, streamed as IPFIX and NetFlow v9.
//!
//! Data flows one way. [`data`] reads real flow files; [`model`] learns from
//! them (an empirical baseline, or IP2Vec embeddings with a WGAN-GP generator
//! exported as ONNX) and writes a model bundle; at run time the bundle's
//! generator produces flow vectors that [`model`] decodes back into [`flow::Flow`]s;
//! [`pace`] spreads them over time, [`export`] encodes them (no I/O, no clock)
//! and [`net`] sends them to collectors; [`address_plan`] turns anonymised
//! tokens into addresses on the way. [`daemon`] wires this into a service,
//! [`replay`] streams a real flow file through the same exporter, and
//! [`eval`] scores synthetic flows against held-out real ones.

pub mod address_plan;
pub mod bench;
pub mod daemon;
pub mod data;
pub mod error_text;
pub mod eval;
pub mod export;
pub mod flow;
pub mod model;
pub mod net;
pub mod pace;
pub mod replay;
