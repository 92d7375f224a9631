//! Helpers shared by the daemon's integration tests: temp configs, the binary,
//! free local ports.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `flowgen` binary Cargo built for these tests.
pub fn flowgen() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_flowgen"));
    command.env_remove("RUST_LOG");
    for (name, _) in std::env::vars() {
        if name.starts_with("FLOWGEN_") && name.contains("__") {
            command.env_remove(name);
        }
    }
    command
}

/// Runs `flowgen check-config --config path`.
pub fn check_config(path: &Path) -> Output {
    flowgen()
        .args(["check-config", "--config"])
        .arg(path)
        .output()
        .expect("run flowgen")
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory holding `conf/flowgen.toml` with `text`; returns (dir, config path).
pub fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).expect("conf dir");
    let path = conf.join("flowgen.toml");
    std::fs::write(&path, text).expect("write config");
    (dir, path)
}

/// A UDP port on 127.0.0.1 that was free a moment ago.
pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A running `flowgen run`, killed when dropped; its stderr goes to a file.
pub struct Daemon {
    pub child: std::process::Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `flowgen run` with `args`, logging to `log`.
    pub fn start(args: &[&str], env: &[(&str, &str)], log: PathBuf) -> Daemon {
        let file = std::fs::File::create(&log).expect("log file");
        let mut command = flowgen();
        command
            .arg("run")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(file);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command.spawn().expect("spawn flowgen run");
        Daemon { child, log }
    }

    /// Sends a signal (`libc::SIGTERM`, `libc::SIGHUP`, ...).
    pub fn signal(&self, signal: i32) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) has no memory-safety preconditions.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_for_exit(
        &mut self,
        limit: std::time::Duration,
    ) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `limit` until the log contains `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if self.log_text().contains(needle) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The header of one IPFIX message (RFC 7011 section 3.1) and its record counts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpfixMessage {
    pub export_time_s: u32,
    pub sequence: u32,
    pub domain: u32,
    /// Data records in the message.
    pub data_records: u32,
    /// Whether it carried a template set.
    pub has_templates: bool,
}

/// Parses one IPFIX message; `templates` maps template id to record length and
/// learns from the message's template sets. `None` if it is not well formed.
pub fn parse_ipfix(
    bytes: &[u8],
    templates: &mut std::collections::HashMap<u16, usize>,
) -> Option<IpfixMessage> {
    let u16_at = |i: usize| -> Option<u16> {
        Some(u16::from_be_bytes(bytes.get(i..i + 2)?.try_into().ok()?))
    };
    let u32_at = |i: usize| -> Option<u32> {
        Some(u32::from_be_bytes(bytes.get(i..i + 4)?.try_into().ok()?))
    };
    if u16_at(0)? != 10 || usize::from(u16_at(2)?) != bytes.len() {
        return None;
    }
    let mut message = IpfixMessage {
        export_time_s: u32_at(4)?,
        sequence: u32_at(8)?,
        domain: u32_at(12)?,
        data_records: 0,
        has_templates: false,
    };
    let mut at = 16;
    while at + 4 <= bytes.len() {
        let (set_id, set_len) = (u16_at(at)?, usize::from(u16_at(at + 2)?));
        if set_len < 4 || at + set_len > bytes.len() {
            return None;
        }
        let body = at + 4..at + set_len;
        if set_id == 2 {
            message.has_templates = true;
            let mut t = body.start;
            while t + 4 <= body.end {
                let (id, fields) = (u16_at(t)?, usize::from(u16_at(t + 2)?));
                let mut len = 0;
                for f in 0..fields {
                    len += usize::from(u16_at(t + 4 + 4 * f + 2)?);
                }
                templates.insert(id, len);
                t += 4 + 4 * fields;
            }
        } else if set_id >= 256 {
            let record_len = *templates.get(&set_id)?;
            message.data_records += ((body.end - body.start) / record_len) as u32;
        }
        at += set_len;
    }
    Some(message)
}

/// A baseline bundle trained on the shared CIDDS-001 sample, in a fresh directory.
pub fn baseline_bundle() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("baseline");
    let input = flowgen::model::train::TrainInput {
        data: vec![shared_dir().join("data/cidds-001/cidds-001-week3-sample.csv")],
        read_options: Default::default(),
        holdout_fraction: 0.0,
        seed: 7,
    };
    flowgen::model::train::train_baseline(&input, &out).expect("train the baseline");
    (dir, out)
}

/// The shared data folder: `FLOWGEN_SHARED`, else `../shared` next to the
/// repository, else `/work/shared`.
pub fn shared_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("FLOWGEN_SHARED") {
        return PathBuf::from(dir);
    }
    let beside = repo().join("../shared");
    if beside.is_dir() {
        return beside;
    }
    PathBuf::from("/work/shared")
}

/// A small, quickly trained E-WGAN-GP bundle (poor flows, real format) on the
/// shared CIDDS-001 sample, in a fresh directory; needs ONNX Runtime installed.
pub fn ewgan_bundle() -> (tempfile::TempDir, PathBuf) {
    ewgan_bundle_with_embedding_dim(8)
}

/// Like [`ewgan_bundle`], with IP2Vec embeddings of `dim` (which sets the
/// generator's output width).
pub fn ewgan_bundle_with_embedding_dim(dim: usize) -> (tempfile::TempDir, PathBuf) {
    use flowgen::model::ewgan::{train_ewgan, EwganParams};
    use flowgen::model::runtime::RuntimeOptions;
    use flowgen::model::wgan::Progress;

    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("ewgan");
    let input = flowgen::model::train::TrainInput {
        data: vec![shared_dir().join("data/cidds-001/cidds-001-week3-sample.csv")],
        read_options: Default::default(),
        holdout_fraction: 0.1,
        seed: 7,
    };
    let mut params = EwganParams {
        max_training_flows: 2048,
        eval_flows: 256,
        check_flows: 256,
        ..EwganParams::default()
    };
    params.codebook.ip2vec.epochs = 1;
    params.codebook.ip2vec.dim = dim;
    params.wgan.hidden = vec![32];
    params.wgan.critic_hidden = vec![32];
    params.wgan.epochs = 1;
    params.wgan.batch = 256;
    train_ewgan(
        &input,
        &out,
        &params,
        &RuntimeOptions::default(),
        Progress::Hidden,
    )
    .expect("train a small ewgan bundle");
    (dir, out)
}
