//! The client's versioned JSON document (`--json FILE`), as docs/formats.md specifies it.

use std::collections::BTreeMap;
use std::io::{self, Write};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::report::{Failures, LatencyUs, Report};
use super::Mode;
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocConfig {
    pub host: String,
    pub port: u16,
    pub cmd: String,
    pub size: u64,
    pub concurrency: u64,
    /// Requests per thread in `--requests` mode, null in `--duration` mode.
    pub requests_per_thread: Option<u64>,
    /// The measured duration in `--duration` mode, null in `--requests` mode.
    pub duration_s: Option<f64>,
    pub warmup_s: f64,
    pub timeout_s: f64,
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
                requests_per_thread,
                duration_s,
                warmup_s: cfg.warmup.as_secs_f64(),
                timeout_s: cfg.timeout.as_secs_f64(),
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
            histogram: DocHistogram {
                unit: "ns".to_string(),
                significant_digits: report.histogram.sigfig(),
                encoding: HISTOGRAM_ENCODING.to_string(),
                data: hdr::encode_base64_v2(&report.histogram),
            },
            first_errors: report.first_errors.clone(),
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
        hdr::decode_base64_v2(&self.histogram.data)
    }
}
