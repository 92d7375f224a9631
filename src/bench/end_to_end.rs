//! The whole path at an unlimited rate, through the daemon's own pipeline
//! ([`crate::daemon::pipeline::Pipeline`]: generator threads with the address
//! plan, the pace thread, one UDP sender) over loopback into the counting
//! sink, which parses every message. What the sink counted is the figure;
//! what was generated is shown beside it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::clock::process_cpu;
use super::memory::read_status;
use super::setup::ModelUnderTest;
use super::sink::{CountingSink, SinkCounts, DEFAULT_RECEIVE_BUFFER_BYTES};
use super::BenchError;
use crate::daemon::config::{ModelSettings, PipelineSettings, RateSettings, Settings};
use crate::daemon::metrics::Metrics;
use crate::daemon::pipeline::{LoadedModel, Pipeline};
use crate::export::ExportProtocol;
use crate::net::{CollectorConfig, CollectorCounters};

/// One end-to-end configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct EndToEndCase {
    /// Flows per `generate` call and per batch handed to the exporter.
    pub batch: usize,
    /// Generator threads.
    pub threads: usize,
    /// Export protocol.
    pub protocol: ExportProtocol,
}

/// What one end-to-end run measured, over the window after the warm-up.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EndToEndResult {
    /// The configuration.
    pub case: EndToEndCase,
    /// Length of the measured window, seconds.
    pub window_s: f64,
    /// Data records the sink parsed per second: the figure that counts.
    pub received_per_s: f64,
    /// Flows the generator threads produced per second.
    pub generated_per_s: f64,
    /// Process CPU time over the window (generator, pace, sender and sink
    /// threads), seconds per second.
    pub cpu_cores_used: f64,
    /// Resident set at the start and at the end of the window, KiB (0 where
    /// `/proc/self/status` is missing): flat when nothing accumulates.
    pub resident_kib: (u64, u64),
    /// The sink's counts over the window.
    pub sink: SinkCounts,
    /// The collector sender's counters at the end of the run.
    pub sender: CollectorCounters,
}

/// Runs `case` for `warm_up` then `window`, with one generator per thread.
pub fn run(
    model: &ModelUnderTest,
    case: EndToEndCase,
    warm_up: Duration,
    window: Duration,
) -> Result<EndToEndResult, BenchError> {
    let threads = case.threads.max(1);
    let generators = (0..threads)
        .map(|thread| model.flow_generator(case.batch, thread as u64 + 1))
        .collect::<Result<Vec<_>, _>>()?;

    let sink = CountingSink::start(([127, 0, 0, 1], 0).into(), DEFAULT_RECEIVE_BUFFER_BYTES)
        .map_err(|source| BenchError::Sink { source })?;
    let defaults = Settings::default();
    let settings = Settings {
        collector: vec![CollectorConfig::udp(
            sink.local_addr().to_string(),
            case.protocol,
        )],
        rate: RateSettings {
            flows_per_s: 0.0,
            ..defaults.rate
        },
        model: ModelSettings {
            batch: case.batch,
            ..defaults.model
        },
        pipeline: PipelineSettings {
            generator_threads: threads,
            ..defaults.pipeline
        },
        ..Settings::default()
    };
    let loaded = LoadedModel {
        generators,
        day_profile: None,
        path: model.description.clone().into(),
    };
    let metrics = Arc::new(Metrics::new());
    let (failures, mut failed) = tokio::sync::mpsc::channel(threads);
    let pipeline = Pipeline::start(&settings, loaded, Arc::clone(&metrics), failures)?;

    std::thread::sleep(warm_up);
    let (sink_before, generated_before) = (sink.counts(), metrics.flows_generated.get());
    let (started, cpu_before) = (Instant::now(), process_cpu());
    let rss_before = resident_kib();
    std::thread::sleep(window);
    let rss_after = resident_kib();
    let window_s = started.elapsed().as_secs_f64();
    let cpu_s = process_cpu().saturating_sub(cpu_before).as_secs_f64();
    let (sink_after, generated_after) = (sink.counts(), metrics.flows_generated.get());

    let report = pipeline.stop();
    sink.stop();
    if let Ok(failure) = failed.try_recv() {
        return Err(BenchError::Generator(failure.to_string()));
    }
    let sink_counts = sink_after.since(&sink_before);
    Ok(EndToEndResult {
        case,
        window_s,
        received_per_s: sink_counts.data_records as f64 / window_s,
        generated_per_s: (generated_after - generated_before) as f64 / window_s,
        cpu_cores_used: cpu_s / window_s,
        resident_kib: (rss_before, rss_after),
        sink: sink_counts,
        sender: report
            .collectors
            .first()
            .map(|(_, c)| *c)
            .unwrap_or_default(),
    })
}

fn resident_kib() -> u64 {
    read_status().map_or(0, |s| s.resident_kib)
}
