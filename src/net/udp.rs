//! UDP transport: one connected socket per collector stream, batches sent with
//! `sendmmsg` on Linux.
//!
//! The socket is bound once to an ephemeral port of the wildcard address and
//! kept for the stream's life, so the collector sees one stable source port
//! (collectors key templates on it). Connecting it lets the kernel report an
//! ICMP port unreachable as `ECONNREFUSED` on a later send, which is counted;
//! the message that meets the error is retried once, so a collector that has
//! just restarted loses nothing to the stale error.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use crate::net::batch::MessageBatch;
use crate::net::health::Health;
use crate::net::stats::CollectorStats;

/// Messages per `sendmmsg` call.
const MESSAGES_PER_CALL: usize = 64;

/// A connected UDP socket to one collector.
#[derive(Debug)]
pub(crate) struct UdpTransport {
    socket: UdpSocket,
    health: Health,
}

impl UdpTransport {
    /// Binds an ephemeral local port and connects it to `collector`.
    pub(crate) fn open(
        collector: SocketAddr,
        send_buffer_bytes: usize,
    ) -> io::Result<UdpTransport> {
        let domain = Domain::for_address(collector);
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if send_buffer_bytes > 0 {
            // A smaller buffer than asked for only costs throughput; not fatal.
            let _ = socket.set_send_buffer_size(send_buffer_bytes);
        }
        let local: SocketAddr = match collector {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        socket.bind(&local.into())?;
        socket.connect(&collector.into())?;
        Ok(UdpTransport {
            socket: socket.into(),
            health: Health::default(),
        })
    }

    /// The local address (and the stable source port) of the socket.
    pub(crate) fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends every message of `batch`, counting what went and what failed.
    pub(crate) fn send(&mut self, batch: &MessageBatch, stats: &CollectorStats) {
        let mut next = 0;
        let mut retried = false;
        while next < batch.len() {
            match send_many(&self.socket, batch.messages_from(next)) {
                Ok(sent) => {
                    stats.add_sent(
                        sent as u64,
                        batch.records_in(next, next + sent),
                        batch.bytes_in(next, next + sent),
                    );
                    self.health.success(stats);
                    next += sent;
                    retried = false;
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    stats.add_send_error();
                    self.health.failure(stats, &err);
                    if err.kind() == io::ErrorKind::ConnectionRefused && !retried {
                        retried = true;
                        continue;
                    }
                    stats.add_dropped(batch.records(next));
                    next += 1;
                    retried = false;
                }
            }
        }
    }
}

/// Sends up to [`MESSAGES_PER_CALL`] messages in one system call; returns how many went.
#[cfg(target_os = "linux")]
fn send_many(socket: &UdpSocket, messages: &[Vec<u8>]) -> io::Result<usize> {
    use std::os::fd::AsRawFd;

    let count = messages.len().min(MESSAGES_PER_CALL);
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is a
    // valid (empty) value.
    let mut iovecs: [libc::iovec; MESSAGES_PER_CALL] = unsafe { std::mem::zeroed() };
    let mut headers: [libc::mmsghdr; MESSAGES_PER_CALL] = unsafe { std::mem::zeroed() };
    for (i, message) in messages[..count].iter().enumerate() {
        iovecs[i].iov_base = message.as_ptr() as *mut libc::c_void;
        iovecs[i].iov_len = message.len();
        headers[i].msg_hdr.msg_iov = &mut iovecs[i];
        headers[i].msg_hdr.msg_iovlen = 1;
    }
    // SAFETY: `headers[..count]` point at `iovecs`, which point into `messages`;
    // all outlive the call, and the kernel only reads the message bytes. The
    // socket is connected, so no destination address is passed.
    let sent = unsafe {
        libc::sendmmsg(
            socket.as_raw_fd(),
            headers.as_mut_ptr(),
            count as libc::c_uint,
            0,
        )
    };
    if sent < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(sent as usize)
    }
}

/// Sends one message per system call where `sendmmsg` does not exist.
#[cfg(not(target_os = "linux"))]
fn send_many(socket: &UdpSocket, messages: &[Vec<u8>]) -> io::Result<usize> {
    socket.send(&messages[0]).map(|_| 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExportProtocol;
    use crate::net::Transport;
    use std::time::Duration;

    fn stats_for(address: SocketAddr) -> CollectorStats {
        CollectorStats::new(
            address.to_string(),
            address,
            ExportProtocol::Ipfix,
            Transport::Udp,
        )
    }

    fn batch_of(messages: &[&[u8]]) -> MessageBatch {
        let mut batch = MessageBatch::new(128, 1500);
        for message in messages {
            batch.next_buffer().extend_from_slice(message);
            batch.commit(1);
        }
        batch
    }

    #[test]
    fn a_batch_arrives_in_order_from_one_port() {
        let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
        sink.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let address = sink.local_addr().unwrap();
        let mut transport = UdpTransport::open(address, 0).unwrap();
        let stats = stats_for(address);

        // More messages than one sendmmsg call takes.
        let payloads: Vec<Vec<u8>> = (0..100u8).map(|i| vec![i; 10 + usize::from(i)]).collect();
        let refs: Vec<&[u8]> = payloads.iter().map(Vec::as_slice).collect();
        transport.send(&batch_of(&refs), &stats);

        let local = transport.local_addr().unwrap();
        let mut buf = [0u8; 2048];
        for expected in &payloads {
            let (len, from) = sink.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..len], expected.as_slice());
            assert_eq!(from.port(), local.port());
        }
        let counters = stats.snapshot();
        assert_eq!(counters.messages_sent, 100);
        assert_eq!(counters.records_sent, 100);
        assert_eq!(
            counters.bytes_sent,
            payloads.iter().map(|p| p.len() as u64).sum::<u64>()
        );
        assert_eq!(counters.send_errors, 0);
    }

    #[test]
    fn a_refusing_collector_is_counted_not_fatal() {
        // A port that was just free: nothing listens on it.
        let address = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut transport = UdpTransport::open(address, 0).unwrap();
        let stats = stats_for(address);
        for _ in 0..20 {
            transport.send(&batch_of(&[b"one", b"two", b"three"]), &stats);
            std::thread::sleep(Duration::from_millis(1));
        }
        let counters = stats.snapshot();
        assert!(counters.send_errors > 0, "{counters:?}");
        assert_eq!(
            counters.messages_sent + counters.records_dropped,
            60,
            "every message is either sent or counted lost: {counters:?}"
        );
    }
}
