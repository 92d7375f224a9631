//! The daemon's counters: one registry, Prometheus text on `GET /metrics`, and
//! the periodic info line built from the same numbers.
//!
//! Counter names (with the `flowgen_` prefix) end in `_total`; per-collector
//! counters carry `collector="HOST:PORT"`, `protocol` and `transport` labels.
//! The export pipeline keeps its own atomics; [`Metrics::sync`] copies them
//! in before every scrape and report.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::export::ExportProtocol;
use crate::net::{CollectorCounters, CollectorStats, PipelineCounters, PipelineStats};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Identifies one collector stream in labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectorLabel {
    /// `HOST:PORT` as configured.
    pub collector: String,
    /// `ipfix` or `netflow9`.
    pub protocol: String,
    /// `udp` or `tcp`.
    pub transport: String,
}

/// Outcome of a reload, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// `ok` or `failed`.
    pub result: String,
}

/// The counters of one collector, resolved once so that updates skip the family lookup.
#[derive(Clone, Debug, Default)]
pub struct CollectorMetrics {
    /// Flow records handed to the kernel.
    pub flows_sent: Counter,
    /// Export messages handed to the kernel.
    pub messages_sent: Counter,
    /// Octets of those messages.
    pub bytes_sent: Counter,
    /// Failed sends and connection attempts.
    pub send_errors: Counter,
    /// Flows that never reached the kernel (failed send, full queue, TCP down).
    pub flows_dropped: Counter,
    /// TCP connections re-established.
    pub reconnects: Counter,
}

/// Live counters of the export pipeline, copied into the registry by [`Metrics::sync`].
struct Tracked {
    pipeline: Option<(Arc<PipelineStats>, PipelineCounters)>,
    collectors: Vec<TrackedCollector>,
}

struct TrackedCollector {
    stats: Arc<CollectorStats>,
    handles: CollectorMetrics,
    seen: CollectorCounters,
}

/// Every counter the daemon keeps.
pub struct Metrics {
    registry: Registry,
    /// Flows produced by the generator threads.
    pub flows_generated: Counter,
    /// Flows the pacer could have sent but no generated flow was waiting.
    pub source_shortfall_flows: Counter,
    /// Generator calls that failed.
    pub generator_errors: Counter,
    /// Reloads by outcome.
    pub reloads: Family<ReloadLabel, Counter>,
    /// The rate the pacer aims at now, flows per second (0: unlimited).
    pub target_rate: Gauge<f64, AtomicU64>,
    /// Batches waiting between generators and exporter.
    pub queued_batches: Gauge,
    flows_dispatched: Counter,
    flows_discarded_at_stop: Counter,
    flows_sent: Family<CollectorLabel, Counter>,
    messages_sent: Family<CollectorLabel, Counter>,
    bytes_sent: Family<CollectorLabel, Counter>,
    send_errors: Family<CollectorLabel, Counter>,
    flows_dropped: Family<CollectorLabel, Counter>,
    reconnects: Family<CollectorLabel, Counter>,
    tracked: Mutex<Tracked>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh registry with every counter at zero.
    pub fn new() -> Metrics {
        let mut metrics = Metrics {
            registry: Registry::default(),
            flows_generated: Counter::default(),
            source_shortfall_flows: Counter::default(),
            generator_errors: Counter::default(),
            reloads: Family::default(),
            target_rate: Gauge::default(),
            queued_batches: Gauge::default(),
            flows_dispatched: Counter::default(),
            flows_discarded_at_stop: Counter::default(),
            flows_sent: Family::default(),
            messages_sent: Family::default(),
            bytes_sent: Family::default(),
            send_errors: Family::default(),
            flows_dropped: Family::default(),
            reconnects: Family::default(),
            tracked: Mutex::new(Tracked {
                pipeline: None,
                collectors: Vec::new(),
            }),
        };
        let mut registry = Registry::with_prefix("flowgen");
        metrics.register_all(&mut registry);
        metrics.registry = registry;
        metrics
    }

    fn register_all(&self, r: &mut Registry) {
        let help = [
            ("flows_generated", "Flows produced by the generator threads"),
            (
                "source_shortfall_flows",
                "Flows the pacer allowed but the generators had not delivered",
            ),
            ("generator_errors", "Generator calls that failed"),
            (
                "flows_dispatched",
                "Flows released by the pacer to the collectors' queues",
            ),
            (
                "flows_discarded_at_stop",
                "Queued flows discarded unsent because a stop's drain limit passed",
            ),
        ];
        let counters = [
            &self.flows_generated,
            &self.source_shortfall_flows,
            &self.generator_errors,
            &self.flows_dispatched,
            &self.flows_discarded_at_stop,
        ];
        for ((name, text), counter) in help.into_iter().zip(counters) {
            r.register(name, text, counter.clone());
        }
        r.register(
            "reloads",
            "Configuration and model reloads",
            self.reloads.clone(),
        );
        r.register(
            "target_rate_flows_per_s",
            "Rate the pacer aims at now (0: unlimited)",
            self.target_rate.clone(),
        );
        r.register(
            "queued_batches",
            "Batches waiting between generators and exporter",
            self.queued_batches.clone(),
        );
        let families = [
            ("flows_sent", "Flow records sent", &self.flows_sent),
            ("messages_sent", "Export messages sent", &self.messages_sent),
            (
                "bytes_sent",
                "Octets of export messages sent",
                &self.bytes_sent,
            ),
            (
                "send_errors",
                "Failed sends and connection attempts",
                &self.send_errors,
            ),
            (
                "flows_dropped",
                "Flows that could not be sent",
                &self.flows_dropped,
            ),
            (
                "reconnects",
                "TCP connections re-established",
                &self.reconnects,
            ),
        ];
        for (name, text, family) in families {
            r.register(name, text, family.clone());
        }
    }

    /// The counters of one collector, created on first use.
    pub fn collector(&self, label: &CollectorLabel) -> CollectorMetrics {
        CollectorMetrics {
            flows_sent: self.flows_sent.get_or_create_owned(label),
            messages_sent: self.messages_sent.get_or_create_owned(label),
            bytes_sent: self.bytes_sent.get_or_create_owned(label),
            send_errors: self.send_errors.get_or_create_owned(label),
            flows_dropped: self.flows_dropped.get_or_create_owned(label),
            reconnects: self.reconnects.get_or_create_owned(label),
        }
    }

    /// Follows a (new) export pipeline's live counters from now on; what the
    /// previous one counted stays in the totals, so counters never go back.
    pub fn track(&self, pipeline: &Arc<PipelineStats>, collectors: &[Arc<CollectorStats>]) {
        self.sync();
        let collectors = collectors
            .iter()
            .map(|stats| TrackedCollector {
                handles: self.collector(&label_of(stats)),
                stats: stats.clone(),
                seen: CollectorCounters::default(),
            })
            .collect();
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        *tracked = Tracked {
            pipeline: Some((pipeline.clone(), PipelineCounters::default())),
            collectors,
        };
    }

    /// Copies what the export pipeline counted since the last call into the registry.
    pub fn sync(&self) {
        let mut tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((stats, seen)) = &mut tracked.pipeline {
            let now = stats.snapshot();
            self.flows_dispatched
                .inc_by(now.flows_dispatched.saturating_sub(seen.flows_dispatched));
            self.source_shortfall_flows
                .inc_by(now.shortfall_flows.saturating_sub(seen.shortfall_flows));
            self.flows_discarded_at_stop
                .inc_by(now.discarded_flows.saturating_sub(seen.discarded_flows));
            *seen = now;
        }
        for c in &mut tracked.collectors {
            let now = c.stats.snapshot();
            let delta = |now: u64, then: u64| now.saturating_sub(then);
            c.handles
                .flows_sent
                .inc_by(delta(now.records_sent, c.seen.records_sent));
            c.handles
                .messages_sent
                .inc_by(delta(now.messages_sent, c.seen.messages_sent));
            c.handles
                .bytes_sent
                .inc_by(delta(now.bytes_sent, c.seen.bytes_sent));
            c.handles
                .send_errors
                .inc_by(delta(now.send_errors, c.seen.send_errors));
            c.handles
                .flows_dropped
                .inc_by(delta(now.records_dropped, c.seen.records_dropped));
            c.handles
                .reconnects
                .inc_by(delta(now.reconnects, c.seen.reconnects));
            c.seen = now;
        }
    }

    /// Counts one reload.
    pub fn count_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.reloads
            .get_or_create(&ReloadLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Flows released by the pacer so far (after [`Metrics::sync`]).
    pub fn flows_dispatched(&self) -> u64 {
        self.flows_dispatched.get()
    }

    /// The registry as OpenMetrics text (what `GET /metrics` serves).
    pub fn encode(&self) -> String {
        self.sync();
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn snapshot(&self) -> Snapshot {
        self.sync();
        let tracked = self.tracked.lock().unwrap_or_else(|e| e.into_inner());
        Snapshot {
            at: Instant::now(),
            generated: self.flows_generated.get(),
            shortfall: self.source_shortfall_flows.get(),
            collectors: tracked
                .collectors
                .iter()
                .map(|c| {
                    let m = &c.handles;
                    let totals = [
                        m.flows_sent.get(),
                        m.flows_dropped.get(),
                        m.send_errors.get(),
                    ];
                    (c.stats.name.clone(), totals)
                })
                .collect(),
        }
    }
}

fn label_of(stats: &CollectorStats) -> CollectorLabel {
    let protocol = match stats.protocol {
        ExportProtocol::Ipfix => "ipfix",
        ExportProtocol::Netflow9 => "netflow9",
    };
    CollectorLabel {
        collector: stats.name.clone(),
        protocol: protocol.into(),
        transport: stats.transport.to_string(),
    }
}

/// Counter values at one instant, for the rates in the periodic line.
struct Snapshot {
    at: Instant,
    generated: u64,
    shortfall: u64,
    /// Name, then flows sent, flows dropped and send errors.
    collectors: Vec<(String, [u64; 3])>,
}

/// The periodic info line: rates since the previous line, and error counts.
pub struct Reporter {
    metrics: Arc<Metrics>,
    last: Snapshot,
}

impl Reporter {
    /// Starts measuring from now.
    pub fn new(metrics: Arc<Metrics>) -> Reporter {
        let last = metrics.snapshot();
        Reporter { metrics, last }
    }

    /// The line for the interval since the previous call.
    pub fn line(&mut self) -> String {
        let now = self.metrics.snapshot();
        let elapsed_s = now.at.duration_since(self.last.at).as_secs_f64().max(1e-3);
        let per_s = |now: u64, then: u64| now.saturating_sub(then) as f64 / elapsed_s;
        // Rates are per second; everything else counts the interval, and the
        // line says so, so that "dropped" is not read as a rate.
        let interval_s = elapsed_s.round();
        let mut line = format!(
            "generated {:.0} flows/s, source short by {} flows in the last {interval_s} s",
            per_s(now.generated, self.last.generated),
            now.shortfall.saturating_sub(self.last.shortfall),
        );
        for (name, [sent, dropped, errors]) in &now.collectors {
            let [sent0, dropped0, errors0] = self
                .last
                .collectors
                .iter()
                .find(|(n, _)| n == name)
                .map_or([0; 3], |(_, totals)| *totals);
            let _ = write!(
                line,
                "; {name}: sent {:.0} flows/s, in the last {interval_s} s dropped {} flows \
                 and failed to send {} messages",
                per_s(*sent, sent0),
                dropped.saturating_sub(dropped0),
                errors.saturating_sub(errors0),
            );
        }
        self.last = now;
        line
    }
}

/// Logs [`Reporter::line`] at info level every `interval` until the task is dropped.
pub async fn log_periodically(metrics: Arc<Metrics>, interval: Duration) {
    let mut reporter = Reporter::new(metrics);
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        tracing::info!("{}", reporter.line());
    }
}

/// Binds the metrics endpoint; a bind failure is an error the operator must fix.
pub async fn bind(listen: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(listen).await
}

/// Serves `GET /metrics` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let metrics = metrics.clone();
                tokio::spawn(async move {
                    if let Err(err) = respond(stream, &metrics).await {
                        tracing::debug!(%peer, "metrics request failed: {err}");
                    }
                });
            }
            Err(err) => {
                // Usually too many open files; back off instead of spinning.
                tracing::warn!("metrics endpoint: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Largest request head read; anything longer is answered 431.
const MAX_REQUEST_BYTES: usize = 8192;

async fn respond(mut stream: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let head = tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream)).await;
    let response = match head {
        Err(_) => return Ok(()),
        Ok(Err(err)) => return Err(err),
        Ok(Ok(None)) => http_response("431 Request Header Fields Too Large", "text/plain", ""),
        Ok(Ok(Some(head))) => route(&head, metrics),
    };
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the blank line ending the request head; `None` when it is too long.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        if head.len() > MAX_REQUEST_BYTES {
            return Ok(None);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(String::from_utf8_lossy(&head).into_owned()))
}

fn route(head: &str, metrics: &Metrics) -> String {
    let mut words = head.split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    match (method, path) {
        ("GET", "/metrics") => http_response(
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            &metrics.encode(),
        ),
        ("GET", _) => http_response("404 Not Found", "text/plain", "try /metrics\n"),
        _ => http_response("405 Method Not Allowed", "text/plain", "GET only\n"),
    }
}

fn http_response(status: &str, content_type: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Transport;

    fn label(name: &str) -> CollectorLabel {
        CollectorLabel {
            collector: name.into(),
            protocol: "ipfix".into(),
            transport: "udp".into(),
        }
    }

    #[test]
    fn counters_are_exposed_with_total_suffix_and_collector_labels() {
        let metrics = Metrics::new();
        metrics.flows_generated.inc_by(7);
        metrics
            .collector(&label("127.0.0.1:4739"))
            .flows_sent
            .inc_by(5);
        metrics.count_reload(false);
        let text = metrics.encode();
        assert!(text.contains("flowgen_flows_generated_total 7"), "{text}");
        let sent = "flowgen_flows_sent_total{collector=\"127.0.0.1:4739\",protocol=\"ipfix\",transport=\"udp\"} 5";
        assert!(text.contains(sent), "{text}");
        assert!(
            text.contains("flowgen_reloads_total{result=\"failed\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn the_same_collector_shares_its_counters() {
        let metrics = Metrics::new();
        metrics.collector(&label("a")).send_errors.inc();
        metrics.collector(&label("a")).send_errors.inc();
        assert_eq!(metrics.collector(&label("a")).send_errors.get(), 2);
    }

    #[test]
    fn tracked_stats_keep_counting_across_a_pipeline_swap() {
        let metrics = Metrics::new();
        let stats = || {
            Arc::new(CollectorStats::new(
                "127.0.0.1:9".into(),
                "127.0.0.1:9".parse().unwrap(),
                ExportProtocol::Ipfix,
                Transport::Udp,
            ))
        };
        let sent = || metrics.collector(&label("127.0.0.1:9")).flows_sent.get();
        let first = stats();
        metrics.track(
            &Arc::new(PipelineStats::default()),
            std::slice::from_ref(&first),
        );
        first.add_sent(2, 30, 900);
        metrics.sync();
        assert_eq!(sent(), 30);
        first.add_sent(1, 5, 100);
        metrics.sync();
        assert_eq!(sent(), 35);

        // A new pipeline starts its atomics at zero; the total carries on from 35.
        let second = stats();
        first.add_sent(1, 1, 10);
        metrics.track(
            &Arc::new(PipelineStats::default()),
            std::slice::from_ref(&second),
        );
        second.add_sent(1, 4, 100);
        let text = metrics.encode();
        assert_eq!(sent(), 40, "{text}");
    }

    #[test]
    fn the_report_line_shows_rates_and_errors_per_collector() {
        let metrics = Arc::new(Metrics::new());
        let mut reporter = Reporter::new(metrics.clone());
        metrics.flows_generated.inc_by(10);
        let line = reporter.line();
        assert!(line.starts_with("generated "), "{line}");
        assert!(line.contains("source short by 0 flows"), "{line}");
    }

    #[test]
    fn the_report_line_names_the_unit_of_every_number() {
        let metrics = Arc::new(Metrics::new());
        let collector = Arc::new(CollectorStats::new(
            "127.0.0.1:9".into(),
            "127.0.0.1:9".parse().unwrap(),
            ExportProtocol::Ipfix,
            Transport::Udp,
        ));
        metrics.track(
            &Arc::new(PipelineStats::default()),
            std::slice::from_ref(&collector),
        );
        let mut reporter = Reporter::new(metrics.clone());
        collector.add_dropped(7);
        collector.add_send_error();
        collector.add_send_error();
        let line = reporter.line();
        assert!(line.contains("127.0.0.1:9: sent 0 flows/s"), "{line}");
        assert!(line.contains("dropped 7 flows"), "{line}");
        assert!(line.contains("failed to send 2 messages"), "{line}");
        assert!(line.contains("in the last 0 s"), "{line}");
    }

    #[test]
    fn only_get_metrics_is_served() {
        let metrics = Metrics::new();
        assert!(route("GET /metrics HTTP/1.1\r\n\r\n", &metrics).starts_with("HTTP/1.1 200"));
        assert!(route("GET / HTTP/1.1\r\n\r\n", &metrics).starts_with("HTTP/1.1 404"));
        assert!(route("POST /metrics HTTP/1.1\r\n\r\n", &metrics).starts_with("HTTP/1.1 405"));
    }
}
