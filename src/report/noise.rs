//! Noise, stated: each cell's spread across repetitions and how busy its client was
//! (summary.csv columns), and report.md's "Noise" section: the machine's load and CPU
//! governor before the run, cells whose spread is too wide to trust a comparison, and
//! runs whose client was itself CPU-saturated.

use std::fmt::Write as _;

use super::analysis::{Analysis, CellSummary, Metric};
use super::compare::NOISY_SPREAD_FACTOR;
use super::load::RunData;
use crate::domain::{CMetric, DEFAULT_THRESHOLD_PCT};
use crate::rundir::{MachineInfo, ResultRow, Status};

/// A 1-minute load average at or above this share of the logical cores before the run
/// means the machine was busy with something else.
pub(crate) const BUSY_LOAD_SHARE: f64 = 0.5;

/// True when the machine was busy before the run (see [`BUSY_LOAD_SHARE`]).
pub(crate) fn busy(machine: &MachineInfo) -> bool {
    machine.load_before[0] >= BUSY_LOAD_SHARE * machine.logical_cores.max(1) as f64
}

/// A client using this share of the CPU it could use (min(concurrency, cores) cores) or
/// more was itself the bottleneck.
pub(crate) const CLIENT_SATURATED: f64 = 0.9;

/// The CPU a client at `concurrency` could use, in percent of one core: one core per
/// connection, up to the machine's cores.
fn client_usable_pct(concurrency: u64, cores: usize) -> f64 {
    concurrency.min(cores.max(1) as u64) as f64 * 100.0
}

/// True when the client of this repetition was CPU-saturated.
pub(crate) fn client_saturated(row: &ResultRow, cores: usize) -> bool {
    let Some(cpu) = row.cpu.as_ref() else {
        return false;
    };
    cpu.client_pct >= CLIENT_SATURATED * client_usable_pct(row.cell.concurrency, cores)
}

/// A spread (range / median across repetitions) above this is flagged: twice the default
/// comparison threshold, so a comparison against the cell cannot resolve that threshold.
pub(crate) const NOISY_SPREAD_PCT: f64 = NOISY_SPREAD_FACTOR * DEFAULT_THRESHOLD_PCT;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CellNoise {
    /// (max − min) / median of throughput across the ok repetitions, percent (2 or more).
    pub throughput_spread_pct: Option<f64>,
    /// The same for p99.
    pub p99_spread_pct: Option<f64>,
    /// The client's median CPU over what it could use: min(concurrency, cores) cores.
    pub client_saturation_pct: Option<f64>,
}

impl CellNoise {
    pub(crate) fn of(c: &CellSummary, cores: usize) -> CellNoise {
        let spread = |m: Metric| {
            let s = c.stats.get(&m)?;
            (c.reps_ok >= 2 && s.median > 0.0).then(|| (s.max - s.min) / s.median * 100.0)
        };
        let usable = client_usable_pct(c.cell.concurrency, cores);
        CellNoise {
            throughput_spread_pct: spread(Metric::Throughput),
            p99_spread_pct: spread(Metric::LatencyP99),
            client_saturation_pct: c.median(Metric::ClientCpu).map(|v| v / usable * 100.0),
        }
    }
}

/// report.md's section: the machine before the run, the spread across repetitions, and
/// whether the client was the bottleneck.
pub(crate) fn markdown(data: &RunData, a: &Analysis) -> String {
    let mut out = String::new();
    let w = &mut out;
    let m = &data.manifest;
    let cores = m.machine.logical_cores.max(1);
    let _ = writeln!(w, "## Noise\n");
    let load = m.machine.load_before;
    let _ = writeln!(
        w,
        "- **Machine before the run:** load average {:.2} {:.2} {:.2} (1, 5, 15 min) on {cores} cores{}; \
         CPU governor {}.",
        load[0],
        load[1],
        load[2],
        if busy(&m.machine) {
            " — **busy**: something else was using the CPU, expect noise"
        } else {
            ""
        },
        match m.machine.governor.as_deref() {
            Some("performance") => "`performance`".to_string(),
            Some(g) => format!("`{g}` (frequency scaling adds noise; `performance` is steadier)"),
            None => "not exposed (a VM or container, or no cpufreq)".to_string(),
        }
    );
    spread(w, a);
    client(w, data, cores);
    let _ = writeln!(w);
    out
}

/// The spread across repetitions over the cells that have two or more, and the cells
/// too noisy to compare.
fn spread(w: &mut String, a: &Analysis) {
    let multi: Vec<&CellSummary> = a.cells.iter().filter(|c| c.reps_ok >= 2).collect();
    if multi.is_empty() {
        let _ = writeln!(
            w,
            "- **Spread across repetitions:** none to state, no cell has two successful \
             repetitions: every figure here is one repetition, not repeatable."
        );
        comparing(w, a);
        return;
    }
    let spreads: Vec<f64> = multi
        .iter()
        .filter_map(|c| c.noise.throughput_spread_pct)
        .collect();
    let p99s: Vec<f64> = multi
        .iter()
        .filter_map(|c| c.noise.p99_spread_pct)
        .collect();
    let _ = writeln!(
        w,
        "- **Spread across repetitions** (max − min over the median): throughput {:.1}% in the \
         median cell, {:.1}% at most; p99 {:.1}% in the median cell, {:.1}% at most. Per cell: \
         `throughput_spread_pct`, `latency_p99_spread_pct` in summary.csv.",
        super::stats::median(&spreads),
        spreads.iter().copied().fold(0.0, f64::max),
        super::stats::median(&p99s),
        p99s.iter().copied().fold(0.0, f64::max),
    );
    let wide: Vec<String> = multi
        .iter()
        .filter_map(|c| {
            let t = c.noise.throughput_spread_pct.unwrap_or(0.0);
            let p = c.noise.p99_spread_pct.unwrap_or(0.0);
            (t > NOISY_SPREAD_PCT || p > NOISY_SPREAD_PCT)
                .then(|| format!("`{}` (throughput {t:.0}%, p99 {p:.0}%)", c.id))
        })
        .collect();
    comparing(w, a);
    if !wide.is_empty() {
        let _ = writeln!(
            w,
            "- **Warning: spread too wide to trust a comparison** in {}: {}. Above {:.0}% \
             (twice the default {:.0}% comparison threshold) a comparison against these cells \
             cannot resolve a {:.0}% change; add repetitions or quiet the machine.",
            crate::human::count(wide.len() as u64, "cell", "cells"),
            wide.join(", "),
            NOISY_SPREAD_PCT,
            DEFAULT_THRESHOLD_PCT,
            DEFAULT_THRESHOLD_PCT
        );
    }
}

/// What comparing this run with another of the same cells (`report --baseline`) asks of
/// each side: the rule of `compare::judge::reps_needed`, and what this run has.
fn comparing(w: &mut String, a: &Analysis) {
    use super::compare::judge::{reps_for_interval, reps_for_test, reps_needed};
    use super::compare::Design;
    let cells = a.cells.len();
    let family = cells * CMetric::ALL.len();
    let need = reps_needed(Design::Independent, family);
    let have = a
        .cells
        .iter()
        .filter(|c| !c.not_run())
        .map(|c| c.reps_ok)
        .min()
        .unwrap_or(0);
    let _ = writeln!(
        w,
        "- **Comparing** this run with another of its {cells} cells (`report --baseline`) takes at \
         least {need} successful repetitions per cell on each side: its {family} tests ({cells} cells \
         × {} figures) need p ≤ {}/{family} at Holm–Bonferroni's first step, out of reach with \
         fewer than {}, and a {:.0}% interval of a median needs {}. {}",
        CMetric::ALL.len(),
        super::compare::ALPHA,
        reps_for_test(Design::Independent, family),
        super::compare::CONFIDENCE * 100.0,
        reps_for_interval(),
        if a.cells.iter().all(|c| c.not_run()) {
            "This run measured nothing.".to_string()
        } else if have >= need {
            format!("This run has {have} or more: enough.")
        } else {
            format!(
                "This run has {have} in its thinnest cell: set `repetitions = {need}` in the \
                 experiment file for verdicts."
            )
        }
    );
}

/// The runs whose client was CPU-saturated, or that none was.
fn client(w: &mut String, data: &RunData, cores: usize) {
    let saturated: Vec<String> = data
        .rows
        .iter()
        .filter(|r| r.status == Status::Ok && client_saturated(r, cores))
        .map(|r| format!("`{}`", r.run_name()))
        .collect();
    if saturated.is_empty() {
        let _ = writeln!(
            w,
            "- **Client:** never CPU-saturated (below {:.0}% of min(concurrency, cores) in every run).",
            CLIENT_SATURATED * 100.0
        );
    } else {
        let _ = writeln!(
            w,
            "- **Warning: the client was CPU-saturated** (at least {:.0}% of min(concurrency, {cores} \
             cores)) in {} run(s): {}. Their throughput and latency are a limit of the client, not of \
             the server.",
            CLIENT_SATURATED * 100.0,
            saturated.len(),
            saturated.join(", ")
        );
    }
}
