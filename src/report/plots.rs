//! The SVG plots (plotters, svg backend): throughput, p99 and server CPU against
//! concurrency, latency against throughput, the percentile spectrum, and the CPU timeline
//! of the peak cell. One line per series (a combination of the axes other than
//! concurrency), with a legend.
//!
//! Every chart is drawn in a linear coordinate space in which log-scaled axes hold
//! log10 of the value, with tick positions chosen here: the output depends only on the
//! data, so a re-render gives the same bytes.

use std::path::Path;

use anyhow::Context as _;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

use super::analysis::{Analysis, Breakdown, CellSummary, Metric};
use super::load::RunData;
use crate::rundir;

/// The open-loop hockey stick, written when the run has open-loop (`rate`) cells.
pub const OPEN_LOOP_PLOT: (&str, &str) = (
    "open_loop_latency_vs_throughput.svg",
    "Open loop: p99 latency vs throughput, corrected (solid) and uncorrected (dashed)",
);

/// The files this module writes into plots/, besides one `spectrum-<series>.svg` for each
/// series with more than one concurrency, and [`OPEN_LOOP_PLOT`] for open-loop runs.
pub const FIXED_PLOTS: [(&str, &str); 6] = [
    ("throughput_vs_concurrency.svg", "Throughput vs concurrency"),
    ("p99_vs_concurrency.svg", "p99 latency vs concurrency"),
    ("latency_vs_throughput.svg", "p99 latency vs throughput"),
    ("cpu_vs_concurrency.svg", "Server CPU vs concurrency"),
    (
        "percentile_spectrum.svg",
        "Latency by percentile (each series at its peak)",
    ),
    ("cpu_timeline.svg", "CPU over time, peak cell"),
];

/// The stacked per-cell breakdown of mean latency, written when the run has stage timings.
pub const BREAKDOWN_PLOT: &str = "breakdown.svg";

/// `over-time-<cell>.svg`: throughput and p99 per second of a cell's runs, written for
/// each cell whose runs have interval logs.
pub fn over_time_file(cell: &str) -> String {
    format!("over-time-{cell}.svg")
}

const SIZE: (u32, u32) = (1160, 560);
/// The legend's column at the right of the chart, so it never covers a line.
const LEGEND_W: u32 = 280;

const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Scale {
    Linear,
    Log,
}

/// One chart axis: its label, scale, data range and tick labels.
struct Dim {
    desc: String,
    scale: Scale,
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
    label: fn(f64) -> String,
}

impl Dim {
    fn tr(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => v,
            Scale::Log => v.max(f64::MIN_POSITIVE).log10(),
        }
    }
}

/// A linear coordinate with exactly the given ticks (plotters' own f64 ranges pick theirs).
struct Ticked {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        if span <= 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let at = ((v - self.lo) / span).clamp(-1.0, 2.0);
        limit.0 + (f64::from(limit.1 - limit.0) * at + 1e-3).floor() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        self.ticks
            .iter()
            .copied()
            .filter(|t| *t >= self.lo - 1e-9 && *t <= self.hi + 1e-9)
            .collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

struct Line {
    label: String,
    points: Vec<(f64, f64)>,
    color: RGBColor,
    dashed: bool,
    markers: bool,
}

/// A linear axis from 0 (or `lo`) to just above `hi`, with round ticks.
fn linear_dim(desc: String, lo: f64, hi: f64, label: fn(f64) -> String) -> Dim {
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let ticks = nice_ticks(lo, hi * 1.05);
    let top = ticks.last().copied().unwrap_or(hi).max(hi * 1.05);
    Dim {
        desc,
        scale: Scale::Linear,
        lo,
        hi: top,
        ticks,
        label,
    }
}

/// A round distance between ticks (1, 2 or 5 × 10^k) giving about 6 over `span`.
pub(super) fn tick_step(span: f64) -> f64 {
    let mag = 10f64.powf((span / 6.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 7.0)
        .unwrap_or(10.0 * mag)
}

/// Round ticks ([`tick_step`] apart) covering [lo, hi].
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let step = tick_step(hi - lo);
    let start = (lo / step).ceil() as i64;
    let end = (hi / step).ceil() as i64;
    (start..=end).map(|k| k as f64 * step).collect()
}

/// A log axis over [lo, hi] (both > 0), ticks at 1, 2, 5 × 10^k (decades only if many).
fn log_dim(desc: String, lo: f64, hi: f64, label: fn(f64) -> String) -> Dim {
    let lo = lo.max(f64::MIN_POSITIVE) / 1.15;
    let hi = hi.max(lo * 1.0001) * 1.15;
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let mut ticks: Vec<f64> = Vec::new();
    for e in a..=b {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v >= lo && v <= hi {
                ticks.push(v);
            }
        }
    }
    if ticks.len() > 12 {
        ticks.retain(|v| (v.log10() - v.log10().round()).abs() < 1e-9);
    }
    Dim {
        desc,
        scale: Scale::Log,
        lo,
        hi,
        ticks,
        label,
    }
}

fn fmt_int(v: f64) -> String {
    let r = v.round();
    if (v - r).abs() < 1e-6 * v.abs().max(1.0) {
        format!("{r:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        let s = format!("{v:.1}");
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// `1/(1-p)` → the percentile it stands for: 1 → 0%, 10 → 90%, 1000 → 99.9%.
fn fmt_percentile(x: f64) -> String {
    if x <= 1.0 + 1e-9 {
        return "0%".into();
    }
    let p = (1.0 - 1.0 / x) * 100.0;
    let digits = ((x.log10().round() as i64) - 2).max(0) as usize;
    format!("{p:.digits$}%")
}

/// The x axis for concurrency: log-scaled when the values span 8× or more; ticks at the
/// tested values.
fn concurrency_dim(values: &[f64]) -> Dim {
    let mut ticks: Vec<f64> = values.to_vec();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let (lo, hi) = (
        ticks.first().copied().unwrap_or(1.0),
        ticks.last().copied().unwrap_or(1.0),
    );
    let desc = "client concurrency (threads, one connection each)".to_string();
    if lo > 0.0 && hi / lo >= 8.0 {
        Dim {
            desc: format!("{desc}, log scale"),
            scale: Scale::Log,
            lo: lo / 1.25,
            hi: hi * 1.25,
            ticks,
            label: fmt_int,
        }
    } else {
        let pad = ((hi - lo) * 0.05).max(0.5);
        Dim {
            desc,
            scale: Scale::Linear,
            lo: (lo - pad).max(0.0),
            hi: hi + pad,
            ticks,
            label: fmt_int,
        }
    }
}

/// Latency values in µs: the unit to show them in, and the divisor.
fn latency_unit(max_us: f64) -> (&'static str, f64) {
    if max_us >= 10_000.0 {
        ("ms", 1000.0)
    } else {
        ("µs", 1.0)
    }
}

/// An axis for `values` shown divided by `div`, described as `what (unit)`: log-scaled
/// when the positive values span more than 10× (so small ones are not flattened against
/// the axis), else linear from 0.
fn spanning_dim(what: &str, unit: &str, values: &[f64], div: f64) -> Dim {
    let max = values.iter().copied().fold(0.0, f64::max);
    let min = values
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    if min.is_finite() && max / min > 10.0 {
        log_dim(
            format!("{what} ({unit}, log scale)"),
            min / div,
            max / div,
            fmt_num,
        )
    } else {
        linear_dim(format!("{what} ({unit})"), 0.0, max / div, fmt_num)
    }
}

/// A latency axis (values in µs) in µs or ms: log-scaled when the values span more
/// than 10×. Also the divisor that puts values in its unit.
fn latency_dim(what: &str, values: &[f64]) -> (Dim, f64) {
    let max = values.iter().copied().fold(0.0, f64::max);
    let (unit, div) = latency_unit(max);
    (spanning_dim(what, unit, values, div), div)
}

fn draw(
    path: &Path,
    title: &str,
    x: &Dim,
    y: &Dim,
    lines: &[Line],
    hline: Option<(f64, String)>,
    note: Option<&str>,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    draw_on(&root, title, x, y, lines, hline, note)?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Two charts one above the other in one file (the same x axis).
fn draw_two(
    path: &Path,
    top: (&str, &Dim, &[Line]),
    bottom: (&str, &Dim, &[Line]),
    x: &Dim,
    note: Option<&str>,
) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (SIZE.0, SIZE.1 * 2)).into_drawing_area();
    root.fill(&WHITE)?;
    let (upper, lower) = root.split_vertically(SIZE.1);
    draw_on(&upper, top.0, x, top.1, top.2, None, note)?;
    draw_on(&lower, bottom.0, x, bottom.1, bottom.2, None, None)?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

type Area<'a> = DrawingArea<SVGBackend<'a>, plotters::coord::Shift>;

fn draw_on(
    root: &Area<'_>,
    title: &str,
    x: &Dim,
    y: &Dim,
    lines: &[Line],
    hline: Option<(f64, String)>,
    note: Option<&str>,
) -> anyhow::Result<()> {
    let width = root.dim_in_pixel().0;
    let (plot_area, legend_area) = root.split_horizontally(width - LEGEND_W);
    let xt: Vec<f64> = x.ticks.iter().map(|&v| x.tr(v)).collect();
    let yt: Vec<f64> = y.ticks.iter().map(|&v| y.tr(v)).collect();
    let mut chart = ChartBuilder::on(&plot_area)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .margin_right(36)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(
            Ticked {
                lo: x.tr(x.lo),
                hi: x.tr(x.hi),
                ticks: xt,
            },
            Ticked {
                lo: y.tr(y.lo),
                hi: y.tr(y.hi),
                ticks: yt,
            },
        )?;
    let (xl, yl) = (x.label, y.label);
    let (xs, ys) = (x.scale, y.scale);
    let inv = |s: Scale, v: f64| match s {
        Scale::Linear => v,
        Scale::Log => 10f64.powf(v),
    };
    chart
        .configure_mesh()
        .x_desc(x.desc.as_str())
        .y_desc(y.desc.as_str())
        .x_label_formatter(&|v| xl(inv(xs, *v)))
        .y_label_formatter(&|v| yl(inv(ys, *v)))
        .light_line_style(WHITE)
        .bold_line_style(RGBColor(225, 225, 225))
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 15))
        .draw()?;

    // (label, colour, width, dashed) of each legend entry, in drawing order.
    let mut legend: Vec<(String, RGBColor, u32, bool)> = Vec::new();
    if let Some((value, label)) = hline {
        let yv = y.tr(value);
        let color = RGBColor(90, 90, 90);
        chart.draw_series(DashedLineSeries::new(
            vec![(x.tr(x.lo), yv), (x.tr(x.hi), yv)],
            6,
            4,
            color.stroke_width(1),
        ))?;
        legend.push((label, color, 1, true));
    }
    for line in lines {
        let color = line.color;
        let pts: Vec<(f64, f64)> = line
            .points
            .iter()
            .filter(|(a, b)| a.is_finite() && b.is_finite())
            .map(|&(a, b)| (x.tr(a), y.tr(b)))
            .collect();
        let style = color.stroke_width(2);
        if line.dashed {
            chart.draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))?;
        } else {
            chart.draw_series(LineSeries::new(pts.clone(), style))?;
        }
        legend.push((line.label.clone(), color, 2, line.dashed));
        if line.markers {
            chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    for (i, (label, color, width, dashed)) in legend.iter().enumerate() {
        let y = 60 + 22 * i as i32;
        let style = color.stroke_width(*width);
        if *dashed {
            for k in 0..3 {
                let a = 4 + 9 * k;
                legend_area.draw(&PathElement::new(vec![(a, y), (a + 5, y)], style))?;
            }
        } else {
            legend_area.draw(&PathElement::new(vec![(4, y), (28, y)], style))?;
        }
        legend_area.draw(&Text::new(
            label.clone(),
            (36, y - 7),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    if let Some(note) = note {
        root.draw(&Text::new(
            note.to_string(),
            (120, 60),
            ("sans-serif", 16)
                .into_font()
                .color(&RGBColor(120, 120, 120)),
        ))?;
    }
    Ok(())
}

/// The hockey stick of each open-loop series: median p99 against median throughput, one
/// point per rate, corrected (from the intended send time) solid and uncorrected dashed
/// in the same colour, with the SLO as a horizontal line.
fn open_loop_plot(dir: &Path, a: &Analysis) -> anyhow::Result<()> {
    let color = |i: usize| PALETTE[i % PALETTE.len()];
    let point = |i: usize, m: Metric| -> Option<(f64, f64)> {
        let c = &a.cells[i];
        Some((c.median(Metric::Throughput)?, c.median(m)?))
    };
    let mut ys: Vec<f64> = Vec::new();
    let mut tmax: f64 = 0.0;
    for s in &a.rate_series {
        for &i in &s.points {
            for m in [Metric::LatencyP99, Metric::LatencyP99Uncorrected] {
                if let Some((t, p)) = point(i, m) {
                    tmax = tmax.max(t);
                    ys.push(p);
                }
            }
        }
    }
    if let Some(slo) = a.slo_p99_us {
        ys.push(slo);
    }
    let (y, div) = latency_dim("p99 latency, median over repetitions", &ys);
    let x = linear_dim(
        "throughput (requests/s answered)".into(),
        0.0,
        tmax,
        fmt_num,
    );
    let mut lines = Vec::new();
    for (k, s) in a.rate_series.iter().enumerate() {
        for (m, dashed, what) in [
            (Metric::LatencyP99, false, "corrected"),
            (Metric::LatencyP99Uncorrected, true, "uncorrected"),
        ] {
            lines.push(Line {
                label: format!("{} ({what})", s.label),
                points: s
                    .points
                    .iter()
                    .filter_map(|&i| point(i, m).map(|(t, p)| (t, p / div)))
                    .collect(),
                color: color(k),
                dashed,
                markers: !dashed,
            });
        }
    }
    let hline = a.slo_p99_us.map(|slo| {
        (
            slo / div,
            format!("SLO: p99 {}", super::markdown::fmt_us(slo)),
        )
    });
    let none = lines
        .iter()
        .all(|l| l.points.is_empty())
        .then_some("no successful open-loop run to plot");
    draw(
        &dir.join(OPEN_LOOP_PLOT.0),
        OPEN_LOOP_PLOT.1,
        &x,
        &y,
        &lines,
        hline,
        none,
    )
}

/// A file-name-safe form of a series label.
pub fn slug(label: &str) -> String {
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

pub fn spectrum_file(label: &str) -> String {
    format!("spectrum-{}.svg", slug(label))
}

/// Writes every plot into `dir`.
pub fn write_all(dir: &Path, data: &RunData, a: &Analysis) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let color = |i: usize| PALETTE[i % PALETTE.len()];
    let dashed = |i: usize| i >= PALETTE.len();
    let none = if a.series.iter().all(|s| s.points.is_empty()) {
        Some("no successful run to plot")
    } else {
        None
    };
    // One line per series, a point per cell where `point` gives one.
    let series_lines = |point: &dyn Fn(&CellSummary) -> Option<(f64, f64)>| -> Vec<Line> {
        a.series
            .iter()
            .enumerate()
            .map(|(i, s)| Line {
                label: s.label.clone(),
                points: s
                    .points
                    .iter()
                    .filter_map(|&p| point(&a.cells[p]))
                    .collect(),
                color: color(i),
                dashed: dashed(i),
                markers: true,
            })
            .collect()
    };
    let by_concurrency = |m: Metric, div: f64| -> Vec<Line> {
        series_lines(&|c| c.median(m).map(|v| (c.cell.concurrency as f64, v / div)))
    };
    let values = |m: Metric| -> Vec<f64> {
        a.series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|&p| a.cells[p].median(m)))
            .collect()
    };
    let concurrencies: Vec<f64> = a.cells.iter().map(|c| c.cell.concurrency as f64).collect();
    let xc = concurrency_dim(&concurrencies);

    // Throughput vs concurrency.
    let throughputs = values(Metric::Throughput);
    let tmax = throughputs.iter().copied().fold(0.0, f64::max);
    // Series that differ by more than 10× (light and heavy requests) get a log scale,
    // which keeps every plateau visible.
    let yt = spanning_dim(
        "throughput",
        "requests/s, median over repetitions",
        &throughputs,
        1.0,
    );
    draw(
        &dir.join(FIXED_PLOTS[0].0),
        FIXED_PLOTS[0].1,
        &xc,
        &yt,
        &by_concurrency(Metric::Throughput, 1.0),
        None,
        none,
    )?;

    // p99 vs concurrency.
    let p99s = values(Metric::LatencyP99);
    let (yp, div) = latency_dim("p99 latency, median over repetitions", &p99s);
    draw(
        &dir.join(FIXED_PLOTS[1].0),
        FIXED_PLOTS[1].1,
        &xc,
        &yp,
        &by_concurrency(Metric::LatencyP99, div),
        None,
        none,
    )?;

    // p99 vs throughput: the "hockey stick".
    let xt = linear_dim("throughput (requests/s)".into(), 0.0, tmax, fmt_num);
    let lines = series_lines(&|c| {
        Some((
            c.median(Metric::Throughput)?,
            c.median(Metric::LatencyP99)? / div,
        ))
    });
    draw(
        &dir.join(FIXED_PLOTS[2].0),
        FIXED_PLOTS[2].1,
        &xt,
        &yp,
        &lines,
        None,
        none,
    )?;

    if !a.rate_series.is_empty() {
        open_loop_plot(dir, a)?;
    }

    // Server CPU vs concurrency, with the machine's limit.
    let cores = data.manifest.machine.logical_cores.max(1) as f64;
    let cmax = values(Metric::ServerCpu)
        .into_iter()
        .fold(cores * 100.0, f64::max);
    let yc = linear_dim(
        "server CPU with its workers (%, 100 = one core)".into(),
        0.0,
        cmax,
        fmt_num,
    );
    draw(
        &dir.join(FIXED_PLOTS[3].0),
        FIXED_PLOTS[3].1,
        &xc,
        &yc,
        &by_concurrency(Metric::ServerCpu, 1.0),
        Some((cores * 100.0, format!("whole machine: {cores:.0} cores"))),
        none,
    )?;

    // Percentile spectra.
    let spectrum = |cells: &[(String, usize)], path: &Path, title: &str| -> anyhow::Result<()> {
        let mut lines = Vec::new();
        let mut all_y = Vec::new();
        let mut max_x: f64 = 10.0;
        for (i, (label, cell)) in cells.iter().enumerate() {
            let Some(h) = data.histograms.get(&a.cells[*cell].id) else {
                continue;
            };
            let pts = spectrum_points(h);
            max_x = pts.iter().map(|p| p.0).fold(max_x, f64::max);
            all_y.extend(pts.iter().map(|p| p.1));
            lines.push(Line {
                label: label.clone(),
                points: pts,
                color: color(i),
                dashed: dashed(i),
                markers: false,
            });
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
        let note = if lines.is_empty() {
            Some("no successful run to plot")
        } else {
            None
        };
        draw(path, title, &x, &y, &lines, None, note)
    };
    let peaks: Vec<(String, usize)> = a
        .series
        .iter()
        .filter_map(|s| {
            let best = s.points.iter().copied().max_by(|&p, &q| {
                let t = |i: usize| a.cells[i].median(Metric::Throughput).unwrap_or(0.0);
                t(p).total_cmp(&t(q)).then(q.cmp(&p))
            })?;
            Some((
                format!(
                    "{} (concurrency {})",
                    s.label, a.cells[best].cell.concurrency
                ),
                best,
            ))
        })
        .collect();
    spectrum(&peaks, &dir.join(FIXED_PLOTS[4].0), FIXED_PLOTS[4].1)?;
    for s in a.series.iter().filter(|s| s.points.len() > 1) {
        let cells: Vec<(String, usize)> = s
            .points
            .iter()
            .map(|&p| (format!("concurrency {}", a.cells[p].cell.concurrency), p))
            .collect();
        spectrum(
            &cells,
            &dir.join(spectrum_file(&s.label)),
            &format!("Latency by percentile: {}", s.label),
        )?;
    }

    // CPU over time of the peak cell's first successful repetition.
    let run = a.peak.and_then(|p| {
        data.rows
            .iter()
            .filter(|r| r.cell_id == a.cells[p].id && r.status == rundir::Status::Ok)
            .map(|r| r.run_name())
            .find(|name| data.cpu.contains_key(name))
    });
    let samples = run
        .as_ref()
        .and_then(|r| data.cpu.get(r))
        .cloned()
        .unwrap_or_default();
    let tmax_s = samples.iter().map(|s| s.t_s).fold(1.0, f64::max);
    let x = linear_dim(
        "time since the client started (s)".into(),
        0.0,
        tmax_s,
        fmt_num,
    );
    let ymax = samples
        .iter()
        .map(|s| s.machine_pct.max(s.server_pct).max(s.client_pct))
        .fold(cores * 100.0, f64::max);
    let y = linear_dim("CPU (%, 100 = one core)".into(), 0.0, ymax, fmt_num);
    let series = [
        ("server with its workers", 0usize),
        ("client", 1),
        ("whole machine", 2),
    ];
    let lines: Vec<Line> = series
        .iter()
        .map(|(label, k)| Line {
            label: label.to_string(),
            points: samples
                .iter()
                .map(|s| {
                    (
                        s.t_s,
                        match k {
                            0 => s.server_pct,
                            1 => s.client_pct,
                            _ => s.machine_pct,
                        },
                    )
                })
                .collect(),
            color: color(*k),
            dashed: false,
            markers: false,
        })
        .collect();
    let title = match &run {
        Some(r) => format!("CPU over time: {r} (the peak-throughput cell)"),
        None => FIXED_PLOTS[5].1.to_string(),
    };
    draw(
        &dir.join(FIXED_PLOTS[5].0),
        &title,
        &x,
        &y,
        if samples.is_empty() { &[] } else { &lines },
        Some((cores * 100.0, format!("whole machine: {cores:.0} cores"))),
        if samples.is_empty() {
            Some("no CPU samples")
        } else {
            None
        },
    )?;
    write_breakdown(&dir.join(BREAKDOWN_PLOT), a)?;
    for c in &a.cells {
        write_over_time(dir, data, &c.id)?;
    }
    Ok(())
}

/// (repetition, interval log) of every successful run of `cell` that has one: what
/// [`over_time_file`] plots; none, and the cell gets no such plot.
pub fn over_time_runs<'a>(data: &'a RunData, cell: &str) -> Vec<(u32, &'a Vec<rundir::Interval>)> {
    data.rows
        .iter()
        .filter(|r| r.cell_id == cell && r.status == rundir::Status::Ok)
        .filter_map(|r| Some((r.rep, data.intervals.get(&r.run_name())?)))
        .collect()
}

/// Throughput (answers per second) and p99 in each second of the measured phase of
/// every successful run of `cell` that has an interval log, one line per repetition.
fn write_over_time(dir: &Path, data: &RunData, cell: &str) -> anyhow::Result<()> {
    let runs = over_time_runs(data, cell);
    if runs.is_empty() {
        return Ok(());
    }
    let mut tput = Vec::new();
    let mut p99 = Vec::new();
    for (k, (rep, intervals)) in runs.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let dashed = k >= PALETTE.len();
        let end = |i: &rundir::Interval| i.start_s + i.length_s;
        tput.push(Line {
            label: format!("repetition {rep}"),
            points: intervals
                .iter()
                .filter(|i| i.length_s > 0.0)
                .map(|i| (end(i), i.hist.len() as f64 / i.length_s))
                .collect(),
            color,
            dashed,
            markers: true,
        });
        p99.push(Line {
            label: format!("repetition {rep}"),
            points: intervals
                .iter()
                .filter(|i| !i.hist.is_empty())
                .map(|i| (end(i), i.hist.value_at_quantile(0.99) as f64 / 1e3))
                .collect(),
            color,
            dashed,
            markers: true,
        });
    }
    let all = |lines: &[Line], f: fn(&(f64, f64)) -> f64| -> Vec<f64> {
        lines.iter().flat_map(|l| l.points.iter().map(f)).collect()
    };
    let xs = all(&tput, |p| p.0);
    let x = linear_dim(
        "seconds into the measured phase (each point: the second that ends there)".into(),
        0.0,
        xs.iter().copied().fold(1.0, f64::max),
        fmt_num,
    );
    let tmax = all(&tput, |p| p.1).into_iter().fold(0.0, f64::max);
    let yt = linear_dim("answers per second".into(), 0.0, tmax, fmt_num);
    let (yp, div) = latency_dim("p99 in each second", &all(&p99, |p| p.1));
    for l in &mut p99 {
        for p in &mut l.points {
            p.1 /= div;
        }
    }
    draw_two(
        &dir.join(over_time_file(cell)),
        (&format!("{cell}: throughput per second"), &yt, &tput),
        (&format!("{cell}: p99 latency per second"), &yp, &p99),
        &x,
        None,
    )
}

/// One horizontal stacked bar per cell with stage timings: queue, service, return and
/// rest of its mean latency (µs, medians over repetitions), in cell order from the top.
fn write_breakdown(path: &Path, a: &Analysis) -> anyhow::Result<()> {
    let bars: Vec<(String, Breakdown)> = a
        .cells
        .iter()
        .filter_map(|c| {
            let b = Breakdown::of(c)?;
            let mut label = format!("{} c={}", c.id, c.cell.concurrency);
            if a.varying.contains(&crate::rundir::Axis::Workers) {
                label.push_str(&format!(" w={}", c.cell.workers));
            }
            Some((label, b))
        })
        .collect();
    if bars.is_empty() {
        return Ok(());
    }
    let n = bars.len();
    let height = (160 + 28 * n as u32).max(320);
    let root = SVGBackend::new(path, (SIZE.0, height)).into_drawing_area();
    root.fill(&WHITE)?;
    let (plot_area, legend_area) = root.split_horizontally(SIZE.0 - LEGEND_W);
    let xmax = bars.iter().map(|(_, b)| b.sum_us()).fold(0.0, f64::max);
    let (unit, div) = latency_unit(xmax);
    let xmax = (xmax / div).max(1e-9) * 1.05;
    let mut chart = ChartBuilder::on(&plot_area)
        .caption("Where the mean latency goes, per cell", ("sans-serif", 22))
        .margin(16)
        .margin_right(36)
        .x_label_area_size(48)
        .y_label_area_size(170)
        .build_cartesian_2d(0.0..xmax, 0.0..n as f64)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .max_light_lines(1)
        .x_desc(format!(
            "mean latency ({unit}): server stages, then network and client"
        ))
        .x_label_formatter(&|v: &f64| fmt_num(*v))
        .draw()?;
    // Bar i (from the top) spans [n-1-i, n-i); its label sits left of the axis.
    let label_style = TextStyle::from(("sans-serif", 15).into_font()).pos(
        plotters::style::text_anchor::Pos::new(
            plotters::style::text_anchor::HPos::Right,
            plotters::style::text_anchor::VPos::Center,
        ),
    );
    for (i, (label, _)) in bars.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(0.0, (n - i) as f64 - 0.5));
        plot_area.draw(&Text::new(label.clone(), (px - 8, py), label_style.clone()))?;
    }
    let colors = [PALETTE[0], PALETTE[1], PALETTE[2], PALETTE[7]];
    for (i, (_, b)) in bars.iter().enumerate() {
        let y0 = (n - 1 - i) as f64 + 0.15;
        let y1 = (n - i) as f64 - 0.15;
        let mut x = 0.0;
        for (k, part) in b.parts().iter().enumerate() {
            let w = part / div;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x, y0), (x + w, y1)],
                colors[k].filled(),
            )))?;
            x += w;
        }
    }
    for (k, name) in Breakdown::PARTS.iter().enumerate() {
        let y = 40 + 28 * k as i32;
        legend_area.draw(&Rectangle::new([(10, y), (28, y + 16)], colors[k].filled()))?;
        legend_area.draw(&Text::new(
            match *name {
                "rest" => "rest: network + client".to_string(),
                other => other.to_string(),
            },
            (36, y + 1),
            ("sans-serif", 16),
        ))?;
    }
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_read_as_percentiles() {
        assert_eq!(fmt_percentile(1.0), "0%");
        assert_eq!(fmt_percentile(10.0), "90%");
        assert_eq!(fmt_percentile(100.0), "99%");
        assert_eq!(fmt_percentile(1000.0), "99.9%");
        assert_eq!(fmt_percentile(100000.0), "99.999%");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            nice_ticks(0.0, 1000.0),
            vec![0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]
        );
        let d = log_dim("x".into(), 3.0, 4000.0, fmt_num);
        assert_eq!(
            d.ticks,
            vec![5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]
        );
    }

    #[test]
    fn slugs_are_file_names() {
        assert_eq!(slug("workers=2 size=10000"), "workers-2_size-10000");
    }
}
