//! Command-line definitions (clap). Only parsing lives here; each command's module runs it.
// The doc comments here are the `--help` texts people read in a terminal, where
// `OUT/<UTC time>-<name>/` is plain text, not an HTML tag.
#![allow(rustdoc::invalid_html_tags)]

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::domain::{ClientCmd, IoModel, PoolKind, WhenFull};
use crate::protocol::{DEFAULT_MAX_FRAME, DEFAULT_MAX_N};

/// Study the throughput, latency and scalability of a client-server system.
///
/// The system under test is a TCP server (4-byte big-endian length-prefixed JSON
/// frames) whose I/O runs on threads and whose CPU-bound work runs on a pool of worker
/// processes; `client` drives it with threaded load and records HDR latency histograms.
/// `run` executes a whole experiment matrix and writes CSV, plots and a report.
#[derive(Debug, Parser)]
#[command(name = "threadcenter", version = VERSION, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the system under test: a framed TCP server with a worker pool.
    ///
    /// Prints one readiness line on stdout once it accepts connections:
    /// `threadcenter listening addr=IP:PORT pid=PID workers=N pool=KIND tls=on|off`
    /// (IPv6 addresses in brackets; `metrics=IP:PORT` with --metrics; readers must
    /// ignore keys they do not know: `threadcenter docs formats`). Everything else goes
    /// to stderr.
    ///
    /// SIGINT/SIGTERM: stop accepting, answer every request already received,
    /// stop the workers, exit 0. A second signal exits at once.
    ///
    /// Exit status: 0 after a clean stop (every request answered); 1 if a second
    /// signal cut the drain short; 2 if the server could not start (bad flags, the port
    /// in use, unreadable TLS files) or requests were still unanswered after
    /// --drain-timeout.
    Server(ServerArgs),
    /// Drive a server with load and report throughput and latency percentiles.
    ///
    /// On a terminal it prints its target at once and a live line (requests sent and
    /// answered, the rate, the p99 of the last second) while it runs; otherwise (a pipe,
    /// a file) it prints only the summary at the end.
    ///
    /// Exit status: 0 if every request succeeded, 1 if any failed, 2 if the run
    /// could not start (bad flags, server unreachable).
    Client(ClientArgs),
    /// Run an experiment: every cell of a TOML matrix, measured, with a report.
    ///
    /// For each cell × repetition the runner starts the server (built-in, or an external
    /// command) in a process group of its own, waits for it to be ready, runs the client
    /// with --json while sampling CPU every 100 ms, then stops the server (SIGTERM, then
    /// SIGKILL to its group). It writes OUT/<UTC time>-<name>/ (experiment.toml,
    /// manifest.json, results.csv, summary.csv, hdr/, cpu/, plots/*.svg, report.md),
    /// points OUT/latest at it, and prints its path on stdout.
    ///
    /// The file format: `threadcenter docs experiments`; the outputs: `threadcenter docs
    /// results`. --repetitions, --warmup, --duration and --set KEY=VALUE override the
    /// file's settings without editing it (recorded in manifest.json). Progress goes to stderr. Ctrl-C stops the current cell, kills its processes and
    /// writes a partial report; a second Ctrl-C exits at once.
    ///
    /// Exit status: 0 if every run succeeded, 1 if some failed (see report.md), 2 if
    /// the experiment could not start (e.g. a bad file), 130 if interrupted.
    Run(RunArgs),
    /// Render a run's report again from its raw files, or compare it with a baseline.
    ///
    /// Reads DIR/manifest.json, results.csv, hdr/ and cpu/, and rewrites summary.csv,
    /// plots/*.svg and report.md. The output depends only on those files: rendering
    /// twice gives the same bytes.
    ///
    /// With --baseline (or --baseline-target) it compares instead: cells matched by their
    /// parameters, per metric a ratio with a 95% interval and a verdict; it prints a table
    /// and writes DIR/compare.md, compare.csv and compare.svg (`threadcenter docs compare`).
    ///
    /// Exit status: 0 rendered, or no regression; 1 a regression; 2 inconclusive or too
    /// noisy to tell; 3 an error (bad flags, missing or corrupt files).
    Report(ReportArgs),
    /// Print the documentation shipped with this binary: a topic, or the list of them.
    ///
    /// The same pages as docs/*.md in the source, so the references in --help work for
    /// an installed binary too.
    Docs(DocsArgs),
    /// Hidden: one pool worker process, fed by the server over stdin/stdout.
    #[command(hide = true)]
    Worker(WorkerArgs),
    /// Hidden: what a multi-host run starts on a host around a server or client
    /// (docs/multi-host.md): its process group, CPU pinning and samples, its cleanup.
    #[command(hide = true, name = "remote-wrap")]
    RemoteWrap(WrapArgs),
    /// Hidden: one side of a multi-host run's machine limits, run on a host over ssh
    /// (docs/multi-host.md): prints one JSON line.
    #[command(hide = true, name = "limits-probe")]
    LimitsProbe(ProbeArgs),
}

/// What `limits-probe` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Probe {
    /// Echo frames on `--address`, an ephemeral port (printed first as `{"port":P}`),
    /// until stdin closes or `--max-time` passes.
    EchoServe,
    /// Connect to `--address`:`--port` at each of `--levels` and print the best trial's
    /// round trips per second.
    EchoClient,
    /// Time compute(n) for each of `--sizes`.
    Compute,
}

#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    #[arg(value_enum)]
    pub probe: Probe,
    /// The address to listen on (echo-serve) or to connect to (echo-client).
    #[arg(long, default_value = "127.0.0.1")]
    pub address: String,
    /// The echo's port (echo-client).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Connection counts (echo-client).
    #[arg(long, value_delimiter = ',')]
    pub levels: Vec<u64>,
    /// Echo a compute(n) request's payload of this n (echo-client).
    #[arg(long, default_value_t = 500_000)]
    pub payload_n: u64,
    /// Compute sizes (compute).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<u64>,
    /// Pin to these CPUs first (taskset's list syntax).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Exit after this long whatever happens.
    #[arg(long, value_parser = parse_positive_duration, default_value = "60s")]
    pub max_time: Duration,
}

#[derive(Debug, Clone, Args)]
pub struct WrapArgs {
    /// The run's tag, set in the command's environment (THREADCENTER_REMOTE_TAG).
    #[arg(long)]
    pub tag: String,
    /// Pin the wrapper and the command to these CPUs (taskset's list syntax).
    #[arg(long)]
    pub cpus: Option<String>,
    /// NAME=PATH: send this file's bytes back once the command has exited ({tmp} is
    /// the wrapper's private directory).
    #[arg(long, value_name = "NAME=PATH")]
    pub send: Vec<String>,
    /// Instead of running a command: kill and list the processes carrying --tag.
    #[arg(long)]
    pub check: bool,
    /// Kill the group and exit when no line has come on stdin for this long (the
    /// runner sends one every second): a network that drops silently ends it too.
    #[arg(long, value_parser = parse_positive_duration)]
    pub alive_timeout: Option<Duration>,
    /// The command and its arguments.
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ServerArgs {
    /// Address to bind. Loopback by default.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to bind; 0 picks a free port (read it from the readiness line).
    #[arg(long, short = 'p', default_value_t = 5050)]
    pub port: u16,
    /// Worker count [default: the number of available cores].
    #[arg(long, short = 'w')]
    pub workers: Option<usize>,
    /// Where compute runs: worker processes, or threads for comparison.
    #[arg(long, value_enum, default_value_t = PoolKind::Process)]
    pub pool: PoolKind,
    /// How connections are served: `threads` gives each connection a reader thread and
    /// a writer thread (blocking I/O); `events` runs --io-threads epoll loops, each owning
    /// many non-blocking connections (10,000 connections cost a few threads, not 20,000).
    /// Every behaviour and limit is the same under both.
    #[arg(long, value_enum, default_value_t = IoModel::Threads)]
    pub io: IoModel,
    /// Event loops for --io events [default: the number of available cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub io_threads: Option<u64>,
    /// Largest frame payload accepted, in bytes; larger frames get FRAME_TOO_LARGE.
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_frame: u32,
    /// Largest n accepted by compute; larger values get BAD_REQUEST.
    #[arg(long, default_value_t = DEFAULT_MAX_N)]
    pub max_n: u64,
    /// Capacity of the task queue between connections and the pool.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..))]
    pub queue_capacity: u64,
    /// On SIGINT/SIGTERM, how long to wait for in-flight requests before giving up.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Connections open at once; past it a new connection gets OVERLOADED and is
    /// closed, while those already open are unaffected. [default: what the open-file
    /// limit allows: the server raises its soft limit to the hard one, keeps 256
    /// descriptors (or a quarter of a smaller limit) for itself, and needs 2 per
    /// connection with --io threads, 1 with events; threads are also capped by the
    /// kernel's memory-map limit, 8 maps per connection]
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_connections: Option<u64>,
    /// What a compute request meets when the task queue is full: `wait` pauses its
    /// connection's reader (backpressure through TCP), `reject` answers OVERLOADED at once.
    #[arg(long, value_enum, default_value_t = WhenFull::Wait)]
    pub when_full: WhenFull,
    /// Longest a worker may spend on one request; past it the worker is killed and
    /// replaced (a thread-pool worker gives the request up) and the request is
    /// answered WORKER_FAILED.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    pub task_timeout: Duration,
    /// Longest a request frame may take to arrive once its first byte is in (defeats
    /// slowloris clients); past it the connection is closed. Idle connections between
    /// frames are not timed.
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub frame_timeout: Duration,
    /// Compute requests one connection may have in the pool at once; past it the
    /// server stops reading that connection until answers go out, so a client that
    /// pipelines without reading cannot grow the server's memory.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub max_in_flight: u64,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; port 0
    /// picks a free one, shown as `metrics=` in the readiness line).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Do not time the stages of each request (queue, service, return, total); `stats`
    /// and /metrics then show them empty. For measuring what the timing costs.
    #[arg(long)]
    pub no_stage_timing: bool,
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Server port.
    #[arg(long, short = 'p', default_value_t = 5050)]
    pub port: u16,
    /// Connections, spread over the --threads event-loop threads. Closed loop: each sends
    /// one request at a time. Open loop (--rate): the schedule is spread evenly over them.
    #[arg(long, short = 'c', visible_alias = "connections", default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub concurrency: u64,
    /// Event-loop threads that share the connections (connection i on thread i mod T,
    /// as wrk's -t with -c) [default: the number of cores, at most --concurrency].
    /// `--threads` equal to --concurrency gives each connection a thread of its own.
    #[arg(long, short = 't', value_name = "T", value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub threads: Option<u64>,
    /// Requests per connection [default: 5, unless --duration is given]. Closed loop: sent
    /// one after another; open loop: the connection's share of the schedule.
    #[arg(long, short = 'n', conflicts_with = "duration", allow_negative_numbers = true, value_parser = parse_requests)]
    pub requests: Option<u64>,
    /// Send for this long instead of a fixed count (e.g. 10s, 500ms, 2m; at most 24h).
    #[arg(long, short = 'd', value_parser = parse_run_duration)]
    pub duration: Option<Duration>,
    /// n for compute: the work per request (a few ns per step in this server).
    #[arg(long, short = 's', default_value_t = 500_000, allow_negative_numbers = true, value_parser = parse_size)]
    pub size: u64,
    /// Command to send.
    #[arg(long, value_enum, default_value_t = ClientCmd::Compute)]
    pub cmd: ClientCmd,
    /// Load sent before measuring; its latencies are not recorded (e.g. 1s).
    #[arg(long, default_value = "0s", value_parser = parse_run_duration)]
    pub warmup: Duration,
    /// A request with no answer after this long counts as a timeout.
    #[arg(long, default_value = crate::domain::CLIENT_TIMEOUT, value_parser = parse_duration)]
    pub timeout: Duration,
    /// Open loop: send R requests per second in total, on a fixed schedule, whatever
    /// the server does (e.g. 5000, 0.5). Latency is measured from each request's intended
    /// send time (corrected for coordinated omission) and from its actual send time.
    /// Without --rate the client is closed loop: each connection waits for an answer
    /// before it sends again (the model of the original ThreadCenter client this project
    /// started from). See `threadcenter docs open-loop`.
    #[arg(long, value_name = "R", value_parser = parse_rate, allow_negative_numbers = true)]
    pub rate: Option<f64>,
    /// Open loop only: up to K requests in flight per connection, so one slow answer
    /// does not hold the schedule back. A connection with K in flight sends its next
    /// requests late, and they are timed from when they were due. [default: 1]
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u64).range(1..=MAX_PIPELINE))]
    pub pipeline: Option<u64>,
    /// Write the results, with the whole histogram, as a versioned JSON document.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write HdrHistogram's percentile-distribution text (.hgrm), values in microseconds.
    #[arg(long, value_name = "FILE")]
    pub hgrm: Option<PathBuf>,
    /// Write one latency histogram per second of the measured phase in HdrHistogram's
    /// interval-log format (`#[Histogram log format version 1.3]`, values in ns), as
    /// HistogramLogAnalyzer and HdrHistogram's log readers read it. Open loop: the
    /// corrected latency, plus the uncorrected one tagged `Tag=uncorrected`.
    #[arg(long, value_name = "FILE")]
    pub interval_log: Option<PathBuf>,
    /// Print nothing on stdout (files and the exit status still tell).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Speak TLS to a server started with --tls-cert/--tls-key; its certificate is
    /// checked against --ca, or the system's roots without it, for the name --host.
    #[arg(long)]
    pub tls: bool,
    /// The CA certificate(s), PEM, that --tls trusts instead of the system's roots.
    #[arg(long, value_name = "PEM", requires = "tls")]
    pub ca: Option<PathBuf>,
    /// How request ids are spelled: `uuid` (a UUID-shaped string, as the original
    /// ThreadCenter client sends) or `integer`. Either way they are unique across the run's connections, as
    /// the original ThreadCenter server needs, and answers are matched by the id's text.
    #[arg(long, value_enum, default_value_t = crate::domain::IdStyle::Uuid)]
    pub ids: crate::domain::IdStyle,
    /// Hidden, for multi-host runs: once connected, print `ready` on stdout and start
    /// the load (warm-up first) only when the line `go` arrives on stdin; print
    /// `started` at that moment.
    #[arg(long, hide = true)]
    pub wait_go: bool,
}

#[derive(Debug, Clone, Args)]
pub struct WorkerArgs {
    /// Pid of the server that spawned this worker; the worker exits if it is gone.
    #[arg(long)]
    pub parent: Option<u32>,
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The experiment file (TOML; see `threadcenter docs experiments` and experiments/).
    #[arg(value_name = "FILE.toml")]
    pub file: PathBuf,
    /// Where run directories go: OUT/<UTC time>-<name>/, and OUT/latest links to the newest.
    #[arg(long, short = 'o', value_name = "OUT", default_value = "reports")]
    pub out: PathBuf,
    /// Check the file (with the overrides), its commands and durations, and print the
    /// effective settings, the cells and their order; run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Repetitions of each cell, instead of the file's `repetitions`.
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub repetitions: Option<String>,
    /// Warm-up of each cell, instead of the file's `warmup` (e.g. 1s).
    #[arg(long, value_name = "DURATION")]
    pub warmup: Option<String>,
    /// How long each cell is measured, instead of the file's `duration` (or `requests`).
    #[arg(long, value_name = "DURATION")]
    pub duration: Option<String>,
    /// Set any key of the experiment file, as if written there: a dotted key and a TOML
    /// value, e.g. `--set matrix.workers=[1,2]`, `--set client.timeout=5s`,
    /// `--set 'targets.py.command=["python3","s.py","{port}"]'`. A bare word is a
    /// string. Repeatable; every check of the file applies.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::runner::overrides::parse_set)]
    pub set: Vec<(String, String)>,
    /// Seed for `order = "shuffled"`, overriding the file's (the one used is recorded).
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, Args)]
pub struct ReportArgs {
    /// A run directory written by `threadcenter run` (e.g. reports/latest).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Compare DIR with this baseline run instead of rendering (default with
    /// --baseline-target: DIR itself).
    #[arg(long, value_name = "OTHER")]
    pub baseline: Option<PathBuf>,
    /// The baseline is this target's cells; cells then match on every axis but `target`.
    #[arg(long, value_name = "NAME")]
    pub baseline_target: Option<String>,
    /// Compare only this target's cells of DIR (default: every target of DIR, or with
    /// --baseline-target and no --baseline, the one other target).
    #[arg(long, value_name = "NAME")]
    pub target: Option<String>,
    /// A comparison threshold: `5%` for every metric, or METRIC=PCT (metrics: throughput,
    /// p50, p99, p99_9, cpu_per_request). Repeatable; overrides the experiment file's
    /// `[compare]`. Default 5%.
    #[arg(long = "threshold", value_name = "[METRIC=]PCT", value_parser = crate::domain::parse_threshold_arg)]
    pub thresholds: Vec<(Option<crate::domain::CMetric>, f64)>,
}

#[derive(Debug, Clone, Args)]
pub struct DocsArgs {
    /// The page to print (e.g. `experiments`); without it, the list of pages.
    #[arg(value_name = "TOPIC")]
    pub topic: Option<String>,
}

/// `--version`: the package version and the commit it was built from, as manifests
/// record it (`unknown` outside a git checkout).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("THREADCENTER_GIT_COMMIT"),
    ")"
);

/// The longest duration a run or a client is given: 24 hours. A cell is measured for
/// seconds to minutes; anything longer is a typo (`1 year`, `5000h`).
pub const MAX_RUN_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The largest --pipeline: requests in flight on one connection.
pub const MAX_PIPELINE: u64 = 65_536;

/// Parses a request rate: a finite number of requests per second, more than 0.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.trim().trim_end_matches("/s").parse().map_err(|_| {
        format!("{s:?} is not a number: write requests per second, e.g. 5000 or 0.5")
    })?;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(format!(
            "{s} is not a usable rate: give more than 0 requests per second (omit --rate for the closed loop)"
        ));
    }
    Ok(rate)
}

/// Parses durations such as `1s`, `250ms`, `2m`, `1m30s`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{e}: write a duration such as 500ms, 5s or 2m"))
}

/// A duration of load (`--duration`, `--warmup`): at most [`MAX_RUN_DURATION`].
pub fn parse_run_duration(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d > MAX_RUN_DURATION {
        return Err(format!(
            "{s} is longer than 24h, the longest load this tool runs: write a duration such as 30s, 10m or 2h"
        ));
    }
    Ok(d)
}

/// A whole number of at least `min` for a flag: what was wrong with `s` and an example,
/// instead of clap's "invalid digit found in string" or "0 is not in 1..18446744073709551615".
fn whole_number(s: &str, what: &str, min: u64, example: &str) -> Result<u64, String> {
    let t = s.trim().replace('_', "");
    let n = t.parse::<u64>().map_err(|_| {
        let why = if t.starts_with('-') && t.parse::<f64>().is_ok() {
            "is negative"
        } else if t.parse::<f64>().is_ok() {
            "is not a whole number"
        } else {
            "is not a number"
        };
        format!("{s:?} {why}: {what} is a whole number of at least {min}, e.g. {example}")
    })?;
    if n < min {
        return Err(format!(
            "{what} must be at least {min}, not {n}; e.g. {example}"
        ));
    }
    Ok(n)
}

/// `--size`: n for compute, 0 or more.
pub fn parse_size(s: &str) -> Result<u64, String> {
    whole_number(s, "--size (n of compute)", 0, "--size 500000")
}

/// `--requests`: at least 1 per connection.
pub fn parse_requests(s: &str) -> Result<u64, String> {
    whole_number(
        s,
        "--requests (per connection; or --duration 10s to send for a time)",
        1,
        "--requests 100",
    )
}

/// A duration that must be more than zero.
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => {
            Err("must be more than 0: write a duration such as 500ms, 5s or 2m".into())
        }
        d => Ok(d),
    }
}
