//! `summary.csv`: one row per cell, written by the report. [`SummaryRow`] is the file's
//! layout: each column's name, position, type and decimals, written once (docs/results.md
//! documents them). The report fills it; nothing reads it back but people and their tools.

use std::io::Write;

use serde::{Serialize, Serializer};

use super::cell::CLOSED;
use super::fixed::{d1, d3};
use crate::domain::{ClientCmd, IoModel, PoolKind};

/// One row of summary.csv. Per summarised figure, its median over the cell's successful
/// repetitions (`throughput_rps`), then their range (`throughput_min_rps`,
/// `throughput_max_rps`); empty where nothing was measured. One flat struct, as the csv
/// crate cannot write the header of a `#[serde(flatten)]` field.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SummaryRow {
    pub cell: String,
    // The axes, in `Axis::ALL`'s order.
    pub target: String,
    pub pool: Option<PoolKind>,
    pub io: Option<IoModel>,
    pub workers: u64,
    pub cmd: Option<ClientCmd>,
    pub size: u64,
    pub concurrency: u64,
    #[serde(serialize_with = "rate")]
    pub rate: Option<u64>,
    // Counts over every repetition that reported them (failed ones included).
    pub reps_ok: usize,
    pub reps_failed: usize,
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    // The client's figures.
    #[serde(with = "d3::opt")]
    pub throughput_rps: Option<f64>,
    #[serde(with = "d3::opt")]
    pub throughput_min_rps: Option<f64>,
    #[serde(with = "d3::opt")]
    pub throughput_max_rps: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_mean_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_mean_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_mean_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p50_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p50_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p50_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p90_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p90_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p90_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_9_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_9_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_9_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_max_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_max_max_us: Option<f64>,
    // CPU, percent of one core.
    #[serde(with = "d1::opt")]
    pub server_cpu_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_cpu_min_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_cpu_max_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub client_cpu_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub client_cpu_min_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub client_cpu_max_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub machine_cpu_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub machine_cpu_min_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub machine_cpu_max_pct: Option<f64>,
    // Open loop only.
    #[serde(with = "d1::opt")]
    pub latency_p99_uncorrected_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_uncorrected_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_uncorrected_max_us: Option<f64>,
    #[serde(with = "d3::opt")]
    pub sent_rps: Option<f64>,
    #[serde(with = "d3::opt")]
    pub sent_min_rps: Option<f64>,
    #[serde(with = "d3::opt")]
    pub sent_max_rps: Option<f64>,
    // The server's stage means, and the rest of the client's mean (network and client).
    #[serde(with = "d1::opt")]
    pub server_queue_mean_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_queue_mean_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_queue_mean_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_service_mean_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_service_mean_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_service_mean_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_return_mean_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_return_mean_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_return_mean_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_total_mean_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_total_mean_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_total_mean_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub rest_mean_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub rest_mean_min_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub rest_mean_max_us: Option<f64>,
    /// The highest 100 ms server CPU sample of any successful repetition.
    #[serde(with = "d1::opt")]
    pub server_cpu_peak_pct: Option<f64>,
    // Against the machine's limits (manifest.json `limits`).
    #[serde(with = "d1::opt")]
    pub loopback_ceiling_rps: Option<f64>,
    #[serde(with = "d1::opt")]
    pub compute_ceiling_rps: Option<f64>,
    #[serde(with = "d1::opt")]
    pub ceiling_rps: Option<f64>,
    #[serde(with = "d1::opt")]
    pub efficiency_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_floor_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_efficiency_pct: Option<f64>,
    // Noise: spread across repetitions, and how busy the client was.
    #[serde(with = "d1::opt")]
    pub throughput_spread_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_spread_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub client_cpu_saturation_pct: Option<f64>,
    // Memory and threads: medians of each repetition's peak (schema 4).
    #[serde(with = "d1::opt")]
    pub server_rss_kib: Option<f64>,
    #[serde(with = "d1::opt")]
    pub client_rss_kib: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_threads: Option<f64>,
}

/// The `rate` column: requests per second, or `closed` (as in results.csv).
fn rate<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(r) => s.serialize_u64(*r),
        None => s.serialize_str(CLOSED),
    }
}

impl SummaryRow {
    /// summary.csv's column names, in order.
    pub fn columns() -> Vec<String> {
        let mut out = Vec::new();
        // Writing one row with its header is how the csv crate names the columns.
        let mut w = csv::Writer::from_writer(&mut out);
        w.serialize(SummaryRow::default())
            .expect("a default row serializes");
        drop(w);
        let text = String::from_utf8(out).expect("csv writes UTF-8");
        let header = text.lines().next().unwrap_or_default();
        header.split(',').map(str::to_string).collect()
    }
}

/// summary.csv's bytes: the header, then one line per row.
pub fn summary_csv(rows: &[SummaryRow]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        if rows.is_empty() {
            // The header alone: the csv crate writes it with the first row.
            w.write_record(SummaryRow::columns())?;
        }
        for row in rows {
            w.serialize(row)?;
        }
        w.flush()?;
    }
    out.flush()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_writes_its_columns_in_order_with_fixed_decimals() {
        let row = SummaryRow {
            cell: "c001".into(),
            target: "builtin".into(),
            pool: Some(PoolKind::Process),
            workers: 2,
            cmd: Some(ClientCmd::Compute),
            size: 10,
            concurrency: 4,
            reps_ok: 2,
            throughput_rps: Some(1234.56789),
            latency_p99_us: Some(-0.01),
            ..SummaryRow::default()
        };
        let text = String::from_utf8(summary_csv(&[row]).unwrap()).unwrap();
        let mut lines = text.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let values: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(lines.next(), None);
        assert_eq!(header.len(), 78);
        assert_eq!(values.len(), header.len());
        assert_eq!(header, SummaryRow::columns());
        let at = |name: &str| values[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(
            header[..10],
            [
                "cell",
                "target",
                "pool",
                "io",
                "workers",
                "cmd",
                "size",
                "concurrency",
                "rate",
                "reps_ok"
            ]
        );
        assert_eq!(at("pool"), "process");
        assert_eq!(at("cmd"), "compute");
        assert_eq!(at("rate"), "closed");
        assert_eq!(at("throughput_rps"), "1234.568");
        assert_eq!(at("latency_p99_us"), "0.0", "no negative zero");
        assert_eq!(at("latency_p99_min_us"), "", "not measured: empty");
        assert_eq!(header.last(), Some(&"server_threads"));
    }

    #[test]
    fn no_rows_still_write_the_header() {
        let text = String::from_utf8(summary_csv(&[]).unwrap()).unwrap();
        assert_eq!(text, format!("{}\n", SummaryRow::columns().join(",")));
    }
}
