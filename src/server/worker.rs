//! One pool worker process: reads tasks from stdin, computes, writes results to stdout.

use crate::cli::WorkerArgs;

pub fn run(_args: &WorkerArgs) -> anyhow::Result<()> {
    anyhow::bail!("the worker is being written")
}
