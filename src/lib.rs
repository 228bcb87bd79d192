//! threadcenter: a framed TCP server with a worker-process pool, its load client, and the tools that measure them.
#![warn(unreachable_pub)]

pub mod cli;
pub mod client;
pub(crate) mod docs;
pub mod domain;
pub mod hdr;
pub(crate) mod human;
pub(crate) mod machine;
pub mod protocol;
pub(crate) mod remote;
pub(crate) mod report;
pub mod rundir;
pub mod runner;
pub mod server;
pub(crate) mod sync;

use std::process::ExitCode;

use cli::{Cli, Command};

/// The exit status of a command that fails with an error (or bad flags).
pub const EXIT_ERROR: u8 = 2;
/// `report`'s: its 2 means "inconclusive" (docs/compare.md), so its errors are 3.
pub const EXIT_REPORT_ERROR: u8 = 3;

/// The exit status for an error in `subcommand` (`None`: none was recognised).
pub fn error_exit_code(subcommand: Option<&str>) -> u8 {
    match subcommand {
        Some("report") => EXIT_REPORT_ERROR,
        _ => EXIT_ERROR,
    }
}

/// Writes `text` to stdout. A reader that went away (`| head`) is not an error: the
/// command goes on and exits with its own status, as if the text had been read.
pub(crate) fn print_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}

/// Runs a parsed command line; `Err` is printed by `main` as an error chain.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Server(args) => server::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Client(args) => client::run(&args),
        Command::Run(args) => runner::run(&args, &report::render),
        Command::Report(args) => report::run(&args),
        Command::Docs(args) => docs::run(&args),
        Command::Worker(args) => server::worker::run(&args).map(|()| ExitCode::SUCCESS),
        Command::RemoteWrap(args) => remote::run_wrapper(&args),
        Command::LimitsProbe(args) => runner::pairs::probe(&args),
    }
}
