//! The SVG plots of a run, one file per chart as criterion's plotters backend has it:
//! each chart is an [`Output`] of the analysed run that makes its files under plots/,
//! and a [`Chart`], which says how report.md shows it. `axis` (scales, ticks, label
//! formats) and `draw` (frame, lines, legend, into SVG text) are shared by all.
//!
//! Most charts have one line per series (a combination of the axes other than
//! concurrency), with a legend. Ticks are chosen here and nothing reads a clock, so the
//! bytes depend only on the data and a re-render gives the same files.

mod axis;
mod draw;

pub(crate) mod breakdown;
pub(crate) mod cpu_timeline;
pub(crate) mod cpu_vs_concurrency;
pub(crate) mod latency_vs_throughput;
pub(crate) mod open_loop;
pub(crate) mod over_time;
pub(crate) mod p99_vs_concurrency;
pub(crate) mod spectrum;
pub(crate) mod throughput_vs_concurrency;

use std::path::Path;

use axis::{concurrency_dim, latency_dim, Dim};
use draw::Line;

use super::analysis::{Analysis, CellSummary, Metric};
use super::output::{Artefact, Output};
use super::Analysed;
use crate::rundir;

/// A chart: an output whose files go under plots/, and what report.md shows of it.
pub(crate) trait Chart: Output<Analysed> {
    /// Its entries in report.md's Plots section, in order; none when it drew nothing or
    /// the report shows it in another section.
    fn figures(&self, run: &Analysed) -> Vec<Figure>;
}

/// How a report shows a chart: a heading, an optional paragraph, then its images.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Figure {
    pub heading: String,
    pub intro: Option<&'static str>,
    /// (alt text, file name in plots/) of each image.
    pub images: Vec<(String, String)>,
}

impl Figure {
    /// One image under a heading, both named `title`.
    pub(crate) fn one(title: &str, file: &str) -> Figure {
        Figure {
            heading: title.to_string(),
            intro: None,
            images: vec![(title.to_string(), file.to_string())],
        }
    }
}

/// `plots/<file>` holding `svg`.
fn artefact(file: &str, svg: String) -> Artefact {
    Artefact::new(Path::new(rundir::PLOTS_DIR).join(file), svg)
}

/// A file-name-safe form of a series label.
pub(crate) fn slug(label: &str) -> String {
    label
        .replace('=', "-")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The note across a series chart when no series has a point.
fn no_run_note(a: &Analysis) -> Option<&'static str> {
    a.series
        .iter()
        .all(|s| s.points.is_empty())
        .then_some("no successful run to plot")
}

/// One line per series, a point per cell where `point` gives one; with `tagged`, each
/// point labelled with its cell's concurrency.
fn series_lines(
    a: &Analysis,
    point: &dyn Fn(&CellSummary) -> Option<(f64, f64)>,
    tagged: bool,
) -> Vec<Line> {
    a.series
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let cells = s.points.iter().map(|&p| &a.cells[p]);
            let (points, tags): (Vec<_>, Vec<_>) = cells
                .filter_map(|c| Some((point(c)?, c.cell.concurrency.to_string())))
                .unzip();
            let mut line = Line::nth(i, s.label.clone(), points);
            if tagged {
                line.tags = tags;
            }
            line
        })
        .collect()
}

/// One line per series: the median of `m` (divided by `div`) against concurrency.
fn by_concurrency(a: &Analysis, m: Metric, div: f64) -> Vec<Line> {
    series_lines(
        a,
        &|c| c.median(m).map(|v| (c.cell.concurrency as f64, v / div)),
        false,
    )
}

/// The medians of `m` at every point of every series.
fn series_values(a: &Analysis, m: Metric) -> Vec<f64> {
    a.series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|&p| a.cells[p].median(m)))
        .collect()
}

/// The x axis of the charts against concurrency: every cell's.
fn concurrency_axis(a: &Analysis) -> Dim {
    let concurrencies: Vec<f64> = a.cells.iter().map(|c| c.cell.concurrency as f64).collect();
    concurrency_dim(&concurrencies)
}

/// The p99 axis the series charts share, and the divisor that puts values in its unit.
fn p99_axis(a: &Analysis) -> (Dim, f64) {
    latency_dim(
        "p99 latency, median over repetitions",
        &series_values(a, Metric::LatencyP99),
    )
}

/// The horizontal line at the machine's capacity on the CPU charts.
fn machine_line(run: &Analysed) -> (f64, String) {
    let cores = machine_cores(run);
    (cores * 100.0, format!("whole machine: {cores:.0} cores"))
}

fn machine_cores(run: &Analysed) -> f64 {
    run.data.manifest.machine.logical_cores.max(1) as f64
}

#[cfg(test)]
mod svg_checks;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("workers=2 size=10000"), "workers-2_size-10000");
    }
}
