//! Each cell against the machine's limits (manifest.json `limits`, measured at the start
//! of the run by `runner::ceilings`): the columns summary.csv gains and report.md's
//! "Machine limits and efficiency" section.
//!
//! For a cell with concurrency C, W workers, compute size n on a machine with K cores:
//!
//! - loopback ceiling: the raw echo's round trips per second at C;
//! - compute ceiling (compute cells): min(W, K, C) / t(n), t(n) the fastest timing of one
//!   compute(n) in one process (at most C requests are in flight in a closed loop, at
//!   most W workers compute, at most K cores run them);
//! - ceiling: the lower of the two; efficiency: median throughput / ceiling;
//! - latency floor: the echo's median round trip at C, plus t(n) for compute;
//!   latency efficiency: floor / median p50.
//!
//! Open-loop cells (a `rate`) keep up to C × P requests in flight (P the client's
//! `--pipeline`): their compute ceiling uses C × P instead of C; their loopback ceiling,
//! a closed loop with one request in flight per connection, applies only when P is 1;
//! and their latency floor uses the echo's least contended median (the lowest over the
//! measured concurrencies), since a paced load need not queue for the CPU as a closed
//! loop at C does.
//!
//! Both efficiencies are at most 100% up to measurement noise; above 100% +
//! [`TOLERANCE_PCT`] the report flags the ceiling as measured low.

use std::fmt::Write as _;

use super::analysis::{Analysis, CellSummary, Metric};
use super::load::RunData;
use super::markdown::fmt_us;
use crate::domain::ClientCmd;
use crate::rundir::Limits;

/// How far above 100% an efficiency may read before it is flagged: the ceilings and the
/// cells are measured at different moments on a machine that is never perfectly quiet.
pub(crate) const TOLERANCE_PCT: f64 = 10.0;

/// A cell's ceilings and efficiencies; `None` where not measured or not applicable.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CellLimits {
    pub loopback_rps: Option<f64>,
    pub compute_rps: Option<f64>,
    pub ceiling_rps: Option<f64>,
    pub efficiency_pct: Option<f64>,
    pub latency_floor_us: Option<f64>,
    pub latency_efficiency_pct: Option<f64>,
}

/// summary.csv's columns for them (`rundir::summary`), as report.md names them.
pub(crate) const COLUMNS: [&str; 6] = [
    "loopback_ceiling_rps",
    "compute_ceiling_rps",
    "ceiling_rps",
    "efficiency_pct",
    "latency_floor_us",
    "latency_efficiency_pct",
];

impl CellLimits {
    /// `pipeline`: the client's `--pipeline` of open-loop cells (manifest.json).
    pub(crate) fn of(
        limits: Option<&Limits>,
        cores: usize,
        pipeline: Option<u64>,
        c: &CellSummary,
    ) -> CellLimits {
        let Some(limits) = limits else {
            return CellLimits::default();
        };
        let open = c.cell.rate.is_some();
        let pipeline = if open {
            pipeline.unwrap_or(1).max(1)
        } else {
            1
        };
        let echo = limits.loopback_at(c.cell.concurrency);
        let loopback_rps = echo
            .and_then(|l| l.round_trips_per_s)
            .filter(|_| pipeline == 1);
        let echo_p50 = if open {
            limits
                .loopback
                .levels
                .iter()
                .filter_map(|l| l.p50_us)
                .reduce(f64::min)
        } else {
            echo.and_then(|l| l.p50_us)
        };
        let t = (c.cell.cmd == ClientCmd::Compute)
            .then(|| limits.compute_of(c.cell.size))
            .flatten()
            .map(|t| t.min_s)
            .filter(|t| *t > 0.0);
        let compute_rps = t.map(|t| {
            let in_flight = c.cell.concurrency.saturating_mul(pipeline);
            let parallel = c.cell.workers.min(cores.max(1) as u64).min(in_flight);
            parallel as f64 / t
        });
        let ceiling_rps = match (loopback_rps, compute_rps) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let efficiency_pct = match (c.median(Metric::Throughput), ceiling_rps) {
            (Some(x), Some(ceil)) if ceil > 0.0 => Some(x / ceil * 100.0),
            _ => None,
        };
        let latency_floor_us = match (c.cell.cmd, echo_p50, t) {
            (ClientCmd::Compute, Some(e), Some(t)) => Some(e + t * 1e6),
            (ClientCmd::Ping, Some(e), _) => Some(e),
            _ => None,
        };
        let latency_efficiency_pct = match (latency_floor_us, c.median(Metric::LatencyP50)) {
            (Some(f), Some(p50)) if p50 > 0.0 => Some(f / p50 * 100.0),
            _ => None,
        };
        CellLimits {
            loopback_rps,
            compute_rps,
            ceiling_rps,
            efficiency_pct,
            latency_floor_us,
            latency_efficiency_pct,
        }
    }

    /// The larger efficiency when it is above 100% + [`TOLERANCE_PCT`].
    pub(crate) fn too_high(&self) -> Option<f64> {
        [self.efficiency_pct, self.latency_efficiency_pct]
            .into_iter()
            .flatten()
            .filter(|e| *e > 100.0 + TOLERANCE_PCT)
            .reduce(f64::max)
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{v:.0}%"))
}

/// report.md's section: the loopback floor and compute ceilings as measured, then each
/// cell against them.
pub(crate) fn markdown(data: &RunData, a: &Analysis) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ = writeln!(w, "## Machine limits and efficiency\n");
    let Some(limits) = data.manifest.limits.as_ref() else {
        let _ = writeln!(
            w,
            "Not measured: this run's manifest (schema version {}) predates machine limits.\n",
            data.manifest.schema_version
        );
        return out;
    };
    loopback_table(w, limits);
    compute_table(w, limits, data.manifest.machine.logical_cores);
    efficiency_table(w, a);
    out
}

/// The raw echo's round trips and latency at each concurrency.
fn loopback_table(w: &mut String, limits: &Limits) {
    let lb = &limits.loopback;
    let _ = writeln!(
        w,
        "Measured by the runner before the first cell. **Loopback round-trip floor**: a raw framed \
         echo of a {}-byte payload over loopback (no JSON, no pool), an echo thread and a closed-loop \
         client thread per connection in one process; best of {} trials of {} s at each concurrency.\n",
        lb.payload_bytes, lb.trials, lb.trial_s
    );
    let _ = writeln!(
        w,
        "| concurrency | round trips/s | p50 | p99 |\n|---|---|---|---|"
    );
    for l in &lb.levels {
        match (l.round_trips_per_s, l.p50_us, l.p99_us) {
            (Some(r), Some(p50), Some(p99)) => {
                let _ = writeln!(
                    w,
                    "| {} | {r:.0} | {} | {} |",
                    l.concurrency,
                    fmt_us(p50),
                    fmt_us(p99)
                );
            }
            _ => {
                let _ = writeln!(
                    w,
                    "| {} | – | – | {} |",
                    l.concurrency,
                    l.note.as_deref().unwrap_or("not measured")
                );
            }
        }
    }
}

/// One compute(n) per size, when the run has compute cells.
fn compute_table(w: &mut String, limits: &Limits, cores: usize) {
    if limits.compute.is_empty() {
        return;
    }
    let _ = writeln!(
        w,
        "\n**Compute ceiling**: one compute(n) timed in one process (the fastest of several \
         timings, and their median); a pool can do at most min(workers, {cores} cores, \
         concurrency) of them at once.\n"
    );
    let _ = writeln!(
        w,
        "| size | one compute (fastest) | median | per worker |\n|---|---|---|---|"
    );
    for t in &limits.compute {
        let _ = writeln!(
            w,
            "| {} | {} | {} | {:.1} req/s |",
            t.size,
            fmt_us(t.min_s * 1e6),
            fmt_us(t.median_s * 1e6),
            1.0 / t.min_s
        );
    }
}

/// Each cell's ceilings and efficiencies, and a warning for any above the tolerance.
fn efficiency_table(w: &mut String, a: &Analysis) {
    let _ = writeln!(
        w,
        "\n**Efficiency** is the median throughput over the lower ceiling; **latency efficiency** \
         the latency floor (the echo's median round trip, plus one compute) over the median p50. \
         Both are at most 100% up to measurement noise; above {:.0}% a ceiling was measured low \
         and is flagged. Columns in summary.csv: {}.\n",
        100.0 + TOLERANCE_PCT,
        COLUMNS.map(|c| format!("`{c}`")).join(", ")
    );
    let _ = writeln!(
        w,
        "| cell | throughput | loopback ceiling | compute ceiling | efficiency | p50 | latency floor | latency efficiency |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|");
    let r = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
    let us = |v: Option<f64>| v.map_or("–".into(), fmt_us);
    let mut high = Vec::new();
    for c in &a.cells {
        let l = &c.limits;
        let _ = writeln!(
            w,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} |",
            c.id,
            r(c.median(Metric::Throughput)),
            r(l.loopback_rps),
            r(l.compute_rps),
            pct(l.efficiency_pct),
            us(c.median(Metric::LatencyP50)),
            us(l.latency_floor_us),
            pct(l.latency_efficiency_pct),
        );
        if let Some(e) = l.too_high() {
            high.push(format!("`{}` ({e:.0}%)", c.id));
        }
    }
    let _ = writeln!(w, "\nThroughput and ceilings in requests/s.\n");
    if !high.is_empty() {
        let _ = writeln!(
            w,
            "- **Warning:** efficiency above {:.0}% in {}: the machine limits were measured while \
             something else used the CPU, so they are too low; measure again on a quieter machine.\n",
            100.0 + TOLERANCE_PCT,
            high.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rundir::summary::SummaryRow;

    #[test]
    fn the_columns_the_section_names_are_summary_columns_in_order() {
        let all = SummaryRow::columns();
        let at = all.iter().position(|c| c == COLUMNS[0]).unwrap();
        assert_eq!(all[at..at + COLUMNS.len()], COLUMNS.map(String::from));
    }
}
