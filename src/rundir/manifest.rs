//! `manifest.json`: what ran, where, when, in which order, and how far it got; its schema
//! version and the versions this build still reads.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

use super::cell::{Axis, Cell};
use super::limits::Limits;
use super::MANIFEST_FILE;
use crate::domain::{PoolKind, Thresholds};

/// The manifest's format, as this build writes it; `report` refuses any it does not read.
pub const SCHEMA_VERSION: u32 = 4;
/// Versions this build reads: 1 had no `stats/` and no stage columns in results.csv; 2
/// had no `limits` (the machine limits measured at the start of the run), no
/// `experiment.compare` (comparison thresholds) and no target `binary`, all optional; 3
/// had no `io` axis, no `[client] threads`, no memory and thread columns
/// (`server_rss_kib`, `client_rss_kib`, `server_threads` in results.csv and cpu/) and no
/// event-loop echo floor in `limits`, all optional too.
pub const SCHEMA_VERSIONS_READ: [u32; 4] = [1, 2, 3, 4];

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
    /// `[client] threads`: the client's `--threads` (at most each cell's concurrency);
    /// absent: the client's default (schema 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_threads: Option<u64>,
    pub targets: BTreeMap<String, TargetInfo>,
    /// The file's `[compare]` thresholds (schema 3).
    #[serde(default, skip_serializing_if = "Thresholds::is_empty")]
    pub compare: Thresholds,
    /// `run`'s overrides of the file (`--set`, `--repetitions`, `--warmup`,
    /// `--duration`), as `key=TOML value`, in the order applied; absent: none (and in
    /// runs written before overrides existed). Needs no schema bump: older readers
    /// ignore it, this one reads runs without it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TargetInfo {
    /// `builtin`, `external` or `container`.
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
    /// A container target's image and its `--cpus` (absent for the other kinds; no
    /// schema bump: older readers ignore them, older files lack them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
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
