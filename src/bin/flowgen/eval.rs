//! `flowgen eval`: not written yet.

/// Arguments of `flowgen eval`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the subcommand.
pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`flowgen eval` is not implemented yet")
}
