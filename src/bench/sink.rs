//! A counting collector: a UDP socket on its own thread that reads export
//! messages (batched with `recvmmsg` on Linux), parses each one with
//! [`super::wire::WireCounter`] and keeps atomic counters.
//!
//! It stands in for a real collector where a real one cannot keep up: nfcapd
//! stores about 1.2 M records/s here, and this sink parses several times that.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use super::wire::{MessageCount, WireCounter};

/// How long a receive waits before the thread looks at its stop flag.
const RECEIVE_TIMEOUT: Duration = Duration::from_millis(50);
/// The largest datagram a receive takes; longer ones are counted as truncated.
const MAX_DATAGRAM_BYTES: usize = 65_536;
/// Kernel receive buffer asked for: room for bursts while the sink thread waits
/// for a core. The kernel caps it at `net.core.rmem_max` unless the process may
/// override that.
pub const DEFAULT_RECEIVE_BUFFER_BYTES: usize = 32 << 20;

/// Counters of a sink, updated as messages arrive.
#[derive(Debug, Default)]
struct Counters {
    datagrams: AtomicU64,
    octets: AtomicU64,
    data_records: AtomicU64,
    template_records: AtomicU64,
    malformed: AtomicU64,
    truncated: AtomicU64,
    unknown_template_sets: AtomicU64,
    sequence_gap: AtomicU64,
    receive_errors: AtomicU64,
}

/// What a sink has counted so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinkCounts {
    /// Datagrams received.
    pub datagrams: u64,
    /// Octets received.
    pub octets: u64,
    /// Data records parsed with a known template.
    pub data_records: u64,
    /// Template records.
    pub template_records: u64,
    /// Datagrams that are not well-formed IPFIX or NetFlow v9 messages.
    pub malformed: u64,
    /// Datagrams longer than the sink reads.
    pub truncated: u64,
    /// Data sets that arrived before their template.
    pub unknown_template_sets: u64,
    /// Records (IPFIX) or packets (v9) the sequence numbers say were lost.
    pub sequence_gap: u64,
    /// Failed receive calls.
    pub receive_errors: u64,
}

impl SinkCounts {
    /// The counts gathered between `earlier` and `self`.
    pub fn since(&self, earlier: &SinkCounts) -> SinkCounts {
        SinkCounts {
            datagrams: self.datagrams - earlier.datagrams,
            octets: self.octets - earlier.octets,
            data_records: self.data_records - earlier.data_records,
            template_records: self.template_records - earlier.template_records,
            malformed: self.malformed - earlier.malformed,
            truncated: self.truncated - earlier.truncated,
            unknown_template_sets: self.unknown_template_sets - earlier.unknown_template_sets,
            sequence_gap: self.sequence_gap - earlier.sequence_gap,
            receive_errors: self.receive_errors - earlier.receive_errors,
        }
    }
}

impl Counters {
    fn snapshot(&self) -> SinkCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SinkCounts {
            datagrams: get(&self.datagrams),
            octets: get(&self.octets),
            data_records: get(&self.data_records),
            template_records: get(&self.template_records),
            malformed: get(&self.malformed),
            truncated: get(&self.truncated),
            unknown_template_sets: get(&self.unknown_template_sets),
            sequence_gap: get(&self.sequence_gap),
            receive_errors: get(&self.receive_errors),
        }
    }

    fn add(&self, count: &MessageCount) {
        let add = |c: &AtomicU64, n: u64| {
            if n > 0 {
                c.fetch_add(n, Ordering::Relaxed);
            }
        };
        add(&self.data_records, count.data_records);
        add(&self.template_records, count.template_records);
        add(&self.unknown_template_sets, count.unknown_template_sets);
        add(&self.sequence_gap, count.sequence_gap);
    }
}

/// A running counting sink.
pub struct CountingSink {
    local_addr: SocketAddr,
    receive_buffer_bytes: usize,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl CountingSink {
    /// Binds `listen` (port 0 picks one) and starts counting what arrives.
    pub fn start(listen: SocketAddr, receive_buffer_bytes: usize) -> io::Result<CountingSink> {
        let (socket, receive_buffer_bytes) = bind(listen, receive_buffer_bytes)?;
        let local_addr = socket.local_addr()?;
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_counters, thread_stop) = (Arc::clone(&counters), Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("flowgen-bench-sink".into())
            .spawn(move || receive_until(&socket, &thread_counters, &thread_stop))?;
        Ok(CountingSink {
            local_addr,
            receive_buffer_bytes,
            counters,
            stop,
            thread: Some(thread),
        })
    }

    /// The address the sink listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The receive buffer the kernel granted, octets (Linux reports twice what
    /// it reserves for data: the rest is bookkeeping).
    pub fn receive_buffer_bytes(&self) -> usize {
        self.receive_buffer_bytes
    }

    /// The counts so far.
    pub fn counts(&self) -> SinkCounts {
        self.counters.snapshot()
    }

    /// Stops the thread and returns the final counts.
    pub fn stop(mut self) -> SinkCounts {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        self.counts()
    }
}

impl Drop for CountingSink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

/// Binds the socket; returns it with the receive buffer the kernel granted.
fn bind(listen: SocketAddr, receive_buffer_bytes: usize) -> io::Result<(UdpSocket, usize)> {
    let socket = Socket::new(
        Domain::for_address(listen),
        Type::DGRAM,
        Some(Protocol::UDP),
    )?;
    if receive_buffer_bytes > 0 {
        force_receive_buffer(&socket, receive_buffer_bytes);
    }
    socket.bind(&listen.into())?;
    let granted = socket.recv_buffer_size()?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(RECEIVE_TIMEOUT))?;
    Ok((socket, granted))
}

/// Asks for `bytes` of receive buffer, past `rmem_max` where the process may
/// (`SO_RCVBUFFORCE` needs `CAP_NET_ADMIN`); a smaller buffer only risks drops,
/// which the sequence numbers then show.
fn force_receive_buffer(socket: &Socket, bytes: usize) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
        // SAFETY: setsockopt reads `size_of::<c_int>()` octets from `&value`,
        // which lives across the call.
        let forced = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUFFORCE,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if forced == 0 {
            return;
        }
    }
    let _ = socket.set_recv_buffer_size(bytes);
}

fn receive_until(socket: &UdpSocket, counters: &Counters, stop: &AtomicBool) {
    let mut wire = WireCounter::new();
    let mut batch = ReceiveBatch::new();
    while !stop.load(Ordering::Acquire) {
        match batch.receive(socket) {
            Ok(received) => {
                for i in 0..received {
                    let (from, message, truncated) = batch.datagram(i);
                    count_datagram(&mut wire, counters, from, message, truncated);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => {
                counters.receive_errors.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(RECEIVE_TIMEOUT);
            }
        }
    }
}

fn count_datagram(
    wire: &mut WireCounter,
    counters: &Counters,
    from: SocketAddr,
    message: &[u8],
    truncated: bool,
) {
    counters.datagrams.fetch_add(1, Ordering::Relaxed);
    counters
        .octets
        .fetch_add(message.len() as u64, Ordering::Relaxed);
    if truncated {
        counters.truncated.fetch_add(1, Ordering::Relaxed);
        return;
    }
    match wire.count(from, message) {
        Ok(count) => counters.add(&count),
        Err(_) => {
            counters.malformed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(target_os = "linux")]
mod batch {
    //! `recvmmsg`: up to [`DATAGRAMS_PER_CALL`] datagrams per system call.

    use std::io;
    use std::net::{SocketAddr, UdpSocket};
    use std::os::fd::AsRawFd;

    use super::MAX_DATAGRAM_BYTES;

    /// Datagrams per `recvmmsg` call.
    const DATAGRAMS_PER_CALL: usize = 32;

    /// Buffers and headers reused by every call.
    pub(super) struct ReceiveBatch {
        buffers: Vec<Vec<u8>>,
        names: Vec<libc::sockaddr_storage>,
        lengths: Vec<(usize, bool)>,
    }

    impl ReceiveBatch {
        pub(super) fn new() -> ReceiveBatch {
            ReceiveBatch {
                buffers: vec![vec![0; MAX_DATAGRAM_BYTES]; DATAGRAMS_PER_CALL],
                // SAFETY: sockaddr_storage is a plain C struct; all-zero is valid.
                names: vec![unsafe { std::mem::zeroed() }; DATAGRAMS_PER_CALL],
                lengths: vec![(0, false); DATAGRAMS_PER_CALL],
            }
        }

        /// Waits (up to the socket's read timeout) and takes what has arrived.
        pub(super) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            // SAFETY: iovec and mmsghdr are plain C structs; all-zero is valid.
            let mut iovecs: [libc::iovec; DATAGRAMS_PER_CALL] = unsafe { std::mem::zeroed() };
            let mut headers: [libc::mmsghdr; DATAGRAMS_PER_CALL] = unsafe { std::mem::zeroed() };
            for i in 0..DATAGRAMS_PER_CALL {
                iovecs[i].iov_base = self.buffers[i].as_mut_ptr().cast();
                iovecs[i].iov_len = self.buffers[i].len();
                headers[i].msg_hdr.msg_iov = &mut iovecs[i];
                headers[i].msg_hdr.msg_iovlen = 1;
                headers[i].msg_hdr.msg_name =
                    (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
                headers[i].msg_hdr.msg_namelen =
                    std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            }
            // SAFETY: every header points at an iovec and a name buffer above, and
            // each iovec at a buffer of `iov_len` octets; all outlive the call. The
            // socket's read timeout bounds the wait for the first datagram; the
            // rest are taken without waiting.
            let received = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    headers.as_mut_ptr(),
                    DATAGRAMS_PER_CALL as libc::c_uint,
                    libc::MSG_WAITFORONE,
                    std::ptr::null_mut(),
                )
            };
            if received < 0 {
                return Err(io::Error::last_os_error());
            }
            let received = received as usize;
            for (i, header) in headers[..received].iter().enumerate() {
                let truncated = header.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
                self.lengths[i] = (header.msg_len as usize, truncated);
            }
            Ok(received)
        }

        /// The `i`th datagram of the last receive: sender, octets, whether cut short.
        pub(super) fn datagram(&self, i: usize) -> (SocketAddr, &[u8], bool) {
            let (len, truncated) = self.lengths[i];
            let len = len.min(MAX_DATAGRAM_BYTES);
            (
                to_socket_addr(&self.names[i]),
                &self.buffers[i][..len],
                truncated,
            )
        }
    }

    fn to_socket_addr(name: &libc::sockaddr_storage) -> SocketAddr {
        match libc::c_int::from(name.ss_family) {
            libc::AF_INET6 => {
                // SAFETY: the family says the storage holds a sockaddr_in6, which it
                // is large and aligned enough for.
                let v6 = unsafe {
                    &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
                };
                SocketAddr::new(
                    std::net::Ipv6Addr::from(v6.sin6_addr.s6_addr).into(),
                    u16::from_be(v6.sin6_port),
                )
            }
            _ => {
                // SAFETY: as above, for sockaddr_in (the socket is IPv4 otherwise).
                let v4 = unsafe {
                    &*(name as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>()
                };
                SocketAddr::new(
                    std::net::Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)).into(),
                    u16::from_be(v4.sin_port),
                )
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod batch {
    //! One `recv_from` per datagram where `recvmmsg` does not exist.

    use std::io;
    use std::net::{SocketAddr, UdpSocket};

    use super::MAX_DATAGRAM_BYTES;

    pub(super) struct ReceiveBatch {
        buffer: Vec<u8>,
        last: Option<(SocketAddr, usize)>,
    }

    impl ReceiveBatch {
        pub(super) fn new() -> ReceiveBatch {
            ReceiveBatch {
                buffer: vec![0; MAX_DATAGRAM_BYTES],
                last: None,
            }
        }

        pub(super) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            let (len, from) = socket.recv_from(&mut self.buffer)?;
            self.last = Some((from, len));
            Ok(1)
        }

        pub(super) fn datagram(&self, _i: usize) -> (SocketAddr, &[u8], bool) {
            let (from, len) = self.last.unwrap_or((([0, 0, 0, 0], 0).into(), 0));
            (from, &self.buffer[..len], false)
        }
    }
}

use batch::ReceiveBatch;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::ExportProtocol;
    use crate::flow::{Address, Flow, Protocol, TcpFlags};
    use crate::net::{CollectorConfig, CollectorSender, ExportConfig};
    use std::time::Instant;

    fn flows(count: u32, now_ms: u64) -> Vec<Flow> {
        (0..count)
            .map(|i| Flow {
                start_ms: now_ms as i64 - 2_000,
                duration_ms: 1_000,
                protocol: Protocol::UDP,
                src: Address::V4(std::net::Ipv4Addr::from(0x0a00_0000 | i)),
                dst: Address::V4(std::net::Ipv4Addr::new(192, 0, 2, 53)),
                src_port: (i % 60_000) as u16 + 1024,
                dst_port: 53,
                packets: 1,
                bytes: 80,
                tcp_flags: TcpFlags(0),
                tos: 0,
                label: None,
            })
            .collect()
    }

    fn wait_for(sink: &CountingSink, records: u64) -> SinkCounts {
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink.counts().data_records < records && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        sink.counts()
    }

    #[test]
    fn the_sink_counts_what_a_collector_sender_sends() {
        let sink = CountingSink::start("127.0.0.1:0".parse().unwrap(), 4 << 20).unwrap();
        for protocol in [ExportProtocol::Ipfix, ExportProtocol::Netflow9] {
            let before = sink.counts();
            let config = CollectorConfig::udp(sink.local_addr().to_string(), protocol);
            let now_ms = crate::net::unix_now_ms();
            let mut sender =
                CollectorSender::open(&config, "collector[0]", &ExportConfig::default(), now_ms)
                    .unwrap();
            sender.send(&flows(3_000, now_ms), now_ms);
            let sent = sender.stats().snapshot();
            let counts = wait_for(&sink, before.data_records + 3_000).since(&before);
            assert_eq!(counts.data_records, 3_000, "{protocol:?}: {counts:?}");
            assert_eq!(counts.datagrams, sent.messages_sent, "{protocol:?}");
            assert_eq!(counts.malformed + counts.unknown_template_sets, 0);
            assert_eq!(counts.sequence_gap, 0);
        }
        let total = sink.stop();
        assert_eq!(total.data_records, 6_000);
    }

    #[test]
    fn garbage_is_counted_as_malformed() {
        let sink = CountingSink::start("127.0.0.1:0".parse().unwrap(), 0).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        client
            .send_to(b"not an export message", sink.local_addr())
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while sink.counts().datagrams == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let counts = sink.stop();
        assert_eq!((counts.datagrams, counts.malformed), (1, 1), "{counts:?}");
        assert_eq!(counts.data_records, 0);
    }
}
