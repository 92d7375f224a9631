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
