//! `hosts.csv`: a multi-host run's figures per host (docs/multi-host.md), one row per
//! cell × repetition × host: its role, its requests, throughput and latency (a client's
//! share of the load), its CPU (the command's process group and the whole host), and
//! the start-skew bound of the cell. An additional file: results.csv keeps one row per
//! cell × repetition, and a run without hosts has no hosts.csv.

use std::fs::{File, OpenOptions};
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use super::fixed;
use super::Status;

pub const HOSTS_FILE: &str = "hosts.csv";

/// What a host did in a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Server,
    Client,
}

/// One line of hosts.csv: the columns, their order and decimals are this struct's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostRow {
    /// `c001-r1`.
    pub run: String,
    pub cell_id: String,
    pub rep: u32,
    pub role: Role,
    /// The `[hosts.NAME]` name, or `local` for a client run here.
    pub host: String,
    pub status: Status,
    /// A client's requests (a server row leaves them empty).
    pub requests_ok: Option<u64>,
    pub requests_failed: Option<u64>,
    #[serde(with = "fixed::d1::opt")]
    pub throughput_rps: Option<f64>,
    #[serde(with = "fixed::d1::opt")]
    pub latency_p50_us: Option<f64>,
    #[serde(with = "fixed::d1::opt")]
    pub latency_p99_us: Option<f64>,
    /// The command's process group over the measured window, % of one core.
    #[serde(with = "fixed::d1::opt")]
    pub cpu_group_pct: Option<f64>,
    /// The host's busy time over the window, % of its capacity (its `cpus`, or all).
    #[serde(with = "fixed::d1::opt")]
    pub cpu_host_pct: Option<f64>,
    /// Cores the host's percentage is of.
    pub cpu_host_cores: Option<u32>,
    /// The cell's bound on how far apart the clients began measuring (ms).
    #[serde(with = "fixed::d3::opt")]
    pub start_skew_bound_ms: Option<f64>,
    pub reason: String,
}

/// Appends `rows` to `dir`/hosts.csv, creating it with its header first.
pub fn append(dir: &Path, rows: &[HostRow]) -> anyhow::Result<()> {
    let path = dir.join(HOSTS_FILE);
    let new = !path.exists();
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let mut w = csv::WriterBuilder::new().has_headers(new).from_writer(file);
    for row in rows {
        w.serialize(row)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    w.flush()?;
    Ok(())
}

/// The rows of `dir`/hosts.csv; empty when the run had no hosts.
pub fn read(dir: &Path) -> anyhow::Result<Vec<HostRow>> {
    let path = dir.join(HOSTS_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    csv::Reader::from_reader(file)
        .deserialize()
        .enumerate()
        .map(|(i, r)| r.with_context(|| format!("{} line {}", path.display(), i + 2)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        let row = HostRow {
            run: "c001-r1".into(),
            cell_id: "c001".into(),
            rep: 1,
            role: Role::Client,
            host: "lg1".into(),
            status: Status::Ok,
            requests_ok: Some(10),
            requests_failed: Some(0),
            throughput_rps: Some(5.0),
            latency_p50_us: Some(100.0),
            latency_p99_us: Some(250.5),
            cpu_group_pct: Some(12.5),
            cpu_host_pct: Some(40.0),
            cpu_host_cores: Some(1),
            start_skew_bound_ms: Some(1.25),
            reason: String::new(),
        };
        let server = HostRow {
            role: Role::Server,
            host: "srv".into(),
            requests_ok: None,
            requests_failed: None,
            throughput_rps: None,
            latency_p50_us: None,
            latency_p99_us: None,
            status: Status::Failed,
            reason: "host srv: gone, with a comma".into(),
            ..row.clone()
        };
        append(dir.path(), std::slice::from_ref(&row)).unwrap();
        append(dir.path(), std::slice::from_ref(&server)).unwrap();
        assert_eq!(read(dir.path()).unwrap(), vec![row, server]);
        let text = std::fs::read_to_string(dir.path().join(HOSTS_FILE)).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("run,")).count(), 1);
    }
}
