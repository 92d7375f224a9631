//! The daemon's counters: one registry, Prometheus text on `GET /metrics`, and
//! the periodic info line built from the same numbers.
//!
//! Counter names (with the `flowgen_` prefix) end in `_total`; per-collector
//! counters carry a `collector="HOST:PORT/protocol/transport/domain"` label.

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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Identifies one collector stream in labels and log lines.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CollectorLabel {
    /// `HOST:PORT/protocol/transport/domain`.
    pub collector: String,
}

/// Outcome of a reload, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabel {
    /// `ok` or `failed`.
    pub result: String,
}

/// The counters of one collector, resolved once so the hot path skips the family lookup.
#[derive(Clone, Debug, Default)]
pub struct CollectorMetrics {
    /// Flow records handed to the socket.
    pub flows_sent: Counter,
    /// Export messages handed to the socket.
    pub messages_sent: Counter,
    /// Messages that carried template sets.
    pub templates_sent: Counter,
    /// Failed sends (refused, unreachable, disconnected).
    pub send_errors: Counter,
    /// Flows that were encoded but could not be sent.
    pub flows_dropped: Counter,
}

/// Every counter the daemon keeps.
pub struct Metrics {
    registry: Registry,
    /// Flows produced by the generator threads.
    pub flows_generated: Counter,
    /// Times the exporter was allowed to send but found no generated flow waiting.
    pub source_lagging: Counter,
    /// Generator calls that failed.
    pub generator_errors: Counter,
    /// Reloads by outcome.
    pub reloads: Family<ReloadLabel, Counter>,
    /// The rate the pacer aims at now, flows per second (0: unlimited).
    pub target_rate: Gauge<f64, AtomicU64>,
    /// Batches waiting between generators and exporter.
    pub queued_batches: Gauge,
    flows_sent: Family<CollectorLabel, Counter>,
    messages_sent: Family<CollectorLabel, Counter>,
    templates_sent: Family<CollectorLabel, Counter>,
    send_errors: Family<CollectorLabel, Counter>,
    flows_dropped: Family<CollectorLabel, Counter>,
    collectors: Mutex<Vec<(String, CollectorMetrics)>>,
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
            source_lagging: Counter::default(),
            generator_errors: Counter::default(),
            reloads: Family::default(),
            target_rate: Gauge::default(),
            queued_batches: Gauge::default(),
            flows_sent: Family::default(),
            messages_sent: Family::default(),
            templates_sent: Family::default(),
            send_errors: Family::default(),
            flows_dropped: Family::default(),
            collectors: Mutex::new(Vec::new()),
        };
        let mut registry = Registry::with_prefix("flowgen");
        metrics.register_all(&mut registry);
        metrics.registry = registry;
        metrics
    }

    fn register_all(&self, r: &mut Registry) {
        r.register(
            "flows_generated",
            "Flows produced by the generator threads",
            self.flows_generated.clone(),
        );
        r.register(
            "source_lagging",
            "Times the exporter could send but no generated flow was waiting",
            self.source_lagging.clone(),
        );
        r.register(
            "generator_errors",
            "Generator calls that failed",
            self.generator_errors.clone(),
        );
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
        r.register(
            "flows_sent",
            "Flow records sent",
            self.flows_sent.clone(),
        );
        r.register(
            "messages_sent",
            "Export messages sent",
            self.messages_sent.clone(),
        );
        r.register(
            "templates_sent",
            "Export messages that carried templates",
            self.templates_sent.clone(),
        );
        r.register(
            "send_errors",
            "Failed sends",
            self.send_errors.clone(),
        );
        r.register(
            "flows_dropped",
            "Encoded flows that could not be sent",
            self.flows_dropped.clone(),
        );
    }

    /// The counters of the collector named `name`, created on first use.
    pub fn collector(&self, name: &str) -> CollectorMetrics {
        let label = CollectorLabel {
            collector: name.to_string(),
        };
        let handles = CollectorMetrics {
            flows_sent: self.flows_sent.get_or_create_owned(&label),
            messages_sent: self.messages_sent.get_or_create_owned(&label),
            templates_sent: self.templates_sent.get_or_create_owned(&label),
            send_errors: self.send_errors.get_or_create_owned(&label),
            flows_dropped: self.flows_dropped.get_or_create_owned(&label),
        };
        let mut known = self.collectors.lock().unwrap_or_else(|e| e.into_inner());
        if !known.iter().any(|(n, _)| n == name) {
            known.push((name.to_string(), handles.clone()));
        }
        handles
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

    /// The registry as OpenMetrics text (what `GET /metrics` serves).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    fn snapshot(&self) -> Snapshot {
        let known = self.collectors.lock().unwrap_or_else(|e| e.into_inner());
        Snapshot {
            at: Instant::now(),
            generated: self.flows_generated.get(),
            lagging: self.source_lagging.get(),
            collectors: known
                .iter()
                .map(|(name, m)| {
                    let totals = [
                        m.flows_sent.get(),
                        m.flows_dropped.get(),
                        m.send_errors.get(),
                    ];
                    (name.clone(), totals)
                })
                .collect(),
        }
    }
}

/// Counter values at one instant, for the rates in the periodic line.
struct Snapshot {
    at: Instant,
    generated: u64,
    lagging: u64,
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
        let mut line = format!(
            "generated {:.0} flows/s, source lagging {}",
            per_s(now.generated, self.last.generated),
            now.lagging.saturating_sub(self.last.lagging),
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
                "; {name}: sent {:.0} flows/s, dropped {}, send errors {}",
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

    #[test]
    fn counters_are_exposed_with_total_suffix_and_collector_label() {
        let metrics = Metrics::new();
        metrics.flows_generated.inc_by(7);
        metrics.collector("127.0.0.1:4739/ipfix/udp/1").flows_sent.inc_by(5);
        metrics.count_reload(false);
        let text = metrics.encode();
        assert!(text.contains("flowgen_flows_generated_total 7"), "{text}");
        assert!(
            text.contains("flowgen_flows_sent_total{collector=\"127.0.0.1:4739/ipfix/udp/1\"} 5"),
            "{text}"
        );
        assert!(text.contains("flowgen_reloads_total{result=\"failed\"} 1"), "{text}");
    }

    #[test]
    fn the_same_collector_shares_its_counters() {
        let metrics = Metrics::new();
        metrics.collector("a").send_errors.inc();
        metrics.collector("a").send_errors.inc();
        assert_eq!(metrics.collector("a").send_errors.get(), 2);
    }

    #[test]
    fn the_report_line_shows_rates_and_errors_per_collector() {
        let metrics = Arc::new(Metrics::new());
        let collector = metrics.collector("c1");
        let mut reporter = Reporter::new(metrics.clone());
        collector.send_errors.inc_by(3);
        collector.flows_dropped.inc_by(40);
        let line = reporter.line();
        assert!(line.contains("c1: sent 0 flows/s, dropped 40, send errors 3"), "{line}");
        let line = reporter.line();
        assert!(line.contains("dropped 0, send errors 0"), "{line}");
    }

    #[test]
    fn only_get_metrics_is_served() {
        let metrics = Metrics::new();
        assert!(route("GET /metrics HTTP/1.1\r\n\r\n", &metrics).starts_with("HTTP/1.1 200"));
        assert!(route("GET / HTTP/1.1\r\n\r\n", &metrics).starts_with("HTTP/1.1 404"));
        assert!(route("POST /metrics HTTP/1.1\r\n\r\n", &metrics).starts_with("HTTP/1.1 405"));
    }
}
