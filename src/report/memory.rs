//! Memory per connection: report.md's section (and so report.html's) whenever concurrency
//! varies. For each series (the cells that share every varying axis but concurrency: an
//! I/O model, a target, a command), the growth of the server's resident memory from its
//! smallest concurrency to its largest, over the connections added:
//!
//! (server RSS at the largest concurrency − at the smallest) / (largest − smallest)
//!
//! RSS is each repetition's peak over its measured window, summed over the server's
//! process tree (results.csv `server_rss_kib`), and the cell's figure is the median of its
//! repetitions. The slope is what one more connection costs the server while it is being
//! served (its socket's buffers, its state, and with `--io threads` the touched pages of
//! its two thread stacks); a connection that sits idle costs at most that.

use std::fmt::Write as _;

use super::analysis::{Analysis, Metric, Series};
use super::load::RunData;
use crate::rundir::Axis;

/// One series' memory figures, from its smallest concurrency to its largest.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct PerConnection {
    pub label: String,
    pub from: u64,
    pub to: u64,
    pub rss_from_kib: f64,
    pub rss_to_kib: f64,
    pub threads_from: Option<f64>,
    pub threads_to: Option<f64>,
    /// (rss_to − rss_from) / (to − from).
    pub kib_per_connection: f64,
}

/// The figures of each series with two concurrencies or more and memory samples.
pub(crate) fn per_connection(a: &Analysis) -> Vec<PerConnection> {
    a.series.iter().filter_map(|s| of_series(a, s)).collect()
}

fn of_series(a: &Analysis, s: &Series) -> Option<PerConnection> {
    let with_rss: Vec<usize> = s
        .points
        .iter()
        .copied()
        .filter(|&i| a.cells[i].median(Metric::ServerRssKib).is_some())
        .collect();
    let (lo, hi) = (&a.cells[*with_rss.first()?], &a.cells[*with_rss.last()?]);
    let (from, to) = (lo.cell.concurrency, hi.cell.concurrency);
    if to <= from {
        return None;
    }
    let (rss_from_kib, rss_to_kib) = (
        lo.median(Metric::ServerRssKib)?,
        hi.median(Metric::ServerRssKib)?,
    );
    Some(PerConnection {
        label: if s.label.is_empty() {
            lo.cell.target.clone()
        } else {
            s.label.clone()
        },
        from,
        to,
        rss_from_kib,
        rss_to_kib,
        threads_from: lo.median(Metric::ServerThreads),
        threads_to: hi.median(Metric::ServerThreads),
        kib_per_connection: (rss_to_kib - rss_from_kib) / (to - from) as f64,
    })
}

fn mib(kib: f64) -> String {
    format!("{:.1} MiB", kib / 1024.0)
}

/// report.md's section, or nothing when concurrency does not vary.
pub(crate) fn markdown(data: &RunData, a: &Analysis) -> String {
    let mut out = String::new();
    if !a.varying.contains(&Axis::Concurrency) {
        return out;
    }
    let w = &mut out;
    let _ = writeln!(w, "## Memory per connection\n");
    let rows = per_connection(a);
    if rows.is_empty() {
        let sampled = data.rows.iter().any(|r| r.footprint.is_some());
        let _ = writeln!(
            w,
            "{}\n",
            if sampled {
                "No series has two concurrencies with a successful run, so there is no slope to give."
            } else {
                "Not measured: this run has no memory samples (results.csv `server_rss_kib`; runs of \
                 schema 4 on have them)."
            }
        );
        return out;
    }
    let _ = writeln!(
        w,
        "The server's resident memory (RSS of the server and its worker processes, the peak of each \
         run's measured window, median over repetitions) at the smallest and the largest \
         concurrency of each series, and what each connection in between added: (RSS at the largest \
         − RSS at the smallest) / (the difference in connections). That slope is what one more \
         connection costs the server while it is served: its socket buffers and state, and with \
         `--io threads` the touched pages of its two thread stacks. Columns in summary.csv: \
         `server_rss_kib`, `server_threads`, `client_rss_kib`.\n"
    );
    let _ = writeln!(
        w,
        "| series | connections | server RSS | server threads | per connection |\n|---|---|---|---|---|"
    );
    let t = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
    for r in &rows {
        let _ = writeln!(
            w,
            "| {} | {} → {} | {} → {} | {} → {} | {:.1} KiB |",
            r.label,
            r.from,
            r.to,
            mib(r.rss_from_kib),
            mib(r.rss_to_kib),
            t(r.threads_from),
            t(r.threads_to),
            r.kib_per_connection
        );
    }
    let _ = writeln!(w);
    for r in &rows {
        let _ = writeln!(
            w,
            "- {}: **{:.1} KiB per connection**: going from {} to {} connections the server grew from {} to {}{}.",
            r.label,
            r.kib_per_connection,
            r.from,
            r.to,
            mib(r.rss_from_kib),
            mib(r.rss_to_kib),
            if r.kib_per_connection < 0.0 {
                " (it shrank: memory returned to the system, or noise larger than what connections cost)"
            } else {
                ""
            }
        );
    }
    let _ = writeln!(w);
    out
}

#[cfg(test)]
mod tests {
    use super::super::fixture;
    use super::*;
    use crate::rundir::Footprint;

    #[test]
    fn the_slope_is_rss_growth_over_connections_added() {
        let cells = [
            ("c001", fixture::cell(10, None)),
            ("c002", fixture::cell(110, None)),
            ("c003", fixture::cell(1010, None)),
        ];
        let rows: Vec<_> = cells
            .iter()
            .zip([10_000, 11_000, 30_000])
            .map(|((id, cell), rss)| {
                let mut r = fixture::row(id, cell, 1, Some((1000.0, 50.0)));
                r.footprint = Some(Footprint {
                    server_rss_kib: rss,
                    client_rss_kib: Some(1),
                    server_threads: cell.concurrency * 2,
                });
                r
            })
            .collect();
        let run = fixture::run(&cells, rows, None);
        let got = per_connection(&run.analysis);
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!((got[0].from, got[0].to), (10, 1010));
        assert!((got[0].kib_per_connection - 20.0).abs() < 1e-9, "{got:?}");
        assert_eq!(got[0].threads_to, Some(2020.0));
        let md = markdown(&run.data, &run.analysis);
        assert!(md.contains("**20.0 KiB per connection**"), "{md}");
        assert!(
            md.contains("| 10 → 1010 | 9.8 MiB → 29.3 MiB | 20 → 2020 |"),
            "{md}"
        );
    }
}
