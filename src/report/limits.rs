//! Each cell against the machine's limits (manifest.json `limits`, measured at the start
//! of the run by `runner::ceilings`): the columns summary.csv gains and report.md's
//! "Machine limits and efficiency" section.
//!
//! For a cell with concurrency C, W workers, compute size n on a machine with K cores:
//!
//! - loopback ceiling: the raw echo's round trips per second at C: the better of the
//!   thread-per-connection echo and, at [`MANY_CONNECTIONS`] or more, the event-loop echo
//!   (schema 4), so a cell at 10,000 connections is judged against what an event-loop
//!   server could do there;
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
use crate::rundir::{Limits, LoopbackLevel, MANY_CONNECTIONS};

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
    /// The loopback ceiling (and latency floor) is the event-loop echo's.
    pub event_floor: bool,
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
        let (echo, event_floor) = floor_at(limits, c.cell.concurrency);
        let loopback_rps = echo
            .and_then(|l| l.round_trips_per_s)
            .filter(|_| pipeline == 1);
        let echo_p50 = if open {
            limits
                .loopback
                .levels
                .iter()
                .chain(limits.loopback_events.iter().flat_map(|e| &e.levels))
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
            event_floor,
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

/// The echo level a cell at `concurrency` is judged against: the thread echo's, or the
/// event-loop echo's when that one was measured there and did better (`true`).
fn floor_at(limits: &Limits, concurrency: u64) -> (Option<&LoopbackLevel>, bool) {
    let threads = limits.loopback_at(concurrency);
    let events = limits
        .loopback_events_at(concurrency)
        .filter(|l| l.round_trips_per_s.is_some());
    let rate = |l: Option<&LoopbackLevel>| l.and_then(|l| l.round_trips_per_s);
    match (rate(threads), rate(events)) {
        (Some(t), Some(e)) if e > t => (events, true),
        (None, Some(_)) => (events, true),
        _ => (threads, false),
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
    events_table(w, limits);
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
    level_rows(w, &lb.levels);
}

/// The event-loop echo's levels (schema 4), when the run has many connections.
fn events_table(w: &mut String, limits: &Limits) {
    let Some(ev) = limits.loopback_events.as_ref() else {
        return;
    };
    let _ = writeln!(
        w,
        "\n**Event-loop echo floor** at {MANY_CONNECTIONS} connections or more: the same echo with \
         every connection non-blocking on {} epoll loops at each end (what a server built for many \
         connections could reach), best of {} trials of {} s. Cells at these concurrencies are \
         judged against the better of the two floors (marked *events* below).\n",
        ev.loops.map_or("a few".into(), |l| l.to_string()),
        ev.trials,
        ev.trial_s
    );
    level_rows(w, &ev.levels);
    let fewer: Vec<String> = ev
        .levels
        .iter()
        .filter_map(|l| {
            l.measured_connections
                .map(|m| format!("{} (measured at {m})", l.concurrency))
        })
        .collect();
    if !fewer.is_empty() {
        let _ = writeln!(
            w,
            "\nBoth ends of each echo connection are in the runner's process, so a level that needs \
             more descriptors than its open-file limit is measured at the most connections that fit: {}.",
            fewer.join(", ")
        );
    }
}

/// A table of echo levels: rate and latencies, or why one was not measured.
fn level_rows(w: &mut String, levels: &[LoopbackLevel]) {
    let _ = writeln!(
        w,
        "| concurrency | round trips/s | p50 | p99 |\n|---|---|---|---|"
    );
    for l in levels {
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
            match l.loopback_rps {
                Some(_) if l.event_floor => format!("{} *events*", r(l.loopback_rps)),
                _ => r(l.loopback_rps),
            },
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
    fn many_connections_are_judged_against_the_better_floor() {
        let level = |c: u64, rate: Option<f64>| LoopbackLevel {
            round_trips_per_s: rate,
            p50_us: rate.map(|r| 1e6 / r),
            p99_us: rate.map(|r| 2e6 / r),
            ..LoopbackLevel::missing(c, String::new())
        };
        let lb = |levels: Vec<LoopbackLevel>| crate::rundir::Loopback {
            payload_bytes: 60,
            trials: 3,
            trial_s: 0.15,
            levels,
            loops: None,
        };
        let limits = Limits {
            loopback: lb(vec![
                level(16, Some(50_000.0)),
                level(1000, Some(20_000.0)),
                level(10_000, None),
            ]),
            loopback_events: Some(lb(vec![
                level(1000, Some(40_000.0)),
                level(10_000, Some(35_000.0)),
            ])),
            compute: vec![],
            pairs: vec![],
            server_host_compute: vec![],
        };
        assert_eq!(floor_at(&limits, 16), (limits.loopback_at(16), false));
        let (l, events) = floor_at(&limits, 1000);
        assert_eq!(
            (l.unwrap().round_trips_per_s, events),
            (Some(40_000.0), true)
        );
        let (l, events) = floor_at(&limits, 10_000);
        assert_eq!(
            (l.unwrap().round_trips_per_s, events),
            (Some(35_000.0), true)
        );
        // A schema-3 run has no event-loop floor: the thread echo's level, measured or not.
        let old = Limits {
            loopback_events: None,
            ..limits.clone()
        };
        assert_eq!(floor_at(&old, 10_000), (old.loopback_at(10_000), false));
    }

    #[test]
    fn the_columns_the_section_names_are_summary_columns_in_order() {
        let all = SummaryRow::columns();
        let at = all.iter().position(|c| c == COLUMNS[0]).unwrap();
        assert_eq!(all[at..at + COLUMNS.len()], COLUMNS.map(String::from));
    }
}
