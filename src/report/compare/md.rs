//! compare.md: the comparison for a reader: what was compared, how, the overall verdict
//! and exit status, the plot, then a table per matched pair and the warnings.

use std::fmt::Write as _;

use crate::report::output::{Artefact, Output};
use crate::rundir::num;

use super::fmt::{counts, fmt_ci, fmt_value, method};
use super::judge::fmt_p;
use super::{Comparison, COMPARE_MD, COMPARE_SVG};

/// compare.md, an [`Output`] of a comparison.
pub(super) struct CompareMd;

impl Output<Comparison> for CompareMd {
    fn name(&self) -> &'static str {
        COMPARE_MD
    }

    fn render(&self, c: &Comparison) -> anyhow::Result<Vec<Artefact>> {
        Ok(vec![Artefact::new(COMPARE_MD, markdown(c))])
    }
}

/// compare.md's text.
fn markdown(c: &Comparison) -> String {
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
    if let Some(note) = c.too_few_note() {
        let _ = writeln!(w, "**Too few repetitions.** {note}\n");
    }
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
