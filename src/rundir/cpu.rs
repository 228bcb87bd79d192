//! `cpu/<run>.csv`: a run's CPU samples (every ~100 ms: the server's group, the client and
//! the machine) with the memory and threads of the server's process tree and the client's
//! (schema 4), and the window figures that results.csv keeps.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::fixed;

/// One sample: cumulative CPU seconds since the cell's baseline, and the interval's use
/// in percent of one core (100 = one core busy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the client was started.
    pub t_s: f64,
    pub server_cpu_s: f64,
    pub client_cpu_s: f64,
    pub machine_cpu_s: f64,
    pub server_pct: f64,
    pub client_pct: f64,
    pub machine_pct: f64,
    /// Memory and threads at this sample (schema 4; `None` in older files, or when the
    /// server's /proc entries could not be read).
    pub footprint: Option<Footprint>,
}

/// What the server's process tree and the client hold: resident memory (RSS, summed over
/// the server and its worker processes) in KiB, and the server tree's threads. In a
/// sample, the values at that moment; in results.csv, the peak over the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Footprint {
    pub server_rss_kib: u64,
    /// `None` when the client's /proc entry could not be read (not started, or exited).
    pub client_rss_kib: Option<u64>,
    pub server_threads: u64,
}

impl Footprint {
    /// From a CSV row's columns (results.csv, cpu/*.csv): `None` unless the server's
    /// memory and threads were both measured.
    pub fn from_columns(
        server_rss_kib: Option<u64>,
        client_rss_kib: Option<u64>,
        server_threads: Option<u64>,
    ) -> Option<Footprint> {
        Some(Footprint {
            server_rss_kib: server_rss_kib?,
            client_rss_kib,
            server_threads: server_threads?,
        })
    }
}

/// Mean CPU over a window, in percent of one core.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct CpuMeans {
    pub server_pct: f64,
    pub client_pct: f64,
    pub machine_pct: f64,
    /// The highest single-interval server reading within the window.
    pub server_peak_pct: f64,
}

/// A sample's phase: before the end of the warm-up, or within the measured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Warmup,
    Measure,
}

/// One line of `cpu/<run>.csv` (docs/results.md): the columns, their order and their
/// decimals are this struct's fields.
#[derive(Debug, Serialize, Deserialize)]
struct CpuRecord {
    #[serde(with = "fixed::d3")]
    t_s: f64,
    phase: Phase,
    #[serde(with = "fixed::d3")]
    server_cpu_s: f64,
    #[serde(with = "fixed::d3")]
    client_cpu_s: f64,
    #[serde(with = "fixed::d3")]
    machine_cpu_s: f64,
    #[serde(with = "fixed::d1")]
    server_pct: f64,
    #[serde(with = "fixed::d1")]
    client_pct: f64,
    #[serde(with = "fixed::d1")]
    machine_pct: f64,
    /// Schema 4: empty in older files (and where not read).
    #[serde(default)]
    server_rss_kib: Option<u64>,
    #[serde(default)]
    client_rss_kib: Option<u64>,
    #[serde(default)]
    server_threads: Option<u64>,
}

/// Writes the samples; `phase` is `warmup` before `warmup_s`, then `measure`.
pub fn write_csv(path: &Path, samples: &[Sample], warmup_s: f64) -> anyhow::Result<()> {
    let mut out = csv::Writer::from_path(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    for s in samples {
        out.serialize(CpuRecord {
            t_s: s.t_s,
            phase: if s.t_s < warmup_s {
                Phase::Warmup
            } else {
                Phase::Measure
            },
            server_cpu_s: s.server_cpu_s,
            client_cpu_s: s.client_cpu_s,
            machine_cpu_s: s.machine_cpu_s,
            server_pct: s.server_pct,
            client_pct: s.client_pct,
            machine_pct: s.machine_pct,
            server_rss_kib: s.footprint.map(|f| f.server_rss_kib),
            client_rss_kib: s.footprint.and_then(|f| f.client_rss_kib),
            server_threads: s.footprint.map(|f| f.server_threads),
        })?;
    }
    if samples.is_empty() {
        // No record, so no header from serde: write it from the field names.
        out.write_record(CSV_COLUMNS)?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The header of an empty file (docs/results.md).
const CSV_COLUMNS: [&str; 11] = [
    "t_s",
    "phase",
    "server_cpu_s",
    "client_cpu_s",
    "machine_cpu_s",
    "server_pct",
    "client_pct",
    "machine_pct",
    "server_rss_kib",
    "client_rss_kib",
    "server_threads",
];

/// Reads `cpu/<run>.csv` back.
pub fn read_csv(path: &Path) -> anyhow::Result<Vec<Sample>> {
    if !path.exists() {
        bail!(
            "{} is missing: results.csv has CPU figures for that run",
            path.display()
        );
    }
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = csv::Reader::from_reader(file);
    let mut samples = Vec::new();
    for record in reader.deserialize::<CpuRecord>() {
        let r = record.with_context(|| format!("{}: corrupt record", path.display()))?;
        samples.push(Sample {
            t_s: r.t_s,
            server_cpu_s: r.server_cpu_s,
            client_cpu_s: r.client_cpu_s,
            machine_cpu_s: r.machine_cpu_s,
            server_pct: r.server_pct,
            client_pct: r.client_pct,
            machine_pct: r.machine_pct,
            footprint: Footprint::from_columns(
                r.server_rss_kib,
                r.client_rss_kib,
                r.server_threads,
            ),
        });
    }
    Ok(samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_round_trip_with_their_decimals_and_phase() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c001-r1.csv");
        let s = |t: f64| Sample {
            t_s: t,
            server_cpu_s: 0.1234,
            client_cpu_s: 0.5,
            machine_cpu_s: 1.0,
            server_pct: 99.96,
            client_pct: 12.34,
            machine_pct: 150.0,
            footprint: Some(Footprint {
                server_rss_kib: 4096,
                client_rss_kib: (t > 1.0).then_some(2048),
                server_threads: 7,
            }),
        };
        write_csv(&path, &[s(0.1), s(1.2)], 1.0).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                CSV_COLUMNS.join(",").as_str(),
                "0.100,warmup,0.123,0.500,1.000,100.0,12.3,150.0,4096,,7",
                "1.200,measure,0.123,0.500,1.000,100.0,12.3,150.0,4096,2048,7",
            ]
        );
        let back = read_csv(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].t_s, 1.2);
        assert_eq!(back[1].server_pct, 100.0);
        assert_eq!(back[0].footprint, s(0.1).footprint);
        assert_eq!(back[1].footprint, s(1.2).footprint);
        // A file of schema 3 has no memory columns: its samples have no footprint.
        std::fs::write(
            &path,
            "t_s,phase,server_cpu_s,client_cpu_s,machine_cpu_s,server_pct,client_pct,machine_pct\n\
             0.100,warmup,0.123,0.500,1.000,100.0,12.3,150.0\n",
        )
        .unwrap();
        assert_eq!(read_csv(&path).unwrap()[0].footprint, None);
        write_csv(&path, &[], 1.0).unwrap();
        assert_eq!(read_csv(&path).unwrap(), []);
        std::fs::write(&path, "t_s,phase\n0.1,warmup\n").unwrap();
        assert!(read_csv(&path).is_err(), "missing columns are an error");
    }
}
