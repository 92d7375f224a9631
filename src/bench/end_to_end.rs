//! The whole path at an unlimited rate: generator threads (model, address plan)
//! into the export pipeline (pace thread, one UDP sender) and over loopback into
//! the counting sink, which parses every message. Only what the sink counted
//! is the figure; what was generated and sent is shown beside it.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{SendTimeoutError, Sender};
use serde::Serialize;

use super::clock::process_cpu;
use super::sink::{CountingSink, SinkCounts, DEFAULT_RECEIVE_BUFFER_BYTES};
use super::BenchError;
use crate::address_plan::AddressPlan;
use crate::export::ExportProtocol;
use crate::flow::Flow;
use crate::model::{FlowGenerator, LoadOptions};
use crate::net::{CollectorConfig, CollectorCounters, ExportConfig, ExportPipeline, Pacing};
use crate::pace::PaceSettings;

/// Batches queued between the generator threads and the pace thread.
const CHANNEL_BATCHES: usize = 4;
/// How often a blocked generator thread looks at its stop flag.
const STOP_POLL: Duration = Duration::from_millis(100);

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
    /// Data records the sender handed to the kernel per second.
    pub sent_per_s: f64,
    /// Process CPU time over the window (generator, pace, sender and sink
    /// threads), seconds per second.
    pub cpu_cores_used: f64,
    /// The sink's counts over the window.
    pub sink: SinkCounts,
    /// The collector sender's counters at the end of the run.
    pub sender: CollectorCounters,
}

/// Runs `case` for `warm_up` then `window`, loading the model at `bundle` once per thread.
pub fn run(
    bundle: &Path,
    addresses: &Arc<AddressPlan>,
    case: EndToEndCase,
    warm_up: Duration,
    window: Duration,
) -> Result<EndToEndResult, BenchError> {
    let generators = (0..case.threads.max(1))
        .map(|thread| {
            let options = LoadOptions {
                seed: thread as u64 + 1,
                batch: case.batch,
                ..LoadOptions::default()
            };
            crate::model::load(bundle, &options)
        })
        .collect::<Result<Vec<_>, _>>()?;

    let sink = CountingSink::start(([127, 0, 0, 1], 0).into(), DEFAULT_RECEIVE_BUFFER_BYTES)
        .map_err(|source| BenchError::Sink { source })?;
    let collector = CollectorConfig::udp(sink.local_addr().to_string(), case.protocol);
    let (input, output) = crossbeam_channel::bounded(CHANNEL_BATCHES);
    let pipeline = ExportPipeline::spawn(
        &[collector],
        &ExportConfig::default(),
        Pacing::Rate(PaceSettings::rate(0)),
        output,
    )?;
    let producers = Producers::start(generators, addresses, case.batch, input)?;

    std::thread::sleep(warm_up);
    let (sink_before, sent_before) = (sink.counts(), sent_records(&pipeline));
    let (started, cpu_before) = (Instant::now(), process_cpu());
    std::thread::sleep(window);
    let window_s = started.elapsed().as_secs_f64();
    let cpu_s = process_cpu().saturating_sub(cpu_before).as_secs_f64();
    let (sink_after, sent_after) = (sink.counts(), sent_records(&pipeline));

    let failure = producers.stop();
    pipeline.flush_now();
    let report = pipeline.join();
    sink.stop();
    if let Some(error) = failure {
        return Err(error);
    }
    let sink_counts = sink_after.since(&sink_before);
    Ok(EndToEndResult {
        case,
        window_s,
        received_per_s: sink_counts.data_records as f64 / window_s,
        sent_per_s: (sent_after - sent_before) as f64 / window_s,
        cpu_cores_used: cpu_s / window_s,
        sink: sink_counts,
        sender: report
            .collectors
            .first()
            .map(|(_, c)| *c)
            .unwrap_or_default(),
    })
}

fn sent_records(pipeline: &ExportPipeline) -> u64 {
    pipeline
        .collectors()
        .iter()
        .map(|c| c.snapshot().records_sent)
        .sum()
}

/// The generator threads: generate, map addresses, queue; until stopped.
struct Producers {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Result<(), BenchError>>>,
}

impl Producers {
    fn start(
        generators: Vec<Box<dyn FlowGenerator>>,
        addresses: &Arc<AddressPlan>,
        batch: usize,
        input: Sender<Vec<Flow>>,
    ) -> Result<Producers, BenchError> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for (index, generator) in generators.into_iter().enumerate() {
            let (stop, addresses, input) = (Arc::clone(&stop), Arc::clone(addresses), input.clone());
            let thread = std::thread::Builder::new()
                .name(format!("flowgen-bench-gen-{index}"))
                .spawn(move || produce(generator, &addresses, batch, &input, &stop))
                .map_err(|source| BenchError::Thread { source })?;
            threads.push(thread);
        }
        Ok(Producers { stop, threads })
    }

    /// Stops the threads; returns the first failure of any.
    fn stop(self) -> Option<BenchError> {
        self.stop.store(true, Ordering::Release);
        let mut failure = None;
        for thread in self.threads {
            let outcome = thread.join().unwrap_or(Err(BenchError::WorkerPanicked));
            if let Err(e) = outcome {
                failure.get_or_insert(e);
            }
        }
        failure
    }
}

fn produce(
    mut generator: Box<dyn FlowGenerator>,
    addresses: &AddressPlan,
    batch: usize,
    input: &Sender<Vec<Flow>>,
    stop: &AtomicBool,
) -> Result<(), BenchError> {
    while !stop.load(Ordering::Acquire) {
        let mut flows = Vec::with_capacity(batch);
        generator.generate(batch, &mut flows)?;
        for flow in &mut flows {
            addresses.apply(flow);
        }
        let mut pending = flows;
        loop {
            match input.send_timeout(pending, STOP_POLL) {
                Ok(()) => break,
                Err(SendTimeoutError::Timeout(back)) if !stop.load(Ordering::Acquire) => {
                    pending = back;
                }
                // Stopping, or the pace thread is gone: the run reports what it saw.
                Err(_) => return Ok(()),
            }
        }
    }
    Ok(())
}
