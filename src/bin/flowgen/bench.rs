//! `flowgen bench`: not written yet.

/// Arguments of `flowgen bench`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`flowgen bench` is not implemented yet")
}
