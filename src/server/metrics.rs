//! Server counters behind `stats`: connections, requests by cmd, errors by code.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use serde::Serialize;

use crate::protocol::ErrorCode;

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

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            started: Instant::now(),
            connections_open: AtomicU64::new(0),
            connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            frames_timed_out: AtomicU64::new(0),
            requests: Default::default(),
            errors: Default::default(),
        }
    }
}

impl Metrics {
    pub fn request(&self, kind: CmdKind) {
        self.requests[kind as usize].fetch_add(1, Relaxed);
    }

    pub fn error(&self, code: ErrorCode) {
        let i = ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .expect("known code");
        self.errors[i].fetch_add(1, Relaxed);
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

    pub fn errors(&self) -> std::collections::BTreeMap<&'static str, u64> {
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
