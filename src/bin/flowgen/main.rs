//! `flowgen`: the daemon and its subcommands. Argument parsing only; the work is in the library.

use clap::{Parser, Subcommand};

mod bench;
mod check_config;
mod eval;
mod generate;
mod replay;
mod run;

/// Realistic synthetic network flows, streamed as IPFIX and NetFlow v9.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Stream generated flows to collectors until stopped.
    Run(run::Args),
    /// Write generated flows as CIDDS-001 CSV.
    Generate(generate::Args),
    /// Score synthetic flows against real ones.
    Eval(eval::Args),
    /// Stream a real flow file to collectors.
    Replay(replay::Args),
    /// Validate a configuration file without starting anything.
    CheckConfig(check_config::Args),
    /// Measure throughput of each pipeline stage.
    Bench(bench::Args),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_tracing();

    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Generate(args) => generate::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Replay(args) => replay::run(args),
        Command::CheckConfig(args) => check_config::run(args),
        Command::Bench(args) => bench::run(args),
    };

    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", flowgen::error_text::describe(err.as_ref()));
            std::process::ExitCode::FAILURE
        }
    }
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
