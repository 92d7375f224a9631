//! `flowgen check-config`: not written yet.

/// Arguments of `flowgen check-config`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`flowgen check-config` is not implemented yet")
}
