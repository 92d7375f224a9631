//! The running data path: generator threads feeding the export pipeline
//! (pacing, encoding, one sender per collector), and how it is swapped on reload.
//!
//! ```text
//! generator threads --Vec<Flow>--> [bounded channel] --> net::ExportPipeline --> collectors
//! ```
//!
//! This is the programmatic entry point (the service and the benchmark use it):
//! [`load_model`], then [`Pipeline::start`], then [`Pipeline::stop`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::model::baseline::{BaselineFile, BASELINE_FILE};
use crate::model::bundle::{read_json, Bundle, BundleError, ModelKind};
use crate::model::codebook::CODEBOOK_FILE;
use crate::model::FlowGenerator;
use crate::net::{ExportPipeline, ExportReport, NetError, Pacing};
use crate::pace::PaceSettings;

use super::config::{Config, ConfigError, Issue, Settings};
use super::generators::{Batch, GeneratorFailed, GeneratorPool, PoolSettings};
use super::metrics::Metrics;
use super::schedule::{local_seconds_of_day, DayProfile, RateSchedule, ScheduleError};
use crate::address_plan::{AddressPlan, AddressPlanError};

/// How long a stop keeps pacing out queued flows before discarding the rest:
/// well inside systemd's default `TimeoutStopSec` (90 s) and the unit's.
pub const STOP_DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Why the pipeline could not start or change.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// The model bundle could not be loaded.
    #[error("model {path}: {error}")]
    Model {
        /// The bundle directory.
        path: PathBuf,
        /// What the loader reported (boxed: runtime errors are large).
        error: Box<BundleError>,
    },
    /// The rate profile does not fit the bundle.
    #[error("rate.profile: {0}")]
    Schedule(#[from] ScheduleError),
    /// A collector could not be opened.
    #[error("{0}")]
    Net(#[from] NetError),
    /// The `[addresses]` settings are unusable.
    #[error("{0}")]
    Addresses(#[from] AddressPlanError),
    /// A thread could not be started.
    #[error("cannot start generator threads: {0}")]
    Threads(std::io::Error),
}

/// A model loaded once per generator thread, plus what the rate needs from its bundle.
pub struct LoadedModel {
    /// One generator per thread.
    pub generators: Vec<Box<dyn FlowGenerator>>,
    /// The bundle's time-of-day distribution, when it has one.
    pub day_profile: Option<DayProfile>,
    /// The bundle directory, for log lines.
    pub path: PathBuf,
}

/// Loads `settings.model` once per `pipeline.generator_threads` (blocking: run it off the runtime).
pub fn load_model(settings: &Settings) -> Result<LoadedModel, PipelineError> {
    let path = settings.model.path.clone();
    let model_error = |error| PipelineError::Model {
        path: path.clone(),
        error: Box::new(error),
    };
    // Without a configured seed every load draws one, so a reload or a restart
    // does not replay the same flows.
    let seed = settings.model.seed.unwrap_or_else(rand::random);
    let first = crate::model::load(&path, &load_options(settings, seed, 0)).map_err(model_error)?;
    // `device = "auto"` warns when it falls back to the cpu; the first thread
    // decides for the rest, so one load warns once, not once per thread.
    let resolved_device = first.inference_device().map(|device| device.to_string());
    let mut generators = vec![first];
    for thread in 1..settings.pipeline.generator_threads {
        let mut options = load_options(settings, seed, thread);
        if let Some(device) = &resolved_device {
            options.device.clone_from(device);
        }
        generators.push(crate::model::load(&path, &options).map_err(model_error)?);
    }
    let day_profile = time_of_day_profile(&path).map_err(model_error)?;
    Ok(LoadedModel {
        generators,
        day_profile,
        path,
    })
}

/// Loads the configured model once, as a generator thread would, for
/// `check-config`: a bundle whose manifest validates but which cannot load (a
/// truncated `generator.onnx`, a missing ONNX Runtime) is an issue on `model.path`,
/// so that a unit's `ExecStartPre` fails instead of `ExecStart` restart-looping.
pub fn check_model_loads(config: &Config) -> Result<(), ConfigError> {
    let settings = &config.settings;
    let path = &settings.model.path;
    match crate::model::load(path, &load_options(settings, 0, 0)) {
        Ok(_) => Ok(()),
        Err(error) => Err(ConfigError::Invalid {
            path: config.source.clone(),
            issues: vec![Issue {
                key: "model.path".into(),
                message: format!("{} cannot be loaded: {error}", path.display()),
            }],
        }),
    }
}

/// The loader options for generator thread `thread`: each thread gets its own seed.
fn load_options(settings: &Settings, seed: u64, thread: usize) -> crate::model::LoadOptions {
    let model = &settings.model;
    crate::model::LoadOptions {
        seed: seed.wrapping_add(thread as u64),
        onnxruntime_path: (!model.onnxruntime.as_os_str().is_empty())
            .then(|| model.onnxruntime.clone()),
        device: model.device.to_string(),
        intra_op_threads: model.intra_op_threads,
        batch: model.batch,
    }
}

/// The bundle's time-of-day distribution, for the diurnal profile: flows per
/// hour from a baseline's start-time table, the codebook's quarter-hour shares
/// for ewgan bundles.
pub fn time_of_day_profile(dir: &Path) -> Result<Option<DayProfile>, BundleError> {
    let manifest = Bundle::read_manifest(dir)?;
    match manifest.kind {
        ModelKind::Baseline => {
            let file: BaselineFile = read_json(&dir.join(BASELINE_FILE))?;
            let mut hourly = vec![0.0; 24];
            for &(second, count) in &file.tables.start_second_of_day {
                hourly[(second / 3600) as usize % 24] += count as f64;
            }
            Ok(Some(hourly))
        }
        ModelKind::Ewgan => {
            // Only this field is kept; the rest of the codebook is parsed and dropped.
            #[derive(serde::Deserialize)]
            struct Calendar {
                time_of_day_profile: Vec<f64>,
            }
            let calendar: Calendar = read_json(&dir.join(CODEBOOK_FILE))?;
            Ok(Some(calendar.time_of_day_profile).filter(|p| !p.is_empty()))
        }
    }
}

/// The collectors and encoder settings a running export pipeline was opened with.
#[derive(Clone, PartialEq)]
struct ExportKey {
    collectors: Vec<crate::net::CollectorConfig>,
    export: crate::net::ExportConfig,
}

impl ExportKey {
    fn of(settings: &Settings) -> ExportKey {
        ExportKey {
            collectors: settings.collector.clone(),
            export: settings.export.clone(),
        }
    }
}

/// Generator threads, the queue and the export pipeline, running.
pub struct Pipeline {
    metrics: Arc<Metrics>,
    failures: tokio::sync::mpsc::Sender<GeneratorFailed>,
    schedule: RateSchedule,
    burst_flows: u64,
    pace: PaceSettings,
    key: ExportKey,
    channel_batches: usize,
    addresses: Arc<AddressPlan>,
    input: Sender<Batch>,
    /// The queue's far end, to discard the old model's read-ahead on reload.
    queued: Receiver<Batch>,
    generators: GeneratorPool,
    export: ExportPipeline,
}

impl Pipeline {
    /// Opens the collectors and starts generating; a generator that fails later
    /// reports on `failures`.
    pub fn start(
        settings: &Settings,
        model: LoadedModel,
        metrics: Arc<Metrics>,
        failures: tokio::sync::mpsc::Sender<GeneratorFailed>,
    ) -> Result<Pipeline, PipelineError> {
        let schedule = schedule_for(settings, model.day_profile.as_deref())?;
        let addresses = Arc::new(AddressPlan::new(&settings.addresses)?);
        let burst_flows = settings.rate.burst;
        let pace = pace_at(&schedule, burst_flows, chrono::Local::now());
        let key = ExportKey::of(settings);
        let (input, output) = crossbeam_channel::bounded(settings.pipeline.channel_batches);
        let queued = output.clone();
        let export =
            ExportPipeline::spawn(&key.collectors, &key.export, Pacing::Rate(pace), output)?;
        metrics.track(export.stats(), export.collectors());
        metrics.target_rate.set(pace.rate_flows_per_s as f64);

        let pool_settings = PoolSettings {
            batch: settings.model.batch,
            addresses: addresses.clone(),
            metrics: metrics.clone(),
            failures: failures.clone(),
        };
        let generators = GeneratorPool::start(model.generators, pool_settings, input.clone(), None)
            .map_err(PipelineError::Threads)?;
        tracing::info!(
            model = %model.path.display(),
            rate_flows_per_s = pace.rate_flows_per_s,
            profile = ?settings.rate.profile,
            collectors = key.collectors.len(),
            "pipeline started"
        );
        Ok(Pipeline {
            metrics,
            failures,
            schedule,
            burst_flows,
            pace,
            key,
            channel_batches: settings.pipeline.channel_batches,
            addresses,
            input,
            queued,
            generators,
            export,
        })
    }

    /// Switches to a new configuration and model. When the collectors and
    /// `[export]` are unchanged the streams carry on (templates, sequence
    /// numbers); otherwise every stream is reopened. On error nothing changed,
    /// except for [`PipelineError::Threads`]: then no generator runs any more.
    pub fn reload(&mut self, settings: &Settings, model: LoadedModel) -> Result<(), PipelineError> {
        let schedule = schedule_for(settings, model.day_profile.as_deref())?;
        let addresses = Arc::new(AddressPlan::new(&settings.addresses)?);
        let key = ExportKey::of(settings);
        let reopen = key != self.key || settings.pipeline.channel_batches != self.channel_batches;
        let replacement = if reopen {
            let (input, output) = crossbeam_channel::bounded(settings.pipeline.channel_batches);
            let queued = output.clone();
            let export = ExportPipeline::spawn(
                &key.collectors,
                &key.export,
                Pacing::Rate(self.pace),
                output,
            )?;
            Some((input, queued, export))
        } else {
            None
        };

        // The old threads stop first so that two models never feed one queue, and
        // their read-ahead goes so that the new settings apply at once.
        self.generators.stop();
        let discarded: usize = self.queued.try_iter().map(|batch| batch.len()).sum();
        tracing::debug!(
            flows = discarded,
            "discarded the previous model's read-ahead"
        );
        if let Some((input, queued, export)) = replacement {
            tracing::warn!(
                "collectors or [export] changed: every collector stream restarts \
                 (templates resent, sequence numbers from 0)"
            );
            drop(std::mem::replace(&mut self.input, input));
            self.queued = queued;
            let old = std::mem::replace(&mut self.export, export);
            old.flush_now();
            let _ = old.join();
            self.metrics
                .track(self.export.stats(), self.export.collectors());
            self.key = key;
            self.channel_batches = settings.pipeline.channel_batches;
        }

        self.schedule = schedule;
        self.burst_flows = settings.rate.burst;
        self.addresses = addresses;
        let pool_settings = PoolSettings {
            batch: settings.model.batch,
            addresses: self.addresses.clone(),
            metrics: self.metrics.clone(),
            failures: self.failures.clone(),
        };
        self.generators =
            GeneratorPool::start(model.generators, pool_settings, self.input.clone(), None)
                .map_err(PipelineError::Threads)?;
        self.update_rate(chrono::Local::now());
        tracing::info!(
            model = %model.path.display(),
            rate_flows_per_s = self.pace.rate_flows_per_s,
            "reloaded"
        );
        Ok(())
    }

    /// Moves the pacer to the schedule's rate at `now` (diurnal profiles change
    /// through the day; call this every second or so).
    pub fn update_rate(&mut self, now: chrono::DateTime<chrono::Local>) {
        let pace = pace_at(&self.schedule, self.burst_flows, now);
        if pace != self.pace {
            self.export.set_pace(pace);
            self.pace = pace;
            self.metrics.target_rate.set(pace.rate_flows_per_s as f64);
        }
        self.metrics.queued_batches.set(self.input.len() as i64);
    }

    /// The pace in force.
    pub fn pace(&self) -> PaceSettings {
        self.pace
    }

    /// Stops generating, keeps sending what is queued at the current rate for
    /// at most [`STOP_DRAIN`], discards the rest (logged at warn, counted in
    /// `flowgen_flows_discarded_at_stop`), closes the collectors (TCP streams
    /// get a short time to drain) and returns the final counters.
    ///
    /// Paced rather than flushed at once: the read-ahead (`channel_batches` x
    /// `batch` x generator threads) sent in one burst overflows a collector's
    /// UDP receive buffer, and a short run would overshoot its rate.
    pub fn stop(self) -> ExportReport {
        let Pipeline {
            mut generators,
            input,
            queued,
            export,
            metrics,
            ..
        } = self;
        drop(queued);
        generators.stop();
        drop(input);
        export.drain_within(STOP_DRAIN);
        let report = export.join();
        metrics.sync();
        let discarded_flows = report.pipeline.discarded_flows;
        if discarded_flows > 0 {
            tracing::warn!(
                discarded_flows,
                drain_limit_s = STOP_DRAIN.as_secs_f64(),
                "stopping: queued flows not sent within the drain limit were discarded"
            );
        }
        report
    }
}

fn schedule_for(
    settings: &Settings,
    day_profile: Option<&[f64]>,
) -> Result<RateSchedule, ScheduleError> {
    RateSchedule::new(
        settings.rate.flows_per_s,
        settings.rate.profile,
        day_profile,
    )
}

/// The pacer settings for the schedule at `now`; a paced rate never rounds to 0 (unlimited).
fn pace_at(
    schedule: &RateSchedule,
    burst_flows: u64,
    now: chrono::DateTime<chrono::Local>,
) -> PaceSettings {
    let rate_flows_per_s = if schedule.unlimited() {
        0
    } else {
        (schedule.flows_per_s_at(local_seconds_of_day(now)).round() as u64).max(1)
    };
    PaceSettings {
        rate_flows_per_s,
        burst_flows,
    }
}
