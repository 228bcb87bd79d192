//! Server counters behind `stats` and `/metrics`: connections, requests by cmd,
//! responses by cmd and outcome, errors by code, and the stage timings (`stages`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::Serialize;

use crate::protocol::ErrorCode;
use crate::server::stages::StageTimings;

/// Outcomes a response is counted under: `ok`, then each error code.
pub(crate) const OUTCOMES: usize = 1 + ErrorCode::ALL.len();

/// Counters shared by every connection; each update is one relaxed atomic add.
pub struct Metrics {
    started: Instant,
    pub connections_open: AtomicU64,
    pub connections_total: AtomicU64,
    /// Connections refused at accept because --max-connections were open.
    pub connections_refused: AtomicU64,
    /// Connections closed because a frame did not arrive whole within --frame-timeout.
    pub frames_timed_out: AtomicU64,
    requests: [AtomicU64; 4],
    errors: [AtomicU64; ErrorCode::ALL.len()],
    /// Responses by [`CmdKind`], then outcome (`ok`, then [`ErrorCode::ALL`]).
    responses: [[AtomicU64; OUTCOMES]; 4],
    pub stages: StageTimings,
}

/// Which counter a request goes to.
#[derive(Debug, Clone, Copy)]
pub enum CmdKind {
    Compute = 0,
    Ping = 1,
    Stats = 2,
    /// Refused before its cmd was known.
    Invalid = 3,
}

impl CmdKind {
    pub const ALL: [CmdKind; 4] = [
        CmdKind::Compute,
        CmdKind::Ping,
        CmdKind::Stats,
        CmdKind::Invalid,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CmdKind::Compute => "compute",
            CmdKind::Ping => "ping",
            CmdKind::Stats => "stats",
            CmdKind::Invalid => "invalid",
        }
    }
}

fn code_index(code: ErrorCode) -> usize {
    ErrorCode::ALL
        .iter()
        .position(|c| *c == code)
        .expect("known code")
}

impl Metrics {
    /// Counters at zero; stage timing on or off (`--no-stage-timing`).
    pub fn new(stage_timing: bool) -> Self {
        Metrics {
            started: Instant::now(),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            frames_timed_out: AtomicU64::new(0),
            requests: Default::default(),
            errors: Default::default(),
            responses: Default::default(),
            stages: StageTimings::new(stage_timing),
        }
    }

    pub fn request(&self, kind: CmdKind) {
        self.requests[kind as usize].fetch_add(1, Relaxed);
    }

    /// Counts an error sent outside any request (a refused connection).
    pub fn error(&self, code: ErrorCode) {
        self.errors[code_index(code)].fetch_add(1, Relaxed);
    }

    /// Counts one response to a request of `kind`: a result (`Ok`) or an error.
    pub fn respond(&self, kind: CmdKind, outcome: Result<(), ErrorCode>) {
        let o = match outcome {
            Ok(()) => 0,
            Err(code) => {
                self.error(code);
                1 + code_index(code)
            }
        };
        self.responses[kind as usize][o].fetch_add(1, Relaxed);
    }

    /// Responses by cmd, then outcome (`ok` or an error code), every pair present.
    pub fn responses(&self) -> BTreeMap<&'static str, BTreeMap<&'static str, u64>> {
        CmdKind::ALL
            .iter()
            .map(|&k| {
                let row = &self.responses[k as usize];
                let by_outcome = std::iter::once("ok")
                    .chain(ErrorCode::ALL.iter().map(|c| c.as_str()))
                    .zip(row)
                    .map(|(o, n)| (o, n.load(Relaxed)))
                    .collect();
                (k.as_str(), by_outcome)
            })
            .collect()
    }

    /// Compute requests received and not answered yet: queued, on a worker, or on
    /// their way back. Every compute request gets exactly one response.
    pub fn in_flight(&self) -> u64 {
        let received = self.requests[CmdKind::Compute as usize].load(Relaxed);
        let answered: u64 = self.responses[CmdKind::Compute as usize]
            .iter()
            .map(|n| n.load(Relaxed))
            .sum();
        received.saturating_sub(answered)
    }

    pub fn uptime_s(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    pub fn requests(&self) -> RequestCounts {
        let r = |k: CmdKind| self.requests[k as usize].load(Relaxed);
        RequestCounts {
            compute: r(CmdKind::Compute),
            ping: r(CmdKind::Ping),
            stats: r(CmdKind::Stats),
            invalid: r(CmdKind::Invalid),
        }
    }

    pub fn errors(&self) -> BTreeMap<&'static str, u64> {
        ErrorCode::ALL
            .iter()
            .zip(&self.errors)
            .map(|(c, n)| (c.as_str(), n.load(Relaxed)))
            .collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RequestCounts {
    pub compute: u64,
    pub ping: u64,
    pub stats: u64,
    /// Frames refused before their cmd was known (not JSON, no id, ...).
    pub invalid: u64,
}

/// One pool worker as `stats` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WorkerStats {
    /// OS pid (the server's own pid for a thread pool).
    pub pid: u32,
    pub tasks: u64,
    pub busy_s: f64,
    pub restarts: u64,
}
