//! `flowgen run` with an ONNX (E-WGAN-GP) bundle: it streams, and a missing
//! ONNX Runtime or a generator whose output width does not match the bundle
//! is a clear error and a non-zero exit, never a panic.

mod daemon_common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon_common::{ewgan_bundle, parse_ipfix, Daemon};

fn config_text(model: &Path, port: u16, extra_model_keys: &str) -> String {
    format!(
        "[model]\npath = {model:?}\nbatch = 512\n{extra_model_keys}\n\
         [rate]\nflows_per_s = 2000\n\
         [[collector]]\naddress = \"127.0.0.1:{port}\"\n\
         [metrics]\nlisten = \"\"\n"
    )
}

fn run_to_exit(model: &Path, extra: &str) -> (Option<i32>, String) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = socket.local_addr().unwrap().port();
    let (dir, path) = daemon_common::write_config(&config_text(model, port, extra));
    let mut daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[],
        dir.path().join("log"),
    );
    let status = daemon
        .wait_for_exit(Duration::from_secs(20))
        .expect("the daemon exits");
    (status.code(), daemon.log_text())
}

#[test]
fn an_ewgan_bundle_streams_decodable_flows() {
    let (bundle_dir, bundle) = ewgan_bundle();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let (_dir, path) = daemon_common::write_config(&config_text(&bundle, port, ""));
    let mut daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[],
        bundle_dir.path().join("log"),
    );
    let mut templates = HashMap::new();
    let mut records = 0;
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && records < 2000 {
        if let Ok(n) = socket.recv(&mut buf) {
            records += parse_ipfix(&buf[..n], &mut templates)
                .expect("IPFIX")
                .data_records;
        }
    }
    assert!(
        records >= 2000,
        "{records} records; log:\n{}",
        daemon.log_text()
    );
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_for_exit(Duration::from_secs(5));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        daemon.log_text()
    );
}

#[test]
fn a_missing_onnx_runtime_is_a_clear_error() {
    let (_bundle_dir, bundle) = ewgan_bundle();

    // Configured to a path that does not exist: the configuration check catches it.
    let (code, log) = run_to_exit(
        &bundle,
        "onnxruntime = \"/nonexistent/libonnxruntime.so.1.31.1\"",
    );
    assert_ne!(code, Some(0), "{log}");
    assert!(
        log.contains("model.onnxruntime") && log.contains("/nonexistent"),
        "{log}"
    );

    // Configured to a file that is not the library: loading it fails, with the path.
    let fake = bundle.join("libonnxruntime.so.1.31.1");
    std::fs::write(&fake, b"not a shared library").unwrap();
    let extra = format!("onnxruntime = {fake:?}");
    let (code, log) = run_to_exit(&bundle, &extra);
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains(fake.to_str().unwrap()), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_generator_whose_width_differs_from_the_bundle_is_a_clear_error() {
    let (_bundle_dir, bundle) = ewgan_bundle();
    let (_other_dir, other) = daemon_common::ewgan_bundle_with_embedding_dim(4);
    // The generator of a bundle with a different layout, next to this bundle's codebook.
    std::fs::copy(other.join("generator.onnx"), bundle.join("generator.onnx")).unwrap();
    let (code, log) = run_to_exit(&bundle, "");
    assert_ne!(code, Some(0), "{log}");
    assert!(log.contains("generator.onnx"), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

/// The systemd unit sets `MemoryDenyWriteExecute=yes`; the kernel's own W^X
/// switch (`PR_SET_MDWE`, Linux 6.3+, kept across exec) refuses the same
/// mappings, so a daemon started under it shows whether ONNX Runtime needs them.
#[test]
fn onnx_inference_runs_with_writable_executable_memory_denied() {
    use std::os::unix::process::CommandExt;
    const PR_SET_MDWE: libc::c_int = 65;
    const PR_MDWE_REFUSE_EXEC_GAIN: libc::c_ulong = 1;
    // SAFETY: prctl(PR_GET_MDWE) only reads this process's flags.
    let supported = unsafe { libc::prctl(66, 0, 0, 0, 0) } >= 0;
    if !supported {
        eprintln!("kernel without PR_SET_MDWE: nothing to check here");
        return;
    }

    let (bundle_dir, bundle) = ewgan_bundle();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let (_dir, path) = daemon_common::write_config(&config_text(&bundle, port, ""));
    let log = bundle_dir.path().join("log");
    let mut command = daemon_common::flowgen();
    command
        .args(["run", "--config"])
        .arg(&path)
        .stderr(std::fs::File::create(&log).unwrap());
    // SAFETY: the closure calls only prctl, which is async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut daemon = Daemon {
        child: command.spawn().unwrap(),
        log,
    };
    let mut templates = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut records = 0;
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && records < 1000 {
        if let Ok(n) = socket.recv(&mut buf) {
            records += parse_ipfix(&buf[..n], &mut templates)
                .expect("IPFIX")
                .data_records;
        }
    }
    assert!(
        records >= 1000,
        "{records} records under W^X; log:\n{}",
        daemon.log_text()
    );
    daemon.signal(libc::SIGTERM);
    assert_eq!(
        daemon
            .wait_for_exit(Duration::from_secs(5))
            .and_then(|s| s.code()),
        Some(0)
    );
}

#[test]
#[cfg(not(feature = "cuda"))]
fn device_auto_without_cuda_warns_once_per_load_not_per_thread() {
    let (bundle_dir, bundle) = ewgan_bundle();
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let port = socket.local_addr().unwrap().port();
    let extra = "device = \"auto\"\n[pipeline]\ngenerator_threads = 3";
    let (_dir, path) = daemon_common::write_config(&config_text(&bundle, port, extra));
    let mut daemon = Daemon::start(
        &["--config", path.to_str().unwrap()],
        &[],
        bundle_dir.path().join("log"),
    );
    // Flows arriving means every generator thread has loaded.
    let mut buf = vec![0u8; 65_536];
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && socket.recv(&mut buf).is_err() {}
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_for_exit(Duration::from_secs(5));
    let log = daemon.log_text();
    assert_eq!(status.and_then(|s| s.code()), Some(0), "{log}");
    assert_eq!(log.matches("cuda unavailable").count(), 1, "{log}");
}
