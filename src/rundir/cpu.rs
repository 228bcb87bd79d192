//! `cpu/<run>.csv`: a run's CPU samples (every ~100 ms: the server's group, the client and
//! the machine), and the window means that results.csv keeps.

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
const CSV_COLUMNS: [&str; 8] = [
    "t_s",
    "phase",
    "server_cpu_s",
    "client_cpu_s",
    "machine_cpu_s",
    "server_pct",
    "client_pct",
    "machine_pct",
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
        };
        write_csv(&path, &[s(0.1), s(1.2)], 1.0).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            text.lines().collect::<Vec<_>>(),
            [
                CSV_COLUMNS.join(",").as_str(),
                "0.100,warmup,0.123,0.500,1.000,100.0,12.3,150.0",
                "1.200,measure,0.123,0.500,1.000,100.0,12.3,150.0",
            ]
        );
        let back = read_csv(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].t_s, 1.2);
        assert_eq!(back[1].server_pct, 100.0);
        write_csv(&path, &[], 1.0).unwrap();
        assert_eq!(read_csv(&path).unwrap(), []);
        std::fs::write(&path, "t_s,phase\n0.1,warmup\n").unwrap();
        assert!(read_csv(&path).is_err(), "missing columns are an error");
    }
}
