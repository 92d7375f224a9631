//! `flowgen replay`: argument parsing for [`flowgen::replay`].

use std::path::PathBuf;

use flowgen::export::ExportProtocol;
use flowgen::net::CollectorConfig;
use flowgen::replay::{ReplayConfigFile, ReplayOptions, ReplayPace, DEFAULT_REORDER_WINDOW_FLOWS};

/// Arguments of `flowgen replay`.
#[derive(clap::Args)]
pub struct Args {
    /// Flow file to play (CIDDS-001 or `nfdump -o csv`).
    #[arg(long, value_name = "FILE")]
    input: PathBuf,
    /// Collector to send to, `HOST:PORT`; repeat for several. Replaces the
    /// config file's collectors.
    #[arg(long = "collector", value_name = "HOST:PORT")]
    collectors: Vec<String>,
    /// Export protocol for every collector [default: ipfix, or the config's].
    #[arg(long, value_enum)]
    protocol: Option<ProtocolArg>,
    /// Flows per second (0 = as fast as possible), or `original` to keep the
    /// file's own timing.
    #[arg(long, default_value = "original", value_name = "N|original")]
    rate: ReplayPace,
    /// TOML file with `[addresses]`, `[[collector]]` and `[export]` tables
    /// (the daemon's config works; its other tables are ignored).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// With `--rate original`: flows held to restore time order in an unsorted file.
    #[arg(long, default_value_t = DEFAULT_REORDER_WINDOW_FLOWS, value_name = "FLOWS")]
    reorder_window: usize,
    /// Skip (and count) rows that do not parse instead of stopping at the first.
    #[arg(long)]
    skip_bad_rows: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ProtocolArg {
    Ipfix,
    Netflow9,
}

impl From<ProtocolArg> for ExportProtocol {
    fn from(arg: ProtocolArg) -> Self {
        match arg {
            ProtocolArg::Ipfix => ExportProtocol::Ipfix,
            ProtocolArg::Netflow9 => ExportProtocol::Netflow9,
        }
    }
}

/// Runs the subcommand.
pub fn run(args: Args) -> anyhow::Result<()> {
    let file = match &args.config {
        Some(path) => ReplayConfigFile::load(path)?,
        None => ReplayConfigFile::default(),
    };
    for table in file.other.keys() {
        tracing::debug!(table, "ignoring a table replay does not use");
    }

    let mut collectors = if args.collectors.is_empty() {
        file.collector
    } else {
        let protocol = args.protocol.map_or(ExportProtocol::Ipfix, Into::into);
        args.collectors
            .iter()
            .map(|address| CollectorConfig::udp(address.clone(), protocol))
            .collect()
    };
    if let Some(protocol) = args.protocol {
        for collector in &mut collectors {
            collector.protocol = protocol.into();
        }
    }

    let options = ReplayOptions {
        input: args.input,
        collectors,
        export: file.export,
        addresses: file.addresses,
        pace: args.rate,
        reorder_window_flows: args.reorder_window,
        skip_bad_rows: args.skip_bad_rows,
    };
    let summary = flowgen::replay::replay(&options)?;
    print!("{summary}");
    Ok(())
}
