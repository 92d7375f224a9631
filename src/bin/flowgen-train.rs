//! `flowgen-train`: the offline trainer. Argument parsing only; the work is in the library.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use flowgen::data::ReadOptions;
use flowgen::model::train::{self, TrainInput};

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
            eprintln!("error: {err:#}");
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
        Kind::Ewgan => anyhow::bail!("training ewgan models is not built yet; use --kind baseline"),
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

/// Logs go to stderr, filtered by `RUST_LOG` (default `info`).
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
