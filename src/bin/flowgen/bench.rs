//! `flowgen bench`: stage and end-to-end throughput; `flowgen bench sink`: a
//! counting IPFIX / NetFlow v9 sink for measuring a running daemon.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use flowgen::bench::report::rate;
use flowgen::bench::setup::ModelSource;
use flowgen::bench::stages::Stage;
use flowgen::bench::watch::{self, SecondReport};
use flowgen::bench::{self as library, BenchOptions};
use flowgen::export::ExportProtocol;
use flowgen::model::runtime::{Device, GraphOptimization, RuntimeOptions};

/// Arguments of `flowgen bench`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    bench: BenchArgs,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Count the IPFIX / NetFlow v9 records arriving on a UDP port, once a second.
    Sink(SinkArgs),
}

/// Options of the benchmark itself.
#[derive(clap::Args)]
struct BenchArgs {
    /// Model bundle to measure; stand-ins of the same shape are used where it has no
    /// generator.
    #[arg(long, value_name = "DIR", default_value = library::setup::DEFAULT_BUNDLE)]
    model: PathBuf,
    /// Flow file the stand-ins are fitted to [default: the shared CIDDS-001 sample].
    #[arg(long, value_name = "FILE")]
    sample: Option<PathBuf>,
    /// Hidden layer widths of the stand-in generator (when the bundle has none),
    /// comma-separated [default: the trainer's].
    #[arg(long, value_name = "W,..", value_delimiter = ',')]
    stand_in_hidden: Option<Vec<usize>>,
    /// Batch sizes to measure (flows per step), comma-separated.
    #[arg(long = "batch", value_name = "N,..", value_delimiter = ',', default_values_t = [1024, 4096, 16384])]
    batches: Vec<usize>,
    /// Thread counts to measure (workers per stage, generator threads end to end).
    #[arg(long = "threads", value_name = "N,..", value_delimiter = ',', default_values_t = [1, 2])]
    threads: Vec<usize>,
    /// Seconds measured per stage, batch size and thread count.
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    stage_seconds: f64,
    /// Seconds measured per end-to-end case, after the warm-up.
    #[arg(long, value_name = "S", default_value_t = 3.0)]
    e2e_seconds: f64,
    /// Seconds each end-to-end case runs before measuring.
    #[arg(long, value_name = "S", default_value_t = 1.0)]
    warm_up_seconds: f64,
    /// Where inference runs: cpu, cuda (needs a build with --features cuda and
    /// onnxruntime-gpu) or auto.
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda|auto")]
    device: Device,
    /// ONNX Runtime intra-op threads per session; 0 lets it choose.
    #[arg(long, value_name = "N", default_value_t = 1)]
    intra_threads: usize,
    /// Let idle ONNX Runtime intra-op threads spin (faster, burns CPU others could use).
    #[arg(long)]
    intra_spinning: bool,
    /// ONNX Runtime graph optimisation level.
    #[arg(long, value_name = "disabled|basic|extended|all", default_value = "all", value_parser = parse_optimization)]
    optimization: GraphOptimization,
    /// ONNX Runtime shared library [default: ORT_DYLIB_PATH, then the set-up locations].
    #[arg(long, value_name = "FILE")]
    onnxruntime: Option<PathBuf>,
    /// Export protocol end to end.
    #[arg(long, value_parser = parse_protocol, default_value = "ipfix", value_name = "ipfix|netflow9")]
    protocol: ExportProtocol,
    /// Stages to time, comma-separated: noise, inference, decode, generate,
    /// address-plan, encode, encode-send [default: all].
    #[arg(long, value_name = "NAME,..", value_delimiter = ',', value_parser = parse_stage)]
    stages: Vec<Stage>,
    /// Skip the per-stage measurements.
    #[arg(long, conflicts_with = "stages")]
    no_stages: bool,
    /// Skip the end-to-end runs.
    #[arg(long)]
    no_e2e: bool,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// Options of `flowgen bench sink`.
#[derive(clap::Args)]
struct SinkArgs {
    /// Address to listen on.
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:4739")]
    listen: SocketAddr,
    /// Seconds to count for.
    #[arg(long, value_name = "N", default_value_t = 10)]
    seconds: u64,
    /// Also print this process's resident memory each second (the daemon's pid).
    #[arg(long, value_name = "PID")]
    watch_pid: Option<u32>,
    /// Print one JSON object per second and one with the totals.
    #[arg(long)]
    json: bool,
}

fn parse_protocol(text: &str) -> Result<ExportProtocol, String> {
    match text.to_ascii_lowercase().as_str() {
        "ipfix" => Ok(ExportProtocol::Ipfix),
        "netflow9" | "v9" => Ok(ExportProtocol::Netflow9),
        _ => Err(format!("`{text}` is neither ipfix nor netflow9")),
    }
}

fn parse_stage(text: &str) -> Result<Stage, String> {
    Stage::from_key(text).ok_or_else(|| {
        let names: Vec<&str> = Stage::ALL.iter().map(|s| s.key()).collect();
        format!("`{text}` is not a stage ({})", names.join(", "))
    })
}

fn parse_optimization(text: &str) -> Result<GraphOptimization, String> {
    match text {
        "disabled" => Ok(GraphOptimization::Disabled),
        "basic" => Ok(GraphOptimization::Basic),
        "extended" => Ok(GraphOptimization::Extended),
        "all" => Ok(GraphOptimization::All),
        _ => Err(format!("`{text}` is not disabled, basic, extended or all")),
    }
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag}: not a duration: {value}"))
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Some(Command::Sink(sink)) => run_sink(sink),
        None => run_bench(args.bench),
    }
}

fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    let mut source = ModelSource::default_paths();
    source.bundle = args.model;
    if let Some(sample) = args.sample {
        source.sample = sample;
    }
    source.stand_in_hidden = args.stand_in_hidden;
    let options = BenchOptions {
        source,
        batches: args.batches,
        threads: args.threads,
        stage_time: seconds(args.stage_seconds, "--stage-seconds")?,
        warm_up: seconds(args.warm_up_seconds, "--warm-up-seconds")?,
        e2e_time: seconds(args.e2e_seconds, "--e2e-seconds")?,
        runtime: RuntimeOptions {
            library_path: args.onnxruntime,
            device: args.device,
            intra_threads: args.intra_threads,
            intra_spinning: args.intra_spinning,
            optimization: args.optimization,
        },
        protocol: args.protocol,
        stages: match (args.no_stages, args.stages.is_empty()) {
            (true, _) => Vec::new(),
            (false, true) => Stage::ALL.to_vec(),
            (false, false) => args.stages,
        },
        run_end_to_end: !args.no_e2e,
    };
    let report = library::run(&options, |step| eprintln!("bench: {step}"))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report)?;
        writeln!(out)?;
    } else {
        write!(out, "{report}")?;
    }
    Ok(())
}

fn run_sink(args: SinkArgs) -> anyhow::Result<()> {
    let json = args.json;
    let mut out = std::io::stdout().lock();
    let mut failed = None;
    let totals = watch::watch(args.listen, args.seconds, args.watch_pid, |second| {
        let line = if json {
            serde_json::to_string(second).map_err(anyhow::Error::from)
        } else {
            Ok(second_line(second))
        };
        if let Err(e) = line.and_then(|l| writeln!(out, "{l}").map_err(Into::into)) {
            failed.get_or_insert(e);
        }
    })?;
    if let Some(e) = failed {
        return Err(e);
    }
    if json {
        serde_json::to_writer(&mut out, &totals)?;
        writeln!(out)?;
    } else {
        let c = &totals.counts;
        writeln!(
            out,
            "total: {} records in {:.0} s ({} records/s from the first record), {} datagrams, \
             {} malformed, {} truncated, {} data sets before their template, {} lost by sequence",
            c.data_records,
            totals.elapsed_s,
            rate(totals.records_per_s),
            c.datagrams,
            c.malformed,
            c.truncated,
            c.unknown_template_sets,
            c.sequence_gap
        )?;
    }
    Ok(())
}

fn second_line(second: &SecondReport) -> String {
    let c = &second.counts;
    let mut line = format!(
        "{:5.0} s  {:>9} records/s  {:>7} datagrams  malformed {}  seq-lost {}",
        second.elapsed_s,
        rate(second.records_per_s),
        c.datagrams,
        c.malformed + c.truncated,
        c.sequence_gap
    );
    if let Some(memory) = second.watched {
        line.push_str(&format!(
            "  rss {:.1} MiB (peak {:.1} MiB)",
            memory.resident_kib as f64 / 1024.0,
            memory.peak_resident_kib as f64 / 1024.0
        ));
    }
    line
}
