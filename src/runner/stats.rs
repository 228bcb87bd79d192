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
use crate::rundir::{StageFigure, StageFigures};

/// `format` of `stats/<run>.json`.
pub(crate) const FORMAT: &str = "threadcenter-run-stats";
pub(crate) const VERSION: u32 = 1;

/// How long one `stats` exchange may take.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Sends one `stats` request (`reset` as given) and returns the `stats` object; over
/// TLS when `tls` is given (a `tls = true` target).
pub(crate) fn query(
    addr: SocketAddr,
    reset: bool,
    tls: Option<&TlsTarget>,
) -> Result<Value, String> {
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
pub(crate) struct RunStats {
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
    pub(crate) fn new() -> RunStats {
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
    pub(crate) fn fail(&mut self, why: String) {
        self.error.get_or_insert(why);
    }

    /// The stage figures for results.csv, when the measured window was timed: the
    /// reset worked and the end snapshot has stage timing on.
    pub(crate) fn stages(&self) -> Option<StageFigures> {
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
    pub(crate) fn write(&self, path: &Path) -> std::io::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
