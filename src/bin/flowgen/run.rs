//! `flowgen run`: streams generated flows to collectors until SIGTERM or SIGINT.

use std::path::PathBuf;

use flowgen::daemon::config::{find_config, Overrides};
use flowgen::daemon::service::{run_blocking, ServiceOptions};
use flowgen::export::ExportProtocol;

/// Arguments of `flowgen run`; each flag replaces the configuration's value.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file [default: conf/flowgen.toml, else /etc/flowgen/flowgen.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Model bundle directory (replaces model.path; relative to the working directory).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Collector to send to over UDP; repeat for several (replaces every [[collector]]).
    #[arg(long = "collector", value_name = "HOST:PORT")]
    collectors: Vec<String>,
    /// Export protocol for every collector.
    #[arg(long, value_parser = parse_protocol, value_name = "ipfix|netflow9")]
    protocol: Option<ExportProtocol>,
    /// Mean flows per second to each collector; 0 = as fast as possible (replaces rate.flows_per_s).
    #[arg(long, value_name = "N")]
    rate: Option<f64>,
}

fn parse_protocol(text: &str) -> Result<ExportProtocol, String> {
    match text.to_ascii_lowercase().as_str() {
        "ipfix" => Ok(ExportProtocol::Ipfix),
        "netflow9" | "v9" => Ok(ExportProtocol::Netflow9),
        _ => Err(format!("`{text}` is neither ipfix nor netflow9")),
    }
}

/// Runs the service; returns when it has stopped.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config_path = find_config(args.config.as_deref())?;
    let overrides = Overrides {
        model: args.model,
        collectors: args.collectors,
        protocol: args.protocol,
        rate_flows_per_s: args.rate,
    };
    run_blocking(ServiceOptions {
        config_path,
        overrides,
    })?;
    Ok(())
}
