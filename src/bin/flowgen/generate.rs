//! `flowgen generate`: not written yet.

/// Arguments of `flowgen generate`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`flowgen generate` is not implemented yet")
}
