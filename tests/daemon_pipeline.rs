//! The data path driven as a library (as the benchmark does): any generator,
//! paced into a UDP socket on 127.0.0.1, stopped cleanly.

mod daemon_common;

use std::collections::HashMap;
use std::net::{Ipv4Addr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use flowgen::daemon::config::Settings;
use flowgen::daemon::metrics::Metrics;
use flowgen::daemon::pipeline::{LoadedModel, Pipeline};
use flowgen::export::ExportProtocol;
use flowgen::flow::{Address, Flow, Protocol, TcpFlags};
use flowgen::model::bundle::BundleError;
use flowgen::model::FlowGenerator;
use flowgen::net::CollectorConfig;

/// IPv4 UDP flows lasting 250 ms, stamped in 2017 as a model trained on old data would.
struct Fixed;

impl FlowGenerator for Fixed {
    fn generate(&mut self, count: usize, out: &mut Vec<Flow>) -> Result<(), BundleError> {
        out.extend((0..count).map(|i| Flow {
            start_ms: 1_489_000_000_000,
            duration_ms: 250,
            protocol: Protocol::UDP,
            src: Address::V4(Ipv4Addr::new(10, 0, 0, (i % 200) as u8 + 1)),
            dst: Address::V4(Ipv4Addr::new(10, 0, 1, 53)),
            src_port: 40_000,
            dst_port: 53,
            packets: 1,
            bytes: 80,
            tcp_flags: TcpFlags(0),
            tos: 0,
            label: None,
        }));
        Ok(())
    }
}

#[test]
fn a_paced_pipeline_delivers_the_rate_and_stops() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let address = socket.local_addr().unwrap().to_string();

    let mut settings = Settings::default();
    settings.rate.flows_per_s = 4000.0;
    settings.model.batch = 512;
    settings.collector = vec![CollectorConfig::udp(address, ExportProtocol::Ipfix)];
    let model = LoadedModel {
        generators: vec![Box::new(Fixed)],
        day_profile: None,
        path: "fixed".into(),
    };
    let metrics = Arc::new(Metrics::new());
    let (failures, _failed) = tokio::sync::mpsc::channel(1);
    let pipeline = Pipeline::start(&settings, model, metrics.clone(), failures).unwrap();

    let mut templates = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut per_window = Vec::new();
    let started = Instant::now();
    let mut window = (Instant::now(), 0u32);
    let mut export_times = Vec::new();
    while started.elapsed() < Duration::from_secs(4) {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = daemon_common::parse_ipfix(&buf[..n], &mut templates).unwrap();
            window.1 += message.data_records;
            export_times.push(message.export_time_s);
        }
        if window.0.elapsed() >= Duration::from_secs(1) {
            per_window.push(window.1);
            window = (Instant::now(), 0);
        }
    }
    let report = pipeline.stop();

    // The first second includes start-up; the rest hold the rate within 5 %.
    for &flows in &per_window[1..] {
        assert!((3800..=4200).contains(&flows), "{per_window:?}");
    }
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    assert!(export_times.iter().all(|&t| t + 10 >= now_s && t <= now_s));
    assert!(report.collectors[0].1.records_sent > 12_000, "{report:?}");
    assert!(metrics.encode().contains("flowgen_flows_generated_total"));
}
