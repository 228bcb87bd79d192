//! Reads a run directory's raw files (manifest.json, results.csv, hdr/*.hlog, cpu/*.csv,
//! and the interval logs hdr/*.intervals.hlog where the client wrote them)
//! into memory, naming any file that is missing or corrupt.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context as _};
use hdrhistogram::Histogram;

use crate::rundir::Sample;
use crate::rundir::{self, Manifest, ResultRow, Status};

/// Everything a report is made of.
pub(crate) struct RunData {
    pub manifest: Manifest,
    /// In execution order.
    pub rows: Vec<ResultRow>,
    /// Each cell's latency histogram (ns), merged over its successful repetitions.
    pub histograms: BTreeMap<String, Histogram<u64>>,
    /// CPU samples of each successful run, by run name (`c001-r1`).
    pub cpu: BTreeMap<String, Vec<Sample>>,
    /// The client's one-second interval logs of the successful runs that have one
    /// (`hdr/<run>.intervals.hlog`), by run name.
    pub intervals: BTreeMap<String, Vec<rundir::Interval>>,
    /// hosts.csv of a multi-host run (docs/multi-host.md); empty otherwise.
    pub hosts: Vec<rundir::hosts::HostRow>,
}

impl RunData {
    pub(crate) fn load(dir: &Path) -> anyhow::Result<RunData> {
        rundir::check_run_dir(dir)?;
        let manifest = Manifest::read(dir)?;
        let mut rows = rundir::read_results(dir)?;
        rows.sort_by_key(|r| r.seq);
        let mut histograms: BTreeMap<String, Histogram<u64>> = BTreeMap::new();
        let mut cpu = BTreeMap::new();
        let mut intervals = BTreeMap::new();
        for row in &rows {
            if !manifest.cells.iter().any(|c| c.id == row.cell_id) {
                bail!(
                    "{}: results.csv names cell {}, which manifest.json does not list (corrupt?)",
                    dir.display(),
                    row.cell_id
                );
            }
            if row.status != Status::Ok {
                continue;
            }
            let name = row.run_name();
            let hlog = dir.join(rundir::HDR_DIR).join(format!("{name}.hlog"));
            if !hlog.exists() {
                bail!(
                    "{} is missing: results.csv says run {name} succeeded, and its histogram lives there",
                    hlog.display()
                );
            }
            for data in rundir::read_hlog(&hlog)? {
                let h = decode(&data)
                    .with_context(|| format!("{} holds a corrupt histogram", hlog.display()))?;
                // A fresh auto-resizing histogram takes any range the runs recorded.
                let merged = match histograms.entry(row.cell_id.clone()) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert(Histogram::new(h.sigfig()).context("histogram configuration")?)
                    }
                };
                merged
                    .add(&h)
                    .with_context(|| format!("cannot merge the histogram of {}", hlog.display()))?;
            }
            let log = dir
                .join(rundir::HDR_DIR)
                .join(rundir::intervals_file(&name));
            if log.exists() {
                intervals.insert(name.clone(), rundir::read_interval_log(&log)?);
            }
            if row.cpu.is_some() {
                let path = dir.join(rundir::CPU_DIR).join(format!("{name}.csv"));
                cpu.insert(name, rundir::cpu::read_csv(&path)?);
            }
        }
        Ok(RunData {
            manifest,
            rows,
            histograms,
            cpu,
            intervals,
            hosts: rundir::hosts::read(dir)?,
        })
    }
}

fn decode(text: &str) -> anyhow::Result<Histogram<u64>> {
    Ok(crate::hdr::decode_base64_v2(text)?)
}
