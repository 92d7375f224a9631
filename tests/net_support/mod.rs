//! Helpers for the export tests: real collectors started on 127.0.0.1, a
//! counting sink with its own small decoder, and the test input file.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::{Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flowgen::address_plan::{AddressPlan, AddressPlanConfig};
use flowgen::data::{CiddsWriter, FlowReader, ReadOptions};
use flowgen::flow::{Address, Flow, Label, Protocol, TcpFlags};

#[path = "../common/mod.rs"]
mod common;

/// Whether `binary` is on the PATH; prints why a test is skipped when not.
pub fn have(binary: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).any(|dir| dir.join(binary).is_file()))
        .unwrap_or(false);
    if !found {
        eprintln!("skipping: `{binary}` is not installed (scripts/setup installs it)");
    }
    found
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free udp port")
}

/// Waits until something has bound UDP `port` (per /proc/net/udp), up to 5 s.
pub fn wait_for_udp_listener(port: u16) {
    let needle = format!(":{port:04X} ");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let bound = std::fs::read_to_string("/proc/net/udp").is_ok_and(|t| t.contains(&needle));
        if bound {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("nothing bound udp port {port} within 5 s");
}

/// Waits (up to 2 s) until the socket bound to UDP `port` has no datagram
/// waiting, then a little longer for the last one to be processed.
pub fn wait_for_udp_drain(port: u16) {
    let needle = format!(":{port:04X} ");
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let text = std::fs::read_to_string("/proc/net/udp").unwrap_or_default();
        // Fields: sl local_address rem_address st tx_queue:rx_queue ...
        let queued = text
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|a| a.ends_with(needle.trim_end()))
            })
            .filter_map(|l| {
                l.split_whitespace()
                    .nth(4)?
                    .split_once(':')
                    .map(|(_, rx)| rx.to_string())
            })
            .any(|rx| u64::from_str_radix(&rx, 16).unwrap_or(0) > 0);
        if !queued {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
}

/// Stops a child with SIGTERM (collectors flush on it) and waits for it.
pub fn terminate(child: &mut Child) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety concerns.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// One flow as nfdump printed it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Stored {
    pub src: String,
    pub dst: String,
    pub src_port: u16,
    pub dst_port: u16,
    pub protocol: u8,
    pub tcp_flags: u8,
    pub tos: u8,
    pub packets: u64,
    pub bytes: u64,
    pub duration_ms: i64,
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Stored {
    /// Everything but the absolute times, for comparing with the file.
    pub fn key(&self) -> Stored {
        Stored {
            start_ms: 0,
            end_ms: 0,
            ..self.clone()
        }
    }

    /// What a flow of the file should look like once stored (times left 0).
    pub fn expected(flow: &Flow) -> Stored {
        Stored {
            src: flow.src.to_string(),
            dst: flow.dst.to_string(),
            src_port: flow.src_port,
            dst_port: flow.dst_port,
            protocol: flow.protocol.0,
            tcp_flags: flow.tcp_flags.0,
            tos: flow.tos,
            packets: flow.packets,
            bytes: flow.bytes,
            duration_ms: flow.duration_ms as i64,
            start_ms: 0,
            end_ms: 0,
        }
    }
}

/// nfdump's `nfcapd` listening on 127.0.0.1, storing into a temporary folder.
pub struct Nfcapd {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Nfcapd {
    /// Starts nfcapd on `port` and waits until it listens.
    pub fn start(port: u16) -> Nfcapd {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("nfcapd")
            .args(["-p", &port.to_string(), "-b", "127.0.0.1", "-l"])
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nfcapd starts");
        wait_for_udp_listener(port);
        Nfcapd { child, dir, port }
    }

    /// Stops nfcapd (it writes its file on SIGTERM) once it has taken every
    /// datagram from its socket, and reads back every flow.
    pub fn stop_and_read(mut self) -> Vec<Stored> {
        wait_for_udp_drain(self.port);
        terminate(&mut self.child);
        read_nfdump(self.dir.path())
    }
}

impl Drop for Nfcapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nfdump -R DIR` in a fixed, millisecond-precise format, parsed.
pub fn read_nfdump(dir: &Path) -> Vec<Stored> {
    let output = Command::new("nfdump")
        .env("TZ", "UTC")
        .arg("-R")
        .arg(dir)
        .args([
            "-q",
            "-N",
            "-6",
            "-o",
            "fmt:%ts|%te|%td|%sa|%da|%sp|%dp|%pr|%flg|%tos|%pkt|%byt",
        ])
        .output()
        .expect("nfdump runs");
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .filter(|l| l.contains('|'))
        .map(|line| {
            parse_nfdump_line(line).unwrap_or_else(|| panic!("unparsable nfdump line {line:?}"))
        })
        .collect()
}

fn parse_nfdump_line(line: &str) -> Option<Stored> {
    let f: Vec<&str> = line.split('|').map(str::trim).collect();
    if f.len() != 12 {
        return None;
    }
    let time = |s: &str| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S%.3f")
            .ok()
            .map(|t| t.and_utc().timestamp_millis())
    };
    let protocol: u8 = f[7].parse().ok()?;
    // nfdump prints an ICMP "port" as type.code.
    let dst_port = match f[6].split_once('.') {
        Some((t, c)) => t.parse::<u16>().ok()? * 256 + c.parse::<u16>().ok()?,
        None => f[6].parse().ok()?,
    };
    let duration_ms = (f[2].parse::<f64>().ok()? * 1000.0).round() as i64;
    Some(Stored {
        start_ms: time(f[0])?,
        end_ms: time(f[1])?,
        duration_ms,
        src: f[3].to_string(),
        dst: f[4].to_string(),
        src_port: f[5].parse().ok()?,
        dst_port,
        protocol,
        tcp_flags: parse_nfdump_flags(f[8])?,
        tos: f[9].parse().ok()?,
        packets: f[10].parse().ok()?,
        bytes: f[11].parse().ok()?,
    })
}

/// nfdump's eight flag characters, CWR first, `.` for unset.
fn parse_nfdump_flags(text: &str) -> Option<u8> {
    if text.len() != 8 {
        return None;
    }
    Some(
        text.bytes()
            .enumerate()
            .filter(|&(_, c)| c != b'.')
            .fold(0u8, |acc, (i, _)| acc | (0x80 >> i)),
    )
}

/// Writes the test input: the first `real_rows` flows of the CIDDS-001 sample,
/// its ICMP flows, and edge cases the sample lacks (ToS, counters beyond 32
/// bits, CWR and ECE, IPv6, ICMP and ICMPv6 echo), as CIDDS-001 CSV with a `Tos` column.
pub fn write_test_input(dir: &Path, real_rows: usize) -> PathBuf {
    let sample = common::cidds_sample();
    let flows: Vec<Flow> = FlowReader::open(&sample, ReadOptions::default())
        .unwrap_or_else(|e| panic!("{e}"))
        .map(|f| f.unwrap_or_else(|e| panic!("{e}")))
        .enumerate()
        .filter(|(i, f)| *i < real_rows || f.protocol.is_icmp())
        .map(|(_, f)| f)
        .collect();
    let path = dir.join("replay-input.csv");
    let file = std::fs::File::create(&path).unwrap();
    let mut writer = CiddsWriter::with_labels(std::io::BufWriter::new(file)).unwrap();
    for flow in flows.iter().chain(edge_flows(flows[0].start_ms).iter()) {
        writer.write(flow).unwrap();
    }
    writer.into_inner().unwrap().flush().unwrap();
    path
}

fn edge_flows(start_ms: i64) -> Vec<Flow> {
    let base = Flow {
        start_ms,
        duration_ms: 1_500,
        protocol: Protocol::TCP,
        src: Address::V4("10.1.2.3".parse().unwrap()),
        dst: Address::V4("10.4.5.6".parse().unwrap()),
        src_port: 40_000,
        dst_port: 443,
        packets: 3_000_000_000,
        bytes: 5_000_000_000,
        tcp_flags: TcpFlags(0xd3),
        tos: 0xb8,
        label: Some(Label {
            class: "normal".into(),
            attack_type: "---".into(),
            attack_id: "---".into(),
            attack_description: "---".into(),
        }),
    };
    let v6 = Flow {
        protocol: Protocol::UDP,
        src: Address::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap()),
        dst: Address::V6("2001:db8:0:1::53".parse::<Ipv6Addr>().unwrap()),
        src_port: 5353,
        dst_port: 53,
        packets: 2,
        bytes: 180,
        tcp_flags: TcpFlags(0),
        tos: 0x28,
        duration_ms: 3_250,
        ..base.clone()
    };
    let echo = Flow {
        protocol: Protocol::ICMP,
        src_port: 0,
        dst_port: 8 * 256,
        packets: 4,
        bytes: 336,
        tcp_flags: TcpFlags(0),
        tos: 0,
        duration_ms: 3_003,
        ..base.clone()
    };
    // ICMPv6 echo request (type 128) under the IPv6 template.
    let echo_v6 = Flow {
        protocol: Protocol::ICMPV6,
        src_port: 0,
        dst_port: 128 * 256,
        ..v6.clone()
    };
    vec![base, v6, echo, echo_v6]
}

/// The flows of `path` as a collector should store them, in file order.
pub fn expected_flows(path: &Path) -> Vec<Stored> {
    let plan = AddressPlan::new(&AddressPlanConfig::default()).unwrap();
    FlowReader::open(path, ReadOptions::default())
        .unwrap()
        .map(|f| {
            let mut flow = f.unwrap();
            plan.apply(&mut flow);
            Stored::expected(&flow)
        })
        .collect()
}

/// Sorted keys (times left out), for multiset comparison.
pub fn sorted_keys(flows: &[Stored]) -> Vec<Stored> {
    let mut keys: Vec<Stored> = flows.iter().map(Stored::key).collect();
    keys.sort();
    keys
}

/// Asserts that two sets of flows agree in every field but the absolute times,
/// naming the first few differences.
pub fn assert_same_flows(got: &[Stored], want: &[Stored]) {
    let (got, want) = (sorted_keys(got), sorted_keys(want));
    if got == want {
        return;
    }
    let missing: Vec<&Stored> = want.iter().filter(|w| !got.contains(w)).take(5).collect();
    let extra: Vec<&Stored> = got.iter().filter(|g| !want.contains(g)).take(5).collect();
    panic!(
        "{} flows stored, {} expected\nmissing: {missing:#?}\nunexpected: {extra:#?}",
        got.len(),
        want.len()
    );
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// A datagram as received: arrival time, sender, bytes.
pub type Datagram = (Instant, SocketAddr, Vec<u8>);

/// A UDP sink on 127.0.0.1 that keeps every datagram with its arrival time.
pub struct Sink {
    pub address: SocketAddr,
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Datagram>>>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    /// Binds a free port and starts receiving.
    pub fn start() -> Sink {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let address = socket.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, received) = (Arc::clone(&stop), Arc::clone(&received));
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65_536];
                loop {
                    match socket.recv_from(&mut buf) {
                        Ok((len, from)) => received.lock().unwrap().push((
                            Instant::now(),
                            from,
                            buf[..len].to_vec(),
                        )),
                        // Asked to stop and nothing more arrives: drained.
                        Err(_) if stop.load(Ordering::Relaxed) => break,
                        Err(_) => {}
                    }
                }
            })
        };
        Sink {
            address,
            stop,
            received,
            thread: Some(thread),
        }
    }

    /// Stops and returns what arrived.
    pub fn stop(mut self) -> Vec<Datagram> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
        std::mem::take(&mut *self.received.lock().unwrap())
    }
}

/// A small template-driven decoder, independent of flowgen's encoder: counts
/// the data records of IPFIX (RFC 7011) and NetFlow v9 (RFC 3954) messages.
#[derive(Default)]
pub struct RecordCounter {
    record_len: HashMap<u16, usize>,
}

/// What [`RecordCounter::count`] found in one message.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Counted {
    pub records: usize,
    pub templates: usize,
    /// Data sets whose template had not been seen.
    pub unknown_sets: usize,
}

impl RecordCounter {
    /// Decodes one message; errors say what is malformed.
    pub fn count(&mut self, message: &[u8]) -> Result<Counted, String> {
        let be16 = |at: usize| -> Result<u16, String> {
            message
                .get(at..at + 2)
                .map(|b| u16::from_be_bytes([b[0], b[1]]))
                .ok_or_else(|| format!("truncated at {at}"))
        };
        let (header_len, template_set_id) = match be16(0)? {
            10 => {
                if usize::from(be16(2)?) != message.len() {
                    return Err("ipfix length field differs from the message".into());
                }
                (16, 2)
            }
            9 => (20, 0),
            v => return Err(format!("version {v}")),
        };
        let mut counted = Counted::default();
        let mut at = header_len;
        while at < message.len() {
            let set_id = be16(at)?;
            let set_len = usize::from(be16(at + 2)?);
            if set_len < 4 || at + set_len > message.len() {
                return Err(format!("set at {at} has length {set_len}"));
            }
            let body = at + 4..at + set_len;
            if set_id == template_set_id {
                let mut t = body.start;
                while t + 4 <= body.end {
                    let id = be16(t)?;
                    let fields = usize::from(be16(t + 2)?);
                    let mut len = 0;
                    let mut f = t + 4;
                    for _ in 0..fields {
                        let ie = be16(f)?;
                        len += usize::from(be16(f + 2)?);
                        f += if ie & 0x8000 != 0 && template_set_id == 2 {
                            8
                        } else {
                            4
                        };
                    }
                    self.record_len.insert(id, len);
                    counted.templates += 1;
                    t = f;
                }
            } else if set_id >= 256 {
                match self.record_len.get(&set_id) {
                    Some(&len) if len > 0 => counted.records += (set_len - 4) / len,
                    _ => counted.unknown_sets += 1,
                }
            }
            at += set_len;
        }
        Ok(counted)
    }
}
