//! The runner's own small `stats` client (docs/protocol.md, docs/stats.md): reset the
//! server's stage histograms at the end of a cell's warm-up, read them at its end, and
//! keep both snapshots in `stats/<run>.json`; the stage figures go to results.csv.
//!
//! It speaks the protocol through `crate::protocol`, over its own connection, as any
//! user's script could. A server that does not answer `stats` (an external target
//! without it) is not a failed run: the file records why, and the stage columns stay
//! empty.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::client::tls::TlsTarget;
use crate::protocol::message::{encode_request, parse_response, Body};
use crate::protocol::{Command, FrameReader, DEFAULT_MAX_FRAME};

/// `format` of `stats/<run>.json`.
pub const FORMAT: &str = "threadcenter-run-stats";
pub const VERSION: u32 = 1;

/// How long one `stats` exchange may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Sends one `stats` request (`reset` as given) and returns the `stats` object; over
/// TLS when `tls` is given (a `tls = true` target).
pub fn query(addr: SocketAddr, reset: bool, tls: Option<&TlsTarget>) -> Result<Value, String> {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {addr} for stats: {e}"))?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| format!("cannot set up the stats connection: {e}"))?;
    match tls {
        None => exchange(stream, addr, reset),
        Some(tls) => {
            let stream = tls
                .handshake(stream)
                .map_err(|e| format!("stats connection to {addr}: {e}"))?;
            exchange(stream, addr, reset)
        }
    }
}

fn exchange<S: Read + Write>(
    mut stream: S,
    addr: SocketAddr,
    reset: bool,
) -> Result<Value, String> {
    let mut frame = Vec::new();
    encode_request(&mut frame, 1, &Command::Stats { reset });
    stream
        .write_all(&frame)
        .and_then(|()| stream.flush())
        .map_err(|e| format!("cannot send stats to {addr}: {e}"))?;
    let mut frames = FrameReader::new(stream, DEFAULT_MAX_FRAME.max(64 << 20));
    let payload = match frames.next_frame() {
        Ok(Some(p)) => p.to_vec(),
        Ok(None) => {
            return Err(format!(
                "{addr} closed the connection instead of answering stats"
            ))
        }
        Err(e) => return Err(format!("no stats answer from {addr}: {e}")),
    };
    let response = parse_response(&payload).map_err(|e| format!("stats: {e}"))?;
    match response.body {
        Body::Stats(text) => {
            serde_json::from_str(text).map_err(|e| format!("stats object does not parse: {e}"))
        }
        Body::Error { code, message } => {
            Err(format!("the server answered stats with {code}: {message}"))
        }
        other => Err(format!("the server answered stats with {other:?}")),
    }
}

/// `stats/<run>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunStats {
    pub format: String,
    pub version: u32,
    /// Seconds after the client started when the stage histograms were reset (the end
    /// of its warm-up; 0 when there was none), and when they were read (the client had
    /// exited).
    pub reset_at_s: Option<f64>,
    pub read_at_s: Option<f64>,
    /// The server's `stats` object as the reset returned it (before zeroing: the
    /// warm-up), and as read at the end (the measured window), verbatim.
    pub at_reset: Option<Value>,
    pub at_end: Option<Value>,
    /// Why a snapshot is missing, if one is.
    pub error: Option<String>,
}

impl RunStats {
    pub fn new() -> RunStats {
        RunStats {
            format: FORMAT.into(),
            version: VERSION,
            reset_at_s: None,
            read_at_s: None,
            at_reset: None,
            at_end: None,
            error: None,
        }
    }

    /// Notes a failure; the first one is kept.
    pub fn fail(&mut self, why: String) {
        self.error.get_or_insert(why);
    }

    /// The stage figures for results.csv, when the measured window was timed: the
    /// reset worked and the end snapshot has stage timing on.
    pub fn stages(&self) -> Option<StageFigures> {
        self.at_reset.as_ref()?;
        let end = self.at_end.as_ref()?;
        if end.get("stage_timing") != Some(&Value::Bool(true)) {
            return None;
        }
        let s = end.get("stages_us")?;
        let f = |stage: &str, field: &str| s.get(stage)?.get(field)?.as_f64();
        let stage = |name: &str| -> Option<StageFigure> {
            Some(StageFigure {
                mean_us: f(name, "mean")?,
                p50_us: f(name, "p50")?,
                p99_us: f(name, "p99")?,
            })
        };
        Some(StageFigures {
            count: s.get("total")?.get("count")?.as_u64()?,
            queue: stage("queue")?,
            service: stage("service")?,
            return_: stage("return")?,
            total: stage("total")?,
        })
    }

    /// Writes the file whole or not at all (a temporary file renamed).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }
}

impl Default for RunStats {
    fn default() -> Self {
        RunStats::new()
    }
}

/// One stage over a run's measured window, microseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageFigure {
    pub mean_us: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

/// The four stages over a run's measured window, and how many requests they cover.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StageFigures {
    pub count: u64,
    pub queue: StageFigure,
    pub service: StageFigure,
    pub return_: StageFigure,
    pub total: StageFigure,
}

/// results.csv's stage columns, in order (after the others).
pub const STAGE_COLUMNS: [&str; 13] = [
    "server_timed",
    "server_queue_mean_us",
    "server_queue_p50_us",
    "server_queue_p99_us",
    "server_service_mean_us",
    "server_service_p50_us",
    "server_service_p99_us",
    "server_return_mean_us",
    "server_return_p50_us",
    "server_return_p99_us",
    "server_total_mean_us",
    "server_total_p50_us",
    "server_total_p99_us",
];

impl StageFigures {
    /// The values of [`STAGE_COLUMNS`].
    pub fn to_record(&self) -> Vec<String> {
        let mut rec = vec![self.count.to_string()];
        for s in [self.queue, self.service, self.return_, self.total] {
            for v in [s.mean_us, s.p50_us, s.p99_us] {
                rec.push(super::store::num(v, 1));
            }
        }
        rec
    }

    /// Reads [`STAGE_COLUMNS`] back: `None` when absent (an older run) or empty.
    pub fn from_fields(get: impl Fn(&str) -> Option<String>) -> anyhow::Result<Option<Self>> {
        let Some(count) = get(STAGE_COLUMNS[0]).filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let count: u64 = count
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("`server_timed` is not a count: {count:?}"))?;
        let mut v = Vec::with_capacity(12);
        for col in &STAGE_COLUMNS[1..] {
            let s = get(col).unwrap_or_default();
            v.push(
                s.trim()
                    .parse::<f64>()
                    .map_err(|_| anyhow::anyhow!("`{col}` is not a number: {s:?}"))?,
            );
        }
        let st = |i: usize| StageFigure {
            mean_us: v[i],
            p50_us: v[i + 1],
            p99_us: v[i + 2],
        };
        Ok(Some(StageFigures {
            count,
            queue: st(0),
            service: st(3),
            return_: st(6),
            total: st(9),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stage_columns_round_trip() {
        let f = StageFigures {
            count: 80,
            queue: StageFigure {
                mean_us: 1500.26,
                p50_us: 1400.0,
                p99_us: 3000.0,
            },
            service: StageFigure {
                mean_us: 200.0,
                p50_us: 199.9,
                p99_us: 250.0,
            },
            return_: StageFigure {
                mean_us: 30.0,
                p50_us: 20.0,
                p99_us: 90.0,
            },
            total: StageFigure {
                mean_us: 1730.3,
                p50_us: 1620.0,
                p99_us: 3300.0,
            },
        };
        let rec = f.to_record();
        let get = |c: &str| {
            STAGE_COLUMNS
                .iter()
                .position(|x| *x == c)
                .map(|i| rec[i].clone())
        };
        let back = StageFigures::from_fields(get).unwrap().unwrap();
        assert_eq!(back.count, 80);
        assert_eq!(back.queue.mean_us, 1500.3); // one decimal in the file
        assert_eq!(back.total.p99_us, 3300.0);
        assert_eq!(StageFigures::from_fields(|_| None).unwrap(), None);
    }

    #[test]
    fn stages_need_a_reset_and_timing() {
        let end = serde_json::json!({"stage_timing": true, "stages_us": {
            "queue": {"count": 2, "mean": 1.0, "p50": 1.0, "p99": 1.0},
            "service": {"count": 2, "mean": 2.0, "p50": 2.0, "p99": 2.0},
            "return": {"count": 2, "mean": 3.0, "p50": 3.0, "p99": 3.0},
            "total": {"count": 2, "mean": 6.0, "p50": 6.0, "p99": 6.0}}});
        let mut s = RunStats::new();
        s.at_end = Some(end.clone());
        assert_eq!(s.stages(), None, "no reset: the warm-up is in the window");
        s.at_reset = Some(serde_json::json!({}));
        assert_eq!(s.stages().unwrap().total.mean_us, 6.0);
        let mut off = end;
        off["stage_timing"] = Value::Bool(false);
        s.at_end = Some(off);
        assert_eq!(s.stages(), None);
    }
}
