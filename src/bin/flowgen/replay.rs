//! `flowgen replay`: not written yet.

/// Arguments of `flowgen replay`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`flowgen replay` is not implemented yet")
}
