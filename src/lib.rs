//! threadcenter: a framed TCP server with a worker-process pool, its load client, and the tools that measure them.

pub mod cli;
pub mod client;
pub mod hdr;
pub mod protocol;
pub mod report;
pub mod runner;
pub mod server;

use std::process::ExitCode;

use cli::{Cli, Command};

/// Runs a parsed command line; `Err` is printed by `main` as an error chain.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Server(args) => server::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Client(args) => client::run(&args),
        Command::Run(args) => runner::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Worker(args) => server::worker::run(&args).map(|()| ExitCode::SUCCESS),
    }
}
