//! IPFIX over TCP (RFC 7011 section 10.4) against a collector that goes down
//! and comes back: the exporter reconnects, no faster than its interval, and
//! every connection starts with the templates.

mod net_support;

use std::io::{ErrorKind, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use flowgen::export::ExportProtocol;
use flowgen::flow::{Address, Flow, Protocol, TcpFlags};
use flowgen::net::{CollectorConfig, ExportConfig, ExportPipeline, Pacing, Transport};
use flowgen::pace::PaceSettings;
use net_support::RecordCounter;

fn numbered_flow(n: u16) -> Flow {
    Flow {
        start_ms: 0,
        duration_ms: 5,
        protocol: Protocol::UDP,
        src: Address::V4("10.7.0.1".parse().unwrap()),
        dst: Address::V4("10.7.0.2".parse().unwrap()),
        src_port: n,
        dst_port: 53,
        packets: 1,
        bytes: 80,
        tcp_flags: TcpFlags(0),
        tos: 0,
        label: None,
    }
}

/// What one connection carried.
#[derive(Debug, Default)]
struct Session {
    messages: usize,
    records: usize,
    first_had_templates: bool,
    messages_with_templates: usize,
}

/// Reads IPFIX messages (each prefixed by its own length field) until EOF or
/// `until`; every data set must be decodable with the templates of this
/// connection alone.
fn read_session(mut stream: TcpStream, until: Option<Instant>) -> Session {
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut counter = RecordCounter::default();
    let mut session = Session::default();
    let mut pending = Vec::new();
    let mut buf = [0u8; 65_536];
    loop {
        if until.is_some_and(|t| Instant::now() >= t) {
            return session;
        }
        match stream.read(&mut buf) {
            Ok(0) => return session,
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => continue,
            Err(e) => panic!("collector read failed: {e}"),
        }
        while pending.len() >= 4 {
            let len = usize::from(u16::from_be_bytes([pending[2], pending[3]]));
            assert!(len >= 16, "message length {len}");
            if pending.len() < len {
                break;
            }
            let message: Vec<u8> = pending.drain(..len).collect();
            let counted = counter
                .count(&message)
                .unwrap_or_else(|e| panic!("malformed: {e}"));
            assert_eq!(
                counted.unknown_sets, 0,
                "data before its template on this connection"
            );
            if session.messages == 0 {
                session.first_had_templates = counted.templates > 0;
            }
            session.messages_with_templates += usize::from(counted.templates > 0);
            session.messages += 1;
            session.records += counted.records;
        }
    }
}

fn accept_within(listener: &TcpListener, timeout: Duration) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + timeout;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("no connection from the exporter: {e}"),
        }
    }
}

#[test]
fn a_restarted_tcp_collector_gets_templates_first_on_the_new_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    let collector = CollectorConfig {
        transport: Transport::Tcp,
        ..CollectorConfig::udp(address.to_string(), ExportProtocol::Ipfix)
    };
    let reconnect_ms = 200;
    // The UDP refresh settings (by time and every 100 messages) must not apply.
    let export = ExportConfig {
        tcp_reconnect_interval_ms: reconnect_ms,
        template_refresh_s: 1,
        template_refresh_messages: 100,
        ..ExportConfig::default()
    };
    let (input, output) = crossbeam_channel::bounded(4);
    let pipeline = ExportPipeline::spawn(
        &[collector],
        &export,
        Pacing::Rate(PaceSettings::rate(5_000)),
        output,
    )
    .unwrap();
    let feeder = std::thread::spawn(move || {
        for start in (0..10_000u16).step_by(250) {
            input
                .send((start..start + 250).map(numbered_flow).collect())
                .unwrap();
        }
    });

    // First life of the collector: half a second, then it goes away entirely.
    let first = read_session(
        accept_within(&listener, Duration::from_secs(3)),
        Some(Instant::now() + Duration::from_millis(500)),
    );
    drop(listener);
    std::thread::sleep(Duration::from_millis(400));
    let listener = TcpListener::bind(address).unwrap();
    let restarted_at = Instant::now();
    let stream = accept_within(&listener, Duration::from_secs(3));
    let reconnect_delay = restarted_at.elapsed();
    let reader = std::thread::spawn(move || read_session(stream, None));

    feeder.join().unwrap();
    let report = pipeline.join();
    let second = reader.join().unwrap();
    let counters = report.collectors[0].1;

    assert!(first.first_had_templates && first.messages > 0, "{first:?}");
    assert!(
        second.first_had_templates,
        "templates first after reconnecting: {second:?}"
    );
    assert!(second.records >= 4_000, "{second:?}");
    assert_eq!(counters.reconnects, 1, "{counters:?}");
    assert!(
        counters.send_errors >= 1,
        "the outage is counted: {counters:?}"
    );
    assert!(
        counters.records_dropped > 0,
        "flows during the outage are counted lost: {counters:?}"
    );
    assert!(
        reconnect_delay <= Duration::from_millis(reconnect_ms + 300),
        "reconnected {reconnect_delay:?} after the collector came back"
    );
    assert!((first.records + second.records) as u64 <= counters.records_sent);
}

#[test]
fn reconnect_attempts_are_spaced_by_the_interval() {
    // Nothing listens: every attempt is refused at once.
    let address = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let collector = CollectorConfig {
        transport: Transport::Tcp,
        ..CollectorConfig::udp(address.to_string(), ExportProtocol::Ipfix)
    };
    let export = ExportConfig {
        tcp_reconnect_interval_ms: 250,
        ..ExportConfig::default()
    };
    let (input, output) = crossbeam_channel::bounded(4);
    let pipeline = ExportPipeline::spawn(
        &[collector],
        &export,
        Pacing::Rate(PaceSettings::rate(10_000)),
        output,
    )
    .unwrap();
    let started = Instant::now();
    for start in (0..10_000u16).step_by(500) {
        input
            .send((start..start + 500).map(numbered_flow).collect())
            .unwrap();
    }
    drop(input);
    let report = pipeline.join();
    let elapsed_ms = started.elapsed().as_millis() as u64;
    let counters = report.collectors[0].1;

    // One attempt at the start and one per interval after: refused each time.
    let most_attempts = 1 + elapsed_ms / 250;
    assert!(
        (1..=most_attempts).contains(&counters.send_errors),
        "{} attempts in {elapsed_ms} ms",
        counters.send_errors
    );
    assert_eq!(counters.records_dropped, 10_000);
    assert_eq!(counters.records_sent, 0);
}
