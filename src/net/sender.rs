//! One collector stream: its encoder state, its transport and its counters.
//!
//! [`CollectorSender`] is synchronous and meant to be owned by one thread:
//! [`crate::net::Exporter`] gives each collector its own, so a slow or dead
//! collector holds up nobody else.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::export::ExportStream;
use crate::flow::Flow;
use crate::net::batch::MessageBatch;
use crate::net::stats::CollectorStats;
use crate::net::tcp::{Link, TcpTransport};
use crate::net::udp::UdpTransport;
use crate::net::{CollectorConfig, ExportConfig, NetError, Transport};

/// Messages encoded before they are handed to the kernel together.
const BATCH_MESSAGES: usize = 64;

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
        let stream = ExportStream::new(
            config.protocol,
            export.stream_options(config.observation_domain),
            now_ms,
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
            match tcp.ensure_connected(&self.stats) {
                Link::Up => {}
                // RFC 7011 section 10.4: templates again on every new connection.
                Link::NewlyUp => self.stream.resend_templates(),
                Link::Down => {
                    self.stats.add_dropped(flows.len() as u64);
                    return;
                }
            }
        }

        let mut rest = flows;
        let mut empty_messages_in_a_row = 0;
        while !rest.is_empty() {
            let buffer = self.batch.next_buffer();
            let taken = self
                .stream
                .encode_message(rest, now_ms, buffer)
                .min(rest.len());
            if buffer.is_empty() {
                // The encoder wrote nothing: there is no message to send these in.
                self.stats.add_dropped(rest.len() as u64);
                break;
            }
            self.batch.commit(taken as u64);
            rest = &rest[taken..];
            // A templates-only message may precede the data; a second one in a
            // row means the encoder will not take the next flow: skip it rather
            // than loop on it.
            empty_messages_in_a_row = if taken == 0 {
                empty_messages_in_a_row + 1
            } else {
                0
            };
            if empty_messages_in_a_row >= 2 {
                self.stats.add_dropped(1);
                rest = &rest[1..];
                empty_messages_in_a_row = 0;
            }
            if self.batch.is_full() {
                self.flush();
            }
        }
        self.flush();
    }

    /// Upkeep while no flows arrive: writes what TCP has queued, and notices a lost
    /// connection so that it is re-established (with templates) promptly.
    pub fn poll(&mut self) {
        if let Wire::Tcp(tcp) = &mut self.link {
            if tcp.ensure_connected(&self.stats) == Link::NewlyUp {
                self.stream.resend_templates();
            }
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
