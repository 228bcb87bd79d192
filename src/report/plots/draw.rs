//! Drawing a chart into SVG text (plotters' svg backend, into a string): the frame and
//! mesh, lines with markers, an optional horizontal limit, the legend in a column of
//! its own at the right (so it never covers a line), and a note for an empty chart.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{Dim, Scale, Ticked};

/// Every chart's size (a two-panel chart is twice as tall).
pub(super) const SIZE: (u32, u32) = (1160, 560);
/// The legend's column at the right of the chart, so it never covers a line.
pub(super) const LEGEND_W: u32 = 280;

pub(super) const PALETTE: [RGBColor; 10] = [
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

/// The `i`th line's colour, and whether it is dashed (once the palette has gone round).
pub(super) fn color(i: usize) -> RGBColor {
    PALETTE[i % PALETTE.len()]
}

pub(super) fn dashed(i: usize) -> bool {
    i >= PALETTE.len()
}

pub(super) struct Line {
    pub(super) label: String,
    pub(super) points: Vec<(f64, f64)>,
    pub(super) color: RGBColor,
    pub(super) dashed: bool,
    pub(super) markers: bool,
}

pub(super) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// An SVG document of `size`, painted on a white background by `paint`.
pub(super) fn svg(
    size: (u32, u32),
    paint: impl FnOnce(&Area<'_>) -> anyhow::Result<()>,
) -> anyhow::Result<String> {
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, size).into_drawing_area();
        root.fill(&WHITE)?;
        paint(&root)?;
        root.present()?;
    }
    Ok(text)
}

/// One chart: `lines` over the axes `x` and `y`, with an optional horizontal line
/// (value, legend label) and a note written across an empty chart.
pub(super) fn draw(
    title: &str,
    x: &Dim,
    y: &Dim,
    lines: &[Line],
    hline: Option<(f64, String)>,
    note: Option<&str>,
) -> anyhow::Result<String> {
    svg(SIZE, |root| draw_on(root, title, x, y, lines, hline, note))
}

/// Two charts one above the other in one file (the same x axis).
pub(super) fn draw_two(
    top: (&str, &Dim, &[Line]),
    bottom: (&str, &Dim, &[Line]),
    x: &Dim,
    note: Option<&str>,
) -> anyhow::Result<String> {
    svg((SIZE.0, SIZE.1 * 2), |root| {
        let (upper, lower) = root.split_vertically(SIZE.1);
        draw_on(&upper, top.0, x, top.1, top.2, None, note)?;
        draw_on(&lower, bottom.0, x, bottom.1, bottom.2, None, None)
    })
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Ticked, Ticked>>;

/// A legend entry: label, colour, stroke width, dashed.
type Entry = (String, RGBColor, u32, bool);

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
    let mut chart = frame(&plot_area, title, x, y)?;
    let mut legend: Vec<Entry> = Vec::new();
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
        plot_line(&mut chart, x, y, line)?;
        legend.push((line.label.clone(), line.color, 2, line.dashed));
    }
    draw_legend(&legend_area, &legend)?;
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

/// The caption, axes, tick labels and grid, in the coordinates `Dim::tr` maps into.
fn frame<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
    x: &Dim,
    y: &Dim,
) -> anyhow::Result<Chart<'a, 'b>> {
    let xt: Vec<f64> = x.ticks.iter().map(|&v| x.tr(v)).collect();
    let yt: Vec<f64> = y.ticks.iter().map(|&v| y.tr(v)).collect();
    let mut chart = ChartBuilder::on(area)
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
    Ok(chart)
}

/// One line (solid or dashed), then its markers; points that are not finite are left out.
fn plot_line(chart: &mut Chart<'_, '_>, x: &Dim, y: &Dim, line: &Line) -> anyhow::Result<()> {
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
    if line.markers {
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
    }
    Ok(())
}

/// The legend column: a stroke (three dashes for a dashed line) and its label per entry.
fn draw_legend(area: &Area<'_>, legend: &[Entry]) -> anyhow::Result<()> {
    for (i, (label, color, width, dashed)) in legend.iter().enumerate() {
        let y = 60 + 22 * i as i32;
        let style = color.stroke_width(*width);
        if *dashed {
            for k in 0..3 {
                let a = 4 + 9 * k;
                area.draw(&PathElement::new(vec![(a, y), (a + 5, y)], style))?;
            }
        } else {
            area.draw(&PathElement::new(vec![(4, y), (28, y)], style))?;
        }
        area.draw(&Text::new(
            label.clone(),
            (36, y - 7),
            ("sans-serif", 13).into_font(),
        ))?;
    }
    Ok(())
}

/// A linear chart in plotters' own f64 coordinates (the breakdown's bars).
pub(super) type Plain<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
