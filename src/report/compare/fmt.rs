//! What the comparison's renderers share: values with their units, intervals, the
//! verdict counts and the paragraph on method.

use crate::domain::CMetric;
use crate::report::markdown;
use crate::rundir::num;

use super::{Comparison, Design, Verdict, ALPHA, CONFIDENCE, RESAMPLES};

/// A metric's value with its unit (`1234.5 req/s`, `1.23 ms`), or `–`.
pub(super) fn fmt_value(m: CMetric, v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    match m {
        CMetric::Throughput => markdown::fmt_rps(v),
        _ => markdown::fmt_us(v),
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
pub(super) fn counts(c: &Comparison) -> String {
    Verdict::ALL
        .map(|v| format!("{} {}", c.count(v), v.as_str()))
        .join(", ")
}

/// How the verdicts were reached: the design, the thresholds, the test, the interval.
pub(super) fn method(c: &Comparison) -> String {
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
