//! summary.csv as an output: each cell's summary ([`CellSummary`]) as the run directory's
//! summary row (`rundir::summary`, which owns the columns).

use super::analysis::{CellSummary, Metric};
use super::output::{Artefact, Output};
use super::Analysed;
use crate::rundir;
use crate::rundir::summary::{summary_csv, SummaryRow};

/// summary.csv: one row per cell, in cell order.
pub(crate) struct SummaryCsv;

impl Output<Analysed> for SummaryCsv {
    fn name(&self) -> &'static str {
        rundir::SUMMARY_FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let rows: Vec<SummaryRow> = run.analysis.cells.iter().map(row).collect();
        Ok(vec![Artefact::new(
            rundir::SUMMARY_FILE,
            summary_csv(&rows)?,
        )])
    }
}

/// One cell's row. A struct literal, one line per column (78 of them, hence its length):
/// a column left out is a compile error.
pub(crate) fn row(c: &CellSummary) -> SummaryRow {
    let median = |m: Metric| c.stats.get(&m).map(|s| s.median);
    let min = |m: Metric| c.stats.get(&m).map(|s| s.min);
    let max = |m: Metric| c.stats.get(&m).map(|s| s.max);
    use Metric::*;
    SummaryRow {
        cell: c.id.clone(),
        target: c.cell.target.clone(),
        pool: c.cell.pool,
        io: c.cell.io,
        workers: c.cell.workers,
        cmd: Some(c.cell.cmd),
        size: c.cell.size,
        concurrency: c.cell.concurrency,
        rate: c.cell.rate,
        reps_ok: c.reps_ok,
        reps_failed: c.reps_failed,
        sent: c.sent,
        ok: c.ok,
        failed: c.failed,
        throughput_rps: median(Throughput),
        throughput_min_rps: min(Throughput),
        throughput_max_rps: max(Throughput),
        latency_mean_us: median(LatencyMean),
        latency_mean_min_us: min(LatencyMean),
        latency_mean_max_us: max(LatencyMean),
        latency_p50_us: median(LatencyP50),
        latency_p50_min_us: min(LatencyP50),
        latency_p50_max_us: max(LatencyP50),
        latency_p90_us: median(LatencyP90),
        latency_p90_min_us: min(LatencyP90),
        latency_p90_max_us: max(LatencyP90),
        latency_p99_us: median(LatencyP99),
        latency_p99_min_us: min(LatencyP99),
        latency_p99_max_us: max(LatencyP99),
        latency_p99_9_us: median(LatencyP999),
        latency_p99_9_min_us: min(LatencyP999),
        latency_p99_9_max_us: max(LatencyP999),
        latency_max_us: median(LatencyMax),
        latency_max_min_us: min(LatencyMax),
        latency_max_max_us: max(LatencyMax),
        server_cpu_pct: median(ServerCpu),
        server_cpu_min_pct: min(ServerCpu),
        server_cpu_max_pct: max(ServerCpu),
        client_cpu_pct: median(ClientCpu),
        client_cpu_min_pct: min(ClientCpu),
        client_cpu_max_pct: max(ClientCpu),
        machine_cpu_pct: median(MachineCpu),
        machine_cpu_min_pct: min(MachineCpu),
        machine_cpu_max_pct: max(MachineCpu),
        latency_p99_uncorrected_us: median(LatencyP99Uncorrected),
        latency_p99_uncorrected_min_us: min(LatencyP99Uncorrected),
        latency_p99_uncorrected_max_us: max(LatencyP99Uncorrected),
        sent_rps: median(SentRps),
        sent_min_rps: min(SentRps),
        sent_max_rps: max(SentRps),
        server_queue_mean_us: median(StageQueue),
        server_queue_mean_min_us: min(StageQueue),
        server_queue_mean_max_us: max(StageQueue),
        server_service_mean_us: median(StageService),
        server_service_mean_min_us: min(StageService),
        server_service_mean_max_us: max(StageService),
        server_return_mean_us: median(StageReturn),
        server_return_mean_min_us: min(StageReturn),
        server_return_mean_max_us: max(StageReturn),
        server_total_mean_us: median(StageTotal),
        server_total_mean_min_us: min(StageTotal),
        server_total_mean_max_us: max(StageTotal),
        rest_mean_us: median(StageRest),
        rest_mean_min_us: min(StageRest),
        rest_mean_max_us: max(StageRest),
        server_cpu_peak_pct: c.server_cpu_peak_pct,
        loopback_ceiling_rps: c.limits.loopback_rps,
        compute_ceiling_rps: c.limits.compute_rps,
        ceiling_rps: c.limits.ceiling_rps,
        efficiency_pct: c.limits.efficiency_pct,
        latency_floor_us: c.limits.latency_floor_us,
        latency_efficiency_pct: c.limits.latency_efficiency_pct,
        throughput_spread_pct: c.noise.throughput_spread_pct,
        latency_p99_spread_pct: c.noise.p99_spread_pct,
        client_cpu_saturation_pct: c.noise.client_saturation_pct,
        server_rss_kib: median(ServerRssKib),
        client_rss_kib: median(ClientRssKib),
        server_threads: median(ServerThreads),
    }
}
