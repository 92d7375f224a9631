//! The service: configuration, the generator-to-exporter pipeline, signals,
//! systemd notification and metrics.

pub mod address;
pub mod config;
pub mod metrics;
pub mod generators;
pub mod schedule;
