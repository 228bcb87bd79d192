//! The table `report --baseline` prints on stdout: per matched pair each metric's
//! medians, ratio, interval, adjusted p and verdict with its reason; then the warnings and
//! the overall verdict with its exit status.

use std::fmt::Write as _;

use crate::rundir::num;

use super::fmt::{counts, fmt_ci, fmt_value, method, wrap};
use super::judge::fmt_p;
use super::Comparison;

/// The table printed on stdout.
pub(crate) fn text(c: &Comparison) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "threadcenter compare: {}", c.new_name);
    let _ = writeln!(w, "             against {}", c.base_name);
    let _ = writeln!(w, "{}", wrap(&method(c), 100, ""));
    if let Some(note) = c.too_few_note() {
        let _ = writeln!(w, "\n{}", wrap(&note, 100, ""));
    }
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
            let _ = writeln!(w, "{}", wrap(&format!("warning: {n}"), 100, "  "));
        }
    }
    for n in &c.notes {
        let _ = writeln!(w, "\n{}", wrap(&format!("warning: {n}"), 100, ""));
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
