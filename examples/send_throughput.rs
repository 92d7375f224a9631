//! Measures how many flows per second the export path delivers into a UDP
//! sink on 127.0.0.1: the bare sender on one thread, the whole pipeline
//! unpaced, and the pipeline paced at 1 M flows/s. Prints numbers; a
//! benchmark, not a test.
//!
//! `cargo run --release --example send_throughput [seconds per run]`

use std::net::UdpSocket;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use flowgen::export::ExportProtocol;
use flowgen::flow::{Address, Flow, Protocol, TcpFlags};
use flowgen::net::{
    unix_now_ms, CollectorConfig, CollectorSender, ExportConfig, ExportPipeline, Pacing,
};
use flowgen::pace::PaceSettings;

/// Counts datagrams and octets arriving on a socket until stopped.
struct Sink {
    address: String,
    stop: Arc<AtomicBool>,
    datagrams: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<()>,
}

impl Sink {
    fn start() -> Sink {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind a sink");
        force_receive_buffer(&socket, 64 << 20);
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let address = socket.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let datagrams = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, datagrams) = (Arc::clone(&stop), Arc::clone(&datagrams));
            std::thread::spawn(move || {
                let mut buf = [0u8; 65_536];
                loop {
                    match socket.recv(&mut buf) {
                        Ok(_) => {
                            datagrams.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) if stop.load(Ordering::Relaxed) => return,
                        Err(_) => {}
                    }
                }
            })
        };
        Sink {
            address,
            stop,
            datagrams,
            thread,
        }
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        self.datagrams.load(Ordering::Relaxed)
    }
}

/// SO_RCVBUFFORCE (root) so the sink's buffer, not the benchmark, is never the limit.
fn force_receive_buffer(socket: &UdpSocket, bytes: libc::c_int) {
    // SAFETY: setsockopt with a pointer to a live c_int of the size passed.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

fn sample_flows(count: usize) -> Vec<Flow> {
    (0..count)
        .map(|i| Flow {
            start_ms: 0,
            duration_ms: (i % 5000) as u64,
            protocol: if i % 4 == 0 {
                Protocol::UDP
            } else {
                Protocol::TCP
            },
            src: Address::V4(std::net::Ipv4Addr::from(0xc0a8_0000 | (i as u32 & 0xffff))),
            dst: Address::V4(std::net::Ipv4Addr::from(
                0x1400_0000 | ((i as u32).wrapping_mul(2_654_435_761) >> 8),
            )),
            src_port: 1024 + (i % 60_000) as u16,
            dst_port: [80, 443, 53, 22][i % 4],
            packets: 1 + (i % 40) as u64,
            bytes: 60 + (i % 40_000) as u64,
            tcp_flags: TcpFlags(0x1b),
            tos: 0,
            label: None,
        })
        .collect()
}

fn report(name: &str, flows: u64, datagrams_sent: u64, datagrams_received: u64, elapsed: Duration) {
    println!(
        "{name:<44} {:>10.0} flows/s  ({flows} flows, {datagrams_sent} messages sent, {:.2} % received)",
        flows as f64 / elapsed.as_secs_f64(),
        100.0 * datagrams_received as f64 / datagrams_sent.max(1) as f64,
    );
}

fn bare_sender(protocol: ExportProtocol, seconds: f64) {
    let sink = Sink::start();
    let config = CollectorConfig::udp(sink.address.clone(), protocol);
    let mut sender =
        CollectorSender::open(&config, "bench", &ExportConfig::default(), unix_now_ms()).unwrap();
    let flows = sample_flows(4096);
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        sender.send(&flows, unix_now_ms());
    }
    let elapsed = started.elapsed();
    let counters = sender.stats().snapshot();
    sender.finish(Duration::from_secs(1));
    std::thread::sleep(Duration::from_millis(100));
    let received = sink.stop();
    report(
        &format!("sender, one thread, {protocol:?}"),
        counters.records_sent,
        counters.messages_sent,
        received,
        elapsed,
    );
}

fn pipeline(pacing: Pacing, name: &str, seconds: f64) {
    let sink = Sink::start();
    let config = CollectorConfig::udp(sink.address.clone(), ExportProtocol::Ipfix);
    let (input, output) = crossbeam_channel::bounded(8);
    let pipeline =
        ExportPipeline::spawn(&[config], &ExportConfig::default(), pacing, output).unwrap();
    let flows = sample_flows(4096);
    let started = Instant::now();
    while started.elapsed().as_secs_f64() < seconds {
        if input.send(flows.clone()).is_err() {
            break;
        }
    }
    drop(input);
    let report_counters = pipeline.join();
    let elapsed = started.elapsed();
    std::thread::sleep(Duration::from_millis(100));
    let received = sink.stop();
    let counters = report_counters.collectors[0].1;
    report(
        name,
        counters.records_sent,
        counters.messages_sent,
        received,
        elapsed,
    );
    if report_counters.pipeline.shortfall_flows > 0 || counters.records_dropped > 0 {
        println!(
            "{:<44} shortfall {} flows, dropped {} flows",
            "", report_counters.pipeline.shortfall_flows, counters.records_dropped
        );
    }
}

fn main() {
    let seconds: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    println!(
        "{} cpus; each run {seconds} s; IPv4 flows, 1452-octet messages",
        num_cpus()
    );
    bare_sender(ExportProtocol::Ipfix, seconds);
    bare_sender(ExportProtocol::Netflow9, seconds);
    pipeline(
        Pacing::Rate(PaceSettings::rate(0)),
        "pipeline, unpaced (feeder + pace + sender)",
        seconds,
    );
    pipeline(
        Pacing::Rate(PaceSettings::rate(1_000_000)),
        "pipeline, paced at 1 M flows/s",
        seconds,
    );
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}
