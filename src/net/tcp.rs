//! TCP transport for IPFIX (RFC 7011 section 10.4): a non-blocking connection
//! that is re-established at most once per interval after a loss.
//!
//! Messages are queued whole and written as the socket accepts them, so a
//! collector that reads slowly never blocks the sender; past a byte limit,
//! further messages are dropped (and counted) at message boundaries, which
//! keeps the stream decodable. Connecting never blocks either: messages wait
//! in the queue while the handshake runs. A connection that fails takes its
//! queued messages with it, and nothing more is queued until the sender has
//! asked the encoder for the templates again, so every connection starts with
//! them.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::net::health::Health;
use crate::net::stats::CollectorStats;

/// The state of the connection after [`TcpTransport::ensure_connected`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Link {
    /// Connected: messages are written.
    Up,
    /// A connection attempt is in progress: messages are queued.
    Connecting,
    /// Not connected; the next attempt waits for the reconnect interval.
    Down,
}

/// A queued message: where it ends in the output buffer and what it carries.
#[derive(Debug)]
struct Queued {
    end: usize,
    bytes: u64,
    records: u64,
}

/// A TCP connection to one collector with its unsent bytes.
#[derive(Debug)]
pub(crate) struct TcpTransport {
    collector: SocketAddr,
    stream: Option<TcpStream>,
    /// A connection attempt in progress, and when it began.
    connecting: Option<(Socket, Instant)>,
    out: Vec<u8>,
    written: usize,
    queued: VecDeque<Queued>,
    max_pending_bytes: usize,
    reconnect_interval: Duration,
    send_buffer_bytes: usize,
    last_attempt: Option<Instant>,
    connected_before: bool,
    /// Set when a connection is lost (and at start): the next message must
    /// carry the templates, so nothing is queued until the sender has seen it.
    needs_templates: bool,
    health: Health,
}

impl TcpTransport {
    /// A transport that connects on first use.
    pub(crate) fn new(
        collector: SocketAddr,
        reconnect_interval: Duration,
        max_pending_bytes: usize,
        send_buffer_bytes: usize,
    ) -> TcpTransport {
        TcpTransport {
            collector,
            stream: None,
            connecting: None,
            out: Vec::new(),
            written: 0,
            queued: VecDeque::new(),
            max_pending_bytes,
            reconnect_interval,
            send_buffer_bytes,
            last_attempt: None,
            connected_before: false,
            needs_templates: true,
            health: Health::default(),
        }
    }

    /// The local address of the current connection.
    pub(crate) fn local_addr(&self) -> Option<SocketAddr> {
        self.stream.as_ref().and_then(|s| s.local_addr().ok())
    }

    /// Connects if the link is down and the reconnect interval has passed; notices
    /// a collector that closed the connection. Never blocks: a connection
    /// attempt in progress is checked, not waited for.
    pub(crate) fn ensure_connected(&mut self, stats: &CollectorStats) -> Link {
        if self.stream.is_some() && self.peer_closed() {
            stats.add_send_error();
            self.health
                .failure(stats, &"connection closed by the collector");
            self.disconnect(stats);
        }
        if self.stream.is_some() {
            return Link::Up;
        }
        if self.connecting.is_none() {
            let due = self
                .last_attempt
                .is_none_or(|last| last.elapsed() >= self.reconnect_interval);
            if !due {
                return Link::Down;
            }
            self.last_attempt = Some(Instant::now());
            match self.start_connect() {
                Ok(socket) => self.connecting = Some((socket, Instant::now())),
                Err(err) => {
                    self.connect_failed(stats, &err);
                    return Link::Down;
                }
            }
        }
        match self.finish_connect() {
            Ok(Some(stream)) => {
                self.stream = Some(stream);
                if self.connected_before {
                    stats.add_reconnect();
                } else {
                    tracing::info!(collector = %stats.name, "connected");
                }
                self.health.reconnected(stats);
                self.connected_before = true;
                Link::Up
            }
            Ok(None) => Link::Connecting,
            Err(err) => {
                self.connecting = None;
                self.connect_failed(stats, &err);
                // What was queued for this connection is lost with it.
                self.disconnect(stats);
                Link::Down
            }
        }
    }

    /// Whether the encoder must put the templates into the next message (once
    /// per connection); the flag clears on reading.
    pub(crate) fn take_needs_templates(&mut self) -> bool {
        std::mem::take(&mut self.needs_templates)
    }

    /// Queues one whole message; returns false (and queues nothing) when the
    /// collector is too far behind, down, or the message was encoded for a
    /// connection that has since been lost.
    pub(crate) fn queue(&mut self, message: &[u8], records: u64) -> bool {
        if self.needs_templates || (self.stream.is_none() && self.connecting.is_none()) {
            return false;
        }
        let pending = self.out.len() - self.written;
        if pending > 0 && pending + message.len() > self.max_pending_bytes {
            return false;
        }
        self.out.extend_from_slice(message);
        self.queued.push_back(Queued {
            end: self.out.len(),
            bytes: message.len() as u64,
            records,
        });
        true
    }

    /// Writes what the socket accepts without blocking, counting messages as
    /// they complete.
    pub(crate) fn flush(&mut self, stats: &CollectorStats) {
        let Some(stream) = self.stream.as_mut() else {
            return;
        };
        let mut failure = None;
        while self.written < self.out.len() {
            match stream.write(&self.out[self.written..]) {
                Ok(0) => {
                    failure = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                Ok(n) => self.written += n,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => break,
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        self.count_completed(stats);
        if let Some(err) = failure {
            stats.add_send_error();
            self.health.failure(stats, &err);
            self.disconnect(stats);
        }
        self.compact();
    }

    /// Whether bytes are still waiting for the socket.
    pub(crate) fn has_pending(&self) -> bool {
        self.written < self.out.len()
    }

    /// Waits up to `timeout` for queued bytes to go, then closes the connection.
    pub(crate) fn finish(&mut self, stats: &CollectorStats, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.has_pending() && Instant::now() < deadline {
            if self.ensure_connected(stats) == Link::Down {
                break;
            }
            self.flush(stats);
            if self.has_pending() {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if let Some(stream) = self.stream.as_ref() {
            let _ = stream.shutdown(std::net::Shutdown::Write);
        }
        self.disconnect(stats);
    }

    /// Starts a non-blocking connection attempt.
    fn start_connect(&self) -> io::Result<Socket> {
        let socket = Socket::new(
            Domain::for_address(self.collector),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        if self.send_buffer_bytes > 0 {
            let _ = socket.set_send_buffer_size(self.send_buffer_bytes);
        }
        socket.set_nonblocking(true)?;
        match socket.connect(&self.collector.into()) {
            Ok(()) => Ok(socket),
            Err(err) if err.raw_os_error() == Some(libc::EINPROGRESS) => Ok(socket),
            Err(err) => Err(err),
        }
    }

    /// The connection once the attempt in progress has succeeded; `None` while
    /// it is still pending.
    fn finish_connect(&mut self) -> io::Result<Option<TcpStream>> {
        let Some((socket, started)) = self.connecting.as_ref() else {
            return Ok(None);
        };
        if !is_writable(socket)? {
            // An unreachable host never answers; give up after the timeout.
            let timeout = self
                .reconnect_interval
                .clamp(Duration::from_millis(100), Duration::from_secs(2));
            if started.elapsed() >= timeout {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "connection timed out",
                ));
            }
            return Ok(None);
        }
        if let Some(err) = socket.take_error()? {
            return Err(err);
        }
        let Some((socket, _)) = self.connecting.take() else {
            return Ok(None);
        };
        socket.set_tcp_nodelay(true)?;
        Ok(Some(socket.into()))
    }

    fn connect_failed(&mut self, stats: &CollectorStats, err: &io::Error) {
        stats.add_send_error();
        self.health.failure(stats, err);
    }

    /// A collector never sends on an IPFIX connection, so readable means closed.
    fn peer_closed(&mut self) -> bool {
        let Some(stream) = self.stream.as_mut() else {
            return false;
        };
        let mut byte = [0u8; 64];
        match stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(err) => !matches!(
                err.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ),
        }
    }

    fn count_completed(&mut self, stats: &CollectorStats) {
        let (mut messages, mut records, mut bytes) = (0, 0, 0);
        while let Some(front) = self.queued.front() {
            if front.end > self.written {
                break;
            }
            messages += 1;
            records += front.records;
            bytes += front.bytes;
            self.queued.pop_front();
        }
        if messages > 0 {
            stats.add_sent(messages, records, bytes);
            self.health.success(stats);
        }
    }

    /// Drops the connection and what was queued for it.
    fn disconnect(&mut self, stats: &CollectorStats) {
        self.stream = None;
        self.needs_templates = true;
        let lost: u64 = self.queued.iter().map(|q| q.records).sum();
        stats.add_dropped(lost);
        self.queued.clear();
        self.out.clear();
        self.written = 0;
    }

    /// Moves unsent bytes to the front once the sent part dominates the buffer.
    fn compact(&mut self) {
        if self.written == self.out.len() {
            self.out.clear();
            self.written = 0;
        } else if self.written > self.out.len() / 2 {
            self.out.drain(..self.written);
            for queued in &mut self.queued {
                queued.end -= self.written;
            }
            self.written = 0;
        }
    }
}

/// Whether a connecting socket has finished (successfully or not), without waiting.
fn is_writable(socket: &Socket) -> io::Result<bool> {
    use std::os::fd::AsRawFd;

    let mut poll = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    if ready < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(ready > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExportProtocol;
    use crate::net::Transport;
    use std::net::TcpListener;

    fn stats_for(address: SocketAddr) -> CollectorStats {
        CollectorStats::new(
            address.to_string(),
            address,
            ExportProtocol::Ipfix,
            Transport::Tcp,
        )
    }

    /// Calls `ensure_connected` until the attempt in progress (if any) is decided.
    fn settle(transport: &mut TcpTransport, stats: &CollectorStats) -> Link {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let link = transport.ensure_connected(stats);
            if link != Link::Connecting || Instant::now() > deadline {
                return link;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn messages_queued_while_connecting_arrive_whole_and_are_counted() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let stats = stats_for(address);
        let mut transport = TcpTransport::new(address, Duration::from_millis(50), 1 << 20, 0);
        assert!(
            !transport.queue(b"too early", 1),
            "nothing before the templates are asked for"
        );
        assert!(transport.take_needs_templates());

        assert_ne!(transport.ensure_connected(&stats), Link::Down);
        assert!(transport.queue(b"hello ", 2));
        assert_eq!(settle(&mut transport, &stats), Link::Up);
        let (mut peer, _) = listener.accept().unwrap();
        assert!(transport.queue(b"world", 3));
        transport.finish(&stats, Duration::from_secs(2));

        let mut received = Vec::new();
        peer.read_to_end(&mut received).unwrap();
        assert_eq!(received, b"hello world");
        let counters = stats.snapshot();
        assert_eq!(
            (
                counters.messages_sent,
                counters.records_sent,
                counters.bytes_sent
            ),
            (2, 5, 11)
        );
    }

    #[test]
    fn reconnects_at_most_once_per_interval_and_asks_for_templates_again() {
        let address = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let stats = stats_for(address);
        let interval = Duration::from_millis(200);
        let mut transport = TcpTransport::new(address, interval, 1 << 20, 0);
        transport.take_needs_templates();

        // Nothing listens: the first attempt fails, the next ones wait.
        assert_eq!(settle(&mut transport, &stats), Link::Down);
        for _ in 0..50 {
            assert_eq!(transport.ensure_connected(&stats), Link::Down);
        }
        assert_eq!(stats.snapshot().send_errors, 1);

        let listener = TcpListener::bind(address).unwrap();
        std::thread::sleep(interval);
        assert_eq!(settle(&mut transport, &stats), Link::Up);
        let (peer, _) = listener.accept().unwrap();

        // The collector goes away: noticed, counted, retried after the interval,
        // and nothing is queued until the templates are asked for again.
        drop(peer);
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(transport.ensure_connected(&stats), Link::Down);
        assert!(!transport.queue(b"stale", 1));
        assert!(transport.take_needs_templates());
        std::thread::sleep(interval);
        assert_eq!(settle(&mut transport, &stats), Link::Up);
        assert_eq!(stats.snapshot().reconnects, 1);
    }

    #[test]
    fn a_stalled_collector_costs_messages_not_time() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let stats = stats_for(address);
        let mut transport = TcpTransport::new(address, Duration::from_secs(1), 64 << 10, 4096);
        transport.take_needs_templates();
        assert_eq!(settle(&mut transport, &stats), Link::Up);
        let (_peer, _) = listener.accept().unwrap();

        // The peer never reads: the socket buffers fill, then messages drop.
        let message = vec![7u8; 1000];
        let started = Instant::now();
        let mut refused = 0;
        for _ in 0..10_000 {
            if !transport.queue(&message, 1) {
                refused += 1;
            }
            transport.flush(&stats);
        }
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(refused > 0);
        assert!(transport.has_pending());
    }
}
