//! The load client: connections on event-loop threads, per-thread HDR histograms,
//! verification of every answer, summary.
//!
//! One engine (`events.rs`: `--threads` epoll loops sharing `--concurrency` connections)
//! with two load models as its pacing policies (`pacing.rs`): closed loop (the seed's:
//! each connection waits for its answer before sending again) and open loop (`--rate`:
//! a fixed schedule, latency corrected for coordinated omission). [`run_load`] is the library entry point (the
//! runner and tests call it); [`run`] is the `threadcenter client` command: it runs the
//! load, prints the summary and writes files.

mod book;
pub mod document;
mod events;
pub(crate) mod ids;
pub(crate) mod intervals;
mod link;
pub(crate) mod live;
pub(crate) mod load;
mod pacing;
pub(crate) mod print;
pub(crate) mod report;
pub(crate) mod tls;

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail};

use crate::cli::ClientArgs;
use crate::domain::ClientCmd;

pub use document::ClientDocument;
pub use load::run_load;
pub use report::{Failures, LatencyUs, Report};

/// Requests per thread when neither `--requests` nor `--duration` is given (the seed's).
pub const DEFAULT_REQUESTS: u64 = 5;

/// When the measured phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Each thread sends this many requests, one after another.
    Requests(u64),
    /// Each thread sends for this long.
    Duration(Duration),
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadModel {
    /// Each connection sends its next request once the previous one is answered (the seed's).
    Closed,
    /// `rate` requests per second over all connections on a fixed schedule, up to
    /// `pipeline` in flight per connection.
    Open { rate: f64, pipeline: usize },
}

impl LoadModel {
    /// `"closed"` or `"open"`, as the JSON document spells it.
    pub fn name(&self) -> &'static str {
        match self {
            LoadModel::Closed => "closed",
            LoadModel::Open { .. } => "open",
        }
    }
}

/// Fastest schedule one connection is paced at: 1 µs between sends.
pub const MAX_RATE_PER_CONNECTION: f64 = 1_000_000.0;
/// No answer comes back faster than this (a loopback round trip through the kernel
/// takes longer; about 7 us at best on the development machine): the floor
/// the open loop's feasibility check assumes.
pub const MIN_ROUND_TRIP: Duration = Duration::from_micros(2);
/// No compute step takes less than this (about 3 ns on current x86-64): the floor the
/// feasibility check assumes for compute(n).
pub const MIN_NS_PER_STEP: f64 = 1.0;

/// Everything a load run needs.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadConfig {
    pub host: String,
    pub port: u16,
    pub cmd: ClientCmd,
    /// n of compute.
    pub size: u64,
    /// Connections.
    pub concurrency: usize,
    /// Event-loop threads the connections are spread over (`--threads`).
    pub threads: usize,
    pub mode: Mode,
    /// Load sent first, time-based, whose requests are neither recorded nor counted.
    pub warmup: Duration,
    /// Longest wait for a connection or a response.
    pub timeout: Duration,
    /// Closed or open loop.
    pub model: LoadModel,
    /// Keep one histogram per second (for `--interval-log`).
    pub intervals: bool,
    /// Speak TLS (`--tls`).
    pub tls: bool,
    /// The CA that `--tls` trusts instead of the system's roots (`--ca`).
    pub ca: Option<PathBuf>,
    /// How request ids are spelled (`--ids`).
    pub ids: ids::IdStyle,
    /// Start only on a `go` line on stdin (`--wait-go`, multi-host runs).
    pub wait_go: bool,
}

impl LoadConfig {
    pub fn from_args(args: &ClientArgs) -> anyhow::Result<LoadConfig> {
        let mode = match (args.requests, args.duration) {
            (Some(_), Some(_)) => bail!("give --requests or --duration, not both"),
            (_, Some(d)) if d.is_zero() => bail!("--duration must be more than 0"),
            (_, Some(d)) => Mode::Duration(d),
            (Some(n), None) => Mode::Requests(n),
            (None, None) => Mode::Requests(DEFAULT_REQUESTS),
        };
        if args.timeout.is_zero() {
            bail!("--timeout must be more than 0");
        }
        let model = match (args.rate, args.pipeline) {
            (None, None) => LoadModel::Closed,
            (None, Some(_)) => bail!(
                "--pipeline is for the open loop: give --rate too (the closed loop sends one request at a time per connection)"
            ),
            (Some(rate), pipeline) => LoadModel::Open {
                rate,
                pipeline: pipeline.unwrap_or(1) as usize,
            },
        };
        let concurrency = usize::try_from(args.concurrency)
            .map_err(|_| anyhow!("--concurrency {} is too large", args.concurrency))?;
        let threads = match args.threads {
            None => events::default_threads(concurrency),
            Some(t) if t > args.concurrency => bail!(
                "--threads {t} is more than the {} of --concurrency: every thread needs a connection; lower --threads or raise --concurrency",
                crate::human::count(args.concurrency, "connection", "connections")
            ),
            Some(t) => t as usize,
        };
        let config = LoadConfig {
            host: args.host.clone(),
            port: args.port,
            cmd: args.cmd,
            size: args.size,
            concurrency,
            threads,
            mode,
            warmup: args.warmup,
            timeout: args.timeout,
            model,
            intervals: args.interval_log.is_some(),
            tls: args.tls,
            ca: args.ca.clone(),
            ids: args.ids,
            wait_go: args.wait_go,
        };
        config.check_feasible()?;
        Ok(config)
    }

    /// The least time one request can take: a round trip, plus compute(n) at the
    /// fastest conceivable step.
    pub fn min_latency(&self) -> Duration {
        let compute = match self.cmd {
            ClientCmd::Compute => Duration::from_nanos((self.size as f64 * MIN_NS_PER_STEP) as u64),
            ClientCmd::Ping => Duration::ZERO,
        };
        MIN_ROUND_TRIP + compute
    }

    /// Refuses open-loop settings no server could carry, with what to change.
    pub fn check_feasible(&self) -> anyhow::Result<()> {
        let LoadModel::Open { rate, pipeline } = self.model else {
            return Ok(());
        };
        let conns = self.concurrency as f64;
        let per_conn = rate / conns;
        if per_conn > MAX_RATE_PER_CONNECTION {
            bail!(
                "--rate {rate} over {} is {per_conn:.0}/s each; one connection is paced at most {MAX_RATE_PER_CONNECTION:.0}/s: raise --concurrency to at least {}",
                crate::human::count(self.concurrency as u64, "connection", "connections"),
                (rate / MAX_RATE_PER_CONNECTION).ceil()
            );
        }
        // Little's law: requests in flight = rate x latency, and at most
        // connections x pipeline can be in flight.
        let min_latency = self.min_latency();
        let capacity = conns * pipeline as f64 / min_latency.as_secs_f64();
        if rate > capacity {
            let what = match self.cmd {
                ClientCmd::Compute => format!(
                    "a round trip ({}) plus compute({}) at {MIN_NS_PER_STEP} ns a step",
                    crate::human::duration(MIN_ROUND_TRIP),
                    self.size
                ),
                ClientCmd::Ping => {
                    format!("a round trip ({})", crate::human::duration(MIN_ROUND_TRIP))
                }
            };
            bail!(
                "--rate {rate} cannot be carried by {} with {} in flight each: every answer would have to come within {}, and no request takes less than {} ({what}); at most {capacity:.0}/s fits. Raise --pipeline or --concurrency, or lower --rate",
                crate::human::count(self.concurrency as u64, "connection", "connections"),
                crate::human::count(pipeline as u64, "request", "requests"),
                crate::human::latency_us(conns * pipeline as f64 / rate * 1e6),
                crate::human::latency_us(min_latency.as_secs_f64() * 1e6),
            );
        }
        if self.timeout < min_latency {
            bail!(
                "--timeout {} is shorter than the least time a request takes ({}): every request would time out",
                crate::human::duration(self.timeout),
                crate::human::duration(min_latency)
            );
        }
        if let Mode::Duration(d) = self.mode {
            let scheduled = rate * d.as_secs_f64();
            if scheduled < conns {
                bail!(
                    "--rate {rate} for {} schedules {scheduled:.1} requests, fewer than the {}: lengthen --duration, raise --rate or lower --concurrency",
                    crate::human::duration(d),
                    crate::human::count(self.concurrency as u64, "connection", "connections")
                );
            }
        }
        Ok(())
    }
}

/// `threadcenter client`: exit 0 if every request succeeded, 1 if any failed; `Err` (exit 2)
/// if the run could not start or its files could not be written.
///
/// On a terminal (stdout) the target line comes at once and a live line is redrawn
/// while the load runs (`live.rs`); elsewhere nothing is printed until the end.
pub fn run(args: &ClientArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal as _;
    let config = LoadConfig::from_args(args)?;
    let on_terminal = !args.quiet && io::stdout().is_terminal();
    let mut printer = None;
    let report = if on_terminal {
        load::run_load_observed(&config, |addr| {
            let mut out = io::stdout().lock();
            let _ = print::print_target(&config, addr, &mut out).and_then(|()| out.flush());
            let live = live::Live::new();
            printer = Some(live::Printer::start(
                std::sync::Arc::clone(&live),
                config.warmup,
                Box::new(io::stdout()),
            ));
            Some(live)
        })
    } else {
        run_load(&config)
    };
    if let Some(p) = printer {
        p.stop();
    }
    let report = report?;
    for warning in &report.warnings {
        eprintln!("threadcenter client: warning: {warning}");
    }
    if !args.quiet {
        let mut out = io::stdout().lock();
        if on_terminal {
            print::print_results(&report, &mut out)?;
        } else {
            print::print_report(&report, &mut out)?;
        }
        out.flush()?;
    }
    if let Some(path) = &args.json {
        let doc = ClientDocument::from_report(&report);
        write_atomically(path, |w| doc.write(w))?;
    }
    if let Some(path) = &args.hgrm {
        write_atomically(path, |w| {
            crate::hdr::write_hgrm(&report.histogram, 1000.0, w)
        })?;
    }
    if let Some(path) = &args.interval_log {
        let intervals = report.intervals.as_deref().unwrap_or_default();
        write_atomically(path, |w| {
            intervals::write_log(intervals, report.measure_start, w)
        })?;
    }
    Ok(if report.all_succeeded() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Writes `path` through a temporary file in the same directory, renamed over `path` only
/// once complete, so a crash never leaves a half-written file behind.
pub fn write_atomically<F>(path: &Path, write: F) -> anyhow::Result<()>
where
    F: FnOnce(&mut BufWriter<File>) -> io::Result<()>,
{
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("cannot write {}: not a file name", path.display()))?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut w = BufWriter::new(File::create(&tmp)?);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        bail!("cannot write {}: {e}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn config(argv: &[&str]) -> anyhow::Result<LoadConfig> {
        let mut full = vec!["threadcenter", "client"];
        full.extend_from_slice(argv);
        match crate::cli::Cli::try_parse_from(full)?.command {
            crate::cli::Command::Client(args) => LoadConfig::from_args(&args),
            _ => unreachable!(),
        }
    }

    #[test]
    fn modes_from_flags() {
        assert_eq!(config(&[]).unwrap().mode, Mode::Requests(DEFAULT_REQUESTS));
        assert_eq!(config(&["-n", "7"]).unwrap().mode, Mode::Requests(7));
        assert_eq!(
            config(&["-d", "2s"]).unwrap().mode,
            Mode::Duration(Duration::from_secs(2))
        );
        assert!(config(&["-d", "0s"]).is_err());
        assert!(config(&["--timeout", "0s"]).is_err());
        assert!(config(&["-d", "1s", "-n", "3"]).is_err());
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.txt");
        write_atomically(&path, |w| w.write_all(b"first")).unwrap();
        write_atomically(&path, |w| w.write_all(b"second")).unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        let err = write_atomically(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("disk full"))
        })
        .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "second");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "a temporary file was left: {names:?}");
        let missing = dir.path().join("no/such/dir/out.txt");
        let err = write_atomically(&missing, |w| w.write_all(b"x")).unwrap_err();
        assert!(err.to_string().starts_with("cannot write "), "{err}");
    }
}
