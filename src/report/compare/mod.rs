//! `threadcenter report DIR --baseline OTHER`: compares a run with a baseline, cell by
//! cell, and decides whether anything regressed. docs/compare.md is the contract.
//!
//! Cells are matched by their parameters (every matrix axis; without `target` when
//! targets are named with `--baseline-target`/`--target`, which also lets one run holding
//! two builds be compared with itself). For each matched pair and each metric
//! (throughput, p50, p99, p99.9, server CPU per request) the repetitions of both sides
//! give: the ratio of medians (new / baseline), a 95% bootstrap interval of that ratio
//! (seeded, so output is deterministic), the two-sided Mann–Whitney U p-value, and a
//! verdict:
//!
//! - **regressed** / **improved**: p ≤ α (0.05) *and* the ratio is beyond the metric's
//!   threshold (5% unless set) in the worse / better direction;
//! - **unchanged**: not that, and the whole interval lies within ±threshold;
//! - **inconclusive**: too few repetitions for the test to ever reach α (it says how many
//!   are needed), or too noisy: the interval reaches past the threshold (it estimates how
//!   many repetitions would settle it).
//!
//! Two targets of one run are paired repetition by repetition instead: the median of the
//! pair ratios and the Wilcoxon signed-rank test. Holm–Bonferroni adjusts every p over
//! the whole comparison.
//!
//! Exit status: 0 no regression, 1 some regression, 2 nothing regressed but something was
//! inconclusive; errors are 3 (see `crate::EXIT_REPORT_ERROR`).
//!
//! Here: the constants, [`Comparison`] (what every output renders) and the registry of
//! outputs. `matching` loads the two sides and pairs their cells; `judge` decides each
//! metric (tests, Holm, bootstrap, verdicts). The renderers: `text` (the table on stdout),
//! `md` (compare.md), `csv_rows` (compare.csv), `plot` (compare.svg), `html`
//! (compare.html: the first and the third as one page), and `fmt`, what they share.

use std::collections::BTreeMap;

use crate::domain::CMetric;
use crate::report::output::Output;
use crate::rundir::Cell;

mod csv_rows;
mod fmt;
mod html;
pub(crate) mod judge;
pub(crate) mod matching;
mod md;
mod plot;
mod text;

pub(crate) use judge::{Design, Judged, Verdict};
pub(crate) use matching::{compare, target_names, Side};
pub(crate) use text::text;

/// Significance level of the Mann–Whitney test.
pub(crate) const ALPHA: f64 = 0.05;
/// Confidence of the bootstrap interval.
pub(crate) const CONFIDENCE: f64 = 0.95;
/// Bootstrap resamples per (cell, metric).
pub(crate) const RESAMPLES: usize = 10_000;
/// A cell's relative spread (range / median) across repetitions above this many times
/// the metric's threshold is flagged: that comparison cannot resolve the threshold.
pub(crate) const NOISY_SPREAD_FACTOR: f64 = 2.0;

pub(crate) const COMPARE_MD: &str = "compare.md";
pub(crate) const COMPARE_CSV: &str = "compare.csv";
pub(crate) const COMPARE_SVG: &str = "compare.svg";
pub(crate) const COMPARE_HTML: &str = "compare.html";

/// Every file a comparison writes into the new side's run directory, in the order they
/// are listed after the table. Another artefact is one more `Output` and one more entry.
pub(crate) const COMPARE_OUTPUTS: &[&dyn Output<Comparison>] = &[
    &md::CompareMd,
    &csv_rows::CompareCsv,
    &plot::CompareSvg,
    &html::CompareHtml,
];

pub(crate) const EXIT_NO_REGRESSION: u8 = 0;
pub(crate) const EXIT_REGRESSION: u8 = 1;
pub(crate) const EXIT_INCONCLUSIVE: u8 = 2;

/// A matched pair of cells and its metrics.
#[derive(Debug, Clone)]
pub(crate) struct Pair {
    /// The matched parameters, e.g. `workers=2 size=200000 concurrency=2`.
    pub label: String,
    pub base_cell: String,
    pub new_cell: String,
    pub cell: Cell,
    pub metrics: Vec<Judged>,
    pub notes: Vec<String>,
}

/// Two runs (or two targets of one) matched and judged: what every output renders.
pub(crate) struct Comparison {
    pub design: Design,
    pub base_name: String,
    pub new_name: String,
    pub thresholds: BTreeMap<CMetric, f64>,
    pub pairs: Vec<Pair>,
    /// Cells of the new run with no baseline, and of the baseline with no new one.
    pub only_new: Vec<String>,
    pub only_base: Vec<String>,
    /// About the two runs as a whole (different machines, settings, a busy machine).
    pub notes: Vec<String>,
    /// The repetitions the thinner side's experiment planned per cell.
    pub planned_reps: u32,
}

impl Comparison {
    pub(crate) fn count(&self, v: Verdict) -> usize {
        self.pairs
            .iter()
            .flat_map(|p| &p.metrics)
            .filter(|j| j.verdict == v)
            .count()
    }

    /// The exit status the contract gives this comparison.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.count(Verdict::Regressed) > 0 {
            EXIT_REGRESSION
        } else if self.count(Verdict::Inconclusive) > 0 {
            EXIT_INCONCLUSIVE
        } else {
            EXIT_NO_REGRESSION
        }
    }

    /// Said once for the whole comparison, where the repetitions could not support some
    /// verdicts: how many, what the sides had, what they need and how to get it.
    pub(crate) fn too_few_note(&self) -> Option<String> {
        let short: Vec<&Judged> = self
            .pairs
            .iter()
            .flat_map(|p| &p.metrics)
            .filter(|j| j.too_few)
            .collect();
        let first = short.first()?;
        let total: usize = self.pairs.iter().map(|p| p.metrics.len()).sum();
        let need = judge::reps_needed(self.design, first.family);
        let range = |f: fn(&Judged) -> usize| {
            let lo = short.iter().map(|j| f(j)).min().unwrap_or(0);
            let hi = short.iter().map(|j| f(j)).max().unwrap_or(0);
            if lo == hi {
                lo.to_string()
            } else {
                format!("{lo}–{hi}")
            }
        };
        let had = match self.design {
            Design::Independent => format!(
                "these cells have {} (baseline) and {} (new) successful repetitions",
                range(|j| j.n_base),
                range(|j| j.n_new)
            ),
            Design::Paired => format!(
                "these cells have {} pairs of successful repetitions",
                range(|j| j.n_base.min(j.n_new))
            ),
        };
        let how = match self.design {
            _ if self.planned_reps as usize >= need => format!(
                "note that {} were planned: failed repetitions left fewer (see the warnings), \
                 so run again",
                self.planned_reps
            ),
            Design::Independent => format!(
                "run both sides again with `repetitions = {need}` or more in the experiment file"
            ),
            Design::Paired => {
                format!("run again with `repetitions = {need}` or more in the experiment file")
            }
        };
        Some(format!(
            "{} of {total} verdicts are inconclusive for too few repetitions: {had}. A verdict \
             needs at least {need} on each side: the {} tests ({} matched cells × their figures) \
             need p ≤ {ALPHA}/{} at Holm–Bonferroni's first step, out of reach with fewer than \
             {}, and a {:.0}% interval of a median needs {}. To decide, {how}.",
            short.len(),
            first.family,
            self.pairs.len(),
            first.family,
            judge::reps_for_test(self.design, first.family),
            CONFIDENCE * 100.0,
            judge::reps_for_interval(),
        ))
    }

    pub(crate) fn overall(&self) -> &'static str {
        match self.exit_code() {
            EXIT_REGRESSION => "REGRESSION",
            EXIT_INCONCLUSIVE => "INCONCLUSIVE",
            _ => "NO REGRESSION",
        }
    }
}
