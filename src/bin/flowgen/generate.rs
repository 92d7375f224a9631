//! `flowgen generate`: write flows from a model bundle as CIDDS-001 CSV.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use anyhow::Context;
use flowgen::data::WriteError;
use flowgen::model::generate::{write_csv, GenerateError};
use flowgen::model::{self, LoadOptions};
use indicatif::{ProgressBar, ProgressStyle};

/// Counts from which a progress bar is shown (on a terminal).
const PROGRESS_FROM_FLOWS: u64 = 100_000;

/// Arguments of `flowgen generate`.
#[derive(clap::Args)]
pub struct Args {
    /// Model bundle folder (written by flowgen-train).
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    /// Number of flows to write.
    #[arg(long, value_name = "N")]
    count: u64,
    /// Seed of the generator; the same seed writes the same flows. Random when not given.
    #[arg(long, value_name = "S")]
    seed: Option<u64>,
    /// Output CSV file; `-` or none for standard output.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let seed = args.seed.unwrap_or_else(rand::random);
    tracing::info!(model = %args.model.display(), seed, count = args.count, "generating flows");
    let options = LoadOptions {
        seed,
        ..LoadOptions::default()
    };
    let mut generator = model::load(&args.model, &options)?;

    let progress = progress_bar(args.count);
    let output = args.output.filter(|p| p.as_os_str() != "-");
    let outcome = match &output {
        None => write_csv(
            generator.as_mut(),
            args.count,
            std::io::stdout().lock(),
            |n| progress.inc(n),
        )
        .and_then(|mut out| out.flush().map_err(|e| WriteError::Io(e).into())),
        Some(path) => {
            let file = File::create(path)
                .with_context(|| format!("{}: cannot create output", path.display()))?;
            write_csv(generator.as_mut(), args.count, BufWriter::new(file), |n| {
                progress.inc(n)
            })
            .and_then(|out| {
                out.into_inner()
                    .map(drop)
                    .map_err(|e| WriteError::Io(e.into_error()).into())
            })
        }
    };
    progress.finish_and_clear();

    match outcome {
        Ok(()) => Ok(()),
        // The reader of standard output has seen enough (`| head`): not a failure.
        Err(e) if e.is_broken_pipe() && output.is_none() => Ok(()),
        Err(e @ GenerateError::Write(_)) => {
            let name =
                output.map_or_else(|| "standard output".to_owned(), |p| p.display().to_string());
            Err(anyhow::Error::new(e).context(name))
        }
        Err(e) => Err(e.into()),
    }
}

fn progress_bar(count: u64) -> ProgressBar {
    if count < PROGRESS_FROM_FLOWS {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(count);
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:40} {human_pos}/{human_len} flows ({per_sec}, {eta} left)",
    ) {
        bar.set_style(style);
    }
    bar
}
