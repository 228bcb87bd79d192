//! The run store: the run directory's layout, `manifest.json`, the rows of `results.csv`,
//! the `.hlog` histogram logs, and the `latest` link. Both the runner (writing) and the
//! report (reading) use these definitions; docs/results.md documents them.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::ceilings::Limits;
use super::cpu::CpuMeans;
use super::experiment::{Experiment, Order, TargetKind};
use super::matrix::{self, Axis, Cell};
use super::stats::{StageFigures, STAGE_COLUMNS};
use crate::cli::{ClientCmd, PoolKind};
use crate::report::compare::Thresholds;

/// The manifest's format, as this build writes it; `report` refuses any it does not read.
pub const SCHEMA_VERSION: u32 = 3;
/// Versions this build reads: 1 had no `stats/` and no stage columns in results.csv; 2
/// had no `limits` (the machine limits measured at the start of the run), no
/// `experiment.compare` (comparison thresholds) and no target `binary`, all optional.
pub const SCHEMA_VERSIONS_READ: [u32; 3] = [1, 2, 3];

pub const EXPERIMENT_FILE: &str = "experiment.toml";
pub const MANIFEST_FILE: &str = "manifest.json";
pub const RESULTS_FILE: &str = "results.csv";
pub const SUMMARY_FILE: &str = "summary.csv";
pub const REPORT_FILE: &str = "report.md";
pub const HDR_DIR: &str = "hdr";
pub const CPU_DIR: &str = "cpu";
pub const STATS_DIR: &str = "stats";
pub const CLIENT_DIR: &str = "client";
pub const LOGS_DIR: &str = "logs";
pub const PLOTS_DIR: &str = "plots";

/// `manifest.json`: what ran, where, when, in which order, and how far it got.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub schema_version: u32,
    /// `running` while cells execute; `complete`, or `interrupted` (a partial run).
    pub status: RunStatus,
    pub tool: ToolInfo,
    pub experiment: ExperimentInfo,
    pub machine: MachineInfo,
    /// UTC, RFC 3339.
    pub started_at: String,
    pub finished_at: Option<String>,
    /// The matrix axes, in the order of the CSV columns.
    pub axes: Vec<Axis>,
    pub cells: Vec<CellEntry>,
    pub order: OrderInfo,
    /// Cell × repetition runs finished (ok or failed) and failed.
    pub runs_done: usize,
    pub runs_failed: usize,
    /// The machine's limits, measured before the first cell (schema 3; absent before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Running,
    Complete,
    Interrupted,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
    /// `git rev-parse` of the build, `-dirty` if it had uncommitted changes.
    pub git_commit: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExperimentInfo {
    pub name: String,
    pub description: String,
    /// The path the experiment was run from (its bytes are in experiment.toml).
    pub file: String,
    pub repetitions: u32,
    pub warmup_s: f64,
    pub duration_s: Option<f64>,
    pub requests: Option<u64>,
    pub cooldown_s: f64,
    pub cell_timeout_s: f64,
    pub client_timeout_s: f64,
    /// `[client] pipeline`: `--pipeline` of the open-loop cells (absent in older runs).
    #[serde(default)]
    pub client_pipeline: Option<u64>,
    /// `[slo] p99` in microseconds, when the file sets one (absent in older runs).
    #[serde(default)]
    pub slo_p99_us: Option<f64>,
    pub targets: BTreeMap<String, TargetInfo>,
    /// The file's `[compare]` thresholds (schema 3).
    #[serde(default, skip_serializing_if = "Thresholds::is_empty")]
    pub compare: Thresholds,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetInfo {
    /// `builtin` or `external`.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<PoolKind>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// A built-in target run from another threadcenter executable (schema 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    pub ready_timeout_s: f64,
    pub stop_grace_s: f64,
    /// Served and measured over TLS with the run's certificate (`tls/`); absent: plaintext.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MachineInfo {
    pub cpu_model: String,
    pub logical_cores: usize,
    pub physical_cores: Option<usize>,
    pub memory_bytes: u64,
    pub os: String,
    pub kernel: String,
    /// cpufreq's scaling governor, when the machine exposes one.
    pub governor: Option<String>,
    /// 1, 5 and 15 minute load averages just before the first cell.
    pub load_before: [f64; 3],
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CellEntry {
    pub id: String,
    #[serde(flatten)]
    pub cell: Cell,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderInfo {
    /// `sequential` or `shuffled`.
    pub kind: String,
    /// The shuffle's seed (given in the file, or drawn and recorded here).
    pub seed: Option<u64>,
    /// Every cell × repetition run, as `<cell>-r<rep>`, in the order executed.
    pub runs: Vec<String>,
}

impl Manifest {
    pub fn new(
        exp: &Experiment,
        machine: MachineInfo,
        cell_ids: &[String],
        seed: Option<u64>,
        runs: Vec<String>,
    ) -> Manifest {
        let s = &exp.settings;
        Manifest {
            schema_version: SCHEMA_VERSION,
            status: RunStatus::Running,
            tool: ToolInfo {
                name: "threadcenter".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                git_commit: env!("THREADCENTER_GIT_COMMIT").into(),
            },
            experiment: ExperimentInfo {
                name: exp.name.clone(),
                description: exp.description.clone(),
                file: exp.path.display().to_string(),
                repetitions: s.repetitions,
                warmup_s: s.warmup.as_secs_f64(),
                duration_s: s.duration.map(|d| d.as_secs_f64()),
                requests: s.requests,
                cooldown_s: s.cooldown.as_secs_f64(),
                cell_timeout_s: s.cell_timeout.as_secs_f64(),
                client_timeout_s: exp.client.timeout.as_secs_f64(),
                client_pipeline: Some(exp.client.pipeline),
                slo_p99_us: exp.client.slo_p99.map(|d| d.as_secs_f64() * 1e6),
                compare: exp.compare.clone(),
                targets: exp
                    .targets
                    .iter()
                    .map(|(name, t)| {
                        let info = match &t.kind {
                            TargetKind::Builtin { pool, args, binary } => TargetInfo {
                                kind: "builtin".into(),
                                pool: Some(*pool),
                                args: args.clone(),
                                binary: binary.clone(),
                                command: Vec::new(),
                                ready_timeout_s: t.ready_timeout.as_secs_f64(),
                                stop_grace_s: t.stop_grace.as_secs_f64(),
                                tls: t.tls,
                            },
                            TargetKind::External { command } => TargetInfo {
                                kind: "external".into(),
                                pool: None,
                                args: Vec::new(),
                                binary: None,
                                command: command.clone(),
                                ready_timeout_s: t.ready_timeout.as_secs_f64(),
                                stop_grace_s: t.stop_grace.as_secs_f64(),
                                tls: t.tls,
                            },
                        };
                        (name.clone(), info)
                    })
                    .collect(),
            },
            machine,
            started_at: rfc3339(SystemTime::now()),
            finished_at: None,
            axes: Axis::ALL.to_vec(),
            cells: exp
                .cells
                .iter()
                .zip(cell_ids)
                .map(|(cell, id)| CellEntry {
                    id: id.clone(),
                    cell: cell.clone(),
                })
                .collect(),
            order: OrderInfo {
                kind: match s.order {
                    Order::Sequential => "sequential".into(),
                    Order::Shuffled => "shuffled".into(),
                    Order::Interleaved => "interleaved".into(),
                },
                seed,
                runs,
            },
            runs_done: 0,
            runs_failed: 0,
            limits: None,
        }
    }

    /// Reads `dir/manifest.json`, refusing a schema version this build does not know.
    pub fn read(dir: &Path) -> anyhow::Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON (corrupt?)", path.display()))?;
        match value.get("schema_version").and_then(|v| v.as_u64()) {
            Some(v) if SCHEMA_VERSIONS_READ.iter().any(|k| u64::from(*k) == v) => {}
            Some(v) => bail!(
                "{} has schema_version {v}, but this threadcenter ({}) reads only versions {SCHEMA_VERSIONS_READ:?}: \
                 render it with the threadcenter that wrote it",
                path.display(),
                env!("CARGO_PKG_VERSION")
            ),
            None => bail!(
                "{} has no schema_version: it is not a threadcenter run manifest",
                path.display()
            ),
        }
        serde_json::from_value(value).with_context(|| {
            format!(
                "{} does not match the manifest schema (corrupt?)",
                path.display()
            )
        })
    }

    /// Writes the manifest atomically (a temporary file renamed over the old one).
    pub fn write(&self, dir: &Path) -> io::Result<()> {
        let tmp = dir.join(".manifest.json.tmp");
        let mut text = serde_json::to_string_pretty(self).map_err(io::Error::other)?;
        text.push('\n');
        fs::write(&tmp, text)?;
        fs::rename(&tmp, dir.join(MANIFEST_FILE))
    }
}

/// UTC time as RFC 3339 with seconds: `2025-01-31T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// What the machine is, as far as it says (sysinfo, cpufreq).
pub fn machine_info(sys: &sysinfo::System) -> MachineInfo {
    let load = sysinfo::System::load_average().ok();
    MachineInfo {
        cpu_model: sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown".into()),
        logical_cores: sys.cpus().len(),
        physical_cores: sysinfo::System::physical_core_count().ok(),
        memory_bytes: {
            let mut s = sysinfo::System::new().ok();
            s.as_mut().map_or(0, |s| {
                s.refresh_memory();
                s.total_memory()
            })
        },
        os: sysinfo::System::long_os_version().unwrap_or_else(|_| std::env::consts::OS.into()),
        kernel: sysinfo::System::kernel_version().unwrap_or_else(|_| "unknown".into()),
        governor: fs::read_to_string("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
            .ok()
            .map(|s| s.trim().to_string()),
        load_before: load.map_or([0.0; 3], |l| [l.one, l.five, l.fifteen]),
    }
}

// ---------------------------------------------------------------------------------------------
// results.csv

/// A cell × repetition ended `ok` (every request answered right), or `failed` with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// The server's stage timings over the measured window (`stats/`), when it had them.
    pub stages: Option<StageFigures>,
    /// From starting the server until it is ready, seconds.
    pub startup_s: f64,
    /// From the client's exit until the server's group is verified gone, seconds.
    pub stop_s: f64,
    /// From the server's start to its group verified gone, seconds.
    pub wall_s: f64,
}

/// The columns after `cell, rep, seq` and the axes. Units are in the names.
pub const MEASURE_COLUMNS: [&str; 20] = [
    "status",
    "reason",
    "sent",
    "ok",
    "failed",
    "duration_s",
    "throughput_rps",
    "latency_mean_us",
    "latency_p50_us",
    "latency_p90_us",
    "latency_p99_us",
    "latency_p99_9_us",
    "latency_max_us",
    "server_cpu_pct",
    "client_cpu_pct",
    "machine_cpu_pct",
    "server_cpu_peak_pct",
    "startup_s",
    "stop_s",
    "wall_s",
];

/// Columns added with the open loop, after [`MEASURE_COLUMNS`]: `load_model` is `closed`
/// or `open`; the rest are empty for closed-loop rows. Optional when read, so runs
/// written before them still render (their rows are closed loop, `rate` absent).
pub const OPEN_COLUMNS: [&str; 5] = [
    "load_model",
    "offered_rps",
    "sent_rps",
    "latency_p99_uncorrected_us",
    "lateness_p99_us",
];

pub fn result_columns() -> Vec<&'static str> {
    let mut cols = vec!["cell", "rep", "seq"];
    cols.extend(Axis::ALL.iter().map(|a| a.name()));
    cols.extend(MEASURE_COLUMNS);
    cols.extend(OPEN_COLUMNS);
    cols.extend(STAGE_COLUMNS);
    cols
}

/// Columns a results.csv may lack: added after the first runs were written (the open
/// loop's, the stage timings' of schema 2, and a run's start-up and stop times).
fn optional_column(name: &str) -> bool {
    name == Axis::Rate.name()
        || name == "startup_s"
        || name == "stop_s"
        || OPEN_COLUMNS.contains(&name)
        || STAGE_COLUMNS.contains(&name)
}

/// Fixed decimals: the same numbers always print the same text.
pub fn num(x: f64, decimals: usize) -> String {
    if x.is_finite() {
        let s = format!("{x:.decimals$}");
        // No "-0.0".
        if s.starts_with('-') && s[1..].chars().all(|c| c == '0' || c == '.') {
            s[1..].to_string()
        } else {
            s
        }
    } else {
        String::new()
    }
}

impl ResultRow {
    pub fn to_record(&self) -> Vec<String> {
        let mut rec = vec![
            self.cell_id.clone(),
            self.rep.to_string(),
            self.seq.to_string(),
        ];
        rec.extend(Axis::ALL.iter().map(|a| self.cell.get(*a).to_string()));
        rec.push(self.status.as_str().into());
        rec.push(self.reason.clone());
        match &self.measured {
            Some(m) => rec.extend([
                m.sent.to_string(),
                m.ok.to_string(),
                m.failed.to_string(),
                num(m.duration_s, 6),
                num(m.throughput_rps, 3),
                num(m.latency_mean_us, 1),
                num(m.latency_p50_us, 1),
                num(m.latency_p90_us, 1),
                num(m.latency_p99_us, 1),
                num(m.latency_p99_9_us, 1),
                num(m.latency_max_us, 1),
            ]),
            None => rec.extend(std::iter::repeat_n(String::new(), 11)),
        }
        match &self.cpu {
            Some(c) => rec.extend([
                num(c.server_pct, 1),
                num(c.client_pct, 1),
                num(c.machine_pct, 1),
                num(c.server_peak_pct, 1),
            ]),
            None => rec.extend(std::iter::repeat_n(String::new(), 4)),
        }
        rec.push(num(self.startup_s, 3));
        rec.push(num(self.stop_s, 3));
        rec.push(num(self.wall_s, 3));
        rec.push(self.cell.load_model().to_string());
        match self.measured.and_then(|m| m.open) {
            Some(o) => rec.extend([
                num(o.offered_rps, 3),
                num(o.sent_rps, 3),
                num(o.latency_p99_uncorrected_us, 1),
                num(o.lateness_p99_us, 1),
            ]),
            None => rec.extend(std::iter::repeat_n(String::new(), 4)),
        }
        match &self.stages {
            Some(s) => rec.extend(s.to_record()),
            None => rec.extend(std::iter::repeat_n(String::new(), STAGE_COLUMNS.len())),
        }
        rec
    }

    /// Parses one record by column name; `line` is for errors.
    pub fn from_record(get: &HashMap<&str, &str>, line: u64) -> anyhow::Result<ResultRow> {
        let field = |name: &str| -> anyhow::Result<&str> {
            get.get(name)
                .copied()
                .with_context(|| format!("line {line}: no `{name}` column"))
        };
        fn parse<T: std::str::FromStr>(name: &str, s: &str, line: u64) -> anyhow::Result<T> {
            s.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("line {line}: `{name}` is not a number: {s:?}"))
        }
        // Empty means "not measured"; a column that older files lack reads the same.
        let opt_f = |name: &str| -> anyhow::Result<Option<f64>> {
            let s = match get.get(name) {
                None if optional_column(name) => "",
                _ => field(name)?,
            };
            if s.is_empty() {
                Ok(None)
            } else {
                parse::<f64>(name, s, line).map(Some)
            }
        };
        let pool = match field("pool")? {
            "" => None,
            "process" => Some(PoolKind::Process),
            "thread" => Some(PoolKind::Thread),
            other => bail!("line {line}: unknown pool {other:?}"),
        };
        let cmd = match field("cmd")? {
            "compute" => ClientCmd::Compute,
            "ping" => ClientCmd::Ping,
            other => bail!("line {line}: unknown cmd {other:?}"),
        };
        let rate = match get.get("rate").copied().unwrap_or(matrix::CLOSED) {
            "" | matrix::CLOSED => None,
            r => Some(parse("rate", r, line)?),
        };
        let cell = Cell {
            target: field("target")?.to_string(),
            pool,
            workers: parse("workers", field("workers")?, line)?,
            cmd,
            size: parse("size", field("size")?, line)?,
            concurrency: parse("concurrency", field("concurrency")?, line)?,
            rate,
        };
        let status = match field("status")? {
            "ok" => Status::Ok,
            "failed" => Status::Failed,
            other => bail!("line {line}: unknown status {other:?}"),
        };
        let measured = if field("sent")?.is_empty() {
            None
        } else {
            let f = |name: &str| -> anyhow::Result<f64> {
                opt_f(name)?.with_context(|| format!("line {line}: `{name}` is empty"))
            };
            Some(Measured {
                sent: parse("sent", field("sent")?, line)?,
                ok: parse("ok", field("ok")?, line)?,
                failed: parse("failed", field("failed")?, line)?,
                duration_s: f("duration_s")?,
                throughput_rps: f("throughput_rps")?,
                latency_mean_us: f("latency_mean_us")?,
                latency_p50_us: f("latency_p50_us")?,
                latency_p90_us: f("latency_p90_us")?,
                latency_p99_us: f("latency_p99_us")?,
                latency_p99_9_us: f("latency_p99_9_us")?,
                latency_max_us: f("latency_max_us")?,
                open: match get.get("offered_rps").copied().unwrap_or("") {
                    "" => None,
                    _ => {
                        let g = |name: &str| -> anyhow::Result<f64> {
                            match get.get(name).copied().unwrap_or("") {
                                "" => Ok(f64::NAN),
                                v => parse(name, v, line),
                            }
                        };
                        Some(OpenMeasured {
                            offered_rps: g("offered_rps")?,
                            sent_rps: g("sent_rps")?,
                            latency_p99_uncorrected_us: g("latency_p99_uncorrected_us")?,
                            lateness_p99_us: g("lateness_p99_us")?,
                        })
                    }
                },
            })
        };
        let cpu = match opt_f("server_cpu_pct")? {
            None => None,
            Some(server_pct) => Some(CpuMeans {
                server_pct,
                client_pct: opt_f("client_cpu_pct")?.unwrap_or(0.0),
                machine_pct: opt_f("machine_cpu_pct")?.unwrap_or(0.0),
                server_peak_pct: opt_f("server_cpu_peak_pct")?.unwrap_or(0.0),
            }),
        };
        Ok(ResultRow {
            cell_id: field("cell")?.to_string(),
            rep: parse("rep", field("rep")?, line)?,
            seq: parse("seq", field("seq")?, line)?,
            cell,
            status,
            reason: field("reason")?.to_string(),
            measured,
            cpu,
            stages: StageFigures::from_fields(|c| get.get(c).map(|s| s.to_string()))
                .with_context(|| format!("line {line}"))?,
            startup_s: opt_f("startup_s")?.unwrap_or(0.0),
            stop_s: opt_f("stop_s")?.unwrap_or(0.0),
            wall_s: opt_f("wall_s")?.unwrap_or(0.0),
        })
    }

    /// `c001-r1`: the stem of this run's files.
    pub fn run_name(&self) -> String {
        run_name(&self.cell_id, self.rep)
    }
}

pub fn run_name(cell_id: &str, rep: u32) -> String {
    format!("{cell_id}-r{rep}")
}

/// Reads results.csv; every column named in [`result_columns`] must be present.
///
/// A column added later (a new axis, stage timings, efficiency) should be read as
/// optional here, so runs written before it still render, rather than bump the
/// manifest's schema version.
pub fn read_results(dir: &Path) -> anyhow::Result<Vec<ResultRow>> {
    let path = dir.join(RESULTS_FILE);
    let mut reader = csv::ReaderBuilder::new()
        .from_path(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header line (corrupt?)", path.display()))?
        .clone();
    for col in result_columns() {
        if !optional_column(col) && !headers.iter().any(|h| h == col) {
            bail!(
                "{}: missing column `{col}` (corrupt or from another version?)",
                path.display()
            );
        }
    }
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: corrupt record", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        let get: HashMap<&str, &str> = headers.iter().zip(record.iter()).collect();
        rows.push(
            ResultRow::from_record(&get, line)
                .with_context(|| format!("{} is corrupt", path.display()))?,
        );
    }
    Ok(rows)
}

/// Appends rows to results.csv as they are measured, flushing each, so an interrupted or
/// crashed run keeps what it measured.
pub struct ResultsWriter {
    writer: csv::Writer<File>,
}

impl ResultsWriter {
    pub fn create(dir: &Path) -> anyhow::Result<ResultsWriter> {
        let path = dir.join(RESULTS_FILE);
        let mut writer = csv::Writer::from_path(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        writer.write_record(result_columns())?;
        writer.flush()?;
        Ok(ResultsWriter { writer })
    }

    pub fn append(&mut self, row: &ResultRow) -> anyhow::Result<()> {
        self.writer.write_record(row.to_record())?;
        self.writer.flush()?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Histogram logs

/// Writes an HdrHistogram interval log (Java's HistogramLogWriter format, version 1.3)
/// holding one interval: the measured window. `max` is in milliseconds, the histogram's
/// values in nanoseconds, as Java's writer does by default.
pub fn write_hlog(
    path: &Path,
    comment: &str,
    start_epoch_s: f64,
    length_s: f64,
    max_ns: f64,
    base64_v2: &str,
) -> io::Result<()> {
    let mut out = io::BufWriter::new(File::create(path)?);
    writeln!(out, "#[{comment}]")?;
    writeln!(out, "#[Histogram log format version 1.3]")?;
    writeln!(
        out,
        "#[StartTime: {start_epoch_s:.3} (seconds since epoch)]"
    )?;
    writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    writeln!(
        out,
        "0.000,{length_s:.3},{:.3},{}",
        max_ns / 1e6,
        base64_v2.trim()
    )?;
    out.flush()
}

/// `hdr/<run>.intervals.hlog`: the client's `--interval-log`, one histogram a second.
pub fn intervals_file(run: &str) -> String {
    format!("{run}.intervals.hlog")
}

/// One interval of an interval log: when (seconds after the log's base time), how long,
/// and its histogram (ns).
#[derive(Debug, Clone)]
pub struct Interval {
    pub start_s: f64,
    pub length_s: f64,
    pub hist: hdrhistogram::Histogram<u64>,
}

/// Reads the untagged intervals of an HdrHistogram interval log (format 1.3) with the
/// hdrhistogram crate's reader, in file order.
pub fn read_interval_log(path: &Path) -> anyhow::Result<Vec<Interval>> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry =
            entry.map_err(|e| anyhow::anyhow!("{}: not an interval log: {e:?}", path.display()))?;
        let LogEntry::Interval(ilh) = entry else {
            continue;
        };
        if ilh.tag().is_some() {
            continue;
        }
        let hist = crate::hdr::decode_base64_v2(ilh.encoded_histogram()).with_context(|| {
            format!(
                "{}: corrupt histogram at {:?}",
                path.display(),
                ilh.start_timestamp()
            )
        })?;
        out.push(Interval {
            start_s: ilh.start_timestamp().as_secs_f64(),
            length_s: ilh.duration().as_secs_f64(),
            hist,
        });
    }
    Ok(out)
}

/// The base64 histograms of an interval log's lines (tags and comments skipped).
pub fn read_hlog(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('"') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let data = match fields.as_slice() {
            [tag, _, _, _, data] if tag.starts_with("Tag=") => data,
            [_, _, _, data] => data,
            _ => bail!(
                "{} line {}: not an interval line (corrupt?)",
                path.display(),
                i + 1
            ),
        };
        out.push(data.to_string());
    }
    if out.is_empty() {
        bail!("{} holds no interval (corrupt?)", path.display());
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// The run directory

/// Creates `out/<UTC stamp>-<name>/` and its subdirectories.
pub fn create_run_dir(out: &Path, name: &str) -> anyhow::Result<PathBuf> {
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let stamp = rfc3339(SystemTime::now()).replace([':', '-'], "");
    let safe: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let base = format!("{stamp}-{safe}");
    let mut dir = out.join(&base);
    let mut n = 2;
    loop {
        match fs::create_dir(&dir) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                dir = out.join(format!("{base}-{n}"));
                n += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.display())),
        }
    }
    for sub in [HDR_DIR, CPU_DIR, CLIENT_DIR, LOGS_DIR, STATS_DIR] {
        fs::create_dir(dir.join(sub))?;
    }
    Ok(dir)
}

/// Points `out/latest` at `dir` (relatively), replacing any old link atomically.
pub fn update_latest(out: &Path, dir: &Path) -> io::Result<()> {
    let target = dir
        .file_name()
        .ok_or_else(|| io::Error::other("run dir has no name"))?;
    let tmp = out.join(format!(".latest.{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    fs::rename(&tmp, out.join("latest"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_round_trips_through_csv_fields() {
        let row = ResultRow {
            cell_id: "c001".into(),
            rep: 2,
            seq: 5,
            cell: Cell {
                target: "builtin".into(),
                pool: Some(PoolKind::Thread),
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
            stages: None,
            startup_s: 0.05,
            stop_s: 0.1,
            wall_s: 2.0,
        };
        let cols = result_columns();
        let round_trip = |row: &ResultRow| {
            let rec = row.to_record();
            assert_eq!(rec.len(), cols.len());
            let get: HashMap<&str, &str> = cols
                .iter()
                .copied()
                .zip(rec.iter().map(|s| s.as_str()))
                .collect();
            assert_eq!(&ResultRow::from_record(&get, 2).unwrap(), row);
            rec
        };
        let rec = round_trip(&row);
        assert_eq!(
            rec[cols.iter().position(|c| *c == "rate").unwrap()],
            "closed"
        );
        assert_eq!(
            rec[cols.iter().position(|c| *c == "load_model").unwrap()],
            "closed"
        );

        // An open-loop row keeps its rate and its open-loop figures.
        let mut open = row.clone();
        open.cell.rate = Some(2500);
        open.measured.as_mut().unwrap().open = Some(OpenMeasured {
            offered_rps: 2500.0,
            sent_rps: 2499.5,
            latency_p99_uncorrected_us: 15.0,
            lateness_p99_us: 40.0,
        });
        let rec = round_trip(&open);
        assert_eq!(
            rec[cols.iter().position(|c| *c == "load_model").unwrap()],
            "open"
        );

        // A row written before the open loop (no `rate`, no open-loop columns) reads
        // back as closed loop; one written before startup_s and stop_s, with zeros.
        let rec = row.to_record();
        let get: HashMap<&str, &str> = cols
            .iter()
            .copied()
            .zip(rec.iter().map(|s| s.as_str()))
            .filter(|(c, _)| !optional_column(c))
            .collect();
        let old = ResultRow {
            startup_s: 0.0,
            stop_s: 0.0,
            ..row.clone()
        };
        assert_eq!(ResultRow::from_record(&get, 2).unwrap(), old);
    }

    #[test]
    fn interval_logs_read_back_untagged_intervals_in_order() {
        use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
        use hdrhistogram::serialization::V2DeflateSerializer;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.intervals.hlog");
        let mut bytes = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        {
            let mut log = IntervalLogWriterBuilder::new()
                .with_max_value_divisor(1e6)
                .begin_log_with(&mut bytes, &mut ser)
                .unwrap();
            for k in 0..3u64 {
                let mut h = crate::hdr::new_latency_histogram();
                for v in 0..(10 * (k + 1)) {
                    h.record(1000 + v).unwrap();
                }
                let at = std::time::Duration::from_secs(k);
                log.write_histogram(&h, at, std::time::Duration::from_secs(1), None)
                    .unwrap();
                log.write_histogram(
                    &h,
                    at,
                    std::time::Duration::from_secs(1),
                    Tag::new("uncorrected"),
                )
                .unwrap();
            }
        }
        fs::write(&path, &bytes).unwrap();
        let got = read_interval_log(&path).unwrap();
        assert_eq!(got.len(), 3);
        let counts: Vec<u64> = got.iter().map(|i| i.hist.len()).collect();
        assert_eq!(counts, [10, 20, 30]);
        assert_eq!(got[2].start_s, 2.0);
        assert_eq!(got[0].length_s, 1.0);
        fs::write(&path, "0.000,1.000,1.0,!!!\n").unwrap();
        assert!(read_interval_log(&path).is_err());
    }

    #[test]
    fn numbers_print_with_fixed_decimals() {
        assert_eq!(num(1.0 / 3.0, 3), "0.333");
        assert_eq!(num(-0.0001, 1), "0.0");
        assert_eq!(num(f64::NAN, 1), "");
    }
}
