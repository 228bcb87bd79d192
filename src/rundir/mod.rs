//! The run directory: its layout, and the formats of every raw file in it (manifest,
//! results and summary rows, CPU samples, histogram logs, machine limits), with the readers
//! of older schema versions. The runner writes it and the report reads it; neither knows
//! the other (docs/results.md documents the files).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context as _;

pub mod cell;
pub mod cpu;
mod fixed;
pub mod hlog;
pub mod hosts;
pub mod limits;
mod locate;
pub mod manifest;
pub mod results;
pub mod summary;

pub use cell::{axes_label, cell_id, varying_axes, Axis, AxisValue, Cell, CLOSED};
pub use cpu::{CpuMeans, Footprint, Sample};
pub use fixed::num;
pub use hlog::{intervals_file, read_hlog, read_interval_log, write_hlog, Interval};
pub use limits::{
    ComputeTime, HostCompute, Limits, Loopback, LoopbackLevel, PairEcho, MANY_CONNECTIONS,
};
pub use locate::check_run_dir;
pub use manifest::{
    CellEntry, ExperimentInfo, MachineInfo, Manifest, OrderInfo, RunStatus, TargetInfo, ToolInfo,
    SCHEMA_VERSION, SCHEMA_VERSIONS_READ,
};
pub use results::{
    read_results, Measured, OpenMeasured, ResultRow, ResultsWriter, StageFigure, StageFigures,
    Status,
};

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

/// `c001-r1`: the stem of a cell × repetition's files.
pub fn run_name(cell_id: &str, rep: u32) -> String {
    format!("{cell_id}-r{rep}")
}

/// UTC time as RFC 3339 with seconds: `2025-01-31T12:00:00Z`.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

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
    fn numbers_print_with_fixed_decimals() {
        assert_eq!(num(1.0 / 3.0, 3), "0.333");
        assert_eq!(num(-0.0001, 1), "0.0");
        assert_eq!(num(f64::NAN, 1), "");
    }
}
