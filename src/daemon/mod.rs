//! The service: configuration, the generator-to-exporter pipeline, signals,
//! systemd notification and metrics.
//!
//! [`service::run_blocking`] is what `flowgen run` calls; [`pipeline`] is the
//! data path on its own, for programs (the benchmark) that drive it directly.

pub mod config;
pub mod generators;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod schedule;
pub mod service;
