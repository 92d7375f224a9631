//! Counters the senders keep and the daemon's metrics read: plain atomics,
//! updated once per batch, never per flow.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::export::ExportProtocol;
use crate::net::Transport;

/// Live counters of one collector stream; shared (`Arc`) between its sender and readers.
#[derive(Debug)]
pub struct CollectorStats {
    /// The collector as configured (`HOST:PORT`).
    pub name: String,
    /// The address it resolved to.
    pub address: SocketAddr,
    /// Its export protocol.
    pub protocol: ExportProtocol,
    /// Its transport.
    pub transport: Transport,
    messages_sent: AtomicU64,
    records_sent: AtomicU64,
    bytes_sent: AtomicU64,
    send_errors: AtomicU64,
    records_dropped: AtomicU64,
    reconnects: AtomicU64,
}

/// A copy of one collector's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CollectorCounters {
    /// Export messages handed to the kernel.
    pub messages_sent: u64,
    /// Data records in those messages.
    pub records_sent: u64,
    /// Octets of those messages (IP and UDP or TCP headers not counted).
    pub bytes_sent: u64,
    /// Failed sends and connection attempts (refused, unreachable, reset).
    pub send_errors: u64,
    /// Flows that never reached the kernel: failed sends, a full queue, a
    /// TCP collector that is down or too far behind, an address left an
    /// anonymised token.
    pub records_dropped: u64,
    /// TCP connections re-established after a loss.
    pub reconnects: u64,
}

impl CollectorStats {
    /// Zeroed counters for a collector.
    pub fn new(
        name: String,
        address: SocketAddr,
        protocol: ExportProtocol,
        transport: Transport,
    ) -> CollectorStats {
        CollectorStats {
            name,
            address,
            protocol,
            transport,
            messages_sent: AtomicU64::new(0),
            records_sent: AtomicU64::new(0),
            bytes_sent: AtomicU64::new(0),
            send_errors: AtomicU64::new(0),
            records_dropped: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    /// The counters now.
    pub fn snapshot(&self) -> CollectorCounters {
        CollectorCounters {
            messages_sent: self.messages_sent.load(Ordering::Relaxed),
            records_sent: self.records_sent.load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent.load(Ordering::Relaxed),
            send_errors: self.send_errors.load(Ordering::Relaxed),
            records_dropped: self.records_dropped.load(Ordering::Relaxed),
            reconnects: self.reconnects.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_sent(&self, messages: u64, records: u64, bytes: u64) {
        self.messages_sent.fetch_add(messages, Ordering::Relaxed);
        self.records_sent.fetch_add(records, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub(crate) fn add_send_error(&self) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn add_dropped(&self, records: u64) {
        self.records_dropped.fetch_add(records, Ordering::Relaxed);
    }

    pub(crate) fn add_reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }
}

/// Counters of the pacing stage in front of the collectors.
#[derive(Debug, Default)]
pub struct PipelineStats {
    flows_in: AtomicU64,
    flows_dispatched: AtomicU64,
    shortfall_flows: AtomicU64,
    late_flows: AtomicU64,
    discarded_flows: AtomicU64,
}

/// A copy of the pacing stage's counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct PipelineCounters {
    /// Flows taken from the input channel.
    pub flows_in: u64,
    /// Flows handed to the collectors' queues.
    pub flows_dispatched: u64,
    /// Flows the pacer could have sent but the source had not delivered: the
    /// source is not keeping up with the rate.
    pub shortfall_flows: u64,
    /// Flows sent more than 100 ms after their due time (timestamp pacing only).
    pub late_flows: u64,
    /// Flows still queued when a paced drain's deadline passed, thrown away
    /// unsent (see `ExportPipeline::drain_within`).
    pub discarded_flows: u64,
}

impl PipelineStats {
    /// The counters now.
    pub fn snapshot(&self) -> PipelineCounters {
        PipelineCounters {
            flows_in: self.flows_in.load(Ordering::Relaxed),
            flows_dispatched: self.flows_dispatched.load(Ordering::Relaxed),
            shortfall_flows: self.shortfall_flows.load(Ordering::Relaxed),
            late_flows: self.late_flows.load(Ordering::Relaxed),
            discarded_flows: self.discarded_flows.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn add_in(&self, flows: u64) {
        self.flows_in.fetch_add(flows, Ordering::Relaxed);
    }

    pub(crate) fn add_dispatched(&self, flows: u64) {
        self.flows_dispatched.fetch_add(flows, Ordering::Relaxed);
    }

    pub(crate) fn set_shortfall(&self, flows: u64) {
        self.shortfall_flows.store(flows, Ordering::Relaxed);
    }

    pub(crate) fn add_late(&self, flows: u64) {
        self.late_flows.fetch_add(flows, Ordering::Relaxed);
    }

    pub(crate) fn add_discarded(&self, flows: u64) {
        self.discarded_flows.fetch_add(flows, Ordering::Relaxed);
    }
}
