//! `results.csv`: one row per cell × repetition. [`ResultRecord`] is the file's layout
//! (each column's name, position, type and decimals, written once); [`ResultRow`] is the
//! same row as the runner and the report use it.

use std::fs::File;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::cell::{Cell, CLOSED};
use super::cpu::{CpuMeans, Footprint};
use super::fixed::{d1, d3, d6};
use super::RESULTS_FILE;
use crate::domain::{CMetric, ClientCmd, IoModel, PoolKind};

/// A cell × repetition ended `ok` (every request answered right), or `failed` with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed => "failed",
        }
    }
}

/// What the client measured (its --json document, docs/formats.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    /// The measured window (after the warm-up), seconds.
    pub duration_s: f64,
    pub throughput_rps: f64,
    pub latency_mean_us: f64,
    pub latency_p50_us: f64,
    pub latency_p90_us: f64,
    pub latency_p99_us: f64,
    pub latency_p99_9_us: f64,
    pub latency_max_us: f64,
    /// Open-loop cells only (docs/open-loop.md); the latencies above are then corrected.
    pub open: Option<OpenMeasured>,
}

/// What only an open-loop client run measures.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenMeasured {
    /// `--rate`: the offered load.
    pub offered_rps: f64,
    /// Requests actually sent per second.
    pub sent_rps: f64,
    /// p99 of the latency from the actual send time (not corrected).
    pub latency_p99_uncorrected_us: f64,
    /// p99 of how late sends left against their schedule.
    pub lateness_p99_us: f64,
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

/// One row of results.csv.
#[derive(Debug, Clone, PartialEq)]
pub struct ResultRow {
    pub cell_id: String,
    pub rep: u32,
    /// Position in the execution order, from 1.
    pub seq: usize,
    pub cell: Cell,
    pub status: Status,
    pub reason: String,
    pub measured: Option<Measured>,
    pub cpu: Option<CpuMeans>,
    /// Peak memory and threads over the measured window (schema 4), when sampled.
    pub footprint: Option<Footprint>,
    /// The server's stage timings over the measured window (`stats/`), when it had them.
    pub stages: Option<StageFigures>,
    /// From starting the server until it is ready, seconds.
    pub startup_s: f64,
    /// From the client's exit until the server's group is verified gone, seconds.
    pub stop_s: f64,
    /// From the server's start to its group verified gone, seconds.
    pub wall_s: f64,
}

impl ResultRow {
    /// A run about to start: failed with no reason and nothing measured until the runner
    /// fills it in.
    pub fn pending(cell_id: &str, rep: u32, seq: usize, cell: &Cell) -> ResultRow {
        ResultRow {
            cell_id: cell_id.to_string(),
            rep,
            seq,
            cell: cell.clone(),
            status: Status::Failed,
            reason: String::new(),
            measured: None,
            cpu: None,
            footprint: None,
            stages: None,
            startup_s: 0.0,
            stop_s: 0.0,
            wall_s: 0.0,
        }
    }

    /// `c001-r1`: the stem of this run's files.
    pub fn run_name(&self) -> String {
        super::run_name(&self.cell_id, self.rep)
    }

    /// A compared metric's value in this repetition, when it was measured.
    pub fn metric(&self, metric: CMetric) -> Option<f64> {
        let m = self.measured.as_ref()?;
        let v = match metric {
            CMetric::Throughput => m.throughput_rps,
            CMetric::P50 => m.latency_p50_us,
            CMetric::P99 => m.latency_p99_us,
            CMetric::P999 => m.latency_p99_9_us,
            CMetric::CpuPerRequest => {
                // Server CPU (% of one core) over the window / requests per second:
                // microseconds of CPU per request.
                let cpu = self.cpu.as_ref()?;
                if m.throughput_rps <= 0.0 {
                    return None;
                }
                cpu.server_pct / 100.0 * 1e6 / m.throughput_rps
            }
        };
        v.is_finite().then_some(v)
    }
}

/// results.csv's layout: one field per column, in the file's order. Empty means "not
/// measured"; a `#[serde(default)]` column was added after the first runs were written
/// (the open loop's `rate` and figures, schema 2's stage timings, start-up and stop
/// times, schema 4's `io`, memory and threads), so files without it still read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ResultRecord {
    pub cell: String,
    pub rep: u32,
    pub seq: usize,
    // The axes, in `Axis::ALL`'s order.
    pub target: String,
    pub pool: Option<PoolKind>,
    #[serde(default)]
    pub io: Option<IoModel>,
    pub workers: u64,
    pub cmd: Option<ClientCmd>,
    pub size: u64,
    pub concurrency: u64,
    #[serde(default, with = "rate")]
    pub rate: Option<u64>,
    pub status: Option<Status>,
    pub reason: String,
    pub sent: Option<u64>,
    pub ok: Option<u64>,
    pub failed: Option<u64>,
    #[serde(with = "d6::opt")]
    pub duration_s: Option<f64>,
    #[serde(with = "d3::opt")]
    pub throughput_rps: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_mean_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p50_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p90_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_p99_9_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub latency_max_us: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_cpu_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub client_cpu_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub machine_cpu_pct: Option<f64>,
    #[serde(with = "d1::opt")]
    pub server_cpu_peak_pct: Option<f64>,
    #[serde(default, with = "d3::opt")]
    pub startup_s: Option<f64>,
    #[serde(default, with = "d3::opt")]
    pub stop_s: Option<f64>,
    #[serde(with = "d3::opt")]
    pub wall_s: Option<f64>,
    /// `closed` or `open`; follows from `rate`, so it is not read back.
    #[serde(default)]
    pub load_model: String,
    #[serde(default, with = "d3::opt")]
    pub offered_rps: Option<f64>,
    #[serde(default, with = "d3::opt")]
    pub sent_rps: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub latency_p99_uncorrected_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub lateness_p99_us: Option<f64>,
    #[serde(default)]
    pub server_timed: Option<u64>,
    #[serde(default, with = "d1::opt")]
    pub server_queue_mean_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_queue_p50_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_queue_p99_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_service_mean_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_service_p50_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_service_p99_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_return_mean_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_return_p50_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_return_p99_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_total_mean_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_total_p50_us: Option<f64>,
    #[serde(default, with = "d1::opt")]
    pub server_total_p99_us: Option<f64>,
    /// Peaks over the measured window (docs/results.md).
    #[serde(default)]
    pub server_rss_kib: Option<u64>,
    #[serde(default)]
    pub client_rss_kib: Option<u64>,
    #[serde(default)]
    pub server_threads: Option<u64>,
}

/// The `rate` column: a number of requests per second, or `closed` (empty in no file
/// written so far, but read as closed too).
mod rate {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(r) => s.serialize_u64(*r),
            None => s.serialize_str(super::CLOSED),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref().map(str::trim) {
            None | Some("") | Some(super::CLOSED) => Ok(None),
            Some(r) => r.parse().map(Some).map_err(|_| {
                serde::de::Error::custom(format!("rate {r:?} is neither a number nor `closed`"))
            }),
        }
    }
}

impl From<&ResultRow> for ResultRecord {
    fn from(row: &ResultRow) -> ResultRecord {
        let c = &row.cell;
        let m = row.measured.as_ref();
        let cpu = row.cpu.as_ref();
        let open = m.and_then(|m| m.open.as_ref());
        let st = row.stages.as_ref();
        let stage =
            |f: fn(&StageFigures) -> StageFigure, g: fn(&StageFigure) -> f64| st.map(|s| g(&f(s)));
        ResultRecord {
            cell: row.cell_id.clone(),
            rep: row.rep,
            seq: row.seq,
            target: c.target.clone(),
            pool: c.pool,
            io: c.io,
            workers: c.workers,
            cmd: Some(c.cmd),
            size: c.size,
            concurrency: c.concurrency,
            rate: c.rate,
            status: Some(row.status),
            reason: row.reason.clone(),
            sent: m.map(|m| m.sent),
            ok: m.map(|m| m.ok),
            failed: m.map(|m| m.failed),
            duration_s: m.map(|m| m.duration_s),
            throughput_rps: m.map(|m| m.throughput_rps),
            latency_mean_us: m.map(|m| m.latency_mean_us),
            latency_p50_us: m.map(|m| m.latency_p50_us),
            latency_p90_us: m.map(|m| m.latency_p90_us),
            latency_p99_us: m.map(|m| m.latency_p99_us),
            latency_p99_9_us: m.map(|m| m.latency_p99_9_us),
            latency_max_us: m.map(|m| m.latency_max_us),
            server_cpu_pct: cpu.map(|c| c.server_pct),
            client_cpu_pct: cpu.map(|c| c.client_pct),
            machine_cpu_pct: cpu.map(|c| c.machine_pct),
            server_cpu_peak_pct: cpu.map(|c| c.server_peak_pct),
            startup_s: Some(row.startup_s),
            stop_s: Some(row.stop_s),
            wall_s: Some(row.wall_s),
            load_model: c.load_model().to_string(),
            offered_rps: open.map(|o| o.offered_rps),
            sent_rps: open.map(|o| o.sent_rps),
            latency_p99_uncorrected_us: open.map(|o| o.latency_p99_uncorrected_us),
            lateness_p99_us: open.map(|o| o.lateness_p99_us),
            server_timed: st.map(|s| s.count),
            server_queue_mean_us: stage(|s| s.queue, |f| f.mean_us),
            server_queue_p50_us: stage(|s| s.queue, |f| f.p50_us),
            server_queue_p99_us: stage(|s| s.queue, |f| f.p99_us),
            server_service_mean_us: stage(|s| s.service, |f| f.mean_us),
            server_service_p50_us: stage(|s| s.service, |f| f.p50_us),
            server_service_p99_us: stage(|s| s.service, |f| f.p99_us),
            server_return_mean_us: stage(|s| s.return_, |f| f.mean_us),
            server_return_p50_us: stage(|s| s.return_, |f| f.p50_us),
            server_return_p99_us: stage(|s| s.return_, |f| f.p99_us),
            server_total_mean_us: stage(|s| s.total, |f| f.mean_us),
            server_total_p50_us: stage(|s| s.total, |f| f.p50_us),
            server_total_p99_us: stage(|s| s.total, |f| f.p99_us),
            server_rss_kib: row.footprint.map(|f| f.server_rss_kib),
            client_rss_kib: row.footprint.and_then(|f| f.client_rss_kib),
            server_threads: row.footprint.map(|f| f.server_threads),
        }
    }
}

fn need<T>(name: &str, v: Option<T>) -> anyhow::Result<T> {
    v.with_context(|| format!("`{name}` is empty"))
}

impl ResultRecord {
    /// The client's figures: absent when `sent` is empty, whole otherwise.
    fn measured(&self) -> anyhow::Result<Option<Measured>> {
        let Some(sent) = self.sent else {
            return Ok(None);
        };
        Ok(Some(Measured {
            sent,
            ok: need("ok", self.ok)?,
            failed: need("failed", self.failed)?,
            duration_s: need("duration_s", self.duration_s)?,
            throughput_rps: need("throughput_rps", self.throughput_rps)?,
            latency_mean_us: need("latency_mean_us", self.latency_mean_us)?,
            latency_p50_us: need("latency_p50_us", self.latency_p50_us)?,
            latency_p90_us: need("latency_p90_us", self.latency_p90_us)?,
            latency_p99_us: need("latency_p99_us", self.latency_p99_us)?,
            latency_p99_9_us: need("latency_p99_9_us", self.latency_p99_9_us)?,
            latency_max_us: need("latency_max_us", self.latency_max_us)?,
            open: self.offered_rps.map(|offered_rps| OpenMeasured {
                offered_rps,
                sent_rps: self.sent_rps.unwrap_or(f64::NAN),
                latency_p99_uncorrected_us: self.latency_p99_uncorrected_us.unwrap_or(f64::NAN),
                lateness_p99_us: self.lateness_p99_us.unwrap_or(f64::NAN),
            }),
        }))
    }

    /// The stage timings: absent when `server_timed` is empty, whole otherwise.
    fn stages(&self) -> anyhow::Result<Option<StageFigures>> {
        let Some(count) = self.server_timed else {
            return Ok(None);
        };
        let fig = |name: &str, [mean, p50, p99]: [Option<f64>; 3]| -> anyhow::Result<StageFigure> {
            Ok(StageFigure {
                mean_us: need(&format!("server_{name}_mean_us"), mean)?,
                p50_us: need(&format!("server_{name}_p50_us"), p50)?,
                p99_us: need(&format!("server_{name}_p99_us"), p99)?,
            })
        };
        let r = self;
        Ok(Some(StageFigures {
            count,
            queue: fig(
                "queue",
                [
                    r.server_queue_mean_us,
                    r.server_queue_p50_us,
                    r.server_queue_p99_us,
                ],
            )?,
            service: fig(
                "service",
                [
                    r.server_service_mean_us,
                    r.server_service_p50_us,
                    r.server_service_p99_us,
                ],
            )?,
            return_: fig(
                "return",
                [
                    r.server_return_mean_us,
                    r.server_return_p50_us,
                    r.server_return_p99_us,
                ],
            )?,
            total: fig(
                "total",
                [
                    r.server_total_mean_us,
                    r.server_total_p50_us,
                    r.server_total_p99_us,
                ],
            )?,
        }))
    }
}

impl TryFrom<ResultRecord> for ResultRow {
    type Error = anyhow::Error;

    /// Checks what serde cannot: a measured row has every figure, stage timings are whole.
    fn try_from(r: ResultRecord) -> anyhow::Result<ResultRow> {
        let measured = r.measured()?;
        let stages = r.stages()?;
        let cpu = r.server_cpu_pct.map(|server_pct| CpuMeans {
            server_pct,
            client_pct: r.client_cpu_pct.unwrap_or(0.0),
            machine_pct: r.machine_cpu_pct.unwrap_or(0.0),
            server_peak_pct: r.server_cpu_peak_pct.unwrap_or(0.0),
        });
        Ok(ResultRow {
            cell_id: r.cell,
            rep: r.rep,
            seq: r.seq,
            cell: Cell {
                target: r.target,
                pool: r.pool,
                io: r.io,
                workers: r.workers,
                cmd: need("cmd", r.cmd)?,
                size: r.size,
                concurrency: r.concurrency,
                rate: r.rate,
            },
            status: need("status", r.status)?,
            reason: r.reason,
            measured,
            cpu,
            footprint: Footprint::from_columns(
                r.server_rss_kib,
                r.client_rss_kib,
                r.server_threads,
            ),
            stages,
            startup_s: r.startup_s.unwrap_or(0.0),
            stop_s: r.stop_s.unwrap_or(0.0),
            wall_s: r.wall_s.unwrap_or(0.0),
        })
    }
}

/// Reads results.csv. Columns are matched by name; one that older files lack reads as
/// not measured, so runs written before it still render (rather than bump the schema).
pub fn read_results(dir: &Path) -> anyhow::Result<Vec<ResultRow>> {
    let path = dir.join(RESULTS_FILE);
    let file = File::open(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut reader = csv::Reader::from_reader(file);
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header line (corrupt?)", path.display()))?;
    if headers.is_empty() || !headers.iter().any(|h| h == "cell") {
        bail!(
            "{}: no `cell` column (corrupt or from another version?)",
            path.display()
        );
    }
    let mut rows = Vec::new();
    for record in reader.deserialize::<ResultRecord>() {
        let row = record.map_err(anyhow::Error::from).and_then(|r| {
            let line = r.seq;
            ResultRow::try_from(r).with_context(|| format!("the row of run {line}"))
        });
        rows.push(row.with_context(|| format!("{} is corrupt", path.display()))?);
    }
    Ok(rows)
}

/// Appends rows to results.csv as they are measured, flushing each, so an interrupted or
/// crashed run keeps what it measured.
pub struct ResultsWriter {
    writer: csv::Writer<File>,
}

impl ResultsWriter {
    /// Creates results.csv with its header line alone.
    pub fn create(dir: &Path) -> anyhow::Result<ResultsWriter> {
        let path = dir.join(RESULTS_FILE);
        let file =
            File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut writer = csv::WriterBuilder::new()
            .has_headers(false)
            .from_writer(file);
        writer.write_record(header())?;
        writer.flush()?;
        Ok(ResultsWriter { writer })
    }

    pub fn append(&mut self, row: &ResultRow) -> anyhow::Result<()> {
        self.writer.serialize(ResultRecord::from(row))?;
        self.writer.flush()?;
        Ok(())
    }
}

/// results.csv's header: the names of [`ResultRecord`]'s fields, as serde writes them.
pub fn header() -> Vec<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.serialize(ResultRecord::default())
        .expect("a default record serializes");
    let bytes = w.into_inner().expect("writing to memory cannot fail");
    let text = String::from_utf8(bytes).expect("field names are UTF-8");
    text.lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row() -> ResultRow {
        ResultRow {
            cell_id: "c001".into(),
            rep: 2,
            seq: 5,
            cell: Cell {
                target: "builtin".into(),
                pool: Some(PoolKind::Thread),
                io: None,
                workers: 2,
                cmd: ClientCmd::Compute,
                size: 1000,
                concurrency: 4,
                rate: None,
            },
            status: Status::Failed,
            reason: "2 of 10 requests failed: io=2".into(),
            measured: Some(Measured {
                sent: 10,
                ok: 8,
                failed: 2,
                duration_s: 1.5,
                throughput_rps: 5.333,
                latency_mean_us: 10.5,
                latency_p50_us: 10.0,
                latency_p90_us: 12.0,
                latency_p99_us: 20.0,
                latency_p99_9_us: 21.0,
                latency_max_us: 22.0,
                open: None,
            }),
            cpu: None,
            footprint: None,
            stages: None,
            startup_s: 0.05,
            stop_s: 0.1,
            wall_s: 2.0,
        }
    }

    fn round_trip(rows: &[ResultRow]) -> (String, Vec<ResultRow>) {
        let dir = tempfile::tempdir().unwrap();
        let mut w = ResultsWriter::create(dir.path()).unwrap();
        for r in rows {
            w.append(r).unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join(RESULTS_FILE)).unwrap();
        (text, read_results(dir.path()).unwrap())
    }

    #[test]
    fn rows_round_trip_closed_open_and_staged() {
        let closed = row();
        let mut open = row();
        open.cell.rate = Some(2500);
        open.measured.as_mut().unwrap().open = Some(OpenMeasured {
            offered_rps: 2500.0,
            sent_rps: 2499.5,
            latency_p99_uncorrected_us: 15.0,
            lateness_p99_us: 40.0,
        });
        let mut staged = row();
        staged.status = Status::Ok;
        staged.cpu = Some(CpuMeans {
            server_pct: 150.0,
            client_pct: 40.0,
            machine_pct: 190.0,
            server_peak_pct: 180.0,
        });
        staged.cell.io = Some(IoModel::Events);
        staged.footprint = Some(Footprint {
            server_rss_kib: 12_345,
            client_rss_kib: Some(6_789),
            server_threads: 9,
        });
        let fig = |x: f64| StageFigure {
            mean_us: x,
            p50_us: x + 1.0,
            p99_us: x + 2.0,
        };
        staged.stages = Some(StageFigures {
            count: 80,
            queue: fig(10.0),
            service: fig(20.0),
            return_: fig(30.0),
            total: fig(60.0),
        });
        let mut unmeasured = row();
        unmeasured.measured = None;
        let rows = [closed, open, staged, unmeasured];
        let (text, back) = round_trip(&rows);
        assert_eq!(back, rows);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], header().join(","));
        assert!(lines[1].contains(",closed,failed,"), "{}", lines[1]);
        assert!(lines[1].contains(",1.500000,5.333,10.5,"), "{}", lines[1]);
        assert!(lines[2].contains(",2500,failed,"), "{}", lines[2]);
        assert!(
            lines[2].contains(",open,2500.000,2499.500,15.0,40.0,"),
            "{}",
            lines[2]
        );
    }

    #[test]
    fn a_column_older_files_lack_reads_as_not_measured() {
        let (text, _) = round_trip(&[row()]);
        let dir = tempfile::tempdir().unwrap();
        // Drop the columns added after the first runs: rate, start-up and stop, the
        // open loop's, the stage timings'.
        let header = header();
        let late = |c: &str| {
            c == "rate"
                || c == "startup_s"
                || c == "stop_s"
                || c == "load_model"
                || c.ends_with("_rps") && c != "throughput_rps"
                || c.contains("uncorrected")
                || c.starts_with("lateness")
                || c.starts_with("server_") && !c.starts_with("server_cpu")
                || c == "io"
                || c == "client_rss_kib"
        };
        let keep: Vec<usize> = (0..header.len()).filter(|&i| !late(&header[i])).collect();
        let mut out = String::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(',').collect();
            let fields: Vec<&str> = if fields.len() == header.len() {
                keep.iter().map(|&i| fields[i]).collect()
            } else {
                // The reason holds no comma in this row; anything else is a test bug.
                panic!("unexpected field count in {line}")
            };
            out.push_str(&fields.join(","));
            out.push('\n');
        }
        std::fs::write(dir.path().join(RESULTS_FILE), out).unwrap();
        let back = read_results(dir.path()).unwrap();
        let old = ResultRow {
            startup_s: 0.0,
            stop_s: 0.0,
            ..row()
        };
        assert_eq!(back, [old]);
    }

    #[test]
    fn corrupt_files_are_errors_that_say_where() {
        let dir = tempfile::tempdir().unwrap();
        let (text, _) = round_trip(&[row()]);
        let bad = text.replace(",thread,", ",fibre,");
        std::fs::write(dir.path().join(RESULTS_FILE), bad).unwrap();
        let err = format!("{:#}", read_results(dir.path()).unwrap_err());
        assert!(err.contains("results.csv is corrupt"), "{err}");
        std::fs::write(dir.path().join(RESULTS_FILE), "").unwrap();
        assert!(read_results(dir.path()).is_err());
    }
}
