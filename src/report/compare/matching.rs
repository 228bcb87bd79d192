//! Two runs, matched: each [`Side`] (a run directory, or one target of it) is loaded
//! through `rundir`. Cells are paired by their parameters, every metric of a pair is
//! judged, and Holm's adjustment goes over all the tests. The result is a
//! [`Comparison`], with notes on whatever makes its ratios less trustworthy.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::bail;

use crate::domain::{CMetric, Thresholds};
use crate::report::noise::{busy, client_saturated};
use crate::report::stats;
use crate::rundir::{self, axes_label, Axis, AxisValue, Cell, Manifest, ResultRow, Status};

use super::judge::{decide, holm, judge, Design, Judged};
use super::{Comparison, Pair, NOISY_SPREAD_FACTOR};

/// The targets of a run's cells, sorted, each once.
pub(crate) fn target_names(manifest: &Manifest) -> Vec<&str> {
    let mut names: Vec<&str> = manifest
        .cells
        .iter()
        .map(|c| c.cell.target.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// One side of a comparison: a run directory, optionally restricted to one target.
pub(crate) struct Side {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub rows: Vec<ResultRow>,
    pub target: Option<String>,
}

impl Side {
    pub(crate) fn load(dir: &Path, target: Option<&str>) -> anyhow::Result<Side> {
        rundir::check_run_dir(dir)?;
        let manifest = Manifest::read(dir)?;
        let rows = rundir::read_results(dir)?;
        if let Some(t) = target {
            let names = target_names(&manifest);
            if !names.contains(&t) {
                bail!(
                    "{} has no target {t:?}; its targets: {}",
                    dir.display(),
                    names.join(", ")
                );
            }
        }
        Ok(Side {
            dir: dir.to_path_buf(),
            manifest,
            rows,
            target: target.map(str::to_string),
        })
    }

    /// (cell id, cell) of the cells on this side, in manifest order.
    fn cells(&self) -> Vec<(&str, &Cell)> {
        self.manifest
            .cells
            .iter()
            .filter(|c| self.target.as_ref().is_none_or(|t| &c.cell.target == t))
            .map(|c| (c.id.as_str(), &c.cell))
            .collect()
    }

    /// The cell's successful repetitions.
    fn ok_rows(&self, id: &str) -> Vec<&ResultRow> {
        let mut rows: Vec<&ResultRow> = self
            .rows
            .iter()
            .filter(|r| r.cell_id == id && r.status == Status::Ok && r.measured.is_some())
            .collect();
        rows.sort_by_key(|r| r.rep);
        rows
    }

    fn failed_reps(&self, id: &str) -> usize {
        self.rows
            .iter()
            .filter(|r| r.cell_id == id && r.status != Status::Ok)
            .count()
    }

    fn name(&self) -> String {
        match &self.target {
            Some(t) => format!("{} (target {t})", self.dir.display()),
            None => self.dir.display().to_string(),
        }
    }
}

/// Matches and judges. `cli` thresholds override the new run's experiment file's.
pub(crate) fn compare(base: &Side, new: &Side, cli: &Thresholds) -> anyhow::Result<Comparison> {
    let base_cells = base.cells();
    let new_cells = new.cells();
    let by_target = base.target.is_some() || new.target.is_some();
    let matcher = Matcher::new(by_target, &new_cells);
    matcher.check_unique(new, &new_cells)?;
    let file = &new.manifest.experiment.compare;
    let thresholds: BTreeMap<CMetric, f64> = CMetric::ALL
        .into_iter()
        .map(|m| (m, Thresholds::resolve(cli, file, m)))
        .collect();
    // Two targets of one run are paired by repetition; two runs are independent.
    let same_run = std::fs::canonicalize(&base.dir).ok() == std::fs::canonicalize(&new.dir).ok();
    let design = if same_run {
        Design::Paired
    } else {
        Design::Independent
    };

    let mut pairs = Vec::new();
    let mut only_new = Vec::new();
    for &(nid, ncell) in &new_cells {
        let key = matcher.key(ncell);
        match base_cells.iter().find(|(_, b)| matcher.key(b) == key) {
            Some(&(bid, _)) => pairs.push(pair(
                [(base, bid), (new, nid)],
                ncell,
                matcher.label(ncell),
                design,
                &thresholds,
            )),
            None => only_new.push(format!("`{nid}` ({})", matcher.label(ncell))),
        }
    }
    adjust_over_family(&mut pairs);
    let only_base: Vec<String> = base_cells
        .iter()
        .filter(|(_, b)| {
            !new_cells
                .iter()
                .any(|(_, n)| matcher.key(n) == matcher.key(b))
        })
        .map(|(id, c)| format!("`{id}` ({})", c.label()))
        .collect();
    if pairs.is_empty() {
        bail!(
            "no cell of {} matches a cell of {} by its parameters ({}): nothing to compare",
            new.name(),
            base.name(),
            matcher
                .axes
                .iter()
                .map(|a| a.name())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(Comparison {
        design,
        base_name: base.name(),
        new_name: new.name(),
        thresholds,
        pairs,
        only_new,
        only_base,
        notes: run_notes(base, new),
        planned_reps: base
            .manifest
            .experiment
            .repetitions
            .min(new.manifest.experiment.repetitions),
    })
}

/// How cells are matched and named. They match on every axis, without `target` when a
/// side names its target (so one run holding two builds can be compared with itself).
struct Matcher {
    axes: Vec<Axis>,
    /// The matched axes that differ among the new side's cells name a pair; all of them
    /// if none do.
    label_axes: Vec<Axis>,
}

impl Matcher {
    fn new(by_target: bool, new_cells: &[(&str, &Cell)]) -> Matcher {
        let axes: Vec<Axis> = Axis::ALL
            .into_iter()
            .filter(|a| !(by_target && *a == Axis::Target))
            .collect();
        let cells: Vec<Cell> = new_cells.iter().map(|(_, c)| (*c).clone()).collect();
        let mut label_axes: Vec<Axis> = rundir::varying_axes(&cells)
            .into_iter()
            .filter(|a| axes.contains(a))
            .collect();
        if label_axes.is_empty() {
            label_axes = axes.clone();
        }
        Matcher { axes, label_axes }
    }

    fn key(&self, c: &Cell) -> Vec<AxisValue> {
        self.axes.iter().map(|a| c.get(*a)).collect()
    }

    /// `workers=2 size=200000 concurrency=2`.
    fn label(&self, c: &Cell) -> String {
        axes_label(self.label_axes.iter().map(|&a| (a, c.get(a))))
    }

    /// Two cells of the new side with one key could not be told apart in the match.
    fn check_unique(&self, new: &Side, new_cells: &[(&str, &Cell)]) -> anyhow::Result<()> {
        let mut seen: Vec<Vec<AxisValue>> = Vec::new();
        for (id, c) in new_cells {
            let k = self.key(c);
            if seen.contains(&k) {
                bail!(
                    "{}: cell {id} is not the only one with {}: name one target with --target",
                    new.dir.display(),
                    c.label()
                );
            }
            seen.push(k);
        }
        Ok(())
    }
}

/// Judges every metric of the cells `[(baseline side, its cell id), (new side, its cell
/// id)]`, which match `cell`, and notes what weakens the result.
fn pair(
    sides: [(&Side, &str); 2],
    cell: &Cell,
    label: String,
    design: Design,
    thresholds: &BTreeMap<CMetric, f64>,
) -> Pair {
    let [(base, bid), (new, nid)] = sides;
    let brows = base.ok_rows(bid);
    let nrows = new.ok_rows(nid);
    let metrics: Vec<Judged> = CMetric::ALL
        .into_iter()
        .filter_map(|m| {
            let (b, n) = samples(design, &brows, &nrows, m);
            if b.is_empty() && n.is_empty() {
                return None;
            }
            let seed = stats::seed_of(&format!("{label}|{}", m.key()));
            Some(judge(m, &b, &n, design, thresholds[&m], seed))
        })
        .collect();
    let mut notes = Vec::new();
    for (name, side, rows, id) in [("baseline", base, &brows, bid), ("new", new, &nrows, nid)] {
        notes.extend(side_notes(name, side, rows, id));
    }
    let wide: Vec<String> = metrics.iter().filter_map(spread_note).collect();
    if !wide.is_empty() {
        notes.push(format!(
            "spread across repetitions too wide to trust a comparison at its threshold (more \
             than {NOISY_SPREAD_FACTOR}× it): {}",
            wide.join(", ")
        ));
    }
    Pair {
        label,
        base_cell: bid.to_string(),
        new_cell: nid.to_string(),
        cell: cell.clone(),
        metrics,
        notes,
    }
}

/// The values of metric `m` on each side: every repetition (independent), or the
/// repetitions both sides measured, in pairs (paired).
fn samples(
    design: Design,
    brows: &[&ResultRow],
    nrows: &[&ResultRow],
    m: CMetric,
) -> (Vec<f64>, Vec<f64>) {
    match design {
        Design::Independent => (
            brows.iter().filter_map(|r| r.metric(m)).collect(),
            nrows.iter().filter_map(|r| r.metric(m)).collect(),
        ),
        // Repetition i of one side with repetition i of the other.
        Design::Paired => brows
            .iter()
            .filter_map(|b| {
                let n = nrows.iter().find(|n| n.rep == b.rep)?;
                Some((b.metric(m)?, n.metric(m)?))
            })
            .unzip(),
    }
}

/// A saturated client and failed repetitions on one side (`name`) of a pair.
fn side_notes(name: &str, side: &Side, rows: &[&ResultRow], id: &str) -> Vec<String> {
    let mut notes = Vec::new();
    let cores = side.manifest.machine.logical_cores;
    let saturated = rows.iter().filter(|r| client_saturated(r, cores)).count();
    if saturated > 0 {
        notes.push(format!(
            "{name}: the client was CPU-saturated in {saturated} of {} repetitions: its figures are \
             a limit of the client, not of the server",
            rows.len()
        ));
    }
    let failed = side.failed_reps(id);
    if failed > 0 {
        notes.push(format!(
            "{name}: {} left out",
            crate::human::count(failed as u64, "failed repetition", "failed repetitions")
        ));
    }
    notes
}

/// A metric that spreads too widely across repetitions to resolve its threshold:
/// `throughput 381% and 118%` (baseline and new), or for pairs `p50 70% (pair ratios)`.
fn spread_note(j: &Judged) -> Option<String> {
    let limit = NOISY_SPREAD_FACTOR * j.threshold_pct;
    if let Some(spread) = j.ratio_spread_pct {
        return (spread > limit)
            .then(|| format!("{} {spread:.0}% (pair ratios)", j.metric.label()));
    }
    let spread = j.base_spread_pct.max(j.new_spread_pct);
    (spread > limit).then(|| {
        format!(
            "{} {:.0}% and {:.0}%",
            j.metric.label(),
            j.base_spread_pct,
            j.new_spread_pct
        )
    })
}

/// One family: every test of the comparison, so that the chance of calling anything
/// significant in an A/A comparison stays below ALPHA however many cells it has. Each
/// verdict is decided again on its adjusted p.
fn adjust_over_family(pairs: &mut [Pair]) {
    let ps: Vec<f64> = pairs
        .iter()
        .flat_map(|p: &Pair| p.metrics.iter().map(|j| j.p))
        .collect();
    let adjusted = holm(&ps);
    let family = ps.len();
    for (j, adj) in pairs
        .iter_mut()
        .flat_map(|p| p.metrics.iter_mut())
        .zip(adjusted)
    {
        j.p_adjusted = adj;
        j.family = family;
        decide(j);
    }
}

/// About the two runs as a whole: different machines or settings, a busy machine.
fn run_notes(base: &Side, new: &Side) -> Vec<String> {
    let mut notes = Vec::new();
    let two_runs = base.dir != new.dir;
    let (bm, nm) = (&base.manifest.machine, &new.manifest.machine);
    if two_runs && (bm.cpu_model != nm.cpu_model || bm.logical_cores != nm.logical_cores) {
        notes.push(format!(
            "the runs come from different machines ({}, {} cores / {}, {} cores): the ratios mix \
             hardware and code",
            bm.cpu_model, bm.logical_cores, nm.cpu_model, nm.logical_cores
        ));
    }
    let (be, ne) = (&base.manifest.experiment, &new.manifest.experiment);
    if two_runs
        && (be.warmup_s != ne.warmup_s
            || be.duration_s != ne.duration_s
            || be.requests != ne.requests
            || be.client_timeout_s != ne.client_timeout_s)
    {
        notes.push(
            "the runs were measured with different settings (warm-up, duration or requests): \
             the ratios mix settings and code"
                .into(),
        );
    }
    let mut runs = vec![("baseline", &base.manifest)];
    if two_runs {
        runs.push(("new", &new.manifest));
    }
    for (side, m) in runs {
        if busy(&m.machine) {
            let load = m.machine.load_before[0];
            let cores = m.machine.logical_cores.max(1);
            notes.push(format!(
                "the {side} run started on a busy machine (load {load:.2} on {cores} cores): \
                 expect noise"
            ));
        }
    }
    notes
}
