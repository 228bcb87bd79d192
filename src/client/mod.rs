//! The load client: threads with a connection each, per-thread HDR histograms, verification, summary.

use std::process::ExitCode;

use crate::cli::ClientArgs;

pub fn run(_args: &ClientArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("the client is being written")
}
