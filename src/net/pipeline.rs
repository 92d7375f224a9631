//! The export pipeline the daemon and `flowgen replay` feed: a bounded channel
//! of flow batches in, a pacing thread, and one sender thread per collector.
//!
//! ```text
//! producer --Vec<Flow>--> [bounded channel] --> pace thread --Arc<[Flow]>--> sender thread per collector
//! ```
//!
//! The pace thread is the only place that waits for time. With
//! [`Pacing::Rate`] it releases flows as the [`Pacer`] allows, about a
//! millisecond's worth at a time, and stamps each flow to end when it is
//! released (its duration kept). With [`Pacing::FlowEnd`] it releases each
//! flow once the wall clock reaches the flow's end time, timestamps kept (the
//! producer has shifted them into the present). The producer gets
//! backpressure from the bounded channel, never from a collector.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};
use serde::Serialize;

use crate::flow::Flow;
use crate::net::exporter::{Chunk, Exporter};
use crate::net::stats::{CollectorCounters, CollectorStats, PipelineCounters, PipelineStats};
use crate::net::{unix_now_ms, CollectorConfig, ExportConfig, NetError};
use crate::pace::{PaceSettings, Pacer};

/// Flows per chunk when nothing smaller is called for (unlimited rate, catch-up).
const MAX_CHUNK_FLOWS: usize = 4096;

/// Longest single sleep, so that rate changes and flush requests apply promptly.
const MAX_SLEEP: Duration = Duration::from_millis(50);

/// A flow released this much after its due time counts as late.
const LATE_AFTER_MS: i64 = 100;

/// The shortfall warning repeats at most this often.
const SHORTFALL_WARN_EVERY: Duration = Duration::from_secs(10);

/// How the pace thread decides when flows go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// At a rate (0 = as fast as the collectors take them); each flow is
    /// restamped to end at its release time.
    Rate(PaceSettings),
    /// Each flow when the wall clock reaches its end time; timestamps kept.
    /// The input must be ordered by end time; a flow already due goes at once.
    FlowEnd,
}

/// Settings the running pipeline reads: the rate, and the flush request.
#[derive(Debug, Default)]
struct Control {
    rate_flows_per_s: AtomicU64,
    burst_flows: AtomicU64,
    /// Bumped on every rate change so the pace thread notices.
    generation: AtomicU64,
    flush_now: AtomicBool,
}

/// Final counters of a pipeline that has finished.
#[derive(Clone, Debug, Serialize)]
pub struct ExportReport {
    /// The pacing stage.
    pub pipeline: PipelineCounters,
    /// Each collector, by its configured address, in configuration order.
    pub collectors: Vec<(String, CollectorCounters)>,
}

/// A running export pipeline.
pub struct ExportPipeline {
    thread: Option<JoinHandle<()>>,
    control: Arc<Control>,
    stats: Arc<PipelineStats>,
    collectors: Vec<Arc<CollectorStats>>,
}

impl ExportPipeline {
    /// Opens the collectors and starts the pace thread reading `input`; the
    /// pipeline runs until every sender of `input` is dropped and what they
    /// sent is out.
    pub fn spawn(
        collectors: &[CollectorConfig],
        export: &ExportConfig,
        pacing: Pacing,
        input: Receiver<Vec<Flow>>,
    ) -> Result<ExportPipeline, NetError> {
        let exporter = Exporter::start(collectors, export)?;
        let collectors = exporter.collectors();
        let control = Arc::new(Control::default());
        if let Pacing::Rate(settings) = pacing {
            control
                .rate_flows_per_s
                .store(settings.rate_flows_per_s, Ordering::Relaxed);
            control
                .burst_flows
                .store(settings.burst_flows, Ordering::Relaxed);
        }
        let stats = Arc::new(PipelineStats::default());
        let pace = PaceLoop {
            exporter,
            input,
            control: Arc::clone(&control),
            stats: Arc::clone(&stats),
        };
        let thread = std::thread::Builder::new()
            .name("flowgen-pace".into())
            .spawn(move || match pacing {
                Pacing::Rate(settings) => pace.run_rate(settings),
                Pacing::FlowEnd => pace.run_flow_end(),
            })
            .map_err(|source| NetError::Thread { source })?;
        Ok(ExportPipeline {
            thread: Some(thread),
            control,
            stats,
            collectors,
        })
    }

    /// Live counters of the pacing stage.
    pub fn stats(&self) -> &Arc<PipelineStats> {
        &self.stats
    }

    /// Live counters of each collector, in configuration order.
    pub fn collectors(&self) -> &[Arc<CollectorStats>] {
        &self.collectors
    }

    /// Changes the rate from now on (with [`Pacing::Rate`]; ignored otherwise).
    pub fn set_pace(&self, settings: PaceSettings) {
        self.control
            .rate_flows_per_s
            .store(settings.rate_flows_per_s, Ordering::Relaxed);
        self.control
            .burst_flows
            .store(settings.burst_flows, Ordering::Relaxed);
        self.control.generation.fetch_add(1, Ordering::Release);
    }

    /// Stops waiting: what is queued and what still arrives goes out at once
    /// (for shutdown, so that a slow rate does not hold the process).
    pub fn flush_now(&self) {
        self.control.flush_now.store(true, Ordering::Release);
    }

    /// Waits for the pipeline to finish (drop the input's senders first) and
    /// returns the final counters.
    pub fn join(mut self) -> ExportReport {
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the pace thread panicked; flows still queued were lost");
            }
        }
        ExportReport {
            pipeline: self.stats.snapshot(),
            collectors: self
                .collectors
                .iter()
                .map(|c| (c.name.clone(), c.snapshot()))
                .collect(),
        }
    }
}

/// The pace thread's state.
struct PaceLoop {
    exporter: Exporter,
    input: Receiver<Vec<Flow>>,
    control: Arc<Control>,
    stats: Arc<PipelineStats>,
}

impl PaceLoop {
    fn run_rate(mut self, settings: PaceSettings) {
        let clock = Instant::now();
        let now_ns = || u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut pacer = Pacer::new(settings, now_ns());
        let mut generation = self.control.generation.load(Ordering::Acquire);
        let mut warned = ShortfallWarning::new();

        while let Some(batch) = self.next_batch(|| {
            pacer.grant(now_ns(), 0);
        }) {
            let mut flows = batch.into_iter();
            while !flows.as_slice().is_empty() {
                let current = self.control.generation.load(Ordering::Acquire);
                if current != generation {
                    generation = current;
                    pacer.set_settings(self.control_settings(), now_ns());
                }
                let flushing = self.control.flush_now.load(Ordering::Acquire);
                let chunk_cap = MAX_CHUNK_FLOWS.max(pacer.min_grant_flows() as usize);
                let wanted = flows.len().min(chunk_cap);
                let granted = if flushing {
                    wanted
                } else {
                    pacer.grant(now_ns(), wanted as u64) as usize
                };
                if granted == 0 {
                    let now = now_ns();
                    let wait_ns = pacer.ready_at_ns(now, wanted as u64).saturating_sub(now);
                    std::thread::sleep(Duration::from_nanos(wait_ns).min(MAX_SLEEP));
                    continue;
                }
                let end_ms = unix_now_ms_i64();
                let chunk: Chunk = flows
                    .by_ref()
                    .take(granted)
                    .map(|f| stamp_end(f, end_ms))
                    .collect();
                self.exporter
                    .dispatch(&chunk, pacer.is_unlimited() || flushing);
                self.stats.add_dispatched(granted as u64);
            }
            self.stats.set_shortfall(pacer.shortfall_flows());
            warned.check(pacer.shortfall_flows(), pacer.settings().rate_flows_per_s);
        }
        self.stats.set_shortfall(pacer.shortfall_flows());
        self.exporter.finish();
    }

    fn run_flow_end(mut self) {
        let mut pending: Vec<Flow> = Vec::with_capacity(MAX_CHUNK_FLOWS);
        while let Some(batch) = self.next_batch(|| {}) {
            for flow in batch {
                let due_ms = flow.end_ms();
                let mut now_ms = unix_now_ms_i64();
                if due_ms > now_ms && !pending.is_empty() {
                    self.dispatch_owned(&mut pending);
                }
                while due_ms > now_ms && !self.control.flush_now.load(Ordering::Acquire) {
                    let wait_ms = u64::try_from(due_ms - now_ms).unwrap_or(0);
                    std::thread::sleep(Duration::from_millis(wait_ms).min(MAX_SLEEP));
                    now_ms = unix_now_ms_i64();
                }
                if now_ms - due_ms > LATE_AFTER_MS {
                    self.stats.add_late(1);
                }
                pending.push(flow);
                if pending.len() >= MAX_CHUNK_FLOWS {
                    self.dispatch_owned(&mut pending);
                }
            }
            // Nothing more may be due before the next batch arrives.
            if !pending.is_empty() && self.input.is_empty() {
                self.dispatch_owned(&mut pending);
            }
        }
        if !pending.is_empty() {
            self.dispatch_owned(&mut pending);
        }
        self.exporter.finish();
    }

    /// The next batch; calls `idle` every so often while waiting for one.
    fn next_batch(&self, mut idle: impl FnMut()) -> Option<Vec<Flow>> {
        loop {
            match self.input.recv_timeout(MAX_SLEEP) {
                Ok(batch) => {
                    self.stats.add_in(batch.len() as u64);
                    return Some(batch);
                }
                Err(RecvTimeoutError::Timeout) => idle(),
                Err(RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    fn dispatch_owned(&mut self, pending: &mut Vec<Flow>) {
        let count = pending.len() as u64;
        let chunk: Chunk = pending.drain(..).collect();
        self.exporter.dispatch(&chunk, true);
        self.stats.add_dispatched(count);
    }

    fn control_settings(&self) -> PaceSettings {
        PaceSettings {
            rate_flows_per_s: self.control.rate_flows_per_s.load(Ordering::Relaxed),
            burst_flows: self.control.burst_flows.load(Ordering::Relaxed),
        }
    }
}

/// Restamps a flow to end at `end_ms`, keeping its duration.
fn stamp_end(mut flow: Flow, end_ms: i64) -> Flow {
    let duration_ms = i64::try_from(flow.duration_ms).unwrap_or(i64::MAX);
    flow.start_ms = end_ms.saturating_sub(duration_ms);
    flow
}

fn unix_now_ms_i64() -> i64 {
    i64::try_from(unix_now_ms()).unwrap_or(i64::MAX)
}

/// Warns, at most every [`SHORTFALL_WARN_EVERY`], when the source fell behind.
struct ShortfallWarning {
    last_check: Instant,
    shortfall_at_last_check: u64,
}

impl ShortfallWarning {
    fn new() -> ShortfallWarning {
        ShortfallWarning {
            last_check: Instant::now(),
            shortfall_at_last_check: 0,
        }
    }

    fn check(&mut self, shortfall_flows: u64, rate_flows_per_s: u64) {
        if self.last_check.elapsed() < SHORTFALL_WARN_EVERY {
            return;
        }
        let behind = shortfall_flows - self.shortfall_at_last_check;
        // Below 0.1 % of the rate, it is scheduling noise rather than a slow source.
        let seconds = self.last_check.elapsed().as_secs_f64();
        if behind as f64 > 0.001 * rate_flows_per_s as f64 * seconds {
            tracing::warn!(
                flows_short = behind,
                seconds = seconds.round(),
                rate_flows_per_s,
                "flow source is not keeping up with the target rate"
            );
        }
        self.last_check = Instant::now();
        self.shortfall_at_last_check = shortfall_flows;
    }
}
