//! Latency by percentile (HdrHistogram's percentile spectrum), from each cell's merged
//! histogram: one chart of every series at its peak-throughput cell, and one per series
//! with more than one concurrency, a line per cell.

use super::axis::{fmt_percentile, latency_dim, Dim, Scale};
use super::draw::{Line, Marks, Plot};
use super::{artefact, slug, Chart, Figure};
use crate::report::analysis::Metric;
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;

pub(crate) const PEAKS_FILE: &str = "percentile_spectrum.svg";
pub(crate) const PEAKS_TITLE: &str = "Latency by percentile (each series at its peak)";

/// `spectrum-<series>.svg`.
pub(crate) fn series_file(label: &str) -> String {
    format!("spectrum-{}.svg", slug(label))
}

/// Each series at its peak-throughput cell, in one chart.
pub(crate) struct PeakSpectra;

impl Output<Analysed> for PeakSpectra {
    fn name(&self) -> &'static str {
        PEAKS_FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let a = &run.analysis;
        let peaks: Vec<(String, usize)> = a
            .series
            .iter()
            .filter_map(|s| {
                let best = s.points.iter().copied().max_by(|&p, &q| {
                    let t = |i: usize| a.cells[i].median(Metric::Throughput).unwrap_or(0.0);
                    t(p).total_cmp(&t(q)).then(q.cmp(&p))
                })?;
                let c = a.cells[best].cell.concurrency;
                Some((format!("{} (concurrency {c})", s.label), best))
            })
            .collect();
        let svg = spectrum(run, &peaks, PEAKS_TITLE)?;
        Ok(vec![artefact(PEAKS_FILE, svg)])
    }
}

impl Chart for PeakSpectra {
    fn figures(&self, _: &Analysed) -> Vec<Figure> {
        vec![Figure::one(PEAKS_TITLE, PEAKS_FILE)]
    }
}

/// One chart per series with more than one concurrency: a line per cell.
pub(crate) struct SeriesSpectra;

impl SeriesSpectra {
    /// (title, file, cells) of each series' chart.
    fn charts(run: &Analysed) -> Vec<(String, String, &[usize])> {
        run.analysis
            .series
            .iter()
            .filter(|s| s.points.len() > 1)
            .map(|s| {
                let title = format!("Latency by percentile: {}", s.label);
                (title, series_file(&s.label), s.points.as_slice())
            })
            .collect()
    }
}

impl Output<Analysed> for SeriesSpectra {
    fn name(&self) -> &'static str {
        "spectrum-<series>.svg"
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let a = &run.analysis;
        let mut out = Vec::new();
        for (title, file, points) in SeriesSpectra::charts(run) {
            let cells: Vec<(String, usize)> = points
                .iter()
                .map(|&p| (format!("concurrency {}", a.cells[p].cell.concurrency), p))
                .collect();
            out.push(artefact(&file, spectrum(run, &cells, &title)?));
        }
        Ok(out)
    }
}

impl Chart for SeriesSpectra {
    fn figures(&self, run: &Analysed) -> Vec<Figure> {
        SeriesSpectra::charts(run)
            .into_iter()
            .map(|(title, file, _)| Figure::one(&title, &file))
            .collect()
    }
}

/// One chart of the (label, cell) given, a line per cell that has a histogram.
fn spectrum(run: &Analysed, cells: &[(String, usize)], title: &str) -> anyhow::Result<String> {
    let a = &run.analysis;
    let mut lines = Vec::new();
    let mut all_y = Vec::new();
    let mut max_x: f64 = 10.0;
    for (i, (label, cell)) in cells.iter().enumerate() {
        let Some(h) = run.data.histograms.get(&a.cells[*cell].id) else {
            continue;
        };
        let pts = spectrum_points(h);
        max_x = pts.iter().map(|p| p.0).fold(max_x, f64::max);
        all_y.extend(pts.iter().map(|p| p.1));
        let mut line = Line::nth(i, label.clone(), pts);
        line.marks = Marks::Spaced(60);
        lines.push(line);
    }
    let (y, div) = latency_dim("latency", &all_y);
    for l in &mut lines {
        for p in &mut l.points {
            p.1 /= div;
        }
    }
    let decades = max_x.log10().ceil().max(1.0) as i32;
    let x = Dim {
        desc: "percentile (log scale of 1/(1-percentile))".into(),
        scale: Scale::Log,
        lo: 1.0,
        hi: 10f64.powi(decades),
        ticks: (0..=decades).map(|e| 10f64.powi(e)).collect(),
        label: fmt_percentile,
    };
    let note = lines.is_empty().then_some("no successful run to plot");
    Plot {
        note,
        ..Plot::new(title, &x, &y, &lines)
    }
    .render()
}

/// (1/(1-p), latency µs) at HdrHistogram's percentile reporting points, the rows of the
/// `.hgrm` files (crate::hdr), as HdrHistogram's plotter draws them; the 100% row has no
/// x and is left out.
fn spectrum_points(h: &hdrhistogram::Histogram<u64>) -> Vec<(f64, f64)> {
    crate::hdr::percentile_rows(h, crate::hdr::TICKS_PER_HALF_DISTANCE)
        .into_iter()
        .filter(|r| r.percentile < 100.0)
        .map(|r| {
            let x = 1.0 / (1.0 - r.percentile / 100.0);
            (x, r.value as f64 / 1000.0)
        })
        .collect()
}
