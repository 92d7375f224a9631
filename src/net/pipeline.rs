//! The export pipeline the daemon and `flowgen replay` feed: a bounded channel
//! of flow batches in, a pacing thread, and one sender thread per collector.
//!
//! ```text
//! producer --Vec<Flow>--> [bounded channel] --> pace thread --Arc<[Flow]>--> sender thread per collector
//! ```
//!
//! The pace thread is the only place that waits for time. With
//! [`Pacing::Rate`] it releases flows as the [`Pacer`] allows, about a
//! few milliseconds' worth at a time, and restamps each flow to end
//! [`EXPORT_DELAY_MS`] before it is released (its duration kept). With
//! [`Pacing::FlowEnd`] it releases each flow [`EXPORT_DELAY_MS`] after its end
//! time, timestamps kept (the producer has shifted them into the present).
//! The producer gets backpressure from the bounded channel, never from a collector.
//!
//! Why the delay: export headers count whole seconds and a record may not end
//! after its message's export time, so a flow that ended within the current
//! second would have to be moved back to the second's start; released a second
//! after its end, it keeps its millisecond timestamps.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
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

/// Time between a flow's end and its release: one export-header second.
pub const EXPORT_DELAY_MS: i64 = 1000;

/// A flow released this much after its due time counts as late.
const LATE_AFTER_MS: i64 = 100;

/// The shortfall warning repeats at most this often.
const SHORTFALL_WARN_EVERY: Duration = Duration::from_secs(10);

/// How the pace thread decides when flows go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// At a rate (0 = as fast as the collectors take them); each flow is
    /// restamped to end [`EXPORT_DELAY_MS`] before its release.
    Rate(PaceSettings),
    /// Each flow [`EXPORT_DELAY_MS`] after its end time by the wall clock;
    /// timestamps kept. The input must be ordered by end time; a flow already
    /// due goes at once.
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
    /// Set by [`ExportPipeline::drain_within`]: past it, queued flows are discarded.
    drain_deadline: OnceLock<Instant>,
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

    /// Keeps pacing what is queued and what still arrives until `limit` from
    /// now, then discards the rest (counted in `discarded_flows`) and finishes.
    ///
    /// For shutdown: unlike [`ExportPipeline::flush_now`], the collectors get
    /// flows at the configured rate, not in one burst that overflows a stock
    /// collector's UDP receive buffer; the deadline bounds how long a stop takes.
    pub fn drain_within(&self, limit: Duration) {
        let _ = self.control.drain_deadline.set(Instant::now() + limit);
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
                if self.past_drain_deadline() {
                    self.stats.add_discarded(flows.len() as u64);
                    break;
                }
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
                let end_ms = unix_now_ms_i64() - EXPORT_DELAY_MS;
                let chunk: Chunk = flows
                    .by_ref()
                    .take(granted)
                    .map(|f| stamp_end(f, end_ms))
                    .collect();
                self.exporter
                    .dispatch(&chunk, pacer.is_unlimited() || flushing);
                self.stats.add_dispatched(granted as u64);
            }
            // While draining for a stop the source is stopped on purpose: an
            // empty queue then is not the source falling behind.
            if self.control.drain_deadline.get().is_none() {
                self.stats.set_shortfall(pacer.shortfall_flows());
                warned.check(pacer.shortfall_flows(), pacer.settings().rate_flows_per_s);
            }
        }
        self.exporter.finish();
    }

    fn run_flow_end(mut self) {
        let mut pending: Vec<Flow> = Vec::with_capacity(MAX_CHUNK_FLOWS);
        while let Some(batch) = self.next_batch(|| {}) {
            for flow in batch {
                let due_ms = flow.end_ms().saturating_add(EXPORT_DELAY_MS);
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

    fn past_drain_deadline(&self) -> bool {
        self.control
            .drain_deadline
            .get()
            .is_some_and(|deadline| Instant::now() >= *deadline)
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

/// Warns, at most every [`SHORTFALL_WARN_EVERY`], when the source fell
/// meaningfully behind; the shortfall is counted in the stats either way.
struct ShortfallWarning {
    started: Instant,
    /// `None` until [`SHORTFALL_WARM_UP`] has passed.
    last_check: Option<Instant>,
    shortfall_at_last_check: u64,
}

/// No warning for the first this long: generator threads fill the channel and
/// ONNX Runtime runs its first, slow inferences.
const SHORTFALL_WARM_UP: Duration = Duration::from_secs(2);

/// The share of an interval's target below which a shortfall is scheduling
/// noise (a few flows a pacer tick found not yet queued), not a slow source.
const SHORTFALL_WARN_SHARE: f64 = 0.01;

impl ShortfallWarning {
    fn new() -> ShortfallWarning {
        ShortfallWarning {
            started: Instant::now(),
            last_check: None,
            shortfall_at_last_check: 0,
        }
    }

    fn check(&mut self, shortfall_flows: u64, rate_flows_per_s: u64) {
        let Some(last_check) = self.last_check else {
            // What fell short while warming up is not held against the source.
            if self.started.elapsed() >= SHORTFALL_WARM_UP {
                self.last_check = Some(Instant::now());
                self.shortfall_at_last_check = shortfall_flows;
            }
            return;
        };
        if last_check.elapsed() < SHORTFALL_WARN_EVERY {
            return;
        }
        let behind = shortfall_flows.saturating_sub(self.shortfall_at_last_check);
        let seconds = last_check.elapsed().as_secs_f64();
        if shortfall_is_meaningful(behind, rate_flows_per_s, seconds) {
            tracing::warn!(
                flows_short = behind,
                seconds = seconds.round(),
                rate_flows_per_s,
                "flow source is not keeping up with the target rate"
            );
        }
        self.last_check = Some(Instant::now());
        self.shortfall_at_last_check = shortfall_flows;
    }
}

/// Whether `behind` flows short in `seconds` at `rate_flows_per_s` is more than
/// [`SHORTFALL_WARN_SHARE`] of the target (an unlimited rate has no target).
fn shortfall_is_meaningful(behind: u64, rate_flows_per_s: u64, seconds: f64) -> bool {
    rate_flows_per_s > 0 && behind as f64 > SHORTFALL_WARN_SHARE * rate_flows_per_s as f64 * seconds
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExportProtocol;
    use crate::flow::{Address, Protocol, TcpFlags};
    use std::net::UdpSocket;

    fn flows(count: u16) -> Vec<Flow> {
        (0..count)
            .map(|i| Flow {
                start_ms: 0,
                duration_ms: 1_234,
                protocol: Protocol::UDP,
                src: Address::V4("10.0.0.1".parse().unwrap()),
                dst: Address::V4("10.0.0.2".parse().unwrap()),
                src_port: i,
                dst_port: 53,
                packets: 1,
                bytes: 70,
                tcp_flags: TcpFlags(0),
                tos: 0,
                label: None,
            })
            .collect()
    }

    fn sink() -> (UdpSocket, CollectorConfig) {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let config = CollectorConfig::udp(
            socket.local_addr().unwrap().to_string(),
            ExportProtocol::Ipfix,
        );
        (socket, config)
    }

    #[test]
    fn flows_are_stamped_to_end_before_release_with_their_duration() {
        let before_ms = unix_now_ms_i64();
        let flow = stamp_end(flows(1).remove(0), before_ms - EXPORT_DELAY_MS);
        assert_eq!(flow.end_ms(), before_ms - EXPORT_DELAY_MS);
        assert_eq!(flow.start_ms, before_ms - EXPORT_DELAY_MS - 1_234);
    }

    #[test]
    fn a_shortfall_warns_only_above_one_percent_of_the_target() {
        // The reported false alarms at 2,000/s: 26 and 9 flows short in 10 s.
        assert!(!shortfall_is_meaningful(26, 2_000, 10.0));
        assert!(!shortfall_is_meaningful(9, 2_000, 10.0));
        assert!(!shortfall_is_meaningful(200, 2_000, 10.0));
        assert!(shortfall_is_meaningful(201, 2_000, 10.0));
        assert!(!shortfall_is_meaningful(1_000, 0, 10.0));
    }

    #[test]
    fn flush_now_sends_what_is_queued_without_waiting_for_the_rate() {
        let (_socket, config) = sink();
        let (input, output) = crossbeam_channel::bounded(4);
        let pipeline = ExportPipeline::spawn(
            &[config],
            &ExportConfig::default(),
            Pacing::Rate(PaceSettings::rate(100)),
            output,
        )
        .unwrap();
        input.send(flows(3_000)).unwrap();
        drop(input);
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        pipeline.flush_now();
        let report = pipeline.join();
        // At 100 flows/s this would take 30 s.
        assert!(started.elapsed() < Duration::from_secs(2));
        assert_eq!(report.collectors[0].1.records_sent, 3_000);
        assert_eq!(report.pipeline.flows_in, 3_000);
    }

    #[test]
    fn drain_within_keeps_the_rate_then_discards_what_is_left() {
        let (_socket, config) = sink();
        let (input, output) = crossbeam_channel::bounded(4);
        let pipeline = ExportPipeline::spawn(
            &[config],
            &ExportConfig::default(),
            Pacing::Rate(PaceSettings::rate(1_000)),
            output,
        )
        .unwrap();
        input.send(flows(3_000)).unwrap();
        input.send(flows(3_000)).unwrap();
        drop(input);
        let started = Instant::now();
        pipeline.drain_within(Duration::from_millis(500));
        let report = pipeline.join();
        let elapsed = started.elapsed();
        let sent = report.collectors[0].1.records_sent;
        assert!(elapsed < Duration::from_secs(2), "drain took {elapsed:?}");
        // About 0.5 s at 1k/s plus the pacer's burst, never the 6,000 queued.
        assert!((300..=1_500).contains(&sent), "{sent} flows sent");
        assert_eq!(report.pipeline.discarded_flows + sent, 6_000);
    }

    #[test]
    fn set_pace_changes_the_rate_of_a_running_pipeline() {
        let (_socket, config) = sink();
        let (input, output) = crossbeam_channel::bounded(4);
        let pipeline = ExportPipeline::spawn(
            &[config],
            &ExportConfig::default(),
            Pacing::Rate(PaceSettings::rate(1_000)),
            output,
        )
        .unwrap();
        let stats = Arc::clone(&pipeline.collectors()[0]);
        let feeder = std::thread::spawn(move || {
            for _ in 0..20 {
                if input.send(flows(1_000)).is_err() {
                    return;
                }
            }
        });
        std::thread::sleep(Duration::from_millis(500));
        let at_slow = stats.snapshot().records_sent;
        pipeline.set_pace(PaceSettings::rate(20_000));
        std::thread::sleep(Duration::from_millis(500));
        let at_fast = stats.snapshot().records_sent - at_slow;
        pipeline.flush_now();
        feeder.join().unwrap();
        pipeline.join();
        assert!(
            (300..=700).contains(&at_slow),
            "{at_slow} flows in 0.5 s at 1k/s"
        );
        assert!(
            (7_000..=11_000).contains(&at_fast),
            "{at_fast} flows in 0.5 s at 20k/s"
        );
    }
}
