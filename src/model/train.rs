//! Training steps every model kind shares: fingerprinting the input files,
//! splitting off the held-out rows, and writing the bundle around the
//! kind's own files; plus the whole of training the baseline.
//!
//! Input files are read in passes (one to count, one to learn), so training
//! the baseline needs memory for its tables only, not for the flows.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::baseline::{self, BaselineCounter, BASELINE_FILE};
use super::bundle::{
    sha256_file, Bundle, BundleError, DataFile, Manifest, ModelKind, TrainingData, MANIFEST_FILE,
    SCHEMA_VERSION,
};
use crate::data::holdout::{held_out_rows, HoldoutSampler};
use crate::data::{CiddsWriter, FlowReader, ReadError, ReadOptions, WriteError};
use crate::flow::Flow;

/// The held-out flows' file name inside a bundle.
pub const HOLDOUT_FILE: &str = "holdout.csv";

/// What went wrong training a model.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// An input file could not be read.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// The bundle could not be written.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The held-out flows could not be written.
    #[error("{path}: {source}", path = path.display())]
    WriteHoldout {
        /// The held-out file.
        path: PathBuf,
        /// The underlying failure.
        source: WriteError,
    },
    /// No input file was given.
    #[error("no training data files given")]
    NoInput,
    /// The holdout fraction is not a share below one.
    #[error("holdout fraction {0} is not between 0 (inclusive) and 1 (exclusive)")]
    BadHoldoutFraction(f64),
    /// Nothing is left to learn from.
    #[error("no training flows: the input holds {rows} flows and {held_out} of them are held out")]
    NoTrainingFlows {
        /// Flows in the input.
        rows: u64,
        /// Flows held out.
        held_out: u64,
    },
    /// An input file gave a different number of flows on the second pass.
    #[error(
        "{path}: changed while training: {first} flows on the first pass, {second} on the second",
        path = path.display()
    )]
    InputChanged {
        /// The file.
        path: PathBuf,
        /// Flows on the first pass.
        first: u64,
        /// Flows on the second pass.
        second: u64,
    },
}

/// What to train on and how to split it.
#[derive(Clone, Debug)]
pub struct TrainInput {
    /// Flow files (CIDDS-001 or nfdump CSV), read in this order.
    pub data: Vec<PathBuf>,
    /// Whether bad rows are skipped.
    pub read_options: ReadOptions,
    /// Share of flows held out for evaluation, in [0, 1).
    pub holdout_fraction: f64,
    /// Seed of the holdout split and of the kind's own random choices.
    pub seed: u64,
}

/// How the input was split.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Split {
    /// Flows handed to the learner.
    pub training_rows: u64,
    /// Flows written to the held-out file.
    pub held_out_rows: u64,
    /// The held-out file's name inside the bundle, when any flows were held out.
    pub held_out_file: Option<String>,
}

/// Checks the input, then fingerprints and counts every file (the first pass).
pub fn scan(input: &TrainInput) -> Result<Vec<DataFile>, TrainError> {
    if input.data.is_empty() {
        return Err(TrainError::NoInput);
    }
    if !(0.0..1.0).contains(&input.holdout_fraction) {
        return Err(TrainError::BadHoldoutFraction(input.holdout_fraction));
    }
    let mut files = Vec::with_capacity(input.data.len());
    for path in &input.data {
        let sha256 = sha256_file(path)?;
        let mut reader = FlowReader::open(path, input.read_options)?;
        let mut rows = 0u64;
        for flow in reader.by_ref() {
            flow?;
            rows += 1;
        }
        let skipped_rows = reader.skipped_rows();
        tracing::info!(file = %path.display(), rows, skipped_rows, "scanned training data");
        files.push(DataFile {
            name: file_name(path),
            rows,
            skipped_rows: reader.skipped_rows(),
            sha256,
        });
    }
    Ok(files)
}

/// Streams the input a second time, writing the held-out flows to
/// `out_dir/holdout.csv` and handing every other flow to `learn`.
pub fn split(
    input: &TrainInput,
    files: &[DataFile],
    out_dir: &Path,
    mut learn: impl FnMut(Flow),
) -> Result<Split, TrainError> {
    let total: u64 = files.iter().map(|f| f.rows).sum();
    let held_out = held_out_rows(total, input.holdout_fraction);
    let mut sampler = HoldoutSampler::new(total, held_out, input.seed);
    let holdout_path = out_dir.join(HOLDOUT_FILE);
    let mut holdout = if held_out > 0 {
        Some(holdout_writer(&holdout_path)?)
    } else {
        None
    };

    let mut training_rows = 0u64;
    for (path, scanned) in input.data.iter().zip(files) {
        let mut rows = 0u64;
        for flow in FlowReader::open(path, input.read_options)? {
            let flow = flow?;
            rows += 1;
            match holdout.as_mut() {
                Some(writer) if sampler.next_is_held_out() => {
                    writer
                        .write(&flow)
                        .map_err(|source| TrainError::WriteHoldout {
                            path: holdout_path.clone(),
                            source,
                        })?;
                }
                _ => {
                    training_rows += 1;
                    learn(flow);
                }
            }
        }
        if rows != scanned.rows {
            return Err(TrainError::InputChanged {
                path: path.clone(),
                first: scanned.rows,
                second: rows,
            });
        }
    }
    if let Some(mut writer) = holdout {
        writer.flush().map_err(|source| TrainError::WriteHoldout {
            path: holdout_path.clone(),
            source,
        })?;
    }
    Ok(Split {
        training_rows,
        held_out_rows: held_out,
        held_out_file: (held_out > 0).then(|| HOLDOUT_FILE.to_owned()),
    })
}

/// Creates `out_dir` and removes a stale manifest, so that a folder whose
/// training fails half-way is not mistaken for a bundle.
pub fn prepare_out_dir(out_dir: &Path) -> Result<(), BundleError> {
    let io = |path: &Path, source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out_dir).map_err(|e| io(out_dir, e))?;
    let manifest = out_dir.join(MANIFEST_FILE);
    match std::fs::remove_file(&manifest) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&manifest, e)),
        _ => Ok(()),
    }
}

/// A manifest for a freshly trained model; the caller fills in what is kind-specific.
pub fn manifest(
    kind: ModelKind,
    input: &TrainInput,
    files: Vec<DataFile>,
    split: Split,
    started: Instant,
) -> Manifest {
    Manifest {
        kind,
        schema_version: SCHEMA_VERSION,
        flowgen_version: env!("CARGO_PKG_VERSION").to_owned(),
        created_utc: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        seed: input.seed,
        training_data: TrainingData {
            files,
            training_rows: split.training_rows,
            held_out_rows: split.held_out_rows,
            holdout_fraction: input.holdout_fraction,
            held_out_file: split.held_out_file,
        },
        hyperparameters: serde_json::Map::new(),
        training_time_s: started.elapsed().as_secs_f64(),
        files: Vec::new(),
        file_sha256: Default::default(),
        feature_layout: None,
        eval: None,
    }
}

/// Trains the empirical baseline and writes its bundle to `out_dir`.
pub fn train_baseline(input: &TrainInput, out_dir: &Path) -> Result<Manifest, TrainError> {
    let started = Instant::now();
    let files = scan(input)?;
    prepare_out_dir(out_dir)?;

    let mut counter = BaselineCounter::new();
    let split = split(input, &files, out_dir, |flow| counter.add(&flow))?;
    if counter.flows() == 0 {
        return Err(TrainError::NoTrainingFlows {
            rows: files.iter().map(|f| f.rows).sum(),
            held_out: split.held_out_rows,
        });
    }
    baseline::write(out_dir, &counter.finish())?;

    let mut manifest = manifest(ModelKind::Baseline, input, files, split, started);
    manifest.files = vec![BASELINE_FILE.to_owned()];
    Bundle::write_manifest(out_dir, &manifest)?;
    tracing::info!(
        bundle = %out_dir.display(),
        training_rows = manifest.training_data.training_rows,
        held_out_rows = manifest.training_data.held_out_rows,
        "baseline trained"
    );
    Ok(manifest)
}

fn holdout_writer(path: &Path) -> Result<CiddsWriter<BufWriter<File>>, TrainError> {
    let file = File::create(path).map_err(|source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    CiddsWriter::with_labels(BufWriter::new(file)).map_err(|source| TrainError::WriteHoldout {
        path: path.to_path_buf(),
        source,
    })
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}
