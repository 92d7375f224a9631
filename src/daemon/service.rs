//! The service's control plane: start-up, signals (TERM/INT stop, HUP reloads),
//! systemd notification, the metrics endpoint and the periodic report.
//!
//! The data path runs on plain threads ([`super::pipeline`]); this module only
//! waits for events on a small tokio runtime.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinHandle;

use super::config::{Config, ConfigError, Overrides};
use super::generators::GeneratorFailed;
use super::metrics::{self, Metrics};
use super::notify;
use super::pipeline::{load_model, LoadedModel, Pipeline, PipelineError};

/// What `flowgen run` was asked to do.
#[derive(Clone, Debug)]
pub struct ServiceOptions {
    /// The configuration file, read at start and at every SIGHUP.
    pub config_path: PathBuf,
    /// Command-line values that win over the file, at start and at every reload.
    pub overrides: Overrides,
}

/// Why the service stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The model, collectors or threads could not be set up.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A generator failed while running.
    #[error(transparent)]
    Generator(#[from] GeneratorFailed),
    /// The metrics endpoint could not listen.
    #[error("metrics.listen {listen}: {error}")]
    MetricsListen {
        /// The configured address.
        listen: std::net::SocketAddr,
        /// The system's failure.
        error: std::io::Error,
    },
    /// Signal handlers or the runtime could not be set up.
    #[error("cannot set up the service: {0}")]
    Setup(std::io::Error),
}

/// Runs the service until SIGTERM or SIGINT (then `Ok`) or a fatal error.
pub fn run_blocking(options: ServiceOptions) -> Result<(), ServiceError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .thread_name("flowgen-control")
        .build()
        .map_err(ServiceError::Setup)?;
    runtime.block_on(run(options))
}

/// The signals the service reacts to.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Signals, ServiceError> {
        let install = |kind| signal(kind).map_err(ServiceError::Setup);
        Ok(Signals {
            terminate: install(SignalKind::terminate())?,
            interrupt: install(SignalKind::interrupt())?,
            hangup: install(SignalKind::hangup())?,
        })
    }

    /// Resolves at SIGTERM or SIGINT, naming it.
    async fn stop(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}

/// Aborts a background task when dropped.
struct Background(JoinHandle<()>);

impl Drop for Background {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the service on the current tokio runtime (see [`run_blocking`]).
pub async fn run(options: ServiceOptions) -> Result<(), ServiceError> {
    // Installed first, so that a TERM during start-up is not the default (kill).
    let mut signals = Signals::install()?;
    let config = Config::load_with_process_env(&options.config_path, &options.overrides)?;
    let metrics = Arc::new(Metrics::new());
    let _endpoint = start_endpoint(&config, &metrics).await?;
    let _report = start_report(&config, &metrics);

    let model = tokio::select! {
        model = load_off_runtime(config.clone()) => model?,
        name = signals.stop() => {
            tracing::info!("{name} during start-up: exiting");
            return Ok(());
        }
    };
    let (failures_tx, mut failures_rx) = tokio::sync::mpsc::channel(16);
    let mut pipeline = Pipeline::start(&config.settings, model, metrics.clone(), failures_tx)?;
    notify::ready();
    let _watchdog = notify::watchdog_interval().map(|interval| {
        let progress = Progress::new(metrics.clone());
        Background(tokio::spawn(notify::watchdog(
            interval,
            progress.into_check(),
        )))
    });

    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let stopped_by = loop {
        tokio::select! {
            _ = signals.terminate.recv() => break "SIGTERM",
            _ = signals.interrupt.recv() => break "SIGINT",
            _ = signals.hangup.recv() => {
                tokio::select! {
                    reloaded = reload(&options, &mut pipeline, &metrics) => {
                        if let Err(fatal) = reloaded {
                            notify::stopping();
                            stop_pipeline(pipeline).await;
                            return Err(fatal);
                        }
                    }
                    name = signals.stop() => break name,
                }
            }
            Some(failure) = failures_rx.recv() => {
                notify::stopping();
                stop_pipeline(pipeline).await;
                return Err(failure.into());
            }
            _ = tick.tick() => pipeline.update_rate(chrono::Local::now()),
        }
    };

    tracing::info!(
        drain_limit_s = super::pipeline::STOP_DRAIN.as_secs_f64(),
        "{stopped_by}: stopping; sending what is queued at the configured rate"
    );
    notify::stopping();
    stop_pipeline(pipeline).await;
    tracing::info!("stopped");
    Ok(())
}

/// Loads the model on a blocking thread (ONNX Runtime sessions take a while).
async fn load_off_runtime(config: Config) -> Result<LoadedModel, PipelineError> {
    let path = config.settings.model.path.clone();
    tokio::task::spawn_blocking(move || load_model(&config.settings))
        .await
        .unwrap_or_else(|join| {
            Err(PipelineError::Model {
                path,
                error: Box::new(crate::model::bundle::BundleError::Io {
                    path: PathBuf::new(),
                    source: std::io::Error::other(format!("model loader panicked: {join}")),
                }),
            })
        })
}

/// Rereads the configuration and the model; on any failure the running ones
/// stay, except when new generator threads cannot start (then the error is returned).
async fn reload(
    options: &ServiceOptions,
    pipeline: &mut Pipeline,
    metrics: &Metrics,
) -> Result<(), ServiceError> {
    tracing::info!(config = %options.config_path.display(), "SIGHUP: reloading");
    notify::reloading();
    let result = async {
        let config = Config::load_with_process_env(&options.config_path, &options.overrides)?;
        let model = load_off_runtime(config.clone()).await?;
        pipeline.reload(&config.settings, model)?;
        Ok::<(), ServiceError>(())
    }
    .await;
    metrics.count_reload(result.is_ok());
    notify::ready();
    match result {
        Err(ServiceError::Pipeline(PipelineError::Threads(error))) => {
            Err(ServiceError::Pipeline(PipelineError::Threads(error)))
        }
        Err(err) => {
            tracing::error!(
                "reload failed, the previous configuration and model keep running: {err}"
            );
            Ok(())
        }
        Ok(()) => Ok(()),
    }
}

/// Stops the pipeline on a blocking thread (it joins threads) and logs the totals.
async fn stop_pipeline(pipeline: Pipeline) {
    match tokio::task::spawn_blocking(move || pipeline.stop()).await {
        Ok(report) => {
            for (name, counters) in &report.collectors {
                tracing::info!(
                    collector = %name,
                    flows_sent = counters.records_sent,
                    flows_dropped = counters.records_dropped,
                    send_errors_messages = counters.send_errors,
                    "collector totals"
                );
            }
        }
        Err(err) => tracing::error!("stopping the pipeline failed: {err}"),
    }
}

async fn start_endpoint(
    config: &Config,
    metrics: &Arc<Metrics>,
) -> Result<Option<Background>, ServiceError> {
    let Some(listen) = config.metrics_listen() else {
        return Ok(None);
    };
    let listener = metrics::bind(listen)
        .await
        .map_err(|error| ServiceError::MetricsListen { listen, error })?;
    tracing::info!(%listen, "serving Prometheus metrics at /metrics");
    let task = tokio::spawn(metrics::serve(listener, metrics.clone()));
    Ok(Some(Background(task)))
}

fn start_report(config: &Config, metrics: &Arc<Metrics>) -> Option<Background> {
    let interval_s = config.settings.metrics.log_interval_s;
    (interval_s > 0).then(|| {
        let task = metrics::log_periodically(metrics.clone(), Duration::from_secs(interval_s));
        Background(tokio::spawn(task))
    })
}

/// Judges, for the watchdog, whether flows are still going out.
struct Progress {
    metrics: Arc<Metrics>,
    dispatched: u64,
    since: Instant,
}

impl Progress {
    fn new(metrics: Arc<Metrics>) -> Progress {
        Progress {
            dispatched: metrics.flows_dispatched(),
            metrics,
            since: Instant::now(),
        }
    }

    /// Healthy when flows went out within `interval`, or when the target rate
    /// is too low to expect even ten flows in that time.
    fn healthy(&mut self, interval: Duration) -> bool {
        self.metrics.sync();
        let dispatched = self.metrics.flows_dispatched();
        let now = Instant::now();
        if dispatched != self.dispatched {
            self.dispatched = dispatched;
            self.since = now;
            return true;
        }
        let rate = self.metrics.target_rate.get();
        let expected = if rate == 0.0 {
            f64::INFINITY
        } else {
            rate * interval.as_secs_f64()
        };
        expected < 10.0 || now.duration_since(self.since) < interval
    }

    fn into_check(mut self) -> impl FnMut(Duration) -> bool + Send + 'static {
        move |interval| self.healthy(interval)
    }
}
