//! The domain's small vocabulary, shared by the command line, the runner and the report:
//! the server's pool kinds, I/O models and full-queue policy, the client's commands, and the compared
//! metrics with their thresholds. It imports nothing of the crate's.

use std::collections::BTreeMap;
use std::str::FromStr;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// Where the CPU-bound work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PoolKind {
    /// Real OS worker processes (the same binary re-executed), over pipes.
    Process,
    /// Threads inside the server process: no isolation, no IPC.
    Thread,
}

impl PoolKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PoolKind::Process => "process",
            PoolKind::Thread => "thread",
        }
    }
}

impl FromStr for PoolKind {
    type Err = String;

    /// `process` or `thread`: the one place a pool's name is read.
    fn from_str(s: &str) -> Result<PoolKind, String> {
        match s {
            "process" => Ok(PoolKind::Process),
            "thread" => Ok(PoolKind::Thread),
            other => Err(format!(
                "unknown pool {other:?}: the pools are process and thread"
            )),
        }
    }
}

/// How the server serves its connections (`--io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IoModel {
    /// Two threads per connection: a blocking reader and a writer (as the original ThreadCenter server has it).
    #[default]
    Threads,
    /// A few epoll loops (`--io-threads`), each owning many non-blocking connections.
    Events,
}

impl IoModel {
    pub fn as_str(self) -> &'static str {
        match self {
            IoModel::Threads => "threads",
            IoModel::Events => "events",
        }
    }
}

impl FromStr for IoModel {
    type Err = String;

    /// `threads` or `events`: the one place an I/O model's name is read.
    fn from_str(s: &str) -> Result<IoModel, String> {
        match s {
            "threads" => Ok(IoModel::Threads),
            "events" => Ok(IoModel::Events),
            other => Err(format!(
                "unknown io model {other:?}: the models are threads and events"
            )),
        }
    }
}

/// What a compute request meets when the task queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhenFull {
    /// The connection's reader waits: backpressure reaches the client through TCP.
    #[default]
    Wait,
    /// The request is answered OVERLOADED at once.
    Reject,
}

/// The command the client sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCmd {
    /// CPU-bound work of --size steps, run on the server's pool.
    Compute,
    /// Answered by the server's I/O threads: measures the round trip alone.
    Ping,
}

impl ClientCmd {
    pub fn as_str(self) -> &'static str {
        match self {
            ClientCmd::Compute => "compute",
            ClientCmd::Ping => "ping",
        }
    }
}

impl FromStr for ClientCmd {
    type Err = String;

    /// `compute` or `ping`: the one place a command's name is read.
    fn from_str(s: &str) -> Result<ClientCmd, String> {
        match s {
            "compute" => Ok(ClientCmd::Compute),
            "ping" => Ok(ClientCmd::Ping),
            other => Err(format!(
                "unknown cmd {other:?}: the commands are compute and ping"
            )),
        }
    }
}

/// The client's `--timeout` when none is given: a request with no answer after this long
/// counts as a timeout. Written as the command line reads it; it is also the runner's
/// `[client] timeout` when the experiment file gives none.
pub const CLIENT_TIMEOUT: &str = "30s";

/// How request ids are spelled on the wire (`--ids`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum IdStyle {
    /// A UUID-shaped string, as the original ThreadCenter client sends (the default).
    #[default]
    Uuid,
    /// A JSON integer.
    Integer,
}

impl IdStyle {
    pub fn as_str(self) -> &'static str {
        match self {
            IdStyle::Uuid => "uuid",
            IdStyle::Integer => "integer",
        }
    }
}

/// The threshold of a metric nobody set, percent.
pub const DEFAULT_THRESHOLD_PCT: f64 = 5.0;
/// A compared metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CMetric {
    Throughput,
    P50,
    P99,
    P999,
    CpuPerRequest,
}

impl CMetric {
    pub const ALL: [CMetric; 5] = [
        CMetric::Throughput,
        CMetric::P50,
        CMetric::P99,
        CMetric::P999,
        CMetric::CpuPerRequest,
    ];

    /// The name in experiment files, on the command line and in compare.csv.
    pub fn key(self) -> &'static str {
        match self {
            CMetric::Throughput => "throughput",
            CMetric::P50 => "p50",
            CMetric::P99 => "p99",
            CMetric::P999 => "p99_9",
            CMetric::CpuPerRequest => "cpu_per_request",
        }
    }

    pub fn from_key(key: &str) -> Option<CMetric> {
        CMetric::ALL.into_iter().find(|m| m.key() == key)
    }

    /// For people.
    pub fn label(self) -> &'static str {
        match self {
            CMetric::Throughput => "throughput",
            CMetric::P50 => "p50",
            CMetric::P99 => "p99",
            CMetric::P999 => "p99.9",
            CMetric::CpuPerRequest => "CPU/request",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            CMetric::Throughput => "req/s",
            _ => "us",
        }
    }

    pub fn higher_is_better(self) -> bool {
        self == CMetric::Throughput
    }
}

/// Thresholds in percent: one for every metric, and per-metric ones.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Thresholds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_pct: Option<f64>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metric_pct: BTreeMap<String, f64>,
}

impl Thresholds {
    pub fn is_empty(&self) -> bool {
        self.all_pct.is_none() && self.metric_pct.is_empty()
    }

    fn own(&self, m: CMetric) -> Option<f64> {
        self.metric_pct.get(m.key()).copied().or(self.all_pct)
    }

    /// The threshold of `m`: the command line's (metric, then general), then the
    /// experiment file's (metric, then general), then [`DEFAULT_THRESHOLD_PCT`].
    pub fn resolve(cli: &Thresholds, file: &Thresholds, m: CMetric) -> f64 {
        cli.own(m)
            .or_else(|| file.own(m))
            .unwrap_or(DEFAULT_THRESHOLD_PCT)
    }
}

/// `5%`, `2.5%`: a threshold. Must be more than 0 and less than 100.
pub fn parse_pct(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let Some(v) = t.strip_suffix('%') else {
        return Err(format!("{s:?} is not a percentage: write it like \"5%\""));
    };
    match v.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v < 100.0 => Ok(v),
        _ => Err(format!(
            "{s:?}: a threshold is a percentage above 0% and below 100%, like \"5%\""
        )),
    }
}

/// `--threshold 5%` (every metric) or `--threshold p99=10%`.
pub fn parse_threshold_arg(s: &str) -> Result<(Option<CMetric>, f64), String> {
    match s.split_once('=') {
        None => parse_pct(s).map(|v| (None, v)),
        Some((k, v)) => {
            let m = CMetric::from_key(k.trim()).ok_or_else(|| {
                format!(
                    "unknown metric {k:?}: the metrics are {}",
                    CMetric::ALL.map(|m| m.key()).join(", ")
                )
            })?;
            parse_pct(v).map(|v| (Some(m), v))
        }
    }
}

impl Thresholds {
    pub fn from_args(args: &[(Option<CMetric>, f64)]) -> Thresholds {
        let mut t = Thresholds::default();
        for (m, v) in args {
            match m {
                None => t.all_pct = Some(*v),
                Some(m) => {
                    t.metric_pct.insert(m.key().to_string(), *v);
                }
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_resolve_command_line_first() {
        let file = Thresholds {
            all_pct: Some(8.0),
            metric_pct: [("p99".to_string(), 20.0)].into(),
        };
        let cli = Thresholds::from_args(&[parse_threshold_arg("p50=2%").unwrap()]);
        assert_eq!(Thresholds::resolve(&cli, &file, CMetric::P50), 2.0);
        assert_eq!(Thresholds::resolve(&cli, &file, CMetric::P99), 20.0);
        assert_eq!(Thresholds::resolve(&cli, &file, CMetric::Throughput), 8.0);
        let none = Thresholds::default();
        assert_eq!(Thresholds::resolve(&none, &none, CMetric::P999), 5.0);
        let cli = Thresholds::from_args(&[parse_threshold_arg("3%").unwrap()]);
        assert_eq!(Thresholds::resolve(&cli, &file, CMetric::P99), 3.0);
        assert!(parse_threshold_arg("p98=5%").is_err());
        assert!(parse_threshold_arg("5").is_err());
        assert!(parse_threshold_arg("0%").is_err());
    }

    #[test]
    fn names_read_back_and_unknown_ones_say_what_is_known() {
        for p in [PoolKind::Process, PoolKind::Thread] {
            assert_eq!(p.as_str().parse::<PoolKind>(), Ok(p));
        }
        for c in [ClientCmd::Compute, ClientCmd::Ping] {
            assert_eq!(c.as_str().parse::<ClientCmd>(), Ok(c));
        }
        let err = "fibre".parse::<PoolKind>().unwrap_err();
        assert!(err.contains("process and thread"), "{err}");
    }
}
