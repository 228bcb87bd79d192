//! Drawing a chart into SVG text (plotters' svg backend, into a string): the frame and
//! mesh, lines told apart by colour (Okabe and Ito's colour-blind-safe palette), marker
//! shape and dashes, optional labels at points, an optional horizontal limit, the legend
//! in rows under the plot (so it never covers a line nor narrows the plot), and a note
//! for an empty chart.

use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;

use super::axis::{Dim, Scale, Ticked};

/// Every chart's plot size, legend excluded (a grid of panels divides it).
pub(super) const SIZE: (u32, u32) = (1160, 560);

/// Okabe and Ito's palette, readable by colour-blind people (its yellow left out: too
/// pale on white), in an order where neighbours differ most.
pub(super) const PALETTE: [RGBColor; 7] = [
    RGBColor(0, 114, 178),   // blue
    RGBColor(213, 94, 0),    // vermillion
    RGBColor(0, 158, 115),   // bluish green
    RGBColor(204, 121, 167), // reddish purple
    RGBColor(230, 159, 0),   // orange
    RGBColor(86, 180, 233),  // sky blue
    RGBColor(0, 0, 0),       // black
];

/// A neutral grey, for what is not a series (limits, the rest of a bar).
pub(super) const GREY: RGBColor = RGBColor(110, 110, 110);

/// A point's mark: a second cue besides colour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Marker {
    Circle,
    Square,
    Triangle,
    Diamond,
    Cross,
    Down,
}

const MARKERS: [Marker; 6] = [
    Marker::Circle,
    Marker::Square,
    Marker::Triangle,
    Marker::Diamond,
    Marker::Cross,
    Marker::Down,
];

/// Where a line's markers go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Marks {
    None,
    /// At every point.
    Every,
    /// At points at least this many pixels from the last marker drawn (dense lines).
    Spaced(i32),
}

pub(super) struct Line {
    pub(super) label: String,
    pub(super) points: Vec<(f64, f64)>,
    pub(super) color: RGBColor,
    pub(super) dashed: bool,
    pub(super) marker: Marker,
    pub(super) marks: Marks,
    /// A short text beside each point (its concurrency, say); empty for none.
    pub(super) tags: Vec<String>,
}

impl Line {
    /// The `i`th series of a chart: its own colour and marker, dashed once the palette has
    /// gone round, a marker at every point.
    pub(super) fn nth(i: usize, label: String, points: Vec<(f64, f64)>) -> Line {
        Line {
            label,
            points,
            color: PALETTE[i % PALETTE.len()],
            dashed: i >= PALETTE.len(),
            marker: MARKERS[i % MARKERS.len()],
            marks: Marks::Every,
            tags: Vec::new(),
        }
    }

    fn has_data(&self) -> bool {
        self.points
            .iter()
            .any(|(a, b)| a.is_finite() && b.is_finite())
    }
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
/// (value, legend label), shaded spans of x (from, to, label) and a note written across
/// an empty chart. The legend goes under the plot, as tall as its entries need.
pub(super) struct Plot<'a> {
    pub(super) title: &'a str,
    pub(super) x: &'a Dim,
    pub(super) y: &'a Dim,
    pub(super) lines: &'a [Line],
    pub(super) hline: Option<(f64, String)>,
    pub(super) spans: Vec<(f64, f64, String)>,
    pub(super) note: Option<&'a str>,
}

impl<'a> Plot<'a> {
    pub(super) fn new(title: &'a str, x: &'a Dim, y: &'a Dim, lines: &'a [Line]) -> Plot<'a> {
        Plot {
            title,
            x,
            y,
            lines,
            hline: None,
            spans: Vec::new(),
            note: None,
        }
    }

    /// The SVG text of this plot alone.
    pub(super) fn render(&self) -> anyhow::Result<String> {
        let legend = self.legend();
        let rows = legend_rows(&legend, SIZE.0);
        let height = SIZE.1 + legend_height(rows.len());
        svg((SIZE.0, height), |root| {
            let (upper, lower) = root.split_vertically(SIZE.1);
            self.draw_on(&upper)?;
            draw_legend(&lower, &rows)
        })
    }

    /// Its legend entries: the limit, then every line that has a point to show.
    fn legend(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        if let Some((_, label)) = &self.hline {
            out.push(Entry {
                label: label.clone(),
                color: GREY,
                width: 1,
                dashed: true,
                marker: None,
            });
        }
        for line in self.lines.iter().filter(|l| l.has_data()) {
            out.push(Entry {
                label: line.label.clone(),
                color: line.color,
                width: 2,
                dashed: line.dashed,
                marker: (line.marks != Marks::None).then_some(line.marker),
            });
        }
        out
    }

    /// The frame, spans, limit, lines and note on `area` (no legend).
    pub(super) fn draw_on(&self, area: &Area<'_>) -> anyhow::Result<()> {
        let (x, y) = (self.x, self.y);
        let mut chart = frame(area, self.title, x, y)?;
        for (from, to, label) in &self.spans {
            let (a, b) = (x.tr(from.max(x.lo)), x.tr(to.min(x.hi)));
            if b <= a {
                continue;
            }
            chart.draw_series(std::iter::once(Rectangle::new(
                [(a, y.tr(y.lo)), (b, y.tr(y.hi))],
                RGBColor(236, 236, 236).filled(),
            )))?;
            chart.draw_series(std::iter::once(
                EmptyElement::at((a, y.tr(y.hi)))
                    + Text::new(
                        label.clone(),
                        (4, 4),
                        ("sans-serif", 12).into_font().color(&GREY),
                    ),
            ))?;
        }
        if let Some((value, _)) = &self.hline {
            let yv = y.tr(*value);
            chart.draw_series(DashedLineSeries::new(
                vec![(x.tr(x.lo), yv), (x.tr(x.hi), yv)],
                6,
                4,
                GREY.stroke_width(1),
            ))?;
        }
        for line in self.lines {
            plot_line(&mut chart, x, y, line)?;
        }
        if let Some(note) = self.note {
            area.draw(&Text::new(
                note.to_string(),
                (120, 60),
                ("sans-serif", 16)
                    .into_font()
                    .color(&RGBColor(120, 120, 120)),
            ))?;
        }
        Ok(())
    }
}

/// Panels in a grid (`cols` wide, row by row) sharing one legend under them; each panel
/// is `SIZE` divided by `cols` wide and `panel_h` tall.
pub(super) fn grid(plots: &[Plot<'_>], cols: usize, panel_h: u32) -> anyhow::Result<String> {
    let cols = cols.max(1);
    let rows_n = plots.len().div_ceil(cols).max(1);
    let mut legend: Vec<Entry> = Vec::new();
    for p in plots {
        for e in p.legend() {
            if !legend.iter().any(|l| l.label == e.label) {
                legend.push(e);
            }
        }
    }
    let rows = legend_rows(&legend, SIZE.0);
    let plots_h = panel_h * rows_n as u32;
    svg((SIZE.0, plots_h + legend_height(rows.len())), |root| {
        let (upper, lower) = root.split_vertically(plots_h);
        let panels = upper.split_evenly((rows_n, cols));
        for (p, area) in plots.iter().zip(&panels) {
            p.draw_on(area)?;
        }
        draw_legend(&lower, &rows)
    })
}

type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<Ticked, Ticked>>;

/// A legend entry: label, colour, stroke width, dashed, marker.
struct Entry {
    label: String,
    color: RGBColor,
    width: u32,
    dashed: bool,
    marker: Option<Marker>,
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
    // A panel of a grid gets a smaller caption.
    let caption = if area.dim_in_pixel().0 < 800 { 15 } else { 20 };
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", caption))
        .margin(12)
        .margin_right(28)
        .x_label_area_size(46)
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

/// One line (solid or dashed), its markers, then its tags; points that are not finite
/// are left out.
fn plot_line(chart: &mut Chart<'_, '_>, x: &Dim, y: &Dim, line: &Line) -> anyhow::Result<()> {
    let color = line.color;
    let kept: Vec<(usize, (f64, f64))> = line
        .points
        .iter()
        .enumerate()
        .filter(|(_, (a, b))| a.is_finite() && b.is_finite())
        .map(|(i, &(a, b))| (i, (x.tr(a), y.tr(b))))
        .collect();
    let pts: Vec<(f64, f64)> = kept.iter().map(|&(_, p)| p).collect();
    let style = color.stroke_width(2);
    if line.dashed {
        chart.draw_series(DashedLineSeries::new(pts.clone(), 8, 5, style))?;
    } else {
        chart.draw_series(LineSeries::new(pts.clone(), style))?;
    }
    let at: Vec<(f64, f64)> = match line.marks {
        Marks::None => Vec::new(),
        Marks::Every => pts.clone(),
        Marks::Spaced(px) => {
            let mut out: Vec<(f64, f64)> = Vec::new();
            let mut last: Option<(i32, i32)> = None;
            for &p in &pts {
                let b = chart.backend_coord(&p);
                let far = last.is_none_or(|l| (b.0 - l.0).abs().max((b.1 - l.1).abs()) >= px);
                if far {
                    out.push(p);
                    last = Some(b);
                }
            }
            out
        }
    };
    for p in at {
        mark(chart.plotting_area(), p, line.marker, color)?;
    }
    let font = ("sans-serif", 11).into_font().color(&color);
    for &(i, p) in &kept {
        if let Some(tag) = line.tags.get(i).filter(|t| !t.is_empty()) {
            chart.draw_series(std::iter::once(
                EmptyElement::at(p) + Text::new(tag.clone(), (6, -16), font.clone()),
            ))?;
        }
    }
    Ok(())
}

/// A marker centred on `p`, in the area's own coordinates.
fn mark<CT: CoordTranslate>(
    area: &DrawingArea<SVGBackend<'_>, CT>,
    p: CT::From,
    marker: Marker,
    color: RGBColor,
) -> anyhow::Result<()>
where
    CT::From: Clone,
{
    let fill = color.filled();
    let at = || EmptyElement::at(p.clone());
    let poly = |pts: &[(i32, i32)]| at() + Polygon::new(pts.to_vec(), fill);
    match marker {
        Marker::Circle => area.draw(&(at() + Circle::new((0, 0), 4, fill)))?,
        Marker::Square => area.draw(&(at() + Rectangle::new([(-4, -4), (4, 4)], fill)))?,
        Marker::Triangle => area.draw(&poly(&[(0, -5), (5, 4), (-5, 4)]))?,
        Marker::Down => area.draw(&poly(&[(0, 5), (5, -4), (-5, -4)]))?,
        Marker::Diamond => area.draw(&poly(&[(0, -6), (5, 0), (0, 6), (-5, 0)]))?,
        Marker::Cross => {
            let s = color.stroke_width(3);
            area.draw(
                &(at()
                    + PathElement::new(vec![(-4, -4), (4, 4)], s)
                    + PathElement::new(vec![(-4, 4), (4, -4)], s)),
            )?
        }
    }
    Ok(())
}

/// Legend entries laid out in rows under the plot: (x, entry) per row, left to right.
fn legend_rows(entries: &[Entry], width: u32) -> Vec<Vec<(i32, &Entry)>> {
    const LEFT: i32 = 84;
    let right = width as i32 - 16;
    let mut rows: Vec<Vec<(i32, &Entry)>> = Vec::new();
    let mut x = right;
    for e in entries {
        // No font metrics in the svg backend: about 7 px a character at 13 px.
        let w = 40 + 7 * e.label.chars().count() as i32 + 22;
        if x + w > right && x > LEFT {
            rows.push(Vec::new());
            x = LEFT;
        }
        if let Some(row) = rows.last_mut() {
            row.push((x, e));
        }
        x += w;
    }
    rows
}

/// The legend strip's height for `rows` rows (none without entries).
fn legend_height(rows: usize) -> u32 {
    if rows == 0 {
        0
    } else {
        8 + 22 * rows as u32
    }
}

/// The legend: per entry a stroke (dashed for a dashed line) with its marker, and its
/// label.
fn draw_legend(area: &Area<'_>, rows: &[Vec<(i32, &Entry)>]) -> anyhow::Result<()> {
    for (r, row) in rows.iter().enumerate() {
        let y = 12 + 22 * r as i32;
        for &(x, e) in row {
            let style = e.color.stroke_width(e.width);
            if e.dashed {
                for k in 0..3 {
                    let a = x + 11 * k;
                    area.draw(&PathElement::new(vec![(a, y), (a + 6, y)], style))?;
                }
            } else {
                area.draw(&PathElement::new(vec![(x, y), (x + 30, y)], style))?;
            }
            if let Some(m) = e.marker {
                mark(area, (x + 15, y), m, e.color)?;
            }
            area.draw(&Text::new(
                e.label.clone(),
                (x + 40, y - 7),
                ("sans-serif", 13).into_font(),
            ))?;
        }
    }
    Ok(())
}

/// A linear chart in plotters' own f64 coordinates (the breakdown's bars).
pub(super) type Plain<'a, 'b> =
    ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;
