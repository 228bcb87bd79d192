//! From rows to findings: per-cell medians over repetitions with their spread (the rows of
//! summary.csv), series (one per combination of the axes other than concurrency), the
//! peak-throughput cell, and each series' saturation point.
//!
//! Saturation rule (docs/results.md): in a series ordered by concurrency, the saturation
//! point is the lowest tested concurrency C, with at least one higher one tested, such that
//! (a) no higher concurrency reaches a median throughput more than [`GAIN`] (10%) above
//! C's, and (b) the median p99 at the highest tested concurrency is more than [`RISE`]
//! (10%) above C's. Past C, added concurrency no longer buys throughput, only latency.

use std::collections::BTreeMap;

use super::load::RunData;
use crate::rundir::Status;
use crate::rundir::{axes_label, Axis, AxisValue, Cell, CellEntry, Measured, ResultRow};

/// Throughput gain below which more concurrency "stops raising throughput".
pub(crate) const GAIN: f64 = 0.10;
/// p99 rise above which more concurrency "only raises latency".
pub(crate) const RISE: f64 = 0.10;

/// A figure summarised over repetitions (its columns in summary.csv: `rundir::summary`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Metric {
    Throughput,
    LatencyMean,
    LatencyP50,
    LatencyP90,
    LatencyP99,
    LatencyP999,
    LatencyMax,
    ServerCpu,
    ClientCpu,
    MachineCpu,
    /// Open loop: p99 from the actual send time (the corrected one is `LatencyP99`).
    LatencyP99Uncorrected,
    /// Open loop: requests actually sent per second.
    SentRps,
    /// Server stage means over the measured window (stats/, results.csv), and the
    /// rest of the client's mean latency: network and client.
    StageQueue,
    StageService,
    StageReturn,
    StageTotal,
    StageRest,
    /// Peak memory and threads over the measured window (schema 4).
    ServerRssKib,
    ClientRssKib,
    ServerThreads,
}

impl Metric {
    pub(crate) const ALL: [Metric; 20] = [
        Metric::Throughput,
        Metric::LatencyMean,
        Metric::LatencyP50,
        Metric::LatencyP90,
        Metric::LatencyP99,
        Metric::LatencyP999,
        Metric::LatencyMax,
        Metric::ServerCpu,
        Metric::ClientCpu,
        Metric::MachineCpu,
        Metric::LatencyP99Uncorrected,
        Metric::SentRps,
        Metric::StageQueue,
        Metric::StageService,
        Metric::StageReturn,
        Metric::StageTotal,
        Metric::StageRest,
        Metric::ServerRssKib,
        Metric::ClientRssKib,
        Metric::ServerThreads,
    ];
}

/// Median and range over the successful repetitions of a cell.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    fn of(mut values: Vec<f64>) -> Option<Stat> {
        values.retain(|v| v.is_finite());
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        Some(Stat {
            median: super::stats::median_of_sorted(&values),
            min: values[0],
            max: values[values.len() - 1],
        })
    }
}

/// One row of summary.csv.
#[derive(Debug, Clone)]
pub(crate) struct CellSummary {
    pub id: String,
    pub cell: Cell,
    pub reps_ok: usize,
    pub reps_failed: usize,
    /// Requests over every repetition that reported counts (failed ones included).
    pub sent: u64,
    pub ok: u64,
    pub failed: u64,
    pub stats: BTreeMap<Metric, Stat>,
    /// The highest 100 ms server CPU sample of any successful repetition.
    pub server_cpu_peak_pct: Option<f64>,
    /// Against the machine's limits (`super::limits`).
    pub limits: super::limits::CellLimits,
    /// Spread and client load (`super::noise`).
    pub noise: super::noise::CellNoise,
    /// Runs of this cell in the run's plan (the repetitions it was meant to have).
    pub reps_planned: usize,
    /// Each successful repetition's (throughput, p99), by repetition number: what the
    /// findings' certainty is computed from (`super::certainty`).
    pub per_rep: BTreeMap<u32, (f64, f64)>,
}

impl CellSummary {
    pub(crate) fn median(&self, m: Metric) -> Option<f64> {
        self.stats.get(&m).map(|s| s.median)
    }

    /// No run of this cell ended: it was never measured (a run interrupted before it).
    pub(crate) fn not_run(&self) -> bool {
        self.reps_ok + self.reps_failed == 0
    }
}

/// Cells that share every axis but concurrency, ordered by concurrency.
#[derive(Debug, Clone)]
pub(crate) struct Series {
    /// The varying axes other than concurrency, e.g. `workers=2 size=10000`.
    pub label: String,
    /// Indexes into `Analysis::cells`, by increasing concurrency, successful cells only.
    pub points: Vec<usize>,
    pub saturation: Option<Saturation>,
    /// The series' cells that were never run (an interrupted run), by concurrency.
    pub not_run: Vec<usize>,
    /// Its cells that ran but never succeeded.
    pub failed: Vec<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Saturation {
    /// Index into `Analysis::cells`.
    pub cell: usize,
    /// The largest median throughput at any higher concurrency, and where.
    pub best_after_rps: f64,
    pub highest_concurrency: u64,
    pub p99_at_highest_us: f64,
}

/// A gap between CPU samples longer than this means the runner itself was not scheduled:
/// the whole machine stalled (an overloaded or paused host), and the run's latencies
/// include the pause.
pub(crate) const STALL_S: f64 = 0.5;

/// Open-loop cells that share every axis but the rate, ordered by rate: the hockey stick,
/// and where it crosses the SLO.
#[derive(Debug, Clone)]
pub(crate) struct RateSeries {
    /// The varying axes other than the rate, e.g. `workers=2 concurrency=4`.
    pub label: String,
    /// Indexes into `Analysis::cells`, by increasing rate (failed cells included).
    pub points: Vec<usize>,
    /// With an SLO: the highest rate at which it and every lower tested rate ran and
    /// kept the median p99 within the SLO (index into `Analysis::cells`).
    pub sustainable: Option<usize>,
    /// With an SLO: the first tested rate that broke it (failed, or p99 above it).
    pub first_over: Option<usize>,
}

pub(crate) struct Analysis {
    /// Successful runs during whose measured window the sampler went more than
    /// [`STALL_S`] without a sample: (run name, longest gap in seconds), in run order.
    pub stalls: Vec<(String, f64)>,
    pub cells: Vec<CellSummary>,
    pub series: Vec<Series>,
    /// Axes that take more than one value in this run.
    pub varying: Vec<Axis>,
    /// The cell with the highest median throughput (index into `cells`).
    pub peak: Option<usize>,
    /// Open-loop cells by rate; empty when every cell is closed loop.
    pub rate_series: Vec<RateSeries>,
    /// `[slo] p99` of the experiment, in microseconds.
    pub slo_p99_us: Option<f64>,
}

/// Everything the report states about a run, from its raw files.
pub(crate) fn analyse(data: &RunData) -> Analysis {
    let m = &data.manifest;
    let mut cells: Vec<CellSummary> = m
        .cells
        .iter()
        .map(|entry| summarise(entry, &data.rows, &m.order.runs))
        .collect();
    cells.sort_by(|a, b| a.id.cmp(&b.id));
    let cores = m.machine.logical_cores;
    for c in &mut cells {
        c.limits = super::limits::CellLimits::of(
            m.limits.as_ref(),
            cores,
            m.experiment.client_pipeline,
            c,
        );
        c.noise = super::noise::CellNoise::of(c, cores);
    }
    let all: Vec<Cell> = cells.iter().map(|c| c.cell.clone()).collect();
    let varying = crate::rundir::varying_axes(&all);
    let slo_p99_us = m.experiment.slo_p99_us;
    Analysis {
        stalls: stalls(data),
        series: series(&cells, &varying),
        peak: peak(&cells),
        rate_series: rate_series(&cells, &varying, slo_p99_us),
        cells,
        varying,
        slo_p99_us,
    }
}

/// One cell over its rows: counts, and each metric's median and range over the
/// successful repetitions (its limits and noise are the caller's). `planned`: the run
/// names of the run's order.
fn summarise(entry: &CellEntry, rows: &[ResultRow], planned: &[String]) -> CellSummary {
    let rows: Vec<&ResultRow> = rows.iter().filter(|r| r.cell_id == entry.id).collect();
    let ok_rows: Vec<&ResultRow> = rows
        .iter()
        .copied()
        .filter(|r| r.status == Status::Ok)
        .collect();
    let stats = Metric::ALL
        .into_iter()
        .filter_map(|m| Some((m, Stat::of(values(m, &ok_rows))?)))
        .collect();
    let count = |f: fn(&Measured) -> u64| -> u64 {
        rows.iter().filter_map(|r| r.measured.as_ref().map(f)).sum()
    };
    CellSummary {
        id: entry.id.clone(),
        cell: entry.cell.clone(),
        reps_ok: ok_rows.len(),
        reps_failed: rows.len() - ok_rows.len(),
        sent: count(|m| m.sent),
        ok: count(|m| m.ok),
        failed: count(|m| m.failed),
        stats,
        server_cpu_peak_pct: ok_rows
            .iter()
            .filter_map(|r| r.cpu.as_ref().map(|c| c.server_peak_pct))
            .reduce(f64::max),
        limits: Default::default(),
        noise: Default::default(),
        reps_planned: planned
            .iter()
            .filter(|name| {
                name.strip_prefix(entry.id.as_str())
                    .is_some_and(|rest| rest.starts_with("-r"))
            })
            .count(),
        per_rep: ok_rows
            .iter()
            .filter_map(|r| {
                let m = r.measured.as_ref()?;
                Some((r.rep, (m.throughput_rps, m.latency_p99_us)))
            })
            .collect(),
    }
}

/// The value of `m` in each of `rows` that measured it.
fn values(m: Metric, rows: &[&ResultRow]) -> Vec<f64> {
    let each = |f: &dyn Fn(&ResultRow) -> Option<f64>| rows.iter().filter_map(|r| f(r)).collect();
    match m {
        Metric::Throughput => each(&|r| Some(r.measured?.throughput_rps)),
        Metric::LatencyMean => each(&|r| Some(r.measured?.latency_mean_us)),
        Metric::LatencyP50 => each(&|r| Some(r.measured?.latency_p50_us)),
        Metric::LatencyP90 => each(&|r| Some(r.measured?.latency_p90_us)),
        Metric::LatencyP99 => each(&|r| Some(r.measured?.latency_p99_us)),
        Metric::LatencyP999 => each(&|r| Some(r.measured?.latency_p99_9_us)),
        Metric::LatencyMax => each(&|r| Some(r.measured?.latency_max_us)),
        Metric::ServerCpu => each(&|r| Some(r.cpu.as_ref()?.server_pct)),
        Metric::ClientCpu => each(&|r| Some(r.cpu.as_ref()?.client_pct)),
        Metric::MachineCpu => each(&|r| Some(r.cpu.as_ref()?.machine_pct)),
        Metric::LatencyP99Uncorrected => {
            each(&|r| Some(r.measured?.open?.latency_p99_uncorrected_us))
        }
        Metric::SentRps => each(&|r| Some(r.measured?.open?.sent_rps)),
        Metric::StageQueue => each(&|r| Some(r.stages?.queue.mean_us)),
        Metric::StageService => each(&|r| Some(r.stages?.service.mean_us)),
        Metric::StageReturn => each(&|r| Some(r.stages?.return_.mean_us)),
        Metric::StageTotal => each(&|r| Some(r.stages?.total.mean_us)),
        Metric::StageRest => each(&|r| Some(r.measured?.latency_mean_us - r.stages?.total.mean_us)),
        Metric::ServerRssKib => each(&|r| Some(r.footprint?.server_rss_kib as f64)),
        Metric::ClientRssKib => each(&|r| Some(r.footprint?.client_rss_kib? as f64)),
        Metric::ServerThreads => each(&|r| Some(r.footprint?.server_threads as f64)),
    }
}

/// Groups the cells that ran by every varying axis but concurrency (see [`Series`]),
/// and finds each group's saturation point.
fn series(cells: &[CellSummary], varying: &[Axis]) -> Vec<Series> {
    let axes: Vec<Axis> = varying
        .iter()
        .copied()
        .filter(|a| *a != Axis::Concurrency)
        .collect();
    // Per group: the successful cells, the ones never run, the ones that only failed.
    type Group = (Vec<usize>, Vec<usize>, Vec<usize>);
    let mut groups: BTreeMap<Vec<AxisValue>, Group> = BTreeMap::new();
    for (i, c) in cells.iter().enumerate() {
        let key: Vec<AxisValue> = axes.iter().map(|a| c.cell.get(*a)).collect();
        let (points, not_run, failed) = groups.entry(key).or_default();
        if c.reps_ok > 0 && c.median(Metric::Throughput).is_some() {
            points.push(i);
        } else if c.not_run() {
            not_run.push(i);
        } else {
            failed.push(i);
        }
    }
    groups
        .into_iter()
        .map(|(key, (mut points, mut not_run, mut failed))| {
            for list in [&mut points, &mut not_run, &mut failed] {
                list.sort_by_key(|&i| cells[i].cell.concurrency);
            }
            let label = if axes.is_empty() {
                cells
                    .first()
                    .map_or(String::new(), |c| c.cell.target.clone())
            } else {
                axes_label(axes.iter().copied().zip(key))
            };
            let saturation = saturation(cells, &points);
            Series {
                label,
                points,
                saturation,
                not_run,
                failed,
            }
        })
        .collect()
}

/// The cell with the highest median throughput (the first of equals).
fn peak(cells: &[CellSummary]) -> Option<usize> {
    cells
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.median(Metric::Throughput).map(|t| (i, t)))
        .fold(None, |best: Option<(usize, f64)>, (i, t)| match best {
            Some((_, bt)) if bt >= t => best,
            _ => Some((i, t)),
        })
        .map(|(i, _)| i)
}

/// Successful runs whose CPU samples have a gap longer than [`STALL_S`] in the measured
/// window: (run name, longest gap).
fn stalls(data: &RunData) -> Vec<(String, f64)> {
    data.rows
        .iter()
        .filter(|r| r.status == Status::Ok)
        .filter_map(|r| {
            let m = r.measured.as_ref()?;
            let samples = data.cpu.get(&r.run_name())?;
            let from = data.manifest.experiment.warmup_s;
            let gap = longest_gap(samples, from, from + m.duration_s);
            (gap > STALL_S).then(|| (r.run_name(), gap))
        })
        .collect()
}

impl Analysis {
    /// `` `c007` (workers=2 concurrency=8) ``: the id and the axes that vary in this run
    /// (concurrency always).
    pub(crate) fn cell_name(&self, c: &CellSummary) -> String {
        let mut axes: Vec<Axis> = self.varying.clone();
        if !axes.contains(&Axis::Concurrency) {
            axes.push(Axis::Concurrency);
        }
        let parts = axes_label(
            Axis::ALL
                .into_iter()
                .filter(|ax| axes.contains(ax))
                .map(|ax| (ax, c.cell.get(ax))),
        );
        format!("`{}` ({parts})", c.id)
    }
}

/// Groups the open-loop cells by every varying axis but the rate, and finds in each
/// group the highest rate within the SLO (see [`RateSeries`]).
pub(crate) fn rate_series(
    cells: &[CellSummary],
    varying: &[Axis],
    slo_p99_us: Option<f64>,
) -> Vec<RateSeries> {
    let axes: Vec<Axis> = varying
        .iter()
        .copied()
        .filter(|a| *a != Axis::Rate)
        .collect();
    let mut groups: BTreeMap<Vec<AxisValue>, Vec<usize>> = BTreeMap::new();
    for (i, c) in cells.iter().enumerate() {
        if c.cell.rate.is_some() {
            let key = axes.iter().map(|a| c.cell.get(*a)).collect();
            groups.entry(key).or_default().push(i);
        }
    }
    groups
        .into_iter()
        .map(|(key, mut points)| {
            points.sort_by_key(|&i| cells[i].cell.rate);
            let label = axes_label(axes.iter().copied().zip(key));
            let (mut sustainable, mut first_over) = (None, None);
            if let Some(slo) = slo_p99_us {
                for &i in &points {
                    let within = cells[i].reps_ok > 0
                        && cells[i]
                            .median(Metric::LatencyP99)
                            .is_some_and(|p| p <= slo);
                    if !within {
                        first_over = Some(i);
                        break;
                    }
                    sustainable = Some(i);
                }
            }
            RateSeries {
                label: if label.is_empty() {
                    "open loop".to_string()
                } else {
                    label
                },
                points,
                sustainable,
                first_over,
            }
        })
        .collect()
}

/// The longest time between consecutive CPU samples (or from the client's start to the
/// first) that overlaps the window `[from_s, to_s]`.
pub(crate) fn longest_gap(samples: &[crate::rundir::Sample], from_s: f64, to_s: f64) -> f64 {
    let mut prev = 0.0;
    let mut longest: f64 = 0.0;
    for s in samples {
        if s.t_s > from_s && prev < to_s {
            longest = longest.max(s.t_s - prev);
        }
        prev = s.t_s;
    }
    longest
}

/// Where a cell's mean latency went (medians over its repetitions, microseconds): the
/// server's stages, and the rest, the client's mean latency minus the server's total
/// (network and client). Means, because they add up; quantiles do not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Breakdown {
    pub queue_us: f64,
    pub service_us: f64,
    pub return_us: f64,
    /// Never below 0 (the client and server windows differ by a few ms).
    pub rest_us: f64,
}

impl Breakdown {
    pub(crate) const PARTS: [&'static str; 4] = ["queue", "service", "return", "rest"];

    pub(crate) fn of(c: &CellSummary) -> Option<Breakdown> {
        Some(Breakdown {
            queue_us: c.median(Metric::StageQueue)?,
            service_us: c.median(Metric::StageService)?,
            return_us: c.median(Metric::StageReturn)?,
            rest_us: c.median(Metric::StageRest)?.max(0.0),
        })
    }

    /// In the order of [`Breakdown::PARTS`].
    pub(crate) fn parts(&self) -> [f64; 4] {
        [self.queue_us, self.service_us, self.return_us, self.rest_us]
    }

    pub(crate) fn sum_us(&self) -> f64 {
        self.parts().iter().sum()
    }

    /// The largest part's index in [`Breakdown::PARTS`], and its share of the sum.
    pub(crate) fn dominant(&self) -> (usize, f64) {
        let parts = self.parts();
        let (i, v) = parts
            .iter()
            .copied()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let sum = self.sum_us();
        (i, if sum > 0.0 { v / sum } else { 0.0 })
    }

    /// How the report names a part in a sentence.
    pub(crate) fn describe(part: usize) -> &'static str {
        [
            "queueing",
            "service (compute)",
            "the return path",
            "network and client",
        ][part]
    }
}

/// The saturation rule (see the module documentation) over one series' points.
pub(crate) fn saturation(cells: &[CellSummary], points: &[usize]) -> Option<Saturation> {
    let t: Vec<Option<f64>> = points
        .iter()
        .map(|&i| cells[i].median(Metric::Throughput))
        .collect();
    let p99: Vec<Option<f64>> = points
        .iter()
        .map(|&i| cells[i].median(Metric::LatencyP99))
        .collect();
    let (k, best_after_rps, p99_at_highest_us) = saturation_at(&t, &p99)?;
    Some(Saturation {
        cell: points[k],
        best_after_rps,
        highest_concurrency: cells[*points.last()?].cell.concurrency,
        p99_at_highest_us,
    })
}

/// The rule over throughputs and p99s by increasing concurrency: the saturation point's
/// position, the best throughput after it, and the p99 at the highest concurrency.
pub(crate) fn saturation_at(t: &[Option<f64>], p99: &[Option<f64>]) -> Option<(usize, f64, f64)> {
    let p99_last = (*p99.last()?)?;
    for k in 0..t.len().saturating_sub(1) {
        let (Some(ti), Some(pi)) = (t[k], p99[k]) else {
            continue;
        };
        let best_after = t[k + 1..]
            .iter()
            .flatten()
            .copied()
            .fold(f64::NEG_INFINITY, f64::max);
        if best_after <= ti * (1.0 + GAIN) && p99_last > pi * (1.0 + RISE) {
            return Some((k, best_after, p99_last));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ClientCmd, PoolKind};

    #[test]
    fn a_breakdown_names_its_largest_part_and_clamps_a_negative_rest() {
        let mut c = cell(1, 100.0, 5.0);
        let put = |c: &mut CellSummary, m: Metric, v: f64| {
            c.stats.insert(
                m,
                Stat {
                    median: v,
                    min: v,
                    max: v,
                },
            );
        };
        assert_eq!(Breakdown::of(&c), None, "no stage timings");
        put(&mut c, Metric::StageQueue, 810.0);
        put(&mut c, Metric::StageService, 100.0);
        put(&mut c, Metric::StageReturn, 40.0);
        put(&mut c, Metric::StageRest, 50.0);
        let b = Breakdown::of(&c).unwrap();
        assert_eq!(b.sum_us(), 1000.0);
        assert_eq!(b.dominant(), (0, 0.81));
        assert_eq!(Breakdown::describe(0), "queueing");
        put(&mut c, Metric::StageRest, -7.0);
        assert_eq!(Breakdown::of(&c).unwrap().rest_us, 0.0);
    }

    fn cell(c: u64, t: f64, p99: f64) -> CellSummary {
        let mut stats = BTreeMap::new();
        stats.insert(
            Metric::Throughput,
            Stat {
                median: t,
                min: t,
                max: t,
            },
        );
        stats.insert(
            Metric::LatencyP99,
            Stat {
                median: p99,
                min: p99,
                max: p99,
            },
        );
        CellSummary {
            id: format!("c{c:03}"),
            cell: Cell {
                target: "builtin".into(),
                pool: Some(PoolKind::Process),
                io: None,
                workers: 2,
                cmd: ClientCmd::Compute,
                size: 1,
                concurrency: c,
                rate: None,
            },
            reps_ok: 1,
            reps_failed: 0,
            sent: 0,
            ok: 0,
            failed: 0,
            stats,
            server_cpu_peak_pct: None,
            limits: Default::default(),
            noise: Default::default(),
            reps_planned: 1,
            per_rep: BTreeMap::from([(1, (t, p99))]),
        }
    }

    #[test]
    fn saturation_is_where_throughput_flattens_and_p99_climbs() {
        let cells = vec![
            cell(1, 500.0, 2100.0),
            cell(2, 950.0, 2200.0),
            cell(4, 980.0, 4200.0),
            cell(8, 990.0, 8500.0),
        ];
        let s = saturation(&cells, &[0, 1, 2, 3]).unwrap();
        assert_eq!(cells[s.cell].cell.concurrency, 2);
        assert_eq!(s.best_after_rps, 990.0);
        assert_eq!(s.highest_concurrency, 8);
    }

    /// An open-loop cell at `rate` with the given median p99 (µs); `ran` false: it failed.
    fn at_rate(rate: u64, p99: f64, ran: bool) -> CellSummary {
        let mut c = cell(4, rate as f64, p99);
        c.id = format!("r{rate}");
        c.cell.rate = Some(rate);
        if !ran {
            c.reps_ok = 0;
            c.reps_failed = 1;
            c.stats.clear();
        }
        c
    }

    #[test]
    fn the_sustainable_rate_is_the_highest_with_every_lower_rate_within_the_slo() {
        let varying = [Axis::Rate];
        // Listed out of order; 3000 is within the SLO again, but 2000 broke it first.
        let cells = vec![
            at_rate(3000, 900.0, true),
            at_rate(1000, 400.0, true),
            at_rate(2000, 1500.0, true),
            at_rate(500, 300.0, true),
        ];
        let s = &rate_series(&cells, &varying, Some(1000.0))[0];
        let rates: Vec<_> = s.points.iter().map(|&i| cells[i].cell.rate).collect();
        assert_eq!(rates, [Some(500), Some(1000), Some(2000), Some(3000)]);
        assert_eq!(cells[s.sustainable.unwrap()].cell.rate, Some(1000));
        assert_eq!(cells[s.first_over.unwrap()].cell.rate, Some(2000));
        // A failed cell breaks the SLO; none within: no sustainable rate.
        let cells = vec![at_rate(500, 300.0, false), at_rate(1000, 400.0, true)];
        let s = &rate_series(&cells, &varying, Some(1000.0))[0];
        assert_eq!((s.sustainable, s.first_over), (None, Some(0)));
        // All within; and without an SLO nothing is judged.
        let cells = vec![at_rate(500, 300.0, true), at_rate(1000, 400.0, true)];
        let s = &rate_series(&cells, &varying, Some(1000.0))[0];
        assert_eq!((s.sustainable, s.first_over), (Some(1), None));
        let s = &rate_series(&cells, &varying, None)[0];
        assert_eq!((s.sustainable, s.first_over), (None, None));
        // Closed-loop cells make no rate series.
        assert!(rate_series(&[cell(1, 10.0, 10.0)], &[], Some(1.0)).is_empty());
    }

    #[test]
    fn no_saturation_while_throughput_keeps_rising() {
        let cells = vec![
            cell(1, 100.0, 10.0),
            cell(2, 200.0, 10.0),
            cell(4, 400.0, 11.0),
        ];
        assert!(saturation(&cells, &[0, 1, 2]).is_none());
        // Flat throughput but flat latency too: not saturated (nothing is queueing).
        let cells = vec![cell(1, 100.0, 10.0), cell(2, 101.0, 10.0)];
        assert!(saturation(&cells, &[0, 1]).is_none());
        // A single point has nothing beyond it.
        assert!(saturation(&cells, &[0]).is_none());
    }

    #[test]
    fn gaps_between_samples_are_found_inside_the_window() {
        let at = |t: f64| crate::rundir::Sample {
            t_s: t,
            server_cpu_s: 0.0,
            client_cpu_s: 0.0,
            machine_cpu_s: 0.0,
            server_pct: 0.0,
            client_pct: 0.0,
            machine_pct: 0.0,
            footprint: None,
        };
        let samples = [at(0.1), at(0.2), at(0.3), at(2.9), at(3.0)];
        assert!((longest_gap(&samples, 0.25, 3.0) - 2.6).abs() < 1e-9);
        // The same gap entirely before the window does not count.
        assert!((longest_gap(&samples, 2.95, 3.0) - 0.1).abs() < 1e-9);
        // A first sample long after the start is a gap too.
        assert!((longest_gap(&[at(1.5), at(1.6)], 0.0, 1.6) - 1.5).abs() < 1e-9);
    }

    #[test]
    fn medians_of_even_counts_average_the_middle() {
        let s = Stat::of(vec![4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max), (2.5, 1.0, 4.0));
        assert!(Stat::of(vec![f64::NAN]).is_none());
    }
}
