//! Judging one metric of one matched pair of cells: the ratio new / baseline, its seeded
//! bootstrap interval, the Mann–Whitney U (two runs) or signed-rank (paired) p-value,
//! Holm–Bonferroni over the comparison's family of tests, and the verdict with the reason
//! a reader is given.

use crate::domain::CMetric;
use crate::report::stats;

use super::{ALPHA, CONFIDENCE, RESAMPLES};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verdict {
    Regressed,
    Inconclusive,
    Improved,
    Unchanged,
}

impl Verdict {
    /// Every verdict, in the order the summaries count them.
    pub(crate) const ALL: [Verdict; 4] = [
        Verdict::Regressed,
        Verdict::Improved,
        Verdict::Unchanged,
        Verdict::Inconclusive,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
        }
    }
}

/// How the two sides' repetitions relate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Design {
    /// Two runs: independent samples. Ratio of medians; Mann–Whitney U.
    Independent,
    /// Two targets of one run: repetition i of each side is a pair measured under the
    /// same conditions (back to back when the order is interleaved). Median of the pair
    /// ratios; Wilcoxon signed-rank test on their logarithms. Drift in the machine that
    /// hits both members of a pair cancels out of their ratio.
    Paired,
}

impl Design {
    /// The name in compare.csv's `design` column.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Design::Independent => "independent",
            Design::Paired => "paired",
        }
    }
}

/// One metric of one matched pair of cells.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Judged {
    pub metric: CMetric,
    pub design: Design,
    pub n_base: usize,
    pub n_new: usize,
    pub base_median: f64,
    pub new_median: f64,
    /// new / baseline: the ratio of medians, or (paired) the median of the pair ratios;
    /// NaN when there is none.
    pub ratio: f64,
    pub ci: Option<(f64, f64)>,
    /// The raw p-value of the test.
    pub p: f64,
    /// `p` adjusted by Holm–Bonferroni over the comparison's `family` of tests.
    pub p_adjusted: f64,
    pub family: usize,
    /// The smallest p the test could give with these counts.
    pub min_p: f64,
    pub threshold_pct: f64,
    pub base_spread_pct: f64,
    pub new_spread_pct: f64,
    /// Paired: the spread of the pair ratios, percent.
    pub ratio_spread_pct: Option<f64>,
    pub verdict: Verdict,
    pub reason: String,
    /// Inconclusive because the repetitions cannot support a verdict (the test cannot
    /// reach α, or there is no interval): the comparison says once what is missing.
    pub too_few: bool,
}

/// The repetitions each side needs (pairs, for a paired design) before a family of
/// `family` tests can reach p ≤ α at Holm's first step: below it, no verdict but
/// "inconclusive" is possible.
pub(crate) fn reps_for_test(design: Design, family: usize) -> usize {
    let alpha = ALPHA / family.max(1) as f64;
    match design {
        Design::Independent => stats::min_reps(alpha),
        Design::Paired => stats::min_pairs(alpha),
    }
}

/// The values each side needs for a 95% interval of a median: no interval is printed
/// from fewer (even their whole range covers the median with less than 95%).
pub(crate) fn reps_for_interval() -> usize {
    stats::min_n_for_median_interval(CONFIDENCE)
}

/// The one rule of "too few repetitions": what every verdict (unchanged included, which
/// needs an interval) asks of each side in a family of `family` tests.
pub(crate) fn reps_needed(design: Design, family: usize) -> usize {
    reps_for_test(design, family).max(reps_for_interval())
}

/// Decides one metric from its baseline and new repetitions (paired: `base[i]` and
/// `new[i]` are one pair).
pub(crate) fn judge(
    metric: CMetric,
    base: &[f64],
    new: &[f64],
    design: Design,
    threshold_pct: f64,
    seed: u64,
) -> Judged {
    let (nb, nn) = (base.len(), new.len());
    let (mb, mn) = (stats::median(base), stats::median(new));
    let (ratio, mut ci, p, min_p, ratio_spread) = match design {
        Design::Independent => (
            if mb != 0.0 && mb.is_finite() && mn.is_finite() {
                mn / mb
            } else {
                f64::NAN
            },
            stats::bootstrap_ratio_ci(base, new, RESAMPLES, CONFIDENCE, seed),
            stats::mann_whitney_p(base, new),
            stats::min_p_value(nb, nn),
            None,
        ),
        Design::Paired => {
            let ratios: Vec<f64> = base
                .iter()
                .zip(new)
                .filter(|(b, n)| **b > 0.0 && **n > 0.0)
                .map(|(b, n)| n / b)
                .collect();
            let logs: Vec<f64> = ratios.iter().map(|r| r.ln()).collect();
            (
                stats::median(&ratios),
                stats::bootstrap_median_ci(&ratios, RESAMPLES, CONFIDENCE, seed),
                stats::signed_rank_p(&logs),
                stats::min_p_value_paired(ratios.len()),
                Some(stats::spread_pct(&ratios)),
            )
        }
    };
    // An interval the samples cannot support is not printed (nor used).
    let n_values = match design {
        Design::Independent => nb.min(nn),
        Design::Paired => ratio_spread.map_or(0, |_| nb.min(nn)),
    };
    if n_values < reps_for_interval() {
        ci = None;
    }
    let mut out = Judged {
        metric,
        design,
        n_base: nb,
        n_new: nn,
        base_median: mb,
        new_median: mn,
        ratio,
        ci,
        p,
        p_adjusted: p,
        family: 1,
        min_p,
        threshold_pct,
        base_spread_pct: stats::spread_pct(base),
        new_spread_pct: stats::spread_pct(new),
        ratio_spread_pct: ratio_spread,
        verdict: Verdict::Inconclusive,
        reason: String::new(),
        too_few: false,
    };
    decide(&mut out);
    out
}

/// Sets the verdict and its reason from the figures, `p_adjusted` and `family`.
pub(crate) fn decide(j: &mut Judged) {
    // Holm's first step compares the smallest p with alpha / m: a test that cannot get
    // there even with the most extreme data can never be significant.
    let alpha_best = ALPHA / j.family.max(1) as f64;
    j.verdict = Verdict::Inconclusive;
    j.too_few = false;
    if j.min_p > alpha_best {
        j.reason = too_few(j);
        j.too_few = true;
        return;
    }
    if !j.ratio.is_finite() {
        j.reason = "the baseline median is 0: no ratio".into();
        return;
    }
    let threshold_pct = j.threshold_pct;
    let t = threshold_pct / 100.0;
    let change = (j.ratio - 1.0) * 100.0;
    let beyond = (j.ratio - 1.0).abs() > t;
    let worse = if j.metric.higher_is_better() {
        j.ratio < 1.0
    } else {
        j.ratio > 1.0
    };
    let inside = j.ci.is_some_and(|(lo, hi)| lo >= 1.0 - t && hi <= 1.0 + t);
    if j.p_adjusted <= ALPHA && beyond {
        j.verdict = if worse {
            Verdict::Regressed
        } else {
            Verdict::Improved
        };
        j.reason = format!("{change:+.1}%, beyond ±{threshold_pct}% ({})", p_text(j));
    } else if j.ci.is_none() && j.n_base.min(j.n_new) < reps_for_interval() {
        j.reason = too_few(j);
        j.too_few = true;
    } else if j.ci.is_none() {
        // Enough values, but some resample's baseline median was 0 (a repetition that
        // measured no CPU, say): no ratio, so no interval.
        j.reason = "no interval: a resampled baseline median is 0".into();
    } else if inside {
        j.verdict = Verdict::Unchanged;
        j.reason = format!(
            "{change:+.1}%; the {:.0}% interval lies within ±{threshold_pct}%",
            CONFIDENCE * 100.0
        );
    } else {
        j.reason = too_noisy(j);
    }
}

/// A short reason for a verdict the repetitions cannot support: the counts and the
/// number needed. What is missing and how to get it is said once for the whole
/// comparison (`Comparison::too_few_note`).
fn too_few(j: &Judged) -> String {
    let need = reps_needed(j.design, j.family);
    match j.design {
        Design::Independent => format!(
            "too few repetitions: {} and {}, {need} needed a side",
            j.n_base, j.n_new
        ),
        Design::Paired => format!("too few pairs: {}, {need} needed", j.n_base.min(j.n_new)),
    }
}

/// `p = 0.012`, or with a family `p = 0.012, 0.048 after Holm over 4`.
fn p_text(j: &Judged) -> String {
    let m = j.family.max(1);
    if m > 1 {
        format!(
            "p {}, {} after Holm over {m}",
            p_is(j.p),
            fmt_p(j.p_adjusted)
        )
    } else {
        format!("p {}", p_is(j.p))
    }
}

/// Neither a change nor unchanged: the interval reaches past the threshold. Says how
/// many repetitions might settle it.
fn too_noisy(j: &Judged) -> String {
    let (ratio, threshold_pct) = (j.ratio, j.threshold_pct);
    let t = threshold_pct / 100.0;
    let (lo, hi) = j.ci.unwrap_or((f64::NAN, f64::NAN));
    let n = j.n_base.min(j.n_new);
    let half = (hi - lo) / 2.0;
    let off = (ratio - 1.0).abs();
    // To call it unchanged the interval must shrink inside the band; to call it a
    // change it must shrink off 1. Intervals narrow about as 1/sqrt(repetitions).
    let target = if off < t { t - off } else { off };
    let needed = if target > 0.0 && half.is_finite() {
        (n as f64 * (half / target).powi(2)).ceil()
    } else {
        f64::INFINITY
    };
    let hint = if needed <= 100.0 {
        format!(
            "about {} repetitions a side could settle it",
            (needed as usize).max(n + 1)
        )
    } else {
        "more than 100 repetitions a side would: reduce the noise".into()
    };
    // The change, p and interval have columns of their own.
    format!("too noisy: the interval reaches past ±{threshold_pct}%; {hint}")
}

/// Holm–Bonferroni over every test of a comparison: adjusted p-values (in the order
/// given) that keep the chance of any false "significant" below alpha for the family.
pub(crate) fn holm(ps: &[f64]) -> Vec<f64> {
    let m = ps.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]).then(a.cmp(&b)));
    let mut adjusted = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * ps[i]).min(1.0));
        adjusted[i] = running;
    }
    adjusted
}

/// `0.012` or `<0.001`, for a table's p column.
pub(super) fn fmt_p(p: f64) -> String {
    if p < 0.001 {
        "<0.001".into()
    } else {
        format!("{p:.3}")
    }
}

/// `= 0.012` or `< 0.001`, to follow a "p".
fn p_is(p: f64) -> String {
    if p < 0.001 {
        "< 0.001".into()
    } else {
        format!("= {p:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn around(center: f64, spread: f64, n: usize) -> Vec<f64> {
        (0..n)
            .map(|i| center * (1.0 + spread * ((i as f64 / (n - 1).max(1) as f64) - 0.5)))
            .collect()
    }

    #[test]
    fn verdicts() {
        let base = around(1000.0, 0.02, 6);
        let noisy = [600.0, 1400.0, 900.0, 1200.0, 700.0, 1000.0];
        // (what, metric, baseline, new, verdict, a phrase the reason must hold)
        let cases = [
            (
                "20% less throughput, cleanly separated",
                CMetric::Throughput,
                base.clone(),
                around(800.0, 0.02, 6),
                Verdict::Regressed,
                "",
            ),
            (
                "20% less latency",
                CMetric::P99,
                base.clone(),
                around(800.0, 0.02, 6),
                Verdict::Improved,
                "",
            ),
            (
                "the same, within 1%",
                CMetric::P50,
                base.clone(),
                around(1005.0, 0.02, 6),
                Verdict::Unchanged,
                "",
            ),
            (
                "significant but small (2% with a 5% threshold)",
                CMetric::P50,
                base.clone(),
                around(1020.0, 0.005, 6),
                Verdict::Unchanged,
                "",
            ),
            (
                "wild noise: inconclusive, with a hint",
                CMetric::Throughput,
                base.clone(),
                noisy.to_vec(),
                Verdict::Inconclusive,
                "too noisy",
            ),
            (
                "three repetitions can never be significant",
                CMetric::Throughput,
                around(1000.0, 0.01, 3),
                around(500.0, 0.01, 3),
                Verdict::Inconclusive,
                "too few repetitions: 3 and 3, 6 needed a side",
            ),
            (
                "five can be significant, so a clear change is seen",
                CMetric::Throughput,
                around(1000.0, 0.01, 5),
                around(500.0, 0.01, 5),
                Verdict::Regressed,
                "",
            ),
            (
                "but five cannot support an interval, so no \"unchanged\"",
                CMetric::Throughput,
                around(1000.0, 0.01, 5),
                around(1001.0, 0.01, 5),
                Verdict::Inconclusive,
                "too few repetitions: 5 and 5, 6 needed a side",
            ),
        ];
        for (what, metric, base, new, verdict, reason) in cases {
            let j = judge(metric, &base, &new, Design::Independent, 5.0, 1);
            assert_eq!(j.verdict, verdict, "{what}: {j:?}");
            assert!(j.reason.contains(reason), "{what}: {j:?}");
            assert_eq!(j.too_few, reason.starts_with("too few"), "{what}: {j:?}");
        }
    }

    #[test]
    fn enough_values_without_an_interval_are_not_called_too_few() {
        // Three of the baseline's seven measured 0: some resampled medians are 0, no ratio.
        let base = [0.0, 0.0, 0.0, 300.0, 300.0, 310.0, 320.0];
        let new = [300.0, 305.0, 310.0, 300.0, 305.0, 310.0, 300.0];
        let j = judge(
            CMetric::CpuPerRequest,
            &base,
            &new,
            Design::Independent,
            5.0,
            1,
        );
        assert_eq!(j.ci, None, "{j:?}");
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        assert!(!j.too_few, "{j:?}");
        assert_eq!(j.reason, "no interval: a resampled baseline median is 0");
    }

    #[test]
    fn no_interval_from_fewer_values_than_can_cover_a_median() {
        // The range of n values covers their median with 1 − 2^(1−n): 6 for 95%.
        assert_eq!(reps_for_interval(), 6);
        let one = judge(
            CMetric::P50,
            &[1000.0],
            &[1005.0],
            Design::Independent,
            5.0,
            1,
        );
        assert_eq!(one.ci, None, "{one:?}");
        let six = around(1000.0, 0.02, 6);
        let j = judge(CMetric::P50, &six, &six, Design::Independent, 5.0, 1);
        assert!(j.ci.is_some(), "{j:?}");
        // The rule says the larger of the two needs: 40 tests need 7 a side.
        assert_eq!(reps_needed(Design::Independent, 40), 7);
        assert_eq!(reps_needed(Design::Independent, 1), 6);
        assert_eq!(reps_needed(Design::Paired, 15), 10);
    }

    #[test]
    fn holm_adjusts_in_steps_and_keeps_order() {
        let adj = holm(&[0.01, 0.04, 0.002, 0.5]);
        // Sorted: 0.002×4 = 0.008, 0.01×3 = 0.03, 0.04×2 = 0.08, 0.5×1 = 0.5.
        let want = [0.03, 0.08, 0.008, 0.5];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        // Monotone: a larger p never gets a smaller adjusted p.
        let adj = holm(&[0.02, 0.021]);
        assert!(adj[0] <= adj[1], "{adj:?}");
    }

    #[test]
    fn a_larger_family_needs_more_pairs() {
        let base: Vec<f64> = (0..8).map(|i| 1000.0 + f64::from(i)).collect();
        let new: Vec<f64> = base.iter().map(|b| b * 0.7).collect();
        let mut j = judge(CMetric::Throughput, &base, &new, Design::Paired, 5.0, 1);
        assert_eq!(j.verdict, Verdict::Regressed, "{j:?}");
        // 8 pairs reach p = 2/256 = 0.0078: not below 0.05/15 = 0.0033.
        j.family = 15;
        j.p_adjusted = (j.p * 15.0).min(1.0);
        decide(&mut j);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        assert_eq!(j.reason, "too few pairs: 8, 10 needed", "{j:?}");
        assert!(j.too_few);
    }

    #[test]
    fn pairing_cancels_drift_that_hits_both_sides() {
        // The machine slows down over the run by up to 60%; the new side is 20% slower
        // than the baseline in every pair. Independent samples drown that in the drift;
        // pairs see it.
        let drift = [1.0, 1.3, 0.8, 1.6, 1.1, 0.9, 1.4, 1.2];
        let base: Vec<f64> = drift.iter().map(|d| 1000.0 * d).collect();
        let new: Vec<f64> = drift.iter().map(|d| 800.0 * d).collect();
        let j = judge(
            CMetric::Throughput,
            &base,
            &new,
            Design::Independent,
            5.0,
            1,
        );
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        let j = judge(CMetric::Throughput, &base, &new, Design::Paired, 5.0, 1);
        assert_eq!(j.verdict, Verdict::Regressed, "{j:?}");
        assert!((j.ratio - 0.8).abs() < 1e-9);
        // The same build on both sides, with a little noise of its own: unchanged.
        let jitter = [1.01, 0.99, 1.0, 1.02, 0.98, 1.0, 1.01, 0.99];
        let same: Vec<f64> = base.iter().zip(jitter).map(|(b, j)| b * j).collect();
        let j = judge(CMetric::Throughput, &base, &same, Design::Paired, 5.0, 1);
        assert_eq!(j.verdict, Verdict::Unchanged, "{j:?}");
        // Five pairs can never reach p ≤ 0.05.
        let j = judge(CMetric::P50, &base[..5], &new[..5], Design::Paired, 5.0, 1);
        assert_eq!(j.verdict, Verdict::Inconclusive, "{j:?}");
        assert_eq!(j.reason, "too few pairs: 5, 6 needed", "{j:?}");
    }
}
