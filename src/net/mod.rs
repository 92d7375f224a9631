//! Sending export messages to collectors: UDP (batched with `sendmmsg`) and
//! IPFIX over TCP, one thread per collector behind a pacing thread.
//!
//! Layers, each usable on its own:
//! - [`CollectorSender`]: one collector's encoder state and socket; synchronous,
//!   owned by one thread, never blocks on a dead collector.
//! - [`Exporter`]: a sender thread per collector, fed shared chunks through
//!   bounded queues.
//! - [`ExportPipeline`]: what the daemon and `flowgen replay` use. Push
//!   `Vec<Flow>` batches into a bounded crossbeam channel; a pace thread
//!   releases them at the rate (or at each flow's end time) to the exporter.
//!   Counters are atomics in [`CollectorStats`] and [`PipelineStats`].
//!
//! Threads, not tasks: the work is a tight loop of encoding into reused
//! buffers and `sendmmsg` calls, which blocks no more than a send does, so
//! plain threads avoid an async runtime's overhead and a `spawn_blocking`
//! hop. One thread paces; one thread per collector encodes and sends; with
//! one collector that is two threads beside the generator, and on this
//! two-core machine they move about 5 M flows/s unpaced (see
//! `examples/send_throughput.rs`).
//!
//! ```no_run
//! use flowgen::export::ExportProtocol;
//! use flowgen::net::{CollectorConfig, ExportConfig, ExportPipeline, Pacing};
//! use flowgen::pace::PaceSettings;
//!
//! # fn generate() -> Vec<flowgen::flow::Flow> { Vec::new() }
//! let collectors = [CollectorConfig::udp("127.0.0.1:4739", ExportProtocol::Ipfix)];
//! let (input, output) = crossbeam_channel::bounded(8);
//! let pacing = Pacing::Rate(PaceSettings::rate(100_000));
//! let pipeline = ExportPipeline::spawn(&collectors, &ExportConfig::default(), pacing, output)?;
//! for _ in 0..100 {
//!     input.send(generate()).expect("the pipeline runs until the input closes");
//! }
//! let sent = pipeline.collectors()[0].snapshot().records_sent; // live counters
//! drop(input); // no more flows: the pipeline sends what it holds and ends
//! let report = pipeline.join();
//! # let _ = (sent, report);
//! # Ok::<(), flowgen::net::NetError>(())
//! ```

mod batch;
mod config;
mod exporter;
mod health;
mod pipeline;
mod sender;
mod stats;
mod tcp;
mod udp;

pub use config::{CollectorConfig, ExportConfig, Transport};
pub use exporter::{Chunk, Exporter};
pub use pipeline::{ExportPipeline, ExportReport, Pacing, EXPORT_DELAY_MS};
pub use sender::CollectorSender;
pub use stats::{CollectorCounters, CollectorStats, PipelineCounters, PipelineStats};

/// What can go wrong setting up export; every variant names the collector or key.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A collector's host name did not resolve.
    #[error("collector {address}: cannot resolve: {source}")]
    Resolve {
        /// The address as configured.
        address: String,
        /// The resolver's failure.
        source: std::io::Error,
    },
    /// A collector's host name resolved to nothing.
    #[error("collector {address}: resolves to no address")]
    NoAddress {
        /// The address as configured.
        address: String,
    },
    /// The socket for a collector could not be opened.
    #[error("collector {address}: cannot open a socket: {source}")]
    Socket {
        /// The address as configured.
        address: String,
        /// The system's failure.
        source: std::io::Error,
    },
    /// A setting is out of range or contradicts another.
    #[error("{key}: {message}")]
    Config {
        /// The configuration key, e.g. `collector[1].transport`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A sender thread could not be started.
    #[error("cannot start a sender thread: {source}")]
    Thread {
        /// The system's failure.
        source: std::io::Error,
    },
}

/// Milliseconds since the Unix epoch by the system clock (0 if it reads before 1970).
pub fn unix_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
