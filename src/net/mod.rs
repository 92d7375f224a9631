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
pub use pipeline::{ExportPipeline, ExportReport, Pacing};
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
