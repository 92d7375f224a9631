//! The daemon's configuration: the TOML file's schema, `FLOWGEN_` environment
//! overrides, command-line overrides and validation that reports every problem at once.
//!
//! The doc comment on each field below is the user documentation of that key,
//! with its unit and default; `conf/flowgen.toml` repeats it as comments.
//!
//! Sources, later ones winning: the file, then environment variables named
//! `FLOWGEN_<SECTION>__<KEY>` (a double underscore between section and key, e.g.
//! `FLOWGEN_RATE__FLOWS_PER_S=2000`, `FLOWGEN_MODEL__DEVICE=cuda`), then the
//! command-line flags of `flowgen run`. `FLOWGEN_` variables without a double
//! underscore (such as `FLOWGEN_SHARED`, used by the test suite) are not config
//! keys and are ignored. The `[[collector]]` list cannot be set from the
//! environment; use the file or `--collector`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::address_plan::AddressPlanConfig;
use crate::export::ExportProtocol;
use crate::model::bundle::{Bundle, MANIFEST_FILE};
pub use crate::model::runtime::Device;
use crate::net::{CollectorConfig, ExportConfig, Transport};

/// How the send rate varies over the day.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RateProfile {
    /// The same rate at every hour.
    #[default]
    Flat,
    /// The time-of-day distribution learned from the training data, scaled so
    /// that its mean over a day is `flows_per_s`.
    Diurnal,
}

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// `[model]`: which generator to run and how.
    pub model: ModelSettings,
    /// `[rate]`: how many flows go out per second.
    pub rate: RateSettings,
    /// `[[collector]]`: where the flows go; every collector receives every flow.
    /// Keys: `address` (`HOST:PORT`, required), `protocol` (`ipfix` or
    /// `netflow9`, default `ipfix`), `transport` (`udp` or `tcp`, default
    /// `udp`), `observation_domain` (default 1); see [`CollectorConfig`].
    pub collector: Vec<CollectorConfig>,
    /// `[export]`: encoder and sender settings shared by all collectors; see [`ExportConfig`].
    pub export: ExportConfig,
    /// `[addresses]`: how generated addresses (anonymised tokens above all) become
    /// the IPv4 addresses exported; see [`AddressPlanConfig`].
    pub addresses: AddressPlanConfig,
    /// `[metrics]`: the Prometheus endpoint and the periodic log line.
    pub metrics: MetricsSettings,
    /// `[pipeline]`: threads and queues between generation and export.
    pub pipeline: PipelineSettings,
}

/// `[model]`: which generator to run and how.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelSettings {
    /// Model bundle directory (the folder holding `manifest.json`). A relative
    /// path is resolved against the directory of the configuration file, not
    /// the working directory. Default `../models/cidds-001` (the bundled model,
    /// seen from `conf/flowgen.toml`).
    pub path: PathBuf,
    /// Execution device for ONNX generators: `cpu`, `cuda` or `auto`. Ignored
    /// by baseline bundles. Default `cpu`.
    pub device: Device,
    /// Flows generated per inference call (and per batch handed to the
    /// exporter), 1 to 1048576. Default 1024, which keeps a batch of flows
    /// in the core's cache and measured faster end to end than 4096.
    pub batch: usize,
    /// ONNX Runtime intra-op threads per generator thread; 0 lets ONNX Runtime
    /// decide. Default 1.
    pub intra_op_threads: usize,
    /// Path of the ONNX Runtime shared library (`libonnxruntime.so.*`). Empty:
    /// `ORT_DYLIB_PATH`, then where `scripts/setup` installs it
    /// (`/usr/local/lib/flowgen/`). A relative path is resolved against the
    /// configuration file's directory. Default empty.
    pub onnxruntime: PathBuf,
    /// Seed of the generator's random numbers; absent draws a fresh seed at
    /// every start and reload. Default absent.
    pub seed: Option<u64>,
}

impl Default for ModelSettings {
    fn default() -> Self {
        ModelSettings {
            path: PathBuf::from("../models/cidds-001"),
            device: Device::Cpu,
            batch: 1024,
            intra_op_threads: 1,
            onnxruntime: PathBuf::new(),
            seed: None,
        }
    }
}

/// `[rate]`: how many flows go out per second.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateSettings {
    /// Mean flows per second sent to each collector; 0 sends as fast as the
    /// generator allows. Default 1000.
    pub flows_per_s: f64,
    /// `flat` or `diurnal` (needs a bundle with a time-of-day profile; hours are
    /// the host's local time). Default `flat`.
    pub profile: RateProfile,
    /// Flows that may go out back to back after an idle spell; 0 spreads them
    /// evenly. Default 0.
    pub burst: u64,
}

impl Default for RateSettings {
    fn default() -> Self {
        RateSettings {
            flows_per_s: 1000.0,
            profile: RateProfile::Flat,
            burst: 0,
        }
    }
}

/// `[metrics]`: the Prometheus endpoint and the periodic log line.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsSettings {
    /// `IP:PORT` serving Prometheus text at `GET /metrics`; empty disables the
    /// endpoint. Default `127.0.0.1:9464`.
    pub listen: String,
    /// Seconds between two info lines with rates and error counts; 0 disables
    /// them. Default 10.
    pub log_interval_s: u64,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        MetricsSettings {
            listen: "127.0.0.1:9464".into(),
            log_interval_s: 10,
        }
    }
}

/// `[pipeline]`: threads and queues between generation and export.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineSettings {
    /// Threads running the generator (each loads its own copy of the model),
    /// 1 to 256. Default 2: inference and decoding are the costly stages, and
    /// two threads nearly double the flows a two-core machine delivers.
    pub generator_threads: usize,
    /// Batches of `model.batch` flows queued between generators and exporter,
    /// 1 to 1024; generators block when it is full. A stop keeps sending this
    /// read-ahead at the configured rate for at most 2 s and discards the rest
    /// (counted); a reload discards it. Default 4.
    pub channel_batches: usize,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings {
            generator_threads: 2,
            channel_batches: 4,
        }
    }
}

/// Command-line values that replace the file's.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// Replaces `model.path`; used as given (relative to the working directory).
    pub model: Option<PathBuf>,
    /// Replaces the `[[collector]]` list with UDP collectors at these `HOST:PORT`s.
    pub collectors: Vec<String>,
    /// Replaces the protocol of every collector.
    pub protocol: Option<ExportProtocol>,
    /// Replaces `rate.flows_per_s`.
    pub rate_flows_per_s: Option<f64>,
}

/// One problem in a configuration, with the key it concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    /// Dotted key, e.g. `collector[1].address`; `.` for the whole file.
    pub key: String,
    /// What is wrong, lowercase.
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// No `--config` was given and none of the default places holds a file.
    #[error(
        "no configuration file given and none found at {}; pass --config FILE",
        list_paths(searched)
    )]
    NotFound {
        /// The places looked at, in order.
        searched: Vec<PathBuf>,
    },
    /// The file could not be read.
    #[error("{path}: {error}")]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The underlying failure (not a `source`: the message already shows it).
        error: std::io::Error,
    },
    /// The file is not valid TOML (the message gives line and column).
    #[error("{path}: {message}")]
    Syntax {
        /// The configuration file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// Keys are unknown, mistyped or hold values out of range; lists them all.
    #[error("{path}: {} problem(s):\n  {}", issues.len(), join_issues(issues))]
    Invalid {
        /// The configuration file.
        path: PathBuf,
        /// Every problem found, in key order.
        issues: Vec<Issue>,
    },
}

fn list_paths(paths: &[PathBuf]) -> String {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    shown.join(", ")
}

/// Where `flowgen run` and `check-config` look without `--config`, in order.
pub const DEFAULT_PATHS: [&str; 2] = ["conf/flowgen.toml", "/etc/flowgen/flowgen.toml"];

/// The configuration file to use: `given`, else the first of [`DEFAULT_PATHS`] that exists.
pub fn find_config(given: Option<&Path>) -> Result<PathBuf, ConfigError> {
    if let Some(path) = given {
        return Ok(path.to_path_buf());
    }
    let searched: Vec<PathBuf> = DEFAULT_PATHS.iter().map(PathBuf::from).collect();
    searched
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(ConfigError::NotFound { searched })
}

fn join_issues(issues: &[Issue]) -> String {
    let lines: Vec<String> = issues.iter().map(Issue::to_string).collect();
    lines.join("\n  ")
}

/// The settings in force, with relative paths resolved, validated.
#[derive(Clone, Debug)]
pub struct Config {
    /// The file they came from.
    pub source: PathBuf,
    /// The validated settings; `model.path` and `model.onnxruntime` are absolute or empty.
    pub settings: Settings,
}

impl Config {
    /// Reads `path`, applies `FLOWGEN_` variables from `env` and then `overrides`, validates.
    pub fn load<I>(path: &Path, env: I, overrides: &Overrides) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Config::from_toml(&text, path, env, overrides)
    }

    /// Like [`Config::load`] with the process environment.
    pub fn load_with_process_env(
        path: &Path,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        Config::load(path, std::env::vars(), overrides)
    }

    /// Parses TOML `text` as if read from `path` (relative keys resolve against its directory).
    pub fn from_toml<I>(
        text: &str,
        path: &Path,
        env: I,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let env = config_env(env);
        let tree = merge_sources(text, env.clone()).map_err(|message| ConfigError::Syntax {
            path: path.to_path_buf(),
            message,
        })?;
        let (mut settings, mut issues) = deserialize_all(tree);
        apply_overrides(&mut settings, overrides);
        resolve_paths(&mut settings, path);
        issues.extend(validate(&settings));
        name_sources(&mut issues, &env, overrides);
        if !issues.is_empty() {
            return Err(ConfigError::Invalid {
                path: path.to_path_buf(),
                issues,
            });
        }
        Ok(Config {
            source: path.to_path_buf(),
            settings,
        })
    }

    /// `metrics.listen` parsed; `None` when the endpoint is disabled.
    pub fn metrics_listen(&self) -> Option<SocketAddr> {
        self.settings.metrics.listen.trim().parse().ok()
    }
}

/// The environment variables that name config keys, as the `config` crate wants them.
fn config_env<I>(env: I) -> BTreeMap<String, String>
where
    I: IntoIterator<Item = (String, String)>,
{
    env.into_iter()
        .filter(|(name, _)| {
            name.strip_prefix("FLOWGEN_")
                .is_some_and(|key| key.contains("__"))
        })
        .collect()
}

/// Appends to each issue the flag or environment variable its value came
/// from, so that `--rate inf` is not blamed on the file; file values stay unmarked.
fn name_sources(issues: &mut [Issue], env: &BTreeMap<String, String>, overrides: &Overrides) {
    for issue in issues {
        let key = issue.key.as_str();
        // Flags are applied last, so they win over the environment.
        let flag = if key == "rate.flows_per_s" && overrides.rate_flows_per_s.is_some() {
            Some("--rate")
        } else if key == "model.path" && overrides.model.is_some() {
            Some("--model")
        } else if key.starts_with("collector") && !overrides.collectors.is_empty() {
            Some("--collector")
        } else {
            None
        };
        let source = flag.map(|f| format!("flag {f}")).or_else(|| {
            let name = format!("FLOWGEN_{}", key.replace('.', "__")).to_uppercase();
            env.keys()
                .any(|k| k.to_uppercase() == name)
                .then(|| format!("environment variable {name}"))
        });
        if let Some(source) = source {
            issue.message = format!("{} (set by {source})", issue.message);
        }
    }
}

/// File and environment merged into one JSON tree, before any typing.
fn merge_sources(text: &str, env: BTreeMap<String, String>) -> Result<serde_json::Value, String> {
    let env_source = config::Environment::with_prefix("FLOWGEN")
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(env.into_iter().collect()));
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(env_source)
        .build()
        .and_then(|merged| merged.try_deserialize::<serde_json::Value>())
        .map_err(|err| err.to_string())
}

/// Deserializes `tree`, collecting every failing key: each failure is recorded
/// and its key removed (so the default applies), then deserialization is retried.
fn deserialize_all(mut tree: serde_json::Value) -> (Settings, Vec<Issue>) {
    fill_required_collector_keys(&mut tree);
    let mut issues = Vec::new();
    // Every retry removes one key, so the loop ends; the bound guards against a
    // key that cannot be removed.
    for _ in 0..256 {
        match serde_path_to_error::deserialize::<_, Settings>(&tree) {
            Ok(settings) => return (settings, issues),
            Err(err) => {
                let path = err.path().clone();
                issues.push(Issue {
                    key: path.to_string(),
                    message: err.into_inner().to_string(),
                });
                if !remove_path(&mut tree, &path) {
                    break;
                }
            }
        }
    }
    (Settings::default(), issues)
}

/// Gives every `[[collector]]` without an `address` an empty one, so that one
/// missing key does not hide the table's other errors; validation reports it.
fn fill_required_collector_keys(tree: &mut serde_json::Value) {
    let Some(serde_json::Value::Array(collectors)) = tree.get_mut("collector") else {
        return;
    };
    for collector in collectors {
        if let serde_json::Value::Object(table) = collector {
            table
                .entry("address")
                .or_insert_with(|| serde_json::Value::String(String::new()));
        }
    }
}

/// Removes the value at `path` from `tree`; an array element takes its whole array with it.
fn remove_path(tree: &mut serde_json::Value, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;

    let segments: Vec<&Segment> = path.iter().collect();
    let Some(last_map) = segments
        .iter()
        .rposition(|s| matches!(s, Segment::Map { .. }))
    else {
        return false;
    };
    let mut node = tree;
    for segment in &segments[..last_map] {
        node = match (segment, node) {
            (Segment::Map { key }, serde_json::Value::Object(map)) => match map.get_mut(key) {
                Some(child) => child,
                None => return false,
            },
            (Segment::Seq { index }, serde_json::Value::Array(items)) => {
                match items.get_mut(*index) {
                    Some(child) => child,
                    None => return false,
                }
            }
            _ => return false,
        };
    }
    match (segments[last_map], node) {
        (Segment::Map { key }, serde_json::Value::Object(map)) => map.remove(key).is_some(),
        _ => false,
    }
}

fn apply_overrides(settings: &mut Settings, overrides: &Overrides) {
    if let Some(model) = &overrides.model {
        settings.model.path = std::path::absolute(model).unwrap_or_else(|_| model.clone());
    }
    if !overrides.collectors.is_empty() {
        settings.collector = overrides
            .collectors
            .iter()
            .map(|address| CollectorConfig::udp(address.clone(), ExportProtocol::Ipfix))
            .collect();
    }
    if let Some(protocol) = overrides.protocol {
        for collector in &mut settings.collector {
            collector.protocol = protocol;
        }
    }
    if let Some(rate) = overrides.rate_flows_per_s {
        settings.rate.flows_per_s = rate;
    }
}

/// Makes relative paths absolute against the configuration file's directory.
fn resolve_paths(settings: &mut Settings, config_path: &Path) {
    // A bare file name has an empty parent, which `absolute` rejects: use the
    // working directory, so that messages show the resolved path.
    let base = match config_path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let resolve = |p: &Path| {
        if p.as_os_str().is_empty() || p.is_absolute() {
            p.to_path_buf()
        } else {
            normalize(&base.join(p))
        }
    };
    settings.model.path = resolve(&settings.model.path);
    settings.model.onnxruntime = resolve(&settings.model.onnxruntime);
}

/// Removes `.` and `..` components lexically, so messages show `/repo/models`, not `/repo/conf/../models`.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other),
        }
    }
    out
}

/// Semantic checks the types cannot express; every failure is returned.
pub fn validate(settings: &Settings) -> Vec<Issue> {
    let mut issues = Vec::new();
    let mut fail = |key: &str, message: String| {
        issues.push(Issue {
            key: key.to_string(),
            message,
        })
    };

    validate_model(&settings.model, &mut fail);
    validate_rate(&settings.rate, &mut fail);
    validate_collectors(&settings.collector, &mut fail);
    validate_export(settings, &mut fail);
    validate_metrics(&settings.metrics, &mut fail);
    validate_pipeline(&settings.pipeline, &mut fail);
    for problem in settings.addresses.validate() {
        fail(&problem.key, problem.message);
    }
    issues
}

fn validate_model(model: &ModelSettings, fail: &mut impl FnMut(&str, String)) {
    if model.path.as_os_str().is_empty() {
        fail(
            "model.path",
            "is empty; give the model bundle's directory".into(),
        );
    } else if !model.path.is_dir() {
        fail(
            "model.path",
            format!("{} is not a directory", model.path.display()),
        );
    } else if !model.path.join(MANIFEST_FILE).is_file() {
        fail(
            "model.path",
            format!("{} holds no {MANIFEST_FILE}", model.path.display()),
        );
    } else if let Err(err) = Bundle::read_manifest(&model.path) {
        fail("model.path", err.to_string());
    }
    if !(1..=1 << 20).contains(&model.batch) {
        fail(
            "model.batch",
            format!("{} is outside 1..=1048576", model.batch),
        );
    }
    if model.intra_op_threads > 1024 {
        fail(
            "model.intra_op_threads",
            format!("{} is more than 1024", model.intra_op_threads),
        );
    }
    if !model.onnxruntime.as_os_str().is_empty() && !model.onnxruntime.is_file() {
        fail(
            "model.onnxruntime",
            format!("{} is not a file", model.onnxruntime.display()),
        );
    }
}

fn validate_rate(rate: &RateSettings, fail: &mut impl FnMut(&str, String)) {
    if !rate.flows_per_s.is_finite() || rate.flows_per_s < 0.0 {
        fail(
            "rate.flows_per_s",
            format!("{} is not a finite number >= 0", rate.flows_per_s),
        );
    } else if rate.flows_per_s > 0.0 && rate.flows_per_s < 1.0 {
        fail(
            "rate.flows_per_s",
            format!(
                "{} is below 1; rates are whole flows per second (0 = unlimited)",
                rate.flows_per_s
            ),
        );
    } else if rate.flows_per_s > 1e9 {
        fail(
            "rate.flows_per_s",
            format!("{} is more than 1e9", rate.flows_per_s),
        );
    }
}

fn validate_collectors(collectors: &[CollectorConfig], fail: &mut impl FnMut(&str, String)) {
    if collectors.is_empty() {
        fail(
            "collector",
            "no collector; add a [[collector]] table or pass --collector HOST:PORT".into(),
        );
    }
    for (index, collector) in collectors.iter().enumerate() {
        let key = |field: &str| format!("collector[{index}].{field}");
        if let Err(message) = check_host_port(&collector.address) {
            fail(&key("address"), message);
        }
        if collector.transport == Transport::Tcp && collector.protocol == ExportProtocol::Netflow9 {
            fail(
                &key("transport"),
                "netflow9 is sent over udp only; use protocol = \"ipfix\" for tcp".into(),
            );
        }
        let duplicate = collectors[..index].iter().position(|earlier| {
            earlier.address == collector.address
                && earlier.transport == collector.transport
                && earlier.observation_domain == collector.observation_domain
        });
        if let Some(earlier) = duplicate {
            fail(
                &format!("collector[{index}]"),
                format!("same address, transport and observation domain as collector[{earlier}]"),
            );
        }
    }
}

/// Checks `HOST:PORT` syntax without resolving the host.
pub fn check_host_port(address: &str) -> Result<(), String> {
    let address = address.trim();
    if address.is_empty() {
        return Err("missing; give HOST:PORT".into());
    }
    if address.parse::<SocketAddr>().is_ok() {
        return Ok(());
    }
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(format!("`{address}` has no port; give HOST:PORT"));
    };
    if port.parse::<u16>().map_or(true, |p| p == 0) {
        return Err(format!("`{address}`: port `{port}` is not 1 to 65535"));
    }
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if !host_ok {
        return Err(format!(
            "`{address}`: `{host}` is neither an IP address nor a host name (IPv6 needs [brackets])"
        ));
    }
    Ok(())
}

fn validate_export(settings: &Settings, fail: &mut impl FnMut(&str, String)) {
    let export = &settings.export;
    // The encoder's own bounds (220 to 65535) allow more than one UDP datagram carries.
    let udp = settings
        .collector
        .iter()
        .any(|c| c.transport == Transport::Udp);
    let too_big_for_udp = udp && export.max_message_bytes > MAX_UDP_PAYLOAD_BYTES;
    if too_big_for_udp {
        fail(
            "export.max_message_bytes",
            format!(
                "{} is more than a UDP datagram carries ({MAX_UDP_PAYLOAD_BYTES})",
                export.max_message_bytes
            ),
        );
    }
    for problem in export.problems() {
        if let crate::net::NetError::Config { key, message } = problem {
            // One message per key: the UDP limit above already covers this one.
            if !(too_big_for_udp && key == "export.max_message_bytes") {
                fail(&key, message);
            }
        }
    }
    if export.tcp_reconnect_interval_ms == 0 {
        fail(
            "export.tcp_reconnect_interval_ms",
            "must be at least 1".into(),
        );
    }
}

/// The largest UDP payload over IPv4 (65535 less IP and UDP headers).
const MAX_UDP_PAYLOAD_BYTES: usize = 65_507;

fn validate_metrics(metrics: &MetricsSettings, fail: &mut impl FnMut(&str, String)) {
    let listen = metrics.listen.trim();
    if !listen.is_empty() && listen.parse::<SocketAddr>().is_err() {
        fail(
            "metrics.listen",
            format!("`{listen}` is not IP:PORT (leave it empty to disable the endpoint)"),
        );
    }
}

fn validate_pipeline(pipeline: &PipelineSettings, fail: &mut impl FnMut(&str, String)) {
    if !(1..=256).contains(&pipeline.generator_threads) {
        fail(
            "pipeline.generator_threads",
            format!("{} is outside 1..=256", pipeline.generator_threads),
        );
    }
    if !(1..=1024).contains(&pipeline.channel_batches) {
        fail(
            "pipeline.channel_batches",
            format!("{} is outside 1..=1024", pipeline.channel_batches),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid manifest (of a bundle whose model files are absent: only config checks run).
    fn write_manifest(dir: &Path) {
        use crate::model::bundle::{Manifest, ModelKind, TrainingData, SCHEMA_VERSION};
        let manifest = Manifest {
            kind: ModelKind::Baseline,
            schema_version: SCHEMA_VERSION,
            flowgen_version: "test".into(),
            created_utc: "2026-01-01T00:00:00Z".into(),
            seed: 0,
            training_data: TrainingData {
                files: Vec::new(),
                training_rows: 1,
                held_out_rows: 0,
                holdout_fraction: 0.0,
                held_out_file: None,
            },
            hyperparameters: Default::default(),
            training_time_s: 0.0,
            files: Vec::new(),
            file_sha256: Default::default(),
            feature_layout: None,
            eval: None,
        };
        Bundle::write_manifest(dir, &manifest).expect("manifest");
    }

    /// A config file next to a model directory with a manifest, so `model.path` validates.
    fn fixture() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let model = dir.path().join("model");
        std::fs::create_dir(&model).expect("model dir");
        write_manifest(&model);
        let path = dir.path().join("conf").join("flowgen.toml");
        (dir, path)
    }

    fn parse(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let (_dir, path) = fixture();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let text = format!("[model]\npath = \"../model\"\n{text}");
        Config::from_toml(&text, &path, env, &Overrides::default())
    }

    fn issues(result: Result<Config, ConfigError>) -> Vec<String> {
        match result {
            Err(ConfigError::Invalid { issues, .. }) => {
                issues.iter().map(Issue::to_string).collect()
            }
            other => panic!("expected invalid config, got {other:?}"),
        }
    }

    const ONE_COLLECTOR: &str = "[[collector]]\naddress = \"127.0.0.1:4739\"\n";

    #[test]
    fn a_minimal_file_gets_the_documented_defaults() {
        let config = parse(ONE_COLLECTOR, &[]).expect("valid");
        let s = &config.settings;
        assert_eq!(s.rate.flows_per_s, 1000.0);
        assert_eq!(s.collector[0].protocol, ExportProtocol::Ipfix);
        assert_eq!(s.export.max_message_bytes, 1452);
        assert!(s.model.path.ends_with("model") && s.model.path.is_absolute());
        assert_eq!(
            config.metrics_listen(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
    }

    #[test]
    fn every_error_is_reported_with_its_key() {
        let text = "[rate]\nflows_per_s = \"fast\"\nprofile = \"weekly\"\nburts = 3\n\
                    [export]\nmax_message_bytes = 10\n\
                    [[collector]]\naddress = \"127.0.0.1:4739\"\n\
                    [[collector]]\naddress = \"nowhere\"\nprotocol = \"netflow9\"\ntransport = \"tcp\"\n";
        let found = issues(parse(text, &[]));
        let keys: Vec<&str> = found.iter().map(|i| i.split(':').next().unwrap()).collect();
        for key in [
            "rate.flows_per_s",
            "rate.profile",
            "rate.burts",
            "export.max_message_bytes",
            "collector[1].address",
            "collector[1].transport",
        ] {
            assert!(keys.contains(&key), "{key} missing from {found:#?}");
        }
        assert_eq!(found.len(), 6, "{found:#?}");
    }

    #[test]
    fn export_problems_are_all_reported_together() {
        let text = format!(
            "{ONE_COLLECTOR}[export]\nmax_message_bytes = 10\nqueue_chunks = 0\n\
             template_refresh_s = 0\ntemplate_refresh_messages = 0\n"
        );
        let found = issues(parse(&text, &[]));
        for key in [
            "export.max_message_bytes",
            "export.queue_chunks",
            "export.template_refresh_s",
        ] {
            assert!(found.iter().any(|i| i.starts_with(key)), "{key}: {found:?}");
        }
    }

    #[test]
    fn issues_name_the_flag_or_environment_variable_they_came_from() {
        let (_dir, path) = fixture();
        let text = format!("[model]\npath = \"../model\"\n{ONE_COLLECTOR}");
        let env = [("FLOWGEN_MODEL__BATCH".to_string(), "0".to_string())];
        let overrides = Overrides {
            rate_flows_per_s: Some(f64::INFINITY),
            ..Overrides::default()
        };
        let found = issues(Config::from_toml(&text, &path, env, &overrides));
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("rate.flows_per_s") && i.ends_with("(set by flag --rate)")),
            "{found:?}"
        );
        assert!(
            found.iter().any(|i| i.starts_with("model.batch")
                && i.ends_with("(set by environment variable FLOWGEN_MODEL__BATCH)")),
            "{found:?}"
        );
    }

    #[test]
    fn a_missing_model_is_shown_resolved_for_a_bare_config_file_name() {
        let text = format!("[model]\npath = \"../no-such-model-dir\"\n{ONE_COLLECTOR}");
        let found = issues(Config::from_toml(
            &text,
            Path::new("flowgen.toml"),
            Vec::new(),
            &Overrides::default(),
        ));
        let model = found.iter().find(|i| i.starts_with("model.path")).unwrap();
        let parent = std::env::current_dir()
            .unwrap()
            .parent()
            .unwrap()
            .to_path_buf();
        let expected = parent.join("no-such-model-dir");
        assert!(
            model.contains(&format!("{} is not a directory", expected.display())),
            "{model}"
        );
    }

    #[test]
    fn unknown_sections_and_collector_keys_are_errors() {
        let text = "[ratee]\nflows_per_s = 1\n[[collector]]\naddress = \"127.0.0.1:1\"\nport = 3\n";
        let found = issues(parse(text, &[]));
        assert!(
            found.iter().any(|i| i.starts_with("ratee: unknown field")),
            "{found:#?}"
        );
        assert!(found
            .iter()
            .any(|i| i.starts_with("collector[0].port: unknown field")));
    }

    #[test]
    fn no_collector_and_missing_model_are_reported() {
        let (_dir, path) = fixture();
        let text = "[model]\npath = \"../absent\"\n";
        let found = issues(Config::from_toml(text, &path, [], &Overrides::default()));
        assert!(found
            .iter()
            .any(|i| i.starts_with("model.path:") && i.contains("absent")));
        assert!(found.iter().any(|i| i.starts_with("collector:")));
    }

    #[test]
    fn a_corrupt_manifest_is_reported_under_model_path() {
        let (dir, path) = fixture();
        std::fs::write(dir.path().join("model").join(MANIFEST_FILE), "{ nope").unwrap();
        let text = format!("[model]\npath = \"../model\"\n{ONE_COLLECTOR}");
        let found = issues(Config::from_toml(&text, &path, [], &Overrides::default()));
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("model.path:") && i.contains("manifest.json")),
            "{found:#?}"
        );
    }

    #[test]
    fn environment_overrides_keys_and_ignores_non_keys() {
        let env = [
            ("FLOWGEN_RATE__FLOWS_PER_S", "2500"),
            ("FLOWGEN_MODEL__DEVICE", "auto"),
            ("FLOWGEN_SHARED", "/work/shared"),
            ("PATH", "/bin"),
        ];
        let config = parse(ONE_COLLECTOR, &env).expect("valid");
        assert_eq!(config.settings.rate.flows_per_s, 2500.0);
        assert_eq!(config.settings.model.device, Device::Auto);
    }

    #[test]
    fn a_mistyped_environment_key_is_an_error() {
        let found = issues(parse(ONE_COLLECTOR, &[("FLOWGEN_RATE__FLOWS", "5")]));
        assert!(
            found
                .iter()
                .any(|i| i.starts_with("rate.flows: unknown field")),
            "{found:#?}"
        );
    }

    #[test]
    fn overrides_replace_collectors_protocol_and_rate() {
        let (_dir, path) = fixture();
        let overrides = Overrides {
            collectors: vec!["127.0.0.1:9995".into(), "127.0.0.1:9996".into()],
            protocol: Some(ExportProtocol::Netflow9),
            rate_flows_per_s: Some(0.0),
            model: None,
        };
        let text = format!("[model]\npath = \"../model\"\n{ONE_COLLECTOR}");
        let config = Config::from_toml(&text, &path, [], &overrides).expect("valid");
        let addresses: Vec<&str> = config
            .settings
            .collector
            .iter()
            .map(|c| c.address.as_str())
            .collect();
        assert_eq!(addresses, ["127.0.0.1:9995", "127.0.0.1:9996"]);
        assert!(config
            .settings
            .collector
            .iter()
            .all(|c| c.protocol == ExportProtocol::Netflow9));
        assert_eq!(config.settings.rate.flows_per_s, 0.0);
    }

    #[test]
    fn toml_syntax_errors_name_the_file() {
        let err = parse("[rate\n", &[]).expect_err("syntax error");
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        assert!(err.to_string().contains("flowgen.toml"), "{err}");
    }

    #[test]
    fn host_port_syntax() {
        assert!(check_host_port("127.0.0.1:2055").is_ok());
        assert!(check_host_port("[::1]:2055").is_ok());
        assert!(check_host_port("collector.example:4739").is_ok());
        assert!(check_host_port("::1:2055").is_err());
        assert!(check_host_port("host").is_err());
        assert!(check_host_port("host:0").is_err());
        assert!(check_host_port("host:70000").is_err());
        assert!(check_host_port("").is_err());
    }
}
