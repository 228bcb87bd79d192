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
//! Exit status: 0 no regression, 1 some regression, 2 nothing regressed but something was
//! inconclusive; errors are 3 (see `crate::EXIT_REPORT_ERROR`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::domain::CMetric;
use crate::rundir::{num, Axis, Cell};

pub mod judge;
pub mod matching;
mod plot;

use judge::fmt_p;
pub use judge::{Design, Judged, Verdict};
pub use matching::{compare, target_names, Side};

/// Significance level of the Mann–Whitney test.
pub const ALPHA: f64 = 0.05;
/// Confidence of the bootstrap interval.
pub const CONFIDENCE: f64 = 0.95;
/// Bootstrap resamples per (cell, metric).
pub const RESAMPLES: usize = 10_000;
/// A cell's relative spread (range / median) across repetitions above this many times
/// the metric's threshold is flagged: that comparison cannot resolve the threshold.
pub const NOISY_SPREAD_FACTOR: f64 = 2.0;

pub const COMPARE_MD: &str = "compare.md";
pub const COMPARE_CSV: &str = "compare.csv";
pub const COMPARE_SVG: &str = "compare.svg";

pub const EXIT_NO_REGRESSION: u8 = 0;
pub const EXIT_REGRESSION: u8 = 1;
pub const EXIT_INCONCLUSIVE: u8 = 2;

/// A matched pair of cells and its metrics.
#[derive(Debug, Clone)]
pub struct Pair {
    /// The matched parameters, e.g. `workers=2 size=200000 concurrency=2`.
    pub label: String,
    pub base_cell: String,
    pub new_cell: String,
    pub cell: Cell,
    pub metrics: Vec<Judged>,
    pub notes: Vec<String>,
}

/// Two runs (or two targets of one) matched and judged: what every output renders.
pub struct Comparison {
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
}

impl Comparison {
    pub fn count(&self, v: Verdict) -> usize {
        self.pairs
            .iter()
            .flat_map(|p| &p.metrics)
            .filter(|j| j.verdict == v)
            .count()
    }

    /// The exit status the contract gives this comparison.
    pub fn exit_code(&self) -> u8 {
        if self.count(Verdict::Regressed) > 0 {
            EXIT_REGRESSION
        } else if self.count(Verdict::Inconclusive) > 0 {
            EXIT_INCONCLUSIVE
        } else {
            EXIT_NO_REGRESSION
        }
    }

    pub fn overall(&self) -> &'static str {
        match self.exit_code() {
            EXIT_REGRESSION => "REGRESSION",
            EXIT_INCONCLUSIVE => "INCONCLUSIVE",
            _ => "NO REGRESSION",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Output

fn fmt_value(m: CMetric, v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    match m {
        CMetric::Throughput => crate::report::markdown::fmt_rps(v),
        _ => crate::report::markdown::fmt_us(v),
    }
}

/// `[0.812, 0.934]`, or `–` without an interval.
pub(super) fn fmt_ci(ci: Option<(f64, f64)>) -> String {
    match ci {
        Some((lo, hi)) => format!("[{}, {}]", num(lo, 3), num(hi, 3)),
        None => "–".into(),
    }
}

/// `1 regressed, 8 improved, 0 unchanged, 6 inconclusive`.
fn counts(c: &Comparison) -> String {
    [
        Verdict::Regressed,
        Verdict::Improved,
        Verdict::Unchanged,
        Verdict::Inconclusive,
    ]
    .map(|v| format!("{} {}", c.count(v), v.as_str()))
    .join(", ")
}

fn method(c: &Comparison) -> String {
    let (how, test, interval) = match c.design {
        Design::Independent => (
            "two runs, independent repetitions",
            "two-sided Mann–Whitney U",
            "ratio of medians",
        ),
        Design::Paired => (
            "two targets of one run, repetition i of each side paired",
            "two-sided Wilcoxon signed-rank on the log pair ratios",
            "median of the pair ratios",
        ),
    };
    format!(
        "Design: {how}. Thresholds: {}. Verdicts need both p ≤ {ALPHA} ({test}, Holm–Bonferroni \
         adjusted over the comparison's {} tests) and a ratio beyond the threshold; \"unchanged\" \
         needs the {:.0}% bootstrap interval of the {interval} ({RESAMPLES} seeded resamples) \
         within ±threshold.",
        c.thresholds
            .iter()
            .map(|(m, t)| format!("{} ±{t}%", m.label()))
            .collect::<Vec<_>>()
            .join(", "),
        c.pairs.iter().map(|p| p.metrics.len()).sum::<usize>(),
        CONFIDENCE * 100.0
    )
}

/// The table printed on stdout.
pub fn text(c: &Comparison) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "threadcenter compare: {}", c.new_name);
    let _ = writeln!(w, "             against {}", c.base_name);
    let _ = writeln!(w, "{}", method(c));
    for p in &c.pairs {
        let _ = writeln!(
            w,
            "\n{}  (baseline {}, new {})",
            p.label, p.base_cell, p.new_cell
        );
        let _ = writeln!(
            w,
            "  {:<12} {:>15} {:>15} {:>7} {:>16} {:>7}  {:<12} why",
            "metric", "baseline", "new", "ratio", "95% interval", "p (Holm)", "verdict"
        );
        for j in &p.metrics {
            let _ = writeln!(
                w,
                "  {:<12} {:>15} {:>15} {:>7} {:>16} {:>7}  {:<12} {}",
                j.metric.label(),
                fmt_value(j.metric, j.base_median),
                fmt_value(j.metric, j.new_median),
                num(j.ratio, 3),
                fmt_ci(j.ci),
                fmt_p(j.p_adjusted),
                j.verdict.as_str().to_uppercase(),
                j.reason
            );
        }
        for n in &p.notes {
            let _ = writeln!(w, "  warning: {n}");
        }
    }
    for n in &c.notes {
        let _ = writeln!(w, "\nwarning: {n}");
    }
    if !c.only_new.is_empty() {
        let _ = writeln!(w, "\nnot in the baseline: {}", c.only_new.join(", "));
    }
    if !c.only_base.is_empty() {
        let _ = writeln!(w, "only in the baseline: {}", c.only_base.join(", "));
    }
    let _ = writeln!(
        w,
        "\nverdict: {} ({}) → exit {}",
        c.overall(),
        counts(c),
        c.exit_code()
    );
    out
}

/// compare.md.
pub fn markdown(c: &Comparison) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "# Comparison: {}\n", c.overall());
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| new | `{}` |", c.new_name);
    let _ = writeln!(w, "| baseline | `{}` |", c.base_name);
    let _ = writeln!(w, "| verdicts | {} |", counts(c));
    let _ = writeln!(
        w,
        "| exit status | {} (0 no regression, 1 regression, 2 inconclusive or too noisy, 3 error) |\n",
        c.exit_code()
    );
    let _ = writeln!(w, "{}\n", method(c));
    let _ = writeln!(
        w,
        "Ratios are new / baseline: above 1 is more throughput, or more latency and CPU. The \
         baseline and new columns are each side's median over its repetitions.\n"
    );
    let _ = writeln!(w, "![ratios with their intervals]({COMPARE_SVG})\n");
    for p in &c.pairs {
        let _ = writeln!(
            w,
            "## {} (baseline `{}`, new `{}`)\n",
            p.label, p.base_cell, p.new_cell
        );
        let _ = writeln!(
            w,
            "| metric | reps | baseline | new | ratio | 95% interval | p (Holm) | verdict | why |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|");
        for j in &p.metrics {
            let _ = writeln!(
                w,
                "| {} | {} / {} | {} | {} | {} | {} | {} | **{}** | {} |",
                j.metric.label(),
                j.n_base,
                j.n_new,
                fmt_value(j.metric, j.base_median),
                fmt_value(j.metric, j.new_median),
                num(j.ratio, 3),
                fmt_ci(j.ci),
                fmt_p(j.p_adjusted),
                j.verdict.as_str(),
                j.reason.replace('|', "\\|")
            );
        }
        let _ = writeln!(w);
        for n in &p.notes {
            let _ = writeln!(w, "- **Warning:** {n}");
        }
        if !p.notes.is_empty() {
            let _ = writeln!(w);
        }
    }
    if !c.notes.is_empty() || !c.only_new.is_empty() || !c.only_base.is_empty() {
        let _ = writeln!(w, "## Notes\n");
        for n in &c.notes {
            let _ = writeln!(w, "- **Warning:** {n}");
        }
        if !c.only_new.is_empty() {
            let _ = writeln!(w, "- Not in the baseline: {}.", c.only_new.join(", "));
        }
        if !c.only_base.is_empty() {
            let _ = writeln!(w, "- Only in the baseline: {}.", c.only_base.join(", "));
        }
    }
    out
}

pub fn csv_columns() -> Vec<String> {
    let mut cols: Vec<String> = vec!["new_cell".into(), "base_cell".into()];
    cols.extend(Axis::ALL.iter().map(|a| a.name().to_string()));
    for c in [
        "metric",
        "unit",
        "better",
        "n_base",
        "n_new",
        "base_median",
        "new_median",
        "ratio",
        "ci_low",
        "ci_high",
        "p_value",
        "p_adjusted",
        "threshold_pct",
        "base_spread_pct",
        "new_spread_pct",
        "design",
        "verdict",
        "reason",
    ] {
        cols.push(c.into());
    }
    cols
}

/// compare.csv: one row per pair × metric.
pub fn csv(c: &Comparison) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        w.write_record(csv_columns())?;
        for p in &c.pairs {
            for j in &p.metrics {
                let mut rec = vec![p.new_cell.clone(), p.base_cell.clone()];
                rec.extend(Axis::ALL.iter().map(|a| p.cell.get(*a).to_string()));
                let (lo, hi) = j.ci.unwrap_or((f64::NAN, f64::NAN));
                rec.extend([
                    j.metric.key().to_string(),
                    j.metric.unit().to_string(),
                    if j.metric.higher_is_better() {
                        "higher"
                    } else {
                        "lower"
                    }
                    .to_string(),
                    j.n_base.to_string(),
                    j.n_new.to_string(),
                    num(j.base_median, 3),
                    num(j.new_median, 3),
                    num(j.ratio, 4),
                    num(lo, 4),
                    num(hi, 4),
                    num(j.p, 4),
                    num(j.p_adjusted, 4),
                    num(j.threshold_pct, 2),
                    num(j.base_spread_pct, 1),
                    num(j.new_spread_pct, 1),
                    match j.design {
                        Design::Independent => "independent",
                        Design::Paired => "paired",
                    }
                    .to_string(),
                    j.verdict.as_str().to_string(),
                    j.reason.clone(),
                ]);
                w.write_record(rec)?;
            }
        }
        w.flush()?;
    }
    Ok(out)
}

/// Writes compare.md, compare.csv and compare.svg into `dir`.
pub fn write_files(dir: &Path, c: &Comparison) -> anyhow::Result<()> {
    let path = dir.join(COMPARE_CSV);
    std::fs::write(&path, csv(c)?).with_context(|| format!("cannot write {}", path.display()))?;
    let path = dir.join(COMPARE_MD);
    std::fs::write(&path, markdown(c))
        .with_context(|| format!("cannot write {}", path.display()))?;
    plot::write(&dir.join(COMPARE_SVG), c)
}
