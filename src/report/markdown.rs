//! report.md: what ran and where, the findings (peak throughput, saturation point per
//! series, where the time goes, the open loop's sustainable rate), the machine's limits
//! and the noise, the summary table, the plots, and every failed run with its reason.
//! Deterministic: no clock, fixed number formats. [`render`] is the list of sections;
//! each section is a function that appends its markdown, and writes nothing when its
//! data is absent (unless it says why).

use std::fmt::Write as _;

use super::analysis::{Analysis, Breakdown, CellSummary, Metric, RateSeries, Series, GAIN, RISE};
use super::certainty;
use super::load::RunData;
use super::output::{Artefact, Output};
use super::plots::{self, Chart};
use super::Analysed;
use crate::rundir::{self, Manifest, RunStatus, Status, TargetInfo};

/// `850 µs`, `12.34 ms`: the crate's one latency format (`human::latency_us`).
pub(crate) fn fmt_us(v: f64) -> String {
    crate::human::latency_us(v)
}

pub(crate) fn fmt_rps(v: f64) -> String {
    format!("{v:.1} req/s")
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// A cell's median of `m` through `f`, or `–` where it was not measured.
fn median_or_dash(c: &CellSummary, m: Metric, f: &dyn Fn(f64) -> String) -> String {
    c.median(m).map_or("–".into(), f)
}

/// `closed loop`, or `open loop, 2000 req/s` (with the pipeline when it is not 1).
fn load_model(c: &CellSummary, pipeline: Option<u64>) -> String {
    match c.cell.rate {
        None => "closed loop".to_string(),
        Some(r) => match pipeline {
            Some(k) if k > 1 => format!("open loop, {r} req/s, pipeline {k}"),
            _ => format!("open loop, {r} req/s"),
        },
    }
}

/// report.md, showing `charts` in its Plots section.
pub(crate) struct ReportMd {
    pub charts: &'static [&'static dyn Chart],
}

impl Output<Analysed> for ReportMd {
    fn name(&self) -> &'static str {
        rundir::REPORT_FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        Ok(vec![Artefact::new(
            rundir::REPORT_FILE,
            render(run, self.charts),
        )])
    }
}

/// report.md's text: its sections, in order.
pub(crate) fn render(run: &Analysed, charts: &[&dyn Chart]) -> String {
    let (data, a) = (&run.data, &run.analysis);
    let m = &data.manifest;
    let pipeline = m.experiment.client_pipeline;
    let mut out = String::new();
    let w = &mut out;
    title(w, m);
    run_table(w, m);
    findings(w, data, a);
    saturation(w, data, a);
    where_the_time_goes(w, a);
    open_loop(w, a, pipeline);
    w.push_str(&super::limits::markdown(data, a));
    w.push_str(&super::memory::markdown(data, a));
    w.push_str(&super::noise::markdown(data, a));
    w.push_str(&super::hosts::markdown(data));
    results(w, a, pipeline);
    plots_section(w, run, charts);
    failures(w, data, a);
    not_run(w, data, a);
    files(w);
    out
}

/// The experiment's name, a warning when the run did not complete, its description.
fn title(w: &mut String, m: &Manifest) {
    let e = &m.experiment;
    let _ = writeln!(w, "# {}\n", e.name);
    match m.status {
        RunStatus::Complete => {}
        RunStatus::Interrupted if m.runs_done == 0 => {
            let _ = writeln!(
                w,
                "> **Partial run.** It was interrupted (Ctrl-C) {}.\n",
                stopped_at(m)
            );
        }
        RunStatus::Interrupted => {
            let _ = writeln!(
                w,
                "> **Partial run.** It was interrupted (Ctrl-C) {}; everything below covers only \
                 what was measured.\n",
                stopped_at(m)
            );
        }
        RunStatus::Running => {
            let _ = writeln!(
                w,
                "> **Incomplete run.** Its manifest still says `running`: the runner stopped \
                 without finishing (killed, or it crashed) {}. Everything below covers only what \
                 was measured.\n",
                stopped_at(m)
            );
        }
    }
    if !e.description.is_empty() {
        let _ = writeln!(w, "{}\n", e.description);
    }
}

/// `after 9 of 72 runs (63 not run)`, or `before the first of its 72 runs ended:
/// nothing was measured`.
fn stopped_at(m: &Manifest) -> String {
    let planned = m.order.runs.len();
    if m.runs_done == 0 {
        format!("before the first of its {planned} runs ended: nothing was measured")
    } else {
        format!(
            "after {} of {planned} runs ({} not run)",
            m.runs_done,
            planned.saturating_sub(m.runs_done)
        )
    }
}

/// What ran, where and when: a two-column table, a row per target at its end.
fn run_table(w: &mut String, m: &Manifest) {
    let e = &m.experiment;
    let mach = &m.machine;
    let measured = match (e.duration_s, e.requests) {
        (Some(d), _) => format!("{d} s measured"),
        (_, Some(n)) => format!("{n} requests per client thread"),
        _ => String::new(),
    };
    let order = match m.order.seed {
        Some(seed) => format!("{} (seed {seed})", m.order.kind),
        None => m.order.kind.clone(),
    };
    let _ = writeln!(w, "| | |\n|---|---|");
    let _ = writeln!(w, "| experiment | `{}` |", md_escape(&e.file));
    let _ = writeln!(
        w,
        "| started / finished | {} / {} |",
        m.started_at,
        m.finished_at.as_deref().unwrap_or("–")
    );
    let _ = writeln!(
        w,
        "| tool | {} {} (commit {}) |",
        m.tool.name, m.tool.version, m.tool.git_commit
    );
    let _ = writeln!(
        w,
        "| machine | {}; {} logical cores{}; {:.1} GiB; {}; kernel {} |",
        md_escape(&mach.cpu_model),
        mach.logical_cores,
        mach.physical_cores
            .map_or(String::new(), |p| format!(" ({p} physical)")),
        mach.memory_bytes as f64 / (1u64 << 30) as f64,
        md_escape(&mach.os),
        md_escape(&mach.kernel),
    );
    let _ = writeln!(
        w,
        "| load before / governor | {:.2} {:.2} {:.2} / {} |",
        mach.load_before[0],
        mach.load_before[1],
        mach.load_before[2],
        mach.governor.as_deref().unwrap_or("not exposed")
    );
    let _ = writeln!(
        w,
        "| settings | {}; warm-up {} s, then {measured}; cooldown {} s; order {order} |",
        crate::human::count(u64::from(e.repetitions), "repetition", "repetitions"),
        e.warmup_s,
        e.cooldown_s
    );
    let not_run = m.order.runs.len().saturating_sub(m.runs_done);
    let _ = writeln!(
        w,
        "| runs | {} of {} done, {} failed{}; {} cells |",
        m.runs_done,
        m.order.runs.len(),
        m.runs_failed,
        if not_run > 0 {
            format!(", {not_run} not run")
        } else {
            String::new()
        },
        m.cells.len()
    );
    for (name, t) in &e.targets {
        let _ = writeln!(w, "| target `{name}` | {} |", target(t));
    }
    let _ = writeln!(w);
}

/// `built-in server, pool process, args `…``, `container `…``, or `external: `…``; and TLS.
fn target(t: &TargetInfo) -> String {
    let how = if t.kind == "builtin" {
        format!(
            "built-in server{}{}",
            t.pool
                .map_or(String::new(), |p| format!(", pool {}", p.as_str())),
            if t.args.is_empty() {
                String::new()
            } else {
                format!(", args `{}`", t.args.join(" "))
            }
        )
    } else if let Some(image) = &t.image {
        format!(
            "container `{}`, `--cpus {}`, args `{}`",
            md_escape(image),
            t.cpus.unwrap_or_default(),
            md_escape(&t.args.join(" "))
        )
    } else {
        format!("external: `{}`", md_escape(&t.command.join(" ")))
    };
    let tls = if t.tls {
        "; TLS, with the run's certificate (`tls/`)"
    } else {
        ""
    };
    format!("{how}{tls}")
}

/// The findings: the peak and what it cost, cells where the client crowded the server,
/// runs during which the machine stalled.
fn findings(w: &mut String, data: &RunData, a: &Analysis) {
    let m = &data.manifest;
    let _ = writeln!(w, "## Findings\n");
    let cores = m.machine.logical_cores.max(1) as f64;
    if let Some((answer, peaks)) = certainty::answer(a) {
        let caution = certainty::caution(&certainty::caveats(data, a, &peaks));
        let _ = writeln!(w, "- **Answer:** {answer}{caution}");
    }
    peak(w, data, a, cores);
    let crowded: Vec<String> = a
        .cells
        .iter()
        .filter(|c| {
            match (
                c.median(Metric::MachineCpu),
                c.median(Metric::ClientCpu),
                c.median(Metric::ServerCpu),
            ) {
                (Some(m), Some(cl), Some(sv)) => m >= 0.9 * cores * 100.0 && cl >= 0.5 * sv,
                _ => false,
            }
        })
        .map(|c| format!("`{}`", c.id))
        .collect();
    if !crowded.is_empty() {
        let _ = writeln!(
            w,
            "- **Load generator check:** in {} the machine was at least 90% busy and the client \
             used at least half as much CPU as the server ({}): client and server competed for the same \
             cores there, so those figures understate what the server alone could do.",
            crate::human::count(crowded.len() as u64, "cell", "cells"),
            crowded.join(", ")
        );
    }
    if !a.stalls.is_empty() {
        let list: Vec<String> = a
            .stalls
            .iter()
            .map(|(run, gap)| format!("`{run}` ({gap:.2} s)"))
            .collect();
        let _ = writeln!(
            w,
            "- **Stalls:** in {} the runner went more than {:.1} s without taking a CPU sample \
             (it samples every 0.1 s), so the machine did not schedule it: an overloaded or paused host. \
             Their latencies include the pause; measure again on a quiet machine before trusting them: {}.",
            crate::human::count(a.stalls.len() as u64, "run", "runs"),
            super::analysis::STALL_S,
            list.join(", ")
        );
    }
    let _ = writeln!(w);
}

/// The peak-throughput cell with how sure it is and what weakens it, and the CPU it took
/// (when it was sampled).
fn peak(w: &mut String, data: &RunData, a: &Analysis, cores: f64) {
    let Some(p) = a.peak else {
        let _ = if data.manifest.runs_done == 0 {
            writeln!(
                w,
                "- Nothing was measured: no run ended, so there is no peak to report."
            )
        } else {
            writeln!(w, "- No run succeeded, so there is no peak to report.")
        };
        return;
    };
    let c = &a.cells[p];
    let t = c.median(Metric::Throughput).unwrap_or(f64::NAN);
    let medians = if c.reps_ok == 1 {
        "one repetition: not repeatable".to_string()
    } else {
        format!("medians of {} repetitions", c.reps_ok)
    };
    let range = if c.reps_ok >= 2 {
        format!(" Throughput {}.", certainty::throughput_range(c))
    } else {
        String::new()
    };
    let _ = writeln!(
        w,
        "- **Peak throughput: {} at {}**, p50 {}, p99 {} ({medians}).{range}{}",
        fmt_rps(t),
        a.cell_name(c),
        fmt_us(c.median(Metric::LatencyP50).unwrap_or(f64::NAN)),
        fmt_us(c.median(Metric::LatencyP99).unwrap_or(f64::NAN)),
        certainty::caution(&certainty::caveats(data, a, &[p]))
    );
    if let Some(server) = c.median(Metric::ServerCpu) {
        let client = c.median(Metric::ClientCpu).unwrap_or(f64::NAN);
        let machine = c.median(Metric::MachineCpu).unwrap_or(f64::NAN);
        let per_req_us = server / 100.0 * 1e6 / t;
        let _ = writeln!(
            w,
            "- **Efficiency at the peak:** the server with its workers used {server:.0}% CPU \
             ({:.0}% of the machine's {cores:.0} cores), the client {client:.0}%, the whole machine \
             {machine:.0}% ({:.0}% of its capacity); {} of server CPU per request.",
            server / cores,
            machine / cores,
            fmt_us(per_req_us),
        );
    }
}

/// An open-loop cell alone at its rate has no concurrency to compare: the rate series
/// judge those.
fn by_rate_only(a: &Analysis, s: &Series) -> bool {
    s.points.len() == 1 && a.cells[s.points[0]].cell.rate.is_some()
}

/// The rule, then a row per series: its saturation point, or why it has none, and how
/// sure it is (does each repetition alone agree; what weakens it).
fn saturation(w: &mut String, data: &RunData, a: &Analysis) {
    let _ = writeln!(w, "### Saturation point by series\n");
    let _ = writeln!(
        w,
        "The saturation point of a series is the lowest tested concurrency C (with a higher one tested) \
         such that no higher concurrency gets more than {:.0}% more throughput than C, while p99 at the \
         highest tested concurrency is more than {:.0}% above C's: beyond C, added concurrency only \
         adds latency. Certainty: the rule applied to each repetition alone, on its own figures.\n",
        GAIN * 100.0,
        RISE * 100.0
    );
    if a.series.iter().any(|s| !by_rate_only(a, s)) {
        let _ = writeln!(
            w,
            "| series | saturation point | throughput there | p99 there | beyond it | certainty |"
        );
        let _ = writeln!(w, "|---|---|---|---|---|---|");
    }
    for s in a.series.iter().filter(|s| !by_rate_only(a, s)) {
        let _ = writeln!(w, "{}", saturation_row(data, a, s));
    }
    if a.series.iter().any(|s| by_rate_only(a, s)) {
        let _ = writeln!(
            w,
            "\nOpen-loop cells, one concurrency per rate, are judged by rate in the next section."
        );
    }
    // Beside the table it weakens: a machine already busy before the run.
    let caution = certainty::caution(&certainty::caveats(data, a, &[]));
    if !caution.is_empty() {
        let _ = writeln!(w, "\n{}", caution.trim_start());
    }
    let _ = writeln!(w);
}

/// `concurrency 4 and 8` of the cells `list`.
fn concurrencies(a: &Analysis, list: &[usize]) -> String {
    let items: Vec<String> = list
        .iter()
        .map(|&i| a.cells[i].cell.concurrency.to_string())
        .collect();
    match items.as_slice() {
        [one] => format!("concurrency {one}"),
        [rest @ .., last] => format!("concurrencies {} and {last}", rest.join(", ")),
        [] => String::new(),
    }
}

fn saturation_row(data: &RunData, a: &Analysis, s: &Series) -> String {
    // Cells the interrupted run never reached: their absence, not a measurement.
    let unmeasured = if s.not_run.is_empty() {
        String::new()
    } else {
        format!("; {} not run", concurrencies(a, &s.not_run))
    };
    let Some(sat) = s.saturation else {
        let why = match s.points.len() {
            0 if s.failed.is_empty() => "not run".to_string(),
            0 => format!("no successful run{unmeasured}"),
            1 => format!("one concurrency measured: nothing to compare{unmeasured}"),
            _ => {
                let last = &a.cells[*s.points.last().unwrap_or(&0)];
                format!(
                    "not reached up to concurrency {}: throughput still rising, or p99 flat{unmeasured}",
                    last.cell.concurrency
                )
            }
        };
        let certainty = if s.points.len() >= 2 {
            certainty::saturation_agreement(a, s)
        } else {
            String::new()
        };
        return format!("| {} | – | | | {why} | {certainty} |", s.label);
    };
    let c = &a.cells[sat.cell];
    let t = c.median(Metric::Throughput).unwrap_or(f64::NAN);
    let p = c.median(Metric::LatencyP99).unwrap_or(f64::NAN);
    let caveats = certainty::caveats(data, a, &s.points)
        .into_iter()
        .filter(|c| c.starts_with("the client"))
        .collect::<Vec<_>>();
    format!(
        "| {} | concurrency {} (`{}`) | {} | {} | best throughput {:+.1}%, p99 ×{:.1} by concurrency {}{unmeasured} | {}{} |",
        s.label,
        c.cell.concurrency,
        c.id,
        fmt_rps(t),
        fmt_us(p),
        (sat.best_after_rps / t - 1.0) * 100.0,
        sat.p99_at_highest_us / p,
        sat.highest_concurrency,
        certainty::saturation_agreement(a, s),
        if caveats.is_empty() {
            String::new()
        } else {
            format!("; {}", caveats.join("; "))
        }
    )
}

/// The findings' stage breakdown: a sentence per series naming the dominant part of the
/// mean latency at its saturation point (or, without one, at its highest concurrency),
/// then the table of every cell and the stacked plot; or why there is none.
fn where_the_time_goes(w: &mut String, a: &Analysis) {
    let _ = writeln!(w, "### Where the time goes\n");
    if !a.cells.iter().any(|c| Breakdown::of(c).is_some()) {
        let _ = writeln!(
            w,
            "No server stage timings in this run: the server did not answer `stats` (an external \
             target without it), ran with `--no-stage-timing`, or the run predates them.\n"
        );
        return;
    }
    let _ = writeln!(
        w,
        "Each request's mean latency as the client saw it, split into the server's stages \
         (`threadcenter docs stats`): **queue** (frame read → a worker starts it), **service** (the compute, \
         measured in the worker), **return** (worker done → response handed to the socket), and \
         the **rest**, network and client (client mean − server total mean). Means, because they \
         add up; the server's figures cover the measured window (`stats/`, reset at the end of \
         the warm-up).\n"
    );
    for s in &a.series {
        if let Some(line) = dominant_part(a, s) {
            let _ = writeln!(w, "- {line}");
        }
    }
    let _ = writeln!(w);
    breakdown_table(w, a);
    let _ = writeln!(
        w,
        "\n![Where the time goes]({}/{})\n",
        rundir::PLOTS_DIR,
        plots::breakdown::FILE
    );
}

/// The sentence on a series' dominant part, at its saturation point or its highest
/// concurrency; none without stage timings there.
fn dominant_part(a: &Analysis, s: &Series) -> Option<String> {
    let (at, what) = match (s.saturation, s.points.last()) {
        (Some(sat), _) => (sat.cell, "at its saturation point"),
        (None, Some(&last)) => (last, "with no saturation point, at its highest concurrency"),
        (None, None) => return None,
    };
    let c = &a.cells[at];
    let b = Breakdown::of(c)?;
    let (part, share) = b.dominant();
    let name = if s.label.is_empty() {
        "The run".to_string()
    } else {
        format!("`{}`", s.label)
    };
    Some(format!(
        "{name}, {what}: at concurrency {} with {} worker{}, {:.0}% of mean latency is {} \
         ({} of {}).",
        c.cell.concurrency,
        c.cell.workers,
        if c.cell.workers == 1 { "" } else { "s" },
        share * 100.0,
        Breakdown::describe(part),
        fmt_us(b.parts()[part]),
        fmt_us(b.sum_us()),
    ))
}

/// Every cell with stage timings: its parts, each with its share.
fn breakdown_table(w: &mut String, a: &Analysis) {
    let _ = writeln!(
        w,
        "| cell | client mean | queue | service | return | rest | dominant |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    for c in &a.cells {
        let Some(b) = Breakdown::of(c) else {
            continue;
        };
        let sum = b.sum_us();
        let cell = |v: f64| {
            if sum > 0.0 {
                format!("{} ({:.0}%)", fmt_us(v), v / sum * 100.0)
            } else {
                fmt_us(v)
            }
        };
        let (part, share) = b.dominant();
        let _ = writeln!(
            w,
            "| {} | {} | {} | {} | {} | {} | {} {:.0}% |",
            a.cell_name(c),
            median_or_dash(c, Metric::LatencyMean, &fmt_us),
            cell(b.queue_us),
            cell(b.service_us),
            cell(b.return_us),
            cell(b.rest_us),
            Breakdown::PARTS[part],
            share * 100.0,
        );
    }
}

/// The open-loop section of the findings, when there are open-loop cells: each rate
/// series' hockey stick against the SLO.
fn open_loop(w: &mut String, a: &Analysis, pipeline: Option<u64>) {
    if a.rate_series.is_empty() {
        return;
    }
    let _ = writeln!(w, "### Open loop: sustainable throughput at the SLO\n");
    let _ = writeln!(
        w,
        "Open-loop cells send at a fixed rate{} and time each request from when it was due, so \
         a server that falls behind shows it in every request that waited (`threadcenter docs open-loop`). \
         p99 is that corrected latency; the uncorrected p99 (from the actual send) is beside it.\n",
        match pipeline {
            Some(k) if k > 1 => format!(" with up to {k} requests in flight per connection"),
            _ => String::new(),
        }
    );
    match a.slo_p99_us {
        Some(v) => {
            let _ = writeln!(
                w,
                "SLO: **p99 ≤ {}** (the experiment's `[slo] p99`). The sustainable rate of a series \
                 is the highest tested rate at which it, and every lower tested rate, ran and kept \
                 the median p99 within it.\n",
                fmt_us(v)
            );
        }
        None => {
            let _ = writeln!(
                w,
                "The experiment sets no `[slo] p99`, so no sustainable rate is named.\n"
            );
        }
    }
    rate_table(w, a);
    if a.slo_p99_us.is_some() {
        for s in &a.rate_series {
            let _ = writeln!(w, "- {}", sustainable(a, s));
        }
        let _ = writeln!(w);
    }
}

/// A row per open-loop cell, by series and rate, and whether it kept the SLO.
fn rate_table(w: &mut String, a: &Analysis) {
    let _ = writeln!(
        w,
        "| series | rate (req/s) | answered | sent | p99 (corrected) | p99 (uncorrected) | within SLO |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|");
    let rps = |v: f64| format!("{v:.1}");
    for s in &a.rate_series {
        for &i in &s.points {
            let c = &a.cells[i];
            let within = match (a.slo_p99_us, c.reps_ok, c.median(Metric::LatencyP99)) {
                (None, _, _) => "",
                (Some(_), 0, _) if c.not_run() => "not run",
                (Some(_), 0, _) => "failed",
                (Some(v), _, Some(p)) if p <= v => "yes",
                (Some(_), _, _) => "**no**",
            };
            let _ = writeln!(
                w,
                "| {} | {} (`{}`) | {} | {} | {} | {} | {} |",
                s.label,
                c.cell.rate.unwrap_or(0),
                c.id,
                median_or_dash(c, Metric::Throughput, &rps),
                median_or_dash(c, Metric::SentRps, &rps),
                median_or_dash(c, Metric::LatencyP99, &fmt_us),
                median_or_dash(c, Metric::LatencyP99Uncorrected, &fmt_us),
                within
            );
        }
    }
    let _ = writeln!(w);
}

/// A rate series' verdict against the SLO: its sustainable throughput, and where it broke.
fn sustainable(a: &Analysis, s: &RateSeries) -> String {
    let rate = |i: usize| a.cells[i].cell.rate.unwrap_or(0);
    let p99 = |i: usize| {
        a.cells[i]
            .median(Metric::LatencyP99)
            .map_or("not measured (the run failed)".into(), fmt_us)
    };
    match (s.sustainable, s.first_over) {
        (Some(ok), Some(over)) => format!(
            "**{}: sustainable throughput {} req/s** at the SLO (`{}`, p99 {}); at {} req/s p99 \
             is {}.",
            s.label,
            rate(ok),
            a.cells[ok].id,
            fmt_us(a.cells[ok].median(Metric::LatencyP99).unwrap_or(f64::NAN)),
            rate(over),
            p99(over),
        ),
        (Some(ok), None) => format!(
            "**{}: every tested rate met the SLO, up to {} req/s**: sweep higher to find \
             where it breaks.",
            s.label,
            rate(ok)
        ),
        (None, Some(over)) => format!(
            "**{}: no tested rate met the SLO**: already at {} req/s p99 is {}; sweep lower.",
            s.label,
            rate(over),
            p99(over),
        ),
        (None, None) => format!("**{}**: no open-loop cell ran.", s.label),
    }
}

/// The summary table: a row per cell, medians with their range where there are several
/// repetitions.
fn results(w: &mut String, a: &Analysis, pipeline: Option<u64>) {
    let _ = writeln!(w, "## Results\n");
    let _ = writeln!(
        w,
        "Medians over successful repetitions, with the range (min–max) where there are several. \
         CPU in % of one core. All figures: `summary.csv`; every run: `results.csv`.\n"
    );
    let _ = writeln!(
        w,
        "| cell | load model | reps ok | throughput | p50 | p99 | p99.9 | max | server CPU | client CPU | machine CPU |"
    );
    let _ = writeln!(w, "|---|---|---|---|---|---|---|---|---|---|---|");
    let pct = |v: f64| format!("{v:.0}%");
    for c in &a.cells {
        let stat = |m: Metric, f: &dyn Fn(f64) -> String| -> String {
            match c.stats.get(&m) {
                None => "–".into(),
                Some(s) if c.reps_ok > 1 => format!("{} ({}–{})", f(s.median), f(s.min), f(s.max)),
                Some(s) => f(s.median),
            }
        };
        let one = |m: Metric, f: &dyn Fn(f64) -> String| median_or_dash(c, m, f);
        let reps = if c.not_run() {
            "not run".to_string()
        } else {
            format!("{}/{}", c.reps_ok, c.reps_ok + c.reps_failed)
        };
        let _ = writeln!(
            w,
            "| {} | {} | {reps} | {} | {} | {} | {} | {} | {} | {} | {} |",
            a.cell_name(c),
            load_model(c, pipeline),
            stat(Metric::Throughput, &|v| format!("{v:.1}")),
            one(Metric::LatencyP50, &fmt_us),
            stat(Metric::LatencyP99, &fmt_us),
            one(Metric::LatencyP999, &fmt_us),
            one(Metric::LatencyMax, &fmt_us),
            one(Metric::ServerCpu, &pct),
            one(Metric::ClientCpu, &pct),
            one(Metric::MachineCpu, &pct),
        );
    }
    let _ = writeln!(
        w,
        "\nThroughput in requests/s. Closed loop: each connection sends its next request when \
         the last is answered (as the original ThreadCenter client does). Open loop: requests are sent on a fixed \
         schedule at the given rate, and latencies are measured from when each was due \
         (corrected for coordinated omission; `threadcenter docs open-loop`).\n"
    );
}

/// The figures of every chart, in the order given.
fn plots_section(w: &mut String, run: &Analysed, charts: &[&dyn Chart]) {
    let _ = writeln!(w, "## Plots\n");
    for figure in charts.iter().flat_map(|c| c.figures(run)) {
        let _ = writeln!(w, "### {}\n", figure.heading);
        if let Some(intro) = figure.intro {
            let _ = writeln!(w, "{intro}\n");
        }
        for (alt, file) in &figure.images {
            let _ = writeln!(w, "![{alt}]({}/{file})\n", rundir::PLOTS_DIR);
        }
    }
}

/// Every failed run with its reason; nothing when no run failed. Runs an interrupted
/// run never reached are not failures: [`not_run`] lists them.
fn failures(w: &mut String, data: &RunData, a: &Analysis) {
    let failed: Vec<_> = data
        .rows
        .iter()
        .filter(|r| r.status == Status::Failed)
        .collect();
    if failed.is_empty() {
        return;
    }
    let _ = writeln!(w, "## Failed runs\n");
    let _ = writeln!(w, "| run | cell | reason |\n|---|---|---|");
    for r in &failed {
        let c = a.cells.iter().find(|c| c.id == r.cell_id);
        let _ = writeln!(
            w,
            "| `{}` | {} | {} |",
            r.run_name(),
            c.map_or(r.cell_id.clone(), |c| a.cell_name(c)),
            md_escape(&r.reason)
        );
    }
    let _ = writeln!(w);
}

/// The planned runs that never ended (an interrupted or killed run): the cells never
/// measured, and those with fewer repetitions than planned. Nothing for a whole run.
fn not_run(w: &mut String, data: &RunData, a: &Analysis) {
    let m = &data.manifest;
    let missing = m.order.runs.len().saturating_sub(data.rows.len());
    if missing == 0 {
        return;
    }
    let _ = writeln!(w, "## Not run\n");
    let _ = writeln!(
        w,
        "{missing} of the {} planned runs never ran: the run stopped before them. They are \
         neither failed nor measured.\n",
        m.order.runs.len()
    );
    let never: Vec<String> = a
        .cells
        .iter()
        .filter(|c| c.not_run())
        .map(|c| a.cell_name(c))
        .collect();
    if !never.is_empty() {
        let _ = writeln!(w, "- Cells never measured: {}.", never.join(", "));
    }
    let short: Vec<String> = a
        .cells
        .iter()
        .filter(|c| !c.not_run() && c.reps_ok + c.reps_failed < c.reps_planned)
        .map(|c| {
            format!(
                "{} ran {} of {}",
                a.cell_name(c),
                c.reps_ok + c.reps_failed,
                c.reps_planned
            )
        })
        .collect();
    if !short.is_empty() {
        let _ = writeln!(
            w,
            "- Cells with fewer repetitions than planned: {}.",
            short.join("; ")
        );
    }
    let _ = writeln!(w);
}

/// What the run directory holds.
fn files(w: &mut String) {
    let _ = writeln!(w, "## Files\n");
    let _ = writeln!(
        w,
        "`experiment.toml` (the file as run), `manifest.json`, `results.csv` (one row per run), \
         `summary.csv` (one row per cell), `hdr/` (per run: `.hgrm` percentile distribution and \
         `.hlog` histogram log), `cpu/` (CPU samples every 100 ms), `client/` (the client's JSON), \
         `logs/` (server and client output), `plots/`. Columns are documented in `threadcenter docs results`; \
         `threadcenter report <this directory>` renders this report again from the raw files."
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::analysis::analyse;
    use crate::report::fixture::{closed, open_loop};

    fn headings(text: &str) -> Vec<&str> {
        text.lines().filter(|l| l.starts_with('#')).collect()
    }

    #[test]
    fn a_closed_run_has_its_sections_in_order_and_no_open_loop_one() {
        let text = render(&closed(), &[]);
        assert_eq!(
            headings(&text),
            [
                "# synthetic",
                "## Findings",
                "### Saturation point by series",
                "### Where the time goes",
                "## Machine limits and efficiency",
                "## Memory per connection",
                "## Noise",
                "## Results",
                "## Plots",
                "## Failed runs",
                "## Files",
            ]
        );
        assert!(text.contains("\nA made-up run.\n"));
        assert!(
            !text.contains("Partial run"),
            "a complete run has no warning"
        );
        assert!(text.contains("No server stage timings in this run"));
        assert!(text.contains("| runs | 6 of 6 done, 2 failed; 3 cells |"));
    }

    #[test]
    fn the_peak_is_named_with_formatted_medians() {
        let text = render(&closed(), &[]);
        assert!(
            text.contains(
                "- **Peak throughput: 1237.5 req/s at `c002` (concurrency=4)**, p50 850 µs, \
                 p99 12.34 ms (medians of 2 repetitions). Throughput range 1234.0–1241.0 req/s \
                 over 2 repetitions, spread 1%.\n"
            ),
            "{text}"
        );
        // 150% of one core at 1237.5 req/s: 1212 µs of server CPU per request.
        assert!(text.contains("; 1.21 ms of server CPU per request."));
        // The summary table gives ranges over two repetitions and marks the failed cell.
        assert!(text.contains(
            "| `c002` (concurrency=4) | closed loop | 2/2 | 1237.5 (1234.0–1241.0) | 850 µs | \
             12.34 ms (12.34 ms–12.34 ms) |"
        ));
        assert!(text.contains("| `c003` (concurrency=8) | closed loop | 0/2 | – | – | – |"));
    }

    #[test]
    fn every_failed_run_is_listed_with_its_reason_escaped() {
        let text = render(&closed(), &[]);
        let failed = &text[text.find("## Failed runs").unwrap()..];
        assert!(failed.contains("| run | cell | reason |"));
        for rep in [1, 2] {
            assert!(failed.contains(&format!(
                "| `c003-r{rep}` | `c003` (concurrency=8) | server exited: code 1 \\| see logs/ |"
            )));
        }
        // Without failures, no such section.
        let mut ok = closed();
        ok.data.rows.retain(|r| r.status == Status::Ok);
        ok.data.manifest.cells.retain(|c| c.id != "c003");
        ok.analysis = analyse(&ok.data);
        assert!(!render(&ok, &[]).contains("## Failed runs"));
    }

    #[test]
    fn an_interrupted_run_says_so_first() {
        let mut run = closed();
        run.data.manifest.status = RunStatus::Interrupted;
        run.data.manifest.runs_done = 4;
        let text = render(&run, &[]);
        let after_title = text.lines().nth(2).unwrap();
        assert!(
            after_title
                .starts_with("> **Partial run.** It was interrupted (Ctrl-C) after 4 of 6 runs"),
            "{after_title}"
        );
    }

    /// [`closed`] interrupted after its first three runs: c001 twice, c002 once.
    fn interrupted_after_three() -> Analysed {
        let mut run = closed();
        run.data
            .rows
            .retain(|r| r.cell_id == "c001" || (r.cell_id == "c002" && r.rep == 1));
        let m = &mut run.data.manifest;
        m.status = RunStatus::Interrupted;
        m.runs_done = 3;
        m.runs_failed = 0;
        run.analysis = analyse(&run.data);
        run
    }

    #[test]
    fn runs_never_reached_are_not_run_and_every_count_agrees() {
        let text = render(&interrupted_after_three(), &[]);
        assert!(text.contains("after 3 of 6 runs (3 not run)"), "{text}");
        assert!(text.contains("| runs | 3 of 6 done, 0 failed, 3 not run; 3 cells |"));
        assert!(!text.contains("## Failed runs"), "no run failed: {text}");
        let not_run = &text[text.find("## Not run").unwrap()..text.find("## Files").unwrap()];
        assert!(
            not_run.contains("3 of the 6 planned runs never ran"),
            "{not_run}"
        );
        assert!(not_run.contains("Cells never measured: `c003` (concurrency=8)."));
        assert!(not_run.contains(
            "Cells with fewer repetitions than planned: `c002` (concurrency=4) ran 1 of 2."
        ));
        assert!(text.contains("| `c003` (concurrency=8) | closed loop | not run | – |"));
        // The series' saturation row says what was not measured, not "no successful run".
        let row = text.lines().find(|l| l.starts_with("| builtin |")).unwrap();
        assert!(row.contains("; concurrency 8 not run"), "{row}");
        assert!(!text.contains("no successful run"), "{text}");
    }

    #[test]
    fn a_run_interrupted_before_its_first_run_ended_says_nothing_was_measured() {
        let mut run = closed();
        run.data.rows.clear();
        let m = &mut run.data.manifest;
        m.status = RunStatus::Interrupted;
        m.runs_done = 0;
        m.runs_failed = 0;
        run.analysis = analyse(&run.data);
        let text = render(&run, &[]);
        assert!(text.contains("before the first of its 6 runs ended: nothing was measured"));
        assert!(
            text.contains("- Nothing was measured: no run ended"),
            "{text}"
        );
        assert!(!text.contains("No run succeeded"), "{text}");
        assert!(text.contains("| builtin | – | | | not run |"), "{text}");
        assert!(text.contains("| runs | 0 of 6 done, 0 failed, 6 not run; 3 cells |"));
    }

    #[test]
    fn an_open_loop_run_names_its_sustainable_rate() {
        let run = open_loop();
        let text = render(&run, &[]);
        assert!(headings(&text).contains(&"### Open loop: sustainable throughput at the SLO"));
        assert!(text.contains("SLO: **p99 ≤ 5.00 ms**"));
        assert!(text.contains(
            "| open loop | 4000 (`c003`) | 2500.0 | 4000.0 | 90.00 ms | 45.00 ms | **no** |"
        ));
        assert!(text.contains(
            "- **open loop: sustainable throughput 2000 req/s** at the SLO (`c002`, p99 4.00 ms); \
             at 4000 req/s p99 is 90.00 ms."
        ));
        assert!(text.contains("| `c001` (concurrency=2 rate=1000) | open loop, 1000 req/s | 1/1 |"));
        assert!(text.contains("\nOpen-loop cells, one concurrency per rate, are judged by rate"));
    }

    struct Shown;
    impl Output<Analysed> for Shown {
        fn name(&self) -> &'static str {
            "shown"
        }
        fn render(&self, _: &Analysed) -> anyhow::Result<Vec<Artefact>> {
            Ok(Vec::new())
        }
    }
    impl Chart for Shown {
        fn figures(&self, _: &Analysed) -> Vec<plots::Figure> {
            vec![
                plots::Figure::one("A chart", "a.svg"),
                plots::Figure {
                    heading: "Several".into(),
                    intro: Some("Two of them."),
                    images: vec![
                        ("one".into(), "1.svg".into()),
                        ("two".into(), "2.svg".into()),
                    ],
                },
            ]
        }
    }

    #[test]
    fn the_plots_section_shows_each_charts_figures_in_order() {
        let text = render(&closed(), &[&Shown]);
        let plots = &text[text.find("## Plots\n").unwrap()..text.find("## Failed runs").unwrap()];
        assert_eq!(
            plots,
            "## Plots\n\n### A chart\n\n![A chart](plots/a.svg)\n\n### Several\n\nTwo of them.\n\n\
             ![one](plots/1.svg)\n\n![two](plots/2.svg)\n\n"
        );
    }

    #[test]
    fn latencies_read_in_the_unit_that_fits() {
        assert_eq!(fmt_us(850.4), "850 µs");
        assert_eq!(fmt_us(12340.0), "12.34 ms");
        assert_eq!(fmt_us(f64::NAN), "–");
        assert_eq!(fmt_rps(1237.54), "1237.5 req/s");
    }
}
