//! The machine limits a run measured before its first cell (manifest.json's `limits`,
//! schema 3): the loopback round-trip floor per concurrency (a thread per connection, and
//! from schema 4 on event loops at [`MANY_CONNECTIONS`] or more) and compute(n)'s time
//! per size.

use serde::{Deserialize, Serialize};

/// What manifest.json's `limits` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// The echo with a thread per connection at each end.
    pub loopback: Loopback,
    /// The echo on event loops, at the levels of [`MANY_CONNECTIONS`] or more (schema 4;
    /// absent before, and in runs without such levels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loopback_events: Option<Loopback>,
    /// One entry per compute size of the run, by increasing size.
    pub compute: Vec<ComputeTime>,
    /// Multi-host runs: the echo floor between each client host and each server host,
    /// one side on each (empty otherwise, and in runs before it was measured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pairs: Vec<PairEcho>,
    /// Multi-host runs: compute(n)'s time on each server host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_host_compute: Vec<HostCompute>,
}

/// The raw framed echo from a client host (client side there) to a server host (echo
/// side there), at each number of connections one client host opens in the run's cells.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairEcho {
    pub client_host: String,
    pub server_host: String,
    pub payload_bytes: usize,
    /// By increasing `concurrency` (connections from this client host).
    pub echo: Vec<LoopbackLevel>,
    /// Why the pair was not measured (then `echo` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// compute(n) timed on a server host, one entry per compute size of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCompute {
    pub host: String,
    pub compute: Vec<ComputeTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loopback {
    /// The echoed payload's size: a compute request as the client sends it.
    pub payload_bytes: usize,
    pub trials: u32,
    pub trial_s: f64,
    /// One entry per concurrency level of the run, by increasing concurrency.
    pub levels: Vec<LoopbackLevel>,
    /// Event loops at each end (`loopback_events` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loops: Option<u64>,
}

/// From this many connections on, the runner also measures the event-loop echo floor and
/// the report speaks of "many connections".
pub const MANY_CONNECTIONS: u64 = 1000;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoopbackLevel {
    pub concurrency: u64,
    /// Round trips per second of the best trial; `None` when not measured (`note` says why).
    pub round_trips_per_s: Option<f64>,
    /// The lowest median round trip of any trial, microseconds.
    pub p50_us: Option<f64>,
    /// The lowest 99th percentile of any trial, microseconds.
    pub p99_us: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Fewer connections than `concurrency` were measured: what fit in the runner's
    /// open-file limit with both ends in one process (event-loop echo only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_connections: Option<u64>,
}

impl LoopbackLevel {
    /// A level that was not measured, and why.
    pub fn missing(concurrency: u64, note: String) -> LoopbackLevel {
        LoopbackLevel {
            concurrency,
            round_trips_per_s: None,
            p50_us: None,
            p99_us: None,
            note: Some(note),
            measured_connections: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComputeTime {
    pub size: u64,
    pub samples: u32,
    /// The fastest timing of one compute(size), seconds: the ceiling's basis.
    pub min_s: f64,
    /// The median timing, seconds: how steady the machine was.
    pub median_s: f64,
}

impl Limits {
    pub fn loopback_at(&self, concurrency: u64) -> Option<&LoopbackLevel> {
        self.loopback
            .levels
            .iter()
            .find(|l| l.concurrency == concurrency)
    }

    /// The event-loop echo at `concurrency`, when it was measured there.
    pub fn loopback_events_at(&self, concurrency: u64) -> Option<&LoopbackLevel> {
        self.loopback_events
            .as_ref()?
            .levels
            .iter()
            .find(|l| l.concurrency == concurrency)
    }

    pub fn compute_of(&self, size: u64) -> Option<&ComputeTime> {
        self.compute.iter().find(|c| c.size == size)
    }
}
