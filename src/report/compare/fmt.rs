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

/// `text` broken into lines of at most `width` characters at spaces (a longer word
/// stays whole), each after `indent`: for the terminal.
pub(super) fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let len = indent.chars().count() + line.chars().count() + 1 + word.chars().count();
        if !line.is_empty() && len > width {
            lines.push(format!("{indent}{line}"));
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(format!("{indent}{line}"));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::wrap;

    #[test]
    fn long_text_wraps_at_spaces_within_the_width() {
        let text = "one two three four five six seven";
        assert_eq!(
            wrap(text, 13, "  "),
            "  one two\n  three four\n  five six\n  seven"
        );
        assert_eq!(wrap("unbreakable-word", 4, ""), "unbreakable-word");
        assert_eq!(wrap("", 10, ""), "");
    }
}
