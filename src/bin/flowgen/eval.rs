//! `flowgen eval`: scores a synthetic flow file against a real one and prints
//! a table, optionally writing the figures as JSON.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use flowgen::data::{FlowReader, ReadOptions};
use flowgen::eval::{self, Cidr, EvalOptions, InternalNetwork};
use flowgen::flow::Flow;

/// Arguments of `flowgen eval`.
#[derive(clap::Args)]
pub struct Args {
    /// Real flows to compare against (CIDDS-001 or nfdump CSV), ideally held
    /// out from training.
    #[arg(long, value_name = "REAL.csv")]
    reference: PathBuf,
    /// Synthetic flows to score.
    #[arg(long, value_name = "SYN.csv")]
    synthetic: PathBuf,
    /// The generator's training flows: adds memorization (exact copies) and a
    /// "real (train)" yardstick, a same-size random draw of these scored alike.
    #[arg(long, value_name = "TRAIN.csv")]
    train: Option<PathBuf>,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "OUT.json")]
    json: Option<PathBuf>,
    /// An internal network; repeat for several [default: 192.168.0.0/16].
    #[arg(long, value_name = "CIDR")]
    internal: Vec<Cidr>,
    /// Seed of the yardstick's random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Skip rows that cannot be parsed (and report how many) instead of stopping.
    #[arg(long)]
    skip_bad_rows: bool,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let read_options = ReadOptions {
        skip_bad_rows: args.skip_bad_rows,
    };
    let reference = read(&args.reference, read_options)?;
    let synthetic = read(&args.synthetic, read_options)?;
    let train = args
        .train
        .as_deref()
        .map(|p| read(p, read_options))
        .transpose()?;

    let internal = if args.internal.is_empty() {
        InternalNetwork::cidds001()
    } else {
        InternalNetwork::new(args.internal)
    };
    let options = EvalOptions {
        internal,
        seed: args.seed,
        ..EvalOptions::default()
    };
    let report = eval::evaluate(&reference, &synthetic, train.as_deref(), &options)?;

    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report)?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    print_table(&report)
}

/// Prints the table; a closed pipe (`flowgen eval ... | head`) is not an error.
fn print_table(report: &eval::Report) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match write!(stdout, "{report}").and_then(|()| stdout.flush()) {
        Err(err) if err.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(err).context("cannot write the table to stdout")
        }
        _ => Ok(()),
    }
}

/// Every flow of `path`, warning about skipped rows.
fn read(path: &Path, options: ReadOptions) -> anyhow::Result<Vec<Flow>> {
    let mut reader = FlowReader::open(path, options)?;
    let flows = reader.by_ref().collect::<Result<Vec<Flow>, _>>()?;
    if reader.skipped_rows() > 0 {
        tracing::warn!(
            file = %path.display(),
            skipped = reader.skipped_rows(),
            "skipped rows that could not be parsed"
        );
    }
    tracing::info!(file = %path.display(), flows = flows.len(), "read flows");
    Ok(flows)
}
