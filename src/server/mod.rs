//! The system under test: listener, connections, dispatch to the worker pool, shutdown.

pub mod worker;

use crate::cli::ServerArgs;

/// Runs the server until SIGINT/SIGTERM.
pub fn run(_args: &ServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("the server is being written")
}
