//! `flowgen-train`: the offline trainer. Argument parsing only; the work is in the library.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, ValueEnum};
use flowgen::data::ReadOptions;
use flowgen::model::ewgan::{self, EwganParams, EwganRun};
use flowgen::model::runtime::RuntimeOptions;
use flowgen::model::train::{self, TrainInput};
use flowgen::model::wgan::Progress;

/// Train a flow model from real flow files and write it as a model bundle.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Kind of model to train.
    #[arg(long, value_enum)]
    kind: Kind,
    /// Flow files to learn from: CIDDS-001 CSV or `nfdump -o csv` output.
    #[arg(long, value_name = "FILE", required = true, num_args = 1..)]
    data: Vec<PathBuf>,
    /// Folder to write the model bundle to (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Seed of every random choice in training, the holdout split included.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Skip rows that do not parse (and report how many) instead of stopping.
    #[arg(long)]
    skip_bad_rows: bool,
    /// Share of flows held out for evaluation, written to the bundle's holdout.csv.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.0)]
    holdout: f64,
    #[command(flatten)]
    ewgan: EwganArgs,
}

/// Knobs of `--kind ewgan`; each overrides the defaults or the `--params` file.
#[derive(clap::Args)]
#[command(next_help_heading = "E-WGAN-GP options")]
struct EwganArgs {
    /// JSON file with every hyper-parameter (the manifest's `hyperparameters` object).
    #[arg(long, value_name = "FILE")]
    params: Option<PathBuf>,
    /// WGAN-GP passes over the training flows.
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// Width of each IP2Vec embedding.
    #[arg(long, value_name = "D")]
    embedding_dim: Option<usize>,
    /// IP2Vec passes over the training flows.
    #[arg(long, value_name = "N")]
    ip2vec_epochs: Option<usize>,
    /// Fewest occurrences for an address or port to get its own word.
    #[arg(long, value_name = "N")]
    min_count: Option<u64>,
    /// Generator hidden layer widths, comma-separated.
    #[arg(long, value_name = "W,W,...", value_delimiter = ',')]
    hidden: Option<Vec<usize>>,
    /// Critic hidden layer widths, comma-separated.
    #[arg(long, value_name = "W,W,...", value_delimiter = ',')]
    critic_hidden: Option<Vec<usize>>,
    /// Width of the generator's noise input.
    #[arg(long, value_name = "N")]
    noise_dim: Option<usize>,
    /// Rows per WGAN-GP batch.
    #[arg(long, value_name = "N")]
    batch: Option<usize>,
    /// Most training flows used (a seeded uniform sample beyond).
    #[arg(long, value_name = "N")]
    max_flows: Option<usize>,
    /// Delete holdout.csv once the held-out flows are scored (for bundles
    /// published without real flows); the manifest keeps the scores.
    #[arg(long)]
    discard_holdout: bool,
    /// ONNX Runtime shared library (default: ORT_DYLIB_PATH, then where scripts/setup puts it).
    #[arg(long, value_name = "FILE")]
    onnxruntime: Option<PathBuf>,
}

impl EwganArgs {
    /// The hyper-parameters: defaults, then the `--params` file, then each flag.
    fn params(&self) -> anyhow::Result<EwganParams> {
        let mut params = match &self.params {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("{}: cannot read", path.display()))?;
                serde_json::from_str(&text)
                    .with_context(|| format!("{}: bad hyper-parameters", path.display()))?
            }
            None => EwganParams::default(),
        };
        if let Some(n) = self.epochs {
            params.wgan.epochs = n;
        }
        if let Some(d) = self.embedding_dim {
            params.codebook.ip2vec.dim = d;
        }
        if let Some(n) = self.ip2vec_epochs {
            params.codebook.ip2vec.epochs = n;
        }
        if let Some(n) = self.min_count {
            params.codebook.addresses.min_count = n;
            params.codebook.ports.min_count = n;
        }
        if let Some(widths) = &self.hidden {
            params.wgan.hidden = widths.clone();
        }
        if let Some(widths) = &self.critic_hidden {
            params.wgan.critic_hidden = widths.clone();
        }
        if let Some(n) = self.noise_dim {
            params.wgan.noise_dim = n;
        }
        if let Some(n) = self.batch {
            params.wgan.batch = n;
        }
        if let Some(n) = self.max_flows {
            params.max_training_flows = n;
        }
        Ok(params)
    }
}

/// Model kinds the trainer builds.
#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    /// Every attribute drawn independently from its empirical distribution.
    Baseline,
    /// IP2Vec embeddings with a WGAN-GP generator exported as ONNX.
    Ewgan,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", flowgen::error_text::describe(err.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let input = TrainInput {
        data: cli.data,
        read_options: ReadOptions {
            skip_bad_rows: cli.skip_bad_rows,
        },
        holdout_fraction: cli.holdout,
        seed: cli.seed,
    };
    let manifest = match cli.kind {
        Kind::Baseline => train::train_baseline(&input, &cli.out)?,
        Kind::Ewgan => {
            let params = cli.ewgan.params()?;
            let run = EwganRun {
                runtime: RuntimeOptions {
                    library_path: cli.ewgan.onnxruntime.clone(),
                    ..RuntimeOptions::default()
                },
                progress: Progress::Bar,
                keep_holdout_file: !cli.ewgan.discard_holdout,
            };
            ewgan::train_ewgan_with(&input, &cli.out, &params, &run)?
        }
    };

    let data = &manifest.training_data;
    let skipped: u64 = data.files.iter().map(|f| f.skipped_rows).sum();
    if skipped > 0 {
        tracing::warn!(skipped_rows = skipped, "bad rows were skipped");
    }
    println!(
        "wrote {} bundle {}: {} training flows, {} held out, {} bad rows skipped, {:.1} s",
        manifest.kind,
        cli.out.display(),
        data.training_rows,
        data.held_out_rows,
        skipped,
        manifest.training_time_s
    );
    Ok(())
}

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`); colours only on
/// a terminal, so that files and journald get no escape codes.
fn init_tracing() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ort=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
