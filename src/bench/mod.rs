//! `flowgen bench`: throughput of each pipeline stage and of the whole path into
//! a counting IPFIX sink on 127.0.0.1, with the process's memory over the run.
//!
//! Stages are timed one by one on the model under test ([`setup`]): noise,
//! inference, decoding, the address plan, encoding, encoding with sending; each
//! at every batch size and thread count asked for, as flows per wall second
//! and per CPU second (the latter is the stage's cost on a busy machine). The
//! end-to-end runs ([`end_to_end`]) push flows through the real export
//! pipeline at an unlimited rate into [`sink::CountingSink`], which parses every
//! message. [`sink`] also runs on its own (`flowgen bench sink`) to count what
//! a running `flowgen run --rate 0` delivers. Nothing here fails on speed.
//!
//! Known shortcomings. The in-process sink shares the machine's cores with the
//! generator, so end-to-end figures include the sink's own cost, which a real
//! collector elsewhere would not take from the generator: they understate what
//! a collector on another host would see. Without an E-WGAN-GP bundle the
//! stages run on stand-ins of the trainer's default shape, whose inference and
//! decoding cost match a trained model's but whose flows do not. The sink's
//! receive buffer is capped by `net.core.rmem_max` unless the process may raise
//! it (`CAP_NET_ADMIN`); with a small buffer, bursts can overflow it, which the
//! sequence numbers then report as lost records.

pub mod clock;
pub mod end_to_end;
pub mod memory;
pub mod report;
pub mod setup;
pub mod sink;
pub mod stages;
pub mod watch;
pub mod wire;
mod workers;

use std::path::PathBuf;
use std::time::Duration;

use crate::export::ExportProtocol;
use crate::model::runtime::RuntimeOptions;
use end_to_end::EndToEndCase;
use memory::{RssSampler, RssSummary};
use report::{BenchReport, Machine, MemoryReport};
use setup::{ModelSource, ModelUnderTest};
use stages::{Stage, StageResult};
use workers::StageInputs;

/// How often the resident set is sampled over the run.
const RSS_INTERVAL: Duration = Duration::from_millis(250);

/// What went wrong setting up or running the benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A stand-in could not be built.
    #[error("{0}")]
    Setup(String),
    /// A file could not be read or written.
    #[error("{path}: {source}", path = path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's failure.
        source: std::io::Error,
    },
    /// The flow sample could not be read.
    #[error(transparent)]
    Read(#[from] crate::data::ReadError),
    /// The model bundle could not be loaded, or its generator failed.
    #[error(transparent)]
    Bundle(#[from] crate::model::bundle::BundleError),
    /// Generator rows could not be decoded.
    #[error("decoding: {0}")]
    Decode(#[from] crate::model::decode::DecodeError),
    /// The export pipeline could not start.
    #[error(transparent)]
    Net(#[from] crate::net::NetError),
    /// The sink's socket could not be opened.
    #[error("sink on 127.0.0.1: {source}")]
    Sink {
        /// The system's failure.
        source: std::io::Error,
    },
    /// A thread could not be started.
    #[error("cannot start a benchmark thread: {source}")]
    Thread {
        /// The system's failure.
        source: std::io::Error,
    },
    /// A worker thread panicked.
    #[error("a benchmark worker thread panicked")]
    WorkerPanicked,
    /// ONNX Runtime could not be loaded or failed.
    #[error(transparent)]
    Runtime(#[from] crate::model::runtime::RuntimeError),
    /// The daemon pipeline could not start.
    #[error(transparent)]
    Pipeline(Box<crate::daemon::pipeline::PipelineError>),
    /// A generator thread of an end-to-end run failed.
    #[error("{0}")]
    Generator(String),
    /// An option is out of range.
    #[error("{option}: {message}")]
    Option {
        /// The command-line option.
        option: &'static str,
        /// What is wrong with it.
        message: String,
    },
}

impl From<crate::daemon::pipeline::PipelineError> for BenchError {
    fn from(e: crate::daemon::pipeline::PipelineError) -> Self {
        BenchError::Pipeline(Box::new(e))
    }
}

/// What to measure and for how long.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Where the model comes from.
    pub source: ModelSource,
    /// Batch sizes (flows per step), each measured.
    pub batches: Vec<usize>,
    /// Thread counts, each measured.
    pub threads: Vec<usize>,
    /// Measured time per stage, batch and thread count.
    pub stage_time: Duration,
    /// Unmeasured time before each end-to-end window.
    pub warm_up: Duration,
    /// Measured time per end-to-end case.
    pub e2e_time: Duration,
    /// ONNX Runtime: library, device, threads per session, graph optimisation.
    pub runtime: RuntimeOptions,
    /// Export protocol of the end-to-end runs.
    pub protocol: ExportProtocol,
    /// The stages to time, in pipeline order; empty for none.
    pub stages: Vec<Stage>,
    /// Whether to run end to end.
    pub run_end_to_end: bool,
}

impl BenchOptions {
    /// Checks the options, naming the flag at fault.
    pub fn validate(&self) -> Result<(), BenchError> {
        let bad = |option, message: &str| {
            Err(BenchError::Option {
                option,
                message: message.to_owned(),
            })
        };
        if self.batches.is_empty() || self.batches.iter().any(|&b| b == 0 || b > 1 << 20) {
            return bad("--batch", "every batch size must be between 1 and 1048576");
        }
        if let Some(hidden) = &self.source.stand_in_hidden {
            if hidden.is_empty() || hidden.iter().any(|&w| w == 0 || w > 1 << 16) {
                return bad(
                    "--stand-in-hidden",
                    "give one to many layer widths between 1 and 65536",
                );
            }
        }
        if self.threads.is_empty() || self.threads.iter().any(|&t| t == 0 || t > 256) {
            return bad("--threads", "every thread count must be between 1 and 256");
        }
        Ok(())
    }
}

/// Runs the benchmark; `progress` hears a line before each measurement.
pub fn run(
    options: &BenchOptions,
    mut progress: impl FnMut(&str),
) -> Result<BenchReport, BenchError> {
    options.validate()?;
    let sampler = RssSampler::start(RSS_INTERVAL);
    let machine = Machine {
        cores: clock::available_cores(),
        cpu: clock::cpu_model(),
        load_average: load_average(),
    };
    progress("preparing the model");
    let model = ModelUnderTest::prepare(&options.source, &options.runtime)?;
    let mut notes = Vec::new();
    if let Some(why) = &model.runtime_unavailable {
        notes.push(format!("inference stage skipped: {why}"));
    }
    let device = match model.runtime_unavailable {
        None => Some(model.session()?.device().to_string()),
        Some(_) => None,
    };

    let mut stages = Vec::new();
    if !options.stages.is_empty() {
        for &batch in &options.batches {
            let inputs = StageInputs::new(&model, batch)?;
            for &threads in &options.threads {
                progress(&format!("stages at batch {batch}, {threads} threads"));
                for &stage in &options.stages {
                    if let Some(result) = run_stage(stage, &inputs, threads, options.stage_time)? {
                        stages.push(result);
                    }
                }
            }
        }
    }

    let mut end_to_end = Vec::new();
    if options.run_end_to_end {
        for &batch in &options.batches {
            for &threads in &options.threads {
                progress(&format!(
                    "end to end at batch {batch}, {threads} generator threads"
                ));
                let case = EndToEndCase {
                    batch,
                    threads,
                    protocol: options.protocol,
                };
                end_to_end.push(end_to_end::run(
                    &model,
                    case,
                    options.warm_up,
                    options.e2e_time,
                )?);
            }
        }
    }

    let samples = sampler.map(RssSampler::finish).unwrap_or_default();
    Ok(BenchReport {
        machine,
        model: model.description.clone(),
        device,
        notes,
        stages,
        end_to_end,
        memory: MemoryReport {
            peak_resident_kib: memory::read_status().map(|s| s.peak_resident_kib),
            rss: RssSummary::of(&samples),
            samples,
        },
    })
}

/// Times one stage; `None` for a stage this model cannot run (inference
/// without ONNX Runtime, the whole-model call of a baseline).
fn run_stage(
    stage: Stage,
    inputs: &StageInputs,
    threads: usize,
    time: Duration,
) -> Result<Option<StageResult>, BenchError> {
    let model = inputs.model;
    let result = match stage {
        Stage::Noise => workers::noise(inputs, threads, time)?,
        Stage::Inference if model.runtime_unavailable.is_none() => {
            workers::inference(inputs, threads, time)?
        }
        Stage::Decode => workers::decode(inputs, threads, time)?,
        Stage::Generate if model.end_to_end_is_ewgan() => workers::generate(inputs, threads, time)?,
        Stage::AddressPlan => workers::address_plan(inputs, threads, time)?,
        Stage::Encode => workers::encode(inputs, threads, time)?,
        Stage::EncodeSend => workers::encode_send(inputs, threads, time)?,
        Stage::Inference | Stage::Generate => return Ok(None),
    };
    Ok(Some(result))
}

/// The one-minute load average, where `/proc/loadavg` exists.
fn load_average() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}
