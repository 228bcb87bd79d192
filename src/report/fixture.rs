//! Synthetic runs for the report's unit tests: a manifest and result rows made up here,
//! analysed by the real `analyse`, so a test states what a section must say of them.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;

use super::analysis::analyse;
use super::load::RunData;
use super::Analysed;
use crate::domain::{ClientCmd, PoolKind};
use crate::rundir::{
    Cell, CellEntry, CpuMeans, Interval, Measured, OpenMeasured, ResultRow, StageFigure,
    StageFigures, Status,
};

pub(super) fn cell(concurrency: u64, rate: Option<u64>) -> Cell {
    Cell {
        target: "builtin".into(),
        pool: Some(PoolKind::Process),
        io: None,
        workers: 2,
        cmd: ClientCmd::Compute,
        size: 1000,
        concurrency,
        rate,
    }
}

/// A repetition of `cell`: measured (throughput, p99 µs) or failed.
pub(super) fn row(id: &str, cell: &Cell, rep: u32, measured: Option<(f64, f64)>) -> ResultRow {
    let measured = measured.map(|(t, p99)| Measured {
        sent: 100,
        ok: 100,
        failed: 0,
        duration_s: 2.0,
        throughput_rps: t,
        latency_mean_us: p99 / 3.0,
        latency_p50_us: 850.0,
        latency_p90_us: p99 / 2.0,
        latency_p99_us: p99,
        latency_p99_9_us: p99 * 2.0,
        latency_max_us: p99 * 3.0,
        open: cell.rate.map(|r| OpenMeasured {
            offered_rps: r as f64,
            sent_rps: r as f64,
            latency_p99_uncorrected_us: p99 / 2.0,
            lateness_p99_us: 1.0,
        }),
    });
    ResultRow {
        cell_id: id.into(),
        rep,
        seq: 0,
        cell: cell.clone(),
        status: if measured.is_some() {
            Status::Ok
        } else {
            Status::Failed
        },
        reason: if measured.is_some() {
            String::new()
        } else {
            "server exited: code 1 | see logs/".into()
        },
        measured,
        cpu: measured.map(|_| CpuMeans {
            server_pct: 150.0,
            client_pct: 40.0,
            machine_pct: 190.0,
            server_peak_pct: 180.0,
        }),
        footprint: None,
        stages: None,
        startup_s: 0.1,
        stop_s: 0.1,
        wall_s: 2.5,
    }
}

/// A run of `cells` (id, cell) and `rows`, analysed as `report` would.
pub(super) fn run(
    cells: &[(&str, Cell)],
    mut rows: Vec<ResultRow>,
    slo_p99_us: Option<f64>,
) -> Analysed {
    for (i, r) in rows.iter_mut().enumerate() {
        r.seq = i + 1;
    }
    let entries: Vec<CellEntry> = cells
        .iter()
        .map(|(id, c)| CellEntry {
            id: id.to_string(),
            cell: c.clone(),
        })
        .collect();
    let manifest = serde_json::from_value(serde_json::json!({
        "schema_version": 3,
        "status": "complete",
        "tool": {"name": "threadcenter", "version": "0.1.0", "git_commit": "abc123"},
        "experiment": {
            "name": "synthetic", "description": "A made-up run.", "file": "x.toml",
            "repetitions": 2, "warmup_s": 0.5, "duration_s": 2.0, "requests": null,
            "cooldown_s": 0.0, "cell_timeout_s": 30.0, "client_timeout_s": 30.0,
            "slo_p99_us": slo_p99_us, "targets": {}
        },
        "machine": {
            "cpu_model": "Test CPU", "logical_cores": 2, "physical_cores": null,
            "memory_bytes": 1u64 << 30, "os": "Linux", "kernel": "6.1",
            "governor": null, "load_before": [0.0, 0.0, 0.0]
        },
        "started_at": "2025-01-31T12:00:00Z",
        "finished_at": "2025-01-31T12:01:00Z",
        "axes": ["concurrency"],
        "cells": entries,
        "order": {"kind": "sequential", "seed": null, "runs": rows.iter().map(|r| r.run_name()).collect::<Vec<_>>()},
        "runs_done": rows.len(),
        "runs_failed": rows.iter().filter(|r| r.status == Status::Failed).count(),
    }))
    .unwrap();
    let data = RunData {
        manifest,
        rows,
        histograms: BTreeMap::new(),
        cpu: BTreeMap::new(),
        intervals: BTreeMap::new(),
        hosts: Vec::new(),
    };
    let analysis = analyse(&data);
    Analysed { data, analysis }
}

/// Closed loop at concurrency 1 and 4 (two repetitions each), 8 failing both.
pub(super) fn closed() -> Analysed {
    let (c1, c4, c8) = (cell(1, None), cell(4, None), cell(8, None));
    let rows = vec![
        row("c001", &c1, 1, Some((500.0, 2000.0))),
        row("c002", &c4, 1, Some((1234.0, 12340.0))),
        row("c003", &c8, 1, None),
        row("c001", &c1, 2, Some((520.0, 2100.0))),
        row("c002", &c4, 2, Some((1241.0, 12340.0))),
        row("c003", &c8, 2, None),
    ];
    run(&[("c001", c1), ("c002", c4), ("c003", c8)], rows, None)
}

/// A histogram of `n` latencies from 500 µs up by 10 µs, in nanoseconds.
fn histogram(n: u64) -> Histogram<u64> {
    let mut h = Histogram::new(3).unwrap();
    for k in 0..n {
        h.record(500_000 + k * 10_000).unwrap();
    }
    h
}

/// [`closed`], with each successful cell's merged histogram and an interval log for
/// `c001-r1`: what the spectra and over-time charts draw.
pub(super) fn closed_with_histograms() -> Analysed {
    let mut run = closed();
    for id in ["c001", "c002"] {
        run.data.histograms.insert(id.into(), histogram(200));
    }
    let seconds = (0..3)
        .map(|s| Interval {
            start_s: s as f64,
            length_s: 1.0,
            hist: histogram(50 + s),
        })
        .collect();
    run.data.intervals.insert("c001-r1".into(), seconds);
    run
}

/// Open loop at three rates under a 5 ms SLO (the last one breaks it), with server stage
/// timings.
pub(super) fn open_loop() -> Analysed {
    let (r1, r2, r3) = (
        cell(2, Some(1000)),
        cell(2, Some(2000)),
        cell(2, Some(4000)),
    );
    let mut rows = vec![
        row("c001", &r1, 1, Some((1000.0, 900.0))),
        row("c002", &r2, 1, Some((2000.0, 4000.0))),
        row("c003", &r3, 1, Some((2500.0, 90000.0))),
    ];
    for r in &mut rows {
        let mean = r.measured.unwrap().latency_mean_us;
        let stage = |mean_us: f64| StageFigure {
            mean_us,
            p50_us: mean_us,
            p99_us: mean_us * 2.0,
        };
        r.stages = Some(StageFigures {
            count: 100,
            queue: stage(mean * 0.5),
            service: stage(mean * 0.2),
            return_: stage(mean * 0.1),
            total: stage(mean * 0.8),
        });
    }
    run(
        &[("c001", r1), ("c002", r2), ("c003", r3)],
        rows,
        Some(5000.0),
    )
}

/// Workers 1 and 2 against concurrency 1 and 4, `reps` repetitions each: one worker
/// saturates at concurrency 1; two reach about 1.8× its peak at 4 (repetition r of the
/// two-worker cells is 5% faster or slower than the others', so the ratio has a range).
pub(super) fn two_workers(reps: u32) -> Analysed {
    let at = |workers: u64, concurrency: u64| Cell {
        workers,
        ..cell(concurrency, None)
    };
    let cells = [
        ("c001", at(1, 1), 1000.0, 1000.0),
        ("c002", at(1, 4), 1050.0, 4000.0),
        ("c003", at(2, 1), 1000.0, 1000.0),
        ("c004", at(2, 4), 1900.0, 2100.0),
    ];
    let mut rows = Vec::new();
    for rep in 1..=reps {
        let wobble = [1.0, 1.05, 0.95][(rep as usize - 1) % 3];
        for (id, c, t, p99) in &cells {
            let t = if c.workers == 2 { t * wobble } else { *t };
            rows.push(row(id, c, rep, Some((t, *p99))));
        }
    }
    let entries: Vec<(&str, Cell)> = cells.iter().map(|(id, c, _, _)| (*id, c.clone())).collect();
    run(&entries, rows, None)
}
