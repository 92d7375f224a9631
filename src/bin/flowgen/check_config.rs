//! `flowgen check-config`: validates a configuration file without starting anything.

use std::path::PathBuf;

use flowgen::daemon::config::{find_config, Config, Overrides};
use flowgen::daemon::pipeline::check_model_loads;

/// Arguments of `flowgen check-config`.
#[derive(clap::Args)]
pub struct Args {
    /// Configuration file [default: conf/flowgen.toml, else /etc/flowgen/flowgen.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// Loads the file with the process's `FLOWGEN_` variables and reports every
/// problem at once; then loads the model as `flowgen run` would.
pub fn run(args: Args) -> anyhow::Result<()> {
    let path = find_config(args.config.as_deref())?;
    let config = Config::load_with_process_env(&path, &Overrides::default())?;
    check_model_loads(&config)?;
    let settings = &config.settings;
    println!(
        "{}: ok ({} collector(s), {} flows/s {:?}, model {})",
        path.display(),
        settings.collector.len(),
        settings.rate.flows_per_s,
        settings.rate.profile,
        settings.model.path.display(),
    );
    Ok(())
}
