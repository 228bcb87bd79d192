//! Progress on stderr: an indicatif bar on a terminal (runs done of total, the current
//! cell, ETA), plain lines otherwise (CI logs).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub(crate) enum Progress {
    Bar(ProgressBar),
    Plain { total: usize },
}

impl Progress {
    pub(crate) fn new(total: usize) -> Progress {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:28.cyan/blue} {pos}/{len} runs · ETA {eta} · {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(200));
            Progress::Bar(bar)
        } else {
            Progress::Plain { total }
        }
    }

    /// A run is starting.
    pub(crate) fn start(&self, seq: usize, what: &str) {
        match self {
            Progress::Bar(bar) => bar.set_message(what.to_string()),
            Progress::Plain { total } => {
                eprintln!("[{seq:>w$}/{total}] {what} …", w = total.to_string().len())
            }
        }
    }

    /// A run is done; `result` says how it went.
    pub(crate) fn done(&self, seq: usize, what: &str, result: &str) {
        match self {
            Progress::Bar(bar) => {
                if result.starts_with("FAILED") {
                    bar.println(format!("{what}: {result}"));
                }
                bar.inc(1);
            }
            Progress::Plain { total } => {
                eprintln!(
                    "[{seq:>w$}/{total}] {what}: {result}",
                    w = total.to_string().len()
                )
            }
        }
    }

    /// A message that must not be overdrawn by the bar.
    pub(crate) fn note(&self, msg: &str) {
        match self {
            Progress::Bar(bar) => bar.println(msg),
            Progress::Plain { .. } => eprintln!("{msg}"),
        }
    }

    pub(crate) fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
