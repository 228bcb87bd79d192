//! The `threadcenter` binary: parse the command line, run it, print the error chain.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Errors exit 2, but `report`'s exit 3 (its 2 means "inconclusive"): bad flags too.
    let subcommand = std::env::args().nth(1);
    let on_error = ExitCode::from(threadcenter::error_exit_code(subcommand.as_deref()));
    let cli = match threadcenter::cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                on_error
            } else {
                ExitCode::SUCCESS // --help, --version
            };
        }
    };
    match threadcenter::run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            on_error
        }
    }
}
