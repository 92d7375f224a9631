//! One collector stream: its encoder state, its transport and its counters.
//!
//! [`CollectorSender`] is synchronous and meant to be owned by one thread:
//! [`crate::net::Exporter`] gives each collector its own, so a slow or dead
//! collector holds up nobody else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::export::{ExportProtocol, ExportStream};
use crate::flow::Flow;
use crate::net::batch::MessageBatch;
use crate::net::stats::CollectorStats;
use crate::net::tcp::{Link, TcpTransport};
use crate::net::udp::UdpTransport;
use crate::net::{CollectorConfig, ExportConfig, NetError, Transport};

/// Messages encoded before they are handed to the kernel together.
const BATCH_MESSAGES: usize = 64;

/// How long before the stream opens NetFlow v9's sysUpTime zero lies.
const V9_UPTIME_AT_START_MS: u64 = 24 * 3600 * 1000;

/// The start handed to the encoder: for v9 it is sysUpTime zero, and a record
/// cannot start before it. Every flow starts before it is sent (by its
/// duration, and replayed flows by more), so zero is put a day back: the
/// collector sees an exporter that has been up a day, and flows keep their
/// times. IPFIX carries absolute times and starts now.
fn stream_start_ms(protocol: ExportProtocol, now_ms: u64) -> u64 {
    match protocol {
        ExportProtocol::Ipfix => now_ms,
        ExportProtocol::Netflow9 => now_ms.saturating_sub(V9_UPTIME_AT_START_MS),
    }
}

enum Wire {
    Udp(UdpTransport),
    Tcp(TcpTransport),
}

/// Encodes flows for one collector and sends them.
pub struct CollectorSender {
    stats: Arc<CollectorStats>,
    stream: ExportStream,
    link: Wire,
    batch: MessageBatch,
}

impl CollectorSender {
    /// Opens the stream for `config` (UDP: the socket now; TCP: on first send);
    /// `key` names it in errors (`collector[0]`), `now_ms` is Unix time.
    pub fn open(
        config: &CollectorConfig,
        key: &str,
        export: &ExportConfig,
        now_ms: u64,
    ) -> Result<CollectorSender, NetError> {
        export.validate()?;
        let address = config.resolve(key)?;
        let stats = Arc::new(CollectorStats::new(
            config.address.clone(),
            address,
            config.protocol,
            config.transport,
        ));
        let link = match config.transport {
            Transport::Udp => Wire::Udp(
                UdpTransport::open(address, export.socket_send_buffer_bytes).map_err(|source| {
                    NetError::Socket {
                        address: config.address.clone(),
                        source,
                    }
                })?,
            ),
            Transport::Tcp => Wire::Tcp(TcpTransport::new(
                address,
                Duration::from_millis(export.tcp_reconnect_interval_ms),
                export.tcp_max_pending_bytes,
                export.socket_send_buffer_bytes,
            )),
        };
        let mut options = export.stream_options(config.observation_domain);
        if config.transport == Transport::Tcp {
            // A TCP session needs the templates once, at its start (RFC 7011
            // section 8): no timer, no count; each new connection asks again.
            options.template_refresh_s = 0;
            options.template_refresh_messages = 0;
        }
        let stream = ExportStream::new(
            config.protocol,
            options,
            stream_start_ms(config.protocol, now_ms),
        );
        Ok(CollectorSender {
            stats,
            stream,
            link,
            batch: MessageBatch::new(BATCH_MESSAGES, export.max_message_bytes),
        })
    }

    /// The counters of this stream.
    pub fn stats(&self) -> &Arc<CollectorStats> {
        &self.stats
    }

    /// The local address the collector sees messages come from (TCP: while connected).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.link {
            Wire::Udp(udp) => udp.local_addr().ok(),
            Wire::Tcp(tcp) => tcp.local_addr(),
        }
    }

    /// Encodes `flows` into as many messages as they need and sends them;
    /// `now_ms` (Unix) is the export time. Failures are counted, never returned.
    pub fn send(&mut self, flows: &[Flow], now_ms: u64) {
        if let Wire::Tcp(tcp) = &mut self.link {
            if tcp.ensure_connected(&self.stats) == Link::Down {
                self.stats.add_dropped(flows.len() as u64);
                return;
            }
            // RFC 7011 section 10.4: templates again on every new connection.
            if tcp.take_needs_templates() {
                self.stream.resend_templates();
            }
        }

        let mut rest = flows;
        while !rest.is_empty() {
            let buffer = self.batch.next_buffer();
            let summary = self.stream.encode(rest, now_ms, buffer);
            // Each call consumes at least one flow; the guard keeps a broken
            // promise from becoming an endless loop.
            let consumed = summary.flows_consumed.clamp(1, rest.len());
            rest = &rest[consumed..];
            if summary.skipped_token_flows > 0 {
                self.stats.add_dropped(summary.skipped_token_flows as u64);
            }
            if summary.octets == 0 {
                continue;
            }
            self.batch.commit(summary.data_records as u64);
            if self.batch.is_full() {
                self.flush();
            }
        }
        self.flush();
    }

    /// Upkeep while no flows arrive, at `now_ms` (Unix): sends the templates when
    /// their refresh is due, so that a collector that starts late learns them;
    /// writes what TCP has queued, and notices a lost connection so that it is
    /// re-established (with templates) promptly.
    pub fn poll(&mut self, now_ms: u64) {
        if let Wire::Tcp(tcp) = &mut self.link {
            if tcp.ensure_connected(&self.stats) == Link::Down {
                return;
            }
            if tcp.take_needs_templates() {
                self.stream.resend_templates();
            }
        }
        if self.stream.templates_due(now_ms) {
            let buffer = self.batch.next_buffer();
            if self.stream.encode(&[], now_ms, buffer).octets > 0 {
                self.batch.commit(0);
            }
        }
        self.flush();
        if let Wire::Tcp(tcp) = &mut self.link {
            tcp.flush(&self.stats);
        }
    }

    /// Makes the next message carry the templates.
    pub fn resend_templates(&mut self) {
        self.stream.resend_templates();
    }

    /// Sends what is still queued (waiting up to `timeout` for a TCP collector) and closes.
    pub fn finish(mut self, timeout: Duration) {
        self.flush();
        if let Wire::Tcp(tcp) = &mut self.link {
            tcp.finish(&self.stats, timeout);
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        match &mut self.link {
            Wire::Udp(udp) => udp.send(&self.batch, &self.stats),
            Wire::Tcp(tcp) => {
                for index in 0..self.batch.len() {
                    if !tcp.queue(self.batch.message(index), self.batch.records(index)) {
                        self.stats.add_dropped(self.batch.records(index));
                    }
                }
                tcp.flush(&self.stats);
            }
        }
        self.batch.clear();
    }
}
