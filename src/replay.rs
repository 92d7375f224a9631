//! `flowgen replay`: streams a real flow file through the export pipeline to
//! collectors, then exits with a summary.
//!
//! Every flow keeps its duration, protocol, ports, packets, bytes, flags and
//! ToS; addresses go through the [`AddressPlan`]. Timing comes in two kinds:
//! - a rate (`--rate N`, 0 = as fast as the collectors take them): flows go
//!   out in file order, each stamped to end just before it is sent;
//! - the file's own pace (`--rate original`): timestamps are shifted so that
//!   the earliest start in the file becomes now, and each flow goes out once
//!   its shifted end has passed, as a router would export it. Files need not
//!   be sorted: the reader holds up to `reorder_window_flows` flows and
//!   releases them in order of end time (CIDDS-001 samples are shuffled; a
//!   shuffled file within the window plays exactly). A flow whose end is
//!   earlier than one already released, because the file's disorder exceeds
//!   the window, goes out at once with its shifted timestamps and is counted
//!   as out of order.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::address_plan::{AddressPlan, AddressPlanConfig, AddressPlanError};
use crate::data::{FlowReader, ReadError, ReadOptions};
use crate::flow::Flow;
use crate::net::{
    unix_now_ms, CollectorConfig, ExportConfig, ExportPipeline, ExportReport, NetError, Pacing,
};
use crate::pace::PaceSettings;

/// Flows per batch handed to the pipeline.
const BATCH_FLOWS: usize = 1024;

/// Batches the reader may run ahead of the pacer.
const QUEUED_BATCHES: usize = 8;

/// How often a long replay logs its progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// The default reorder window for `--rate original`, flows (about 40 MB).
pub const DEFAULT_REORDER_WINDOW_FLOWS: usize = 200_000;

/// What went wrong with a replay; each names the file, key or collector.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The flow file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// A collector could not be set up.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The address plan is unusable.
    #[error(transparent)]
    Plan(#[from] AddressPlanError),
    /// The configuration file could not be read or has bad keys.
    #[error("{path}: {message}", path = path.display())]
    Config {
        /// The configuration file.
        path: PathBuf,
        /// What the configuration reader reported (it names the key).
        message: String,
    },
    /// There is nowhere to send to.
    #[error("no collector: pass --collector HOST:PORT or add a [[collector]] table to the config")]
    NoCollector,
}

/// The parts of a configuration file replay reads: `[addresses]`,
/// `[[collector]]` and `[export]`. Other tables (the daemon's) are ignored.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ReplayConfigFile {
    /// The address plan.
    #[serde(default)]
    pub addresses: AddressPlanConfig,
    /// The collectors.
    #[serde(default)]
    pub collector: Vec<CollectorConfig>,
    /// Encoding and sending settings.
    #[serde(default)]
    pub export: ExportConfig,
    /// Tables replay does not use, so that the daemon's file can be passed as it is.
    #[serde(flatten)]
    pub other: BTreeMap<String, serde::de::IgnoredAny>,
}

impl ReplayConfigFile {
    /// Reads a TOML configuration file.
    pub fn load(path: &Path) -> Result<ReplayConfigFile, ReplayError> {
        let config_error = |message: String| ReplayError::Config {
            path: path.to_path_buf(),
            message,
        };
        if !path.is_file() {
            return Err(config_error("no such file".into()));
        }
        config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Toml))
            .build()
            .and_then(config::Config::try_deserialize)
            .map_err(|e| config_error(e.to_string()))
    }
}

/// How fast the file plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayPace {
    /// This many flows per second, in file order; 0 = as fast as possible.
    Rate(u64),
    /// The file's own pace, from its earliest start.
    Original,
}

impl std::str::FromStr for ReplayPace {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.eq_ignore_ascii_case("original") {
            return Ok(ReplayPace::Original);
        }
        text.parse()
            .map(ReplayPace::Rate)
            .map_err(|_| format!("`{text}` is neither a rate in flows/s nor `original`"))
    }
}

/// Everything a replay needs.
#[derive(Clone, Debug)]
pub struct ReplayOptions {
    /// The flow file (CIDDS-001 or nfdump CSV).
    pub input: PathBuf,
    /// Where to send.
    pub collectors: Vec<CollectorConfig>,
    /// Encoding and sending settings.
    pub export: ExportConfig,
    /// The address plan.
    pub addresses: AddressPlanConfig,
    /// How fast.
    pub pace: ReplayPace,
    /// Flows held to restore time order with [`ReplayPace::Original`].
    pub reorder_window_flows: usize,
    /// Skip (and count) rows that do not parse instead of stopping.
    pub skip_bad_rows: bool,
}

/// What a finished replay did.
#[derive(Clone, Debug)]
pub struct ReplaySummary {
    /// Flows read from the file.
    pub flows_read: u64,
    /// Rows skipped as unparsable.
    pub rows_skipped: u64,
    /// Flows released after a later-ending one (original pace only).
    pub out_of_order_flows: u64,
    /// Wall time of the replay.
    pub elapsed: Duration,
    /// The pipeline's and collectors' final counters.
    pub report: ExportReport,
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seconds = self.elapsed.as_secs_f64();
        let p = &self.report.pipeline;
        writeln!(
            f,
            "replayed {} flows in {seconds:.2} s ({:.0} flows/s); {} rows skipped, \
             {} out of order, {} late, {} short of the rate",
            self.flows_read,
            p.flows_dispatched as f64 / seconds.max(1e-9),
            self.rows_skipped,
            self.out_of_order_flows,
            p.late_flows,
            p.shortfall_flows,
        )?;
        for (name, c) in &self.report.collectors {
            writeln!(
                f,
                "  {name}: {} records in {} messages ({} bytes); {} dropped, {} send errors, {} reconnects",
                c.records_sent, c.messages_sent, c.bytes_sent, c.records_dropped, c.send_errors, c.reconnects
            )?;
        }
        Ok(())
    }
}

/// Plays the file to the collectors and returns when everything is sent.
pub fn replay(options: &ReplayOptions) -> Result<ReplaySummary, ReplayError> {
    if options.collectors.is_empty() {
        return Err(ReplayError::NoCollector);
    }
    options.export.validate()?;
    let plan = AddressPlan::new(&options.addresses)?;
    let mut reader = FlowReader::open(
        &options.input,
        ReadOptions {
            skip_bad_rows: options.skip_bad_rows,
        },
    )?;
    let pacing = match options.pace {
        ReplayPace::Rate(rate) => Pacing::Rate(PaceSettings::rate(rate)),
        ReplayPace::Original => Pacing::FlowEnd,
    };
    let (input, output) = crossbeam_channel::bounded(QUEUED_BATCHES);
    let pipeline = ExportPipeline::spawn(&options.collectors, &options.export, pacing, output)?;
    tracing::info!(file = %options.input.display(), pace = ?options.pace, "replay started");

    let started = Instant::now();
    let mut feed = Feed::new(input, &pipeline);
    let read = match options.pace {
        ReplayPace::Rate(_) => feed_in_file_order(&mut reader, &plan, &mut feed),
        ReplayPace::Original => {
            feed_at_original_pace(&mut reader, &plan, &mut feed, options.reorder_window_flows)
        }
    };
    let flows_read = feed.flows;
    drop(feed);
    if read.is_err() {
        // The replay has failed: send what is queued without waiting for the pace.
        pipeline.flush_now();
    }
    let report = pipeline.join();
    let out_of_order_flows = read?;

    let summary = ReplaySummary {
        flows_read,
        rows_skipped: reader.skipped_rows(),
        out_of_order_flows,
        elapsed: started.elapsed(),
        report,
    };
    tracing::info!(
        flows = summary.flows_read,
        seconds = summary.elapsed.as_secs_f64(),
        "replay finished"
    );
    Ok(summary)
}

/// Batches flows into the pipeline's channel and logs progress.
struct Feed<'a> {
    input: Option<crossbeam_channel::Sender<Vec<Flow>>>,
    batch: Vec<Flow>,
    flows: u64,
    pipeline: &'a ExportPipeline,
    last_progress: Instant,
}

impl<'a> Feed<'a> {
    fn new(input: crossbeam_channel::Sender<Vec<Flow>>, pipeline: &'a ExportPipeline) -> Feed<'a> {
        Feed {
            input: Some(input),
            batch: Vec::with_capacity(BATCH_FLOWS),
            flows: 0,
            pipeline,
            last_progress: Instant::now(),
        }
    }

    /// Whether the pipeline still takes flows.
    fn is_open(&self) -> bool {
        self.input.is_some()
    }

    fn push(&mut self, flow: Flow) {
        self.flows += 1;
        self.batch.push(flow);
        if self.batch.len() >= BATCH_FLOWS {
            self.send_batch();
        }
    }

    fn send_batch(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_FLOWS));
        // The pace thread only stops when the channel closes, so a send fails
        // only if it died (its join reports that): stop feeding it.
        if self
            .input
            .as_ref()
            .is_some_and(|input| input.send(batch).is_err())
        {
            self.input = None;
        }
        if self.last_progress.elapsed() >= PROGRESS_EVERY {
            self.last_progress = Instant::now();
            let sent: u64 = self
                .pipeline
                .collectors()
                .iter()
                .map(|c| c.snapshot().records_sent)
                .sum();
            tracing::info!(flows_read = self.flows, records_sent = sent, "replaying");
        }
    }
}

impl Drop for Feed<'_> {
    fn drop(&mut self) {
        self.send_batch();
        self.input = None;
    }
}

fn feed_in_file_order(
    reader: &mut FlowReader,
    plan: &AddressPlan,
    feed: &mut Feed,
) -> Result<u64, ReplayError> {
    for flow in reader {
        let mut flow = flow?;
        plan.apply(&mut flow);
        feed.push(flow);
        if !feed.is_open() {
            break;
        }
    }
    Ok(0)
}

/// A flow in the reorder window, ordered by end time, then by file position.
struct Pending {
    end_ms: i64,
    position: u64,
    flow: Flow,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        (self.end_ms, self.position) == (other.end_ms, other.position)
    }
}

impl Eq for Pending {}

impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Pending {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.end_ms, self.position).cmp(&(other.end_ms, other.position))
    }
}

/// Feeds flows in order of end time, shifted so the earliest start seen in the
/// first window plays now; returns the count of flows out of order.
fn feed_at_original_pace(
    reader: &mut FlowReader,
    plan: &AddressPlan,
    feed: &mut Feed,
    window_flows: usize,
) -> Result<u64, ReplayError> {
    let window_flows = window_flows.max(1);
    let mut window: BinaryHeap<Reverse<Pending>> =
        BinaryHeap::with_capacity(window_flows.min(1 << 20));
    let mut position = 0u64;

    let mut earliest_start_ms = i64::MAX;
    while window.len() < window_flows {
        let Some(flow) = reader.next() else { break };
        let flow = flow?;
        earliest_start_ms = earliest_start_ms.min(flow.start_ms);
        window.push(Reverse(Pending {
            end_ms: flow.end_ms(),
            position,
            flow,
        }));
        position += 1;
    }
    if window.is_empty() {
        return Ok(0);
    }
    let now_ms = i64::try_from(unix_now_ms()).unwrap_or(i64::MAX);
    let shift_ms = now_ms.saturating_sub(earliest_start_ms);

    let mut last_end_ms = i64::MIN;
    let mut out_of_order = 0u64;
    while let Some(Reverse(next)) = window.pop() {
        if let Some(flow) = reader.next() {
            let flow = flow?;
            window.push(Reverse(Pending {
                end_ms: flow.end_ms(),
                position,
                flow,
            }));
            position += 1;
        }
        if next.end_ms < last_end_ms {
            out_of_order += 1;
        }
        last_end_ms = last_end_ms.max(next.end_ms);
        let mut flow = next.flow;
        flow.start_ms = flow.start_ms.saturating_add(shift_ms);
        plan.apply(&mut flow);
        feed.push(flow);
        if !feed.is_open() {
            break;
        }
    }
    if out_of_order > 0 {
        tracing::warn!(
            flows = out_of_order,
            window_flows,
            "flows out of order beyond the reorder window went out late"
        );
    }
    Ok(out_of_order)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse() {
        assert_eq!("original".parse::<ReplayPace>(), Ok(ReplayPace::Original));
        assert_eq!("5000".parse::<ReplayPace>(), Ok(ReplayPace::Rate(5000)));
        assert!("fast".parse::<ReplayPace>().unwrap_err().contains("fast"));
    }

    #[test]
    fn the_daemon_config_is_accepted_and_typos_inside_our_tables_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flowgen.toml");
        std::fs::write(
            &path,
            r#"
            [model]
            path = "models/cidds-001"
            [[collector]]
            address = "127.0.0.1:4739"
            [[collector]]
            address = "127.0.0.1:9995"
            protocol = "netflow9"
            observation_domain = 7
            [export]
            template_refresh_s = 2
            [addresses]
            token_pools = ["45.0.0.0/8"]
            "#,
        )
        .unwrap();
        let file = ReplayConfigFile::load(&path).unwrap();
        assert_eq!(file.collector.len(), 2);
        assert_eq!(
            file.collector[1].protocol,
            crate::export::ExportProtocol::Netflow9
        );
        assert_eq!(file.collector[1].observation_domain, 7);
        assert_eq!(file.export.template_refresh_s, 2);
        assert_eq!(
            file.export.max_message_bytes,
            ExportConfig::default().max_message_bytes
        );
        assert_eq!(file.addresses.token_pools, ["45.0.0.0/8"]);

        std::fs::write(
            &path,
            "[[collector]]\naddress = \"127.0.0.1:1\"\nprotocl = \"ipfix\"\n",
        )
        .unwrap();
        let err = ReplayConfigFile::load(&path).unwrap_err().to_string();
        assert!(
            err.contains("protocl") && err.contains("flowgen.toml"),
            "{err}"
        );
    }

    #[test]
    fn no_collector_is_an_error() {
        let options = ReplayOptions {
            input: "missing.csv".into(),
            collectors: Vec::new(),
            export: ExportConfig::default(),
            addresses: AddressPlanConfig::default(),
            pace: ReplayPace::Rate(0),
            reorder_window_flows: 10,
            skip_bad_rows: false,
        };
        assert!(matches!(replay(&options), Err(ReplayError::NoCollector)));
    }
}
