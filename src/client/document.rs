//! The client's versioned JSON document (`--json FILE`), as docs/formats.md specifies it.

use std::collections::BTreeMap;
use std::io::{self, Write};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::report::{Failures, LatencyUs, Report, LATE_THRESHOLD};
use super::{LoadModel, Mode};
use crate::hdr::{self, DecodeError};
use crate::protocol::ErrorCode;

/// The `format` field.
pub const FORMAT: &str = "threadcenter-client";
/// The `version` field; readers refuse versions they do not know.
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientDocument {
    pub format: String,
    pub version: u32,
    pub config: DocConfig,
    pub elapsed_s: f64,
    pub requests: DocRequests,
    pub failures: Failures,
    pub throughput_rps: f64,
    pub latency_us: LatencyUs,
    pub histogram: DocHistogram,
    /// Added to the documented fields: the first message seen for each failure kind.
    #[serde(default)]
    pub first_errors: BTreeMap<String, String>,
    /// Added: `"closed"` (the seed's model) or `"open"` (`--rate`). Absent in documents
    /// written before it, which are all closed loop.
    #[serde(default = "closed")]
    pub load_model: String,
    /// Added: what only an open-loop run measures; null in closed loop.
    #[serde(default)]
    pub open_loop: Option<DocOpenLoop>,
    /// Added: the client process's CPU use over the whole run (warm-up included).
    #[serde(default)]
    pub client_cpu: Option<DocCpu>,
    /// Added: reasons to distrust the figures (the client could not keep up).
    #[serde(default)]
    pub warnings: Vec<String>,
}

fn closed() -> String {
    "closed".to_string()
}

/// The open-loop figures. In an open-loop document `latency_us` and `histogram` hold
/// the latency from each request's intended send time (corrected); these add the rest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocOpenLoop {
    /// `--rate`: requests per second offered over all connections.
    pub offered_rps: f64,
    /// Measured requests actually sent per second (see docs/open-loop.md).
    pub sent_rps: f64,
    /// Measured requests written to a socket (`requests.sent` counts the whole schedule).
    pub sent: u64,
    /// Latency from the actual send time, of the same successful requests.
    pub uncorrected_latency_us: LatencyUs,
    pub uncorrected_histogram: DocHistogram,
    /// How far each measured send left behind its schedule.
    pub lateness_us: LatencyUs,
    pub lateness_histogram: DocHistogram,
    /// A send at least this late counts as late.
    pub late_threshold_us: f64,
    /// Sends at least `late_threshold_us` late.
    pub late: u64,
    /// Of those, late while their connection was up with room in its pipeline: the
    /// client's own doing, not the server's.
    pub late_own: u64,
    /// Share of the run the busiest connection thread was not waiting (0..1).
    pub busy_max: f64,
    /// The same, averaged over connection threads.
    pub busy_mean: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DocCpu {
    /// User + system CPU seconds of the client process.
    pub cpu_s: f64,
    /// Wall-clock seconds over which `cpu_s` was measured.
    pub wall_s: f64,
    /// `cpu_s / wall_s`: 1.0 is one core fully busy.
    pub cores_used: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocConfig {
    pub host: String,
    pub port: u16,
    pub cmd: String,
    pub size: u64,
    pub concurrency: u64,
    /// Added: `--threads`, the event-loop threads the connections were spread over;
    /// absent in documents written before it (one thread per connection then).
    #[serde(default)]
    pub threads: Option<u64>,
    /// Requests per thread in `--requests` mode, null in `--duration` mode.
    pub requests_per_thread: Option<u64>,
    /// The measured duration in `--duration` mode, null in `--requests` mode.
    pub duration_s: Option<f64>,
    pub warmup_s: f64,
    pub timeout_s: f64,
    /// Added: `--rate`, null in closed loop.
    #[serde(default)]
    pub rate: Option<f64>,
    /// Added: `--pipeline`, null in closed loop.
    #[serde(default)]
    pub pipeline: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocRequests {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocHistogram {
    pub unit: String,
    pub significant_digits: u8,
    pub encoding: String,
    pub data: String,
}

/// The `histogram.encoding` value.
pub const HISTOGRAM_ENCODING: &str = "hdr-v2-deflate-base64";

impl DocHistogram {
    /// A nanosecond histogram, whole, as the document embeds it.
    pub fn of(h: &Histogram<u64>) -> DocHistogram {
        DocHistogram {
            unit: "ns".to_string(),
            significant_digits: h.sigfig(),
            encoding: HISTOGRAM_ENCODING.to_string(),
            data: hdr::encode_base64_v2(h),
        }
    }

    /// Decodes the histogram.
    pub fn decode(&self) -> Result<Histogram<u64>, DecodeError> {
        hdr::decode_base64_v2(&self.data)
    }
}

impl ClientDocument {
    pub fn from_report(report: &Report) -> ClientDocument {
        let cfg = &report.config;
        let (requests_per_thread, duration_s) = match cfg.mode {
            Mode::Requests(n) => (Some(n), None),
            Mode::Duration(d) => (None, Some(d.as_secs_f64())),
        };
        // Every protocol code is listed, with 0 when it never came, so readers see the
        // full set; codes this build does not know are kept as the server sent them.
        let mut failures = report.failures.clone();
        for code in ErrorCode::ALL {
            failures
                .server_error
                .entry(code.as_str().to_string())
                .or_insert(0);
        }
        ClientDocument {
            format: FORMAT.to_string(),
            version: VERSION,
            config: DocConfig {
                host: cfg.host.clone(),
                port: cfg.port,
                cmd: cfg.cmd.as_str().to_string(),
                size: cfg.size,
                concurrency: cfg.concurrency as u64,
                threads: Some(cfg.threads as u64),
                requests_per_thread,
                duration_s,
                warmup_s: cfg.warmup.as_secs_f64(),
                timeout_s: cfg.timeout.as_secs_f64(),
                rate: match cfg.model {
                    LoadModel::Open { rate, .. } => Some(rate),
                    LoadModel::Closed => None,
                },
                pipeline: match cfg.model {
                    LoadModel::Open { pipeline, .. } => Some(pipeline as u64),
                    LoadModel::Closed => None,
                },
            },
            elapsed_s: report.elapsed.as_secs_f64(),
            requests: DocRequests {
                sent: report.sent(),
                ok: report.ok,
                failed: report.failed(),
            },
            failures,
            throughput_rps: report.throughput_rps(),
            latency_us: report.latency_us(),
            histogram: DocHistogram::of(&report.histogram),
            first_errors: report.first_errors.clone(),
            load_model: cfg.model.name().to_string(),
            open_loop: report.open.as_ref().map(|o| DocOpenLoop {
                offered_rps: o.rate,
                sent_rps: o.achieved_rps(),
                sent: o.sent,
                uncorrected_latency_us: LatencyUs::from_histogram(&o.uncorrected),
                uncorrected_histogram: DocHistogram::of(&o.uncorrected),
                lateness_us: o.lateness_us(),
                lateness_histogram: DocHistogram::of(&o.lateness),
                late_threshold_us: LATE_THRESHOLD.as_secs_f64() * 1e6,
                late: o.late,
                late_own: o.late_own,
                busy_max: o.busy_max,
                busy_mean: o.busy_mean,
            }),
            client_cpu: Some(DocCpu {
                cpu_s: report.cpu.cpu_s,
                wall_s: report.cpu.wall_s,
                cores_used: report.cpu.cores_used(),
            }),
            warnings: report.warnings.clone(),
        }
    }

    /// Writes the document as pretty JSON with a final newline.
    pub fn write<W: Write>(&self, w: &mut W) -> io::Result<()> {
        serde_json::to_writer_pretty(&mut *w, self)?;
        w.write_all(b"\n")
    }

    /// Reads a document, refusing other formats and versions.
    pub fn parse(text: &str) -> anyhow::Result<ClientDocument> {
        #[derive(Deserialize)]
        struct Header {
            format: String,
            version: u32,
        }
        let header: Header = serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("not a threadcenter client document: {e}"))?;
        if header.format != FORMAT {
            anyhow::bail!("format is {:?}, expected {FORMAT:?}", header.format);
        }
        if header.version != VERSION {
            anyhow::bail!(
                "{FORMAT} version {} is not supported (this build reads version {VERSION})",
                header.version
            );
        }
        Ok(serde_json::from_str(text)?)
    }

    /// Decodes the embedded histogram (nanoseconds).
    pub fn decode_histogram(&self) -> Result<Histogram<u64>, DecodeError> {
        self.histogram.decode()
    }
}
