//! `flowgen run`: not written yet.

/// Arguments of `flowgen run`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`flowgen run` is not implemented yet")
}
