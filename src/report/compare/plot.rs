//! compare.svg: every ratio (new / baseline) with its interval, one row per cell ×
//! metric, over a grey band of ±threshold and a dashed line at 1, coloured by verdict.
//! Drawn in pixel coordinates computed here, so the same comparison gives the same bytes.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fmt::fmt_ci;
use super::{Comparison, Judged, Pair, Verdict, COMPARE_SVG};
use crate::report::output::{Artefact, Output};
use crate::report::plots::tick_step;
use crate::rundir::num;

const WIDTH: i32 = 1100;
const LEFT: i32 = 330;
const RIGHT: i32 = 300;
const TOP: i32 = 70;
const ROW: i32 = 24;
const BOTTOM: i32 = 60;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;
type Drawn = Result<(), DrawingAreaErrorKind<std::io::Error>>;

/// compare.svg, an [`Output`] of a comparison.
pub(super) struct CompareSvg;

impl Output<Comparison> for CompareSvg {
    fn name(&self) -> &'static str {
        COMPARE_SVG
    }

    fn render(&self, c: &Comparison) -> anyhow::Result<Vec<Artefact>> {
        Ok(vec![Artefact::new(COMPARE_SVG, svg(c)?)])
    }
}

fn colour(v: Verdict) -> RGBColor {
    match v {
        Verdict::Regressed => RGBColor(214, 39, 40),
        Verdict::Improved => RGBColor(44, 160, 44),
        Verdict::Unchanged => RGBColor(90, 90, 90),
        Verdict::Inconclusive => RGBColor(255, 127, 14),
    }
}

fn font(size: u32) -> FontDesc<'static> {
    ("sans-serif", size).into_font()
}

/// Round ticks (the report plots' [`tick_step`] apart) within [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let step = tick_step((hi - lo).max(1e-9));
    let (a, b) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
    (a..=b).map(|k| k as f64 * step).collect()
}

/// The ratio axis: from `lo` to `hi` over the pixels from LEFT to WIDTH - RIGHT.
struct Scale {
    lo: f64,
    hi: f64,
}

impl Scale {
    const X0: i32 = LEFT;
    const X1: i32 = WIDTH - RIGHT;

    /// Every finite ratio and interval end, and every threshold band, padded by 5%.
    fn of(c: &Comparison) -> Scale {
        let mut lo: f64 = 1.0;
        let mut hi: f64 = 1.0;
        for j in c.pairs.iter().flat_map(|p| &p.metrics) {
            let t = j.threshold_pct / 100.0;
            for v in [j.ratio, 1.0 - t, 1.0 + t]
                .into_iter()
                .chain(j.ci.map(|c| c.0))
                .chain(j.ci.map(|c| c.1))
            {
                if v.is_finite() {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        // Keep absurd ratios (a broken run) from squashing everything else.
        lo = lo.max(0.0);
        hi = hi.min(5.0);
        let pad = (hi - lo) * 0.05;
        Scale {
            lo: lo - pad,
            hi: hi + pad,
        }
    }

    /// The pixel column of ratio `v` (clamped to the axis).
    fn x(&self, v: f64) -> i32 {
        let v = v.clamp(self.lo, self.hi);
        Self::X0
            + ((v - self.lo) / (self.hi - self.lo) * f64::from(Self::X1 - Self::X0)).round() as i32
    }
}

/// compare.svg's text.
fn svg(c: &Comparison) -> anyhow::Result<String> {
    let rows: usize = c.pairs.iter().map(|p| 1 + p.metrics.len()).sum();
    let plot_bottom = TOP + ROW * rows as i32;
    let height = plot_bottom + BOTTOM;
    let scale = Scale::of(c);
    let mut out = String::new();
    {
        let root =
            SVGBackend::with_string(&mut out, (WIDTH as u32, height as u32)).into_drawing_area();
        root.fill(&WHITE)?;
        title_and_legend(&root)?;
        let mut row = 0;
        for p in &c.pairs {
            pair_row(&root, p, row)?;
            row += 1;
            for j in &p.metrics {
                metric_row(&root, &scale, j, row)?;
                row += 1;
            }
        }
        axis(&root, &scale, plot_bottom)?;
        root.present()?;
    }
    Ok(out)
}

fn title_and_legend(root: &Area) -> Drawn {
    root.draw(&Text::new(
        "Ratio new / baseline with its 95% interval (grey band: ±threshold)".to_string(),
        (16, 14),
        font(20),
    ))?;
    let mut lx = 16;
    for v in Verdict::ALL {
        root.draw(&Circle::new((lx + 5, 50), 5, colour(v).filled()))?;
        root.draw(&Text::new(
            v.as_str().to_string(),
            (lx + 16, 50),
            font(13)
                .color(&colour(v))
                .pos(Pos::new(HPos::Left, VPos::Center)),
        ))?;
        lx += 120;
    }
    Ok(())
}

/// A pair's heading on row `row`, under a rule.
fn pair_row(root: &Area, p: &Pair, row: i32) -> Drawn {
    let y = TOP + ROW * row + ROW / 2;
    root.draw(&PathElement::new(
        vec![(8, TOP + ROW * row), (WIDTH - 8, TOP + ROW * row)],
        RGBColor(200, 200, 200).stroke_width(1),
    ))?;
    root.draw(&Text::new(
        format!("{} (baseline {}, new {})", p.label, p.base_cell, p.new_cell),
        (16, y),
        font(14)
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center)),
    ))
}

/// One metric on row `row`: its threshold band, interval, ratio and figures.
fn metric_row(root: &Area, scale: &Scale, j: &Judged, row: i32) -> Drawn {
    let x = |v: f64| scale.x(v);
    let y = TOP + ROW * row + ROW / 2;
    let t = j.threshold_pct / 100.0;
    root.draw(&Rectangle::new(
        [(x(1.0 - t), y - ROW / 2 + 3), (x(1.0 + t), y + ROW / 2 - 3)],
        RGBColor(232, 232, 232).filled(),
    ))?;
    let col = colour(j.verdict);
    if let Some((a, b)) = j.ci {
        if a.is_finite() && b.is_finite() {
            root.draw(&PathElement::new(
                vec![(x(a), y), (x(b), y)],
                col.stroke_width(2),
            ))?;
            for end in [a, b] {
                root.draw(&PathElement::new(
                    vec![(x(end), y - 5), (x(end), y + 5)],
                    col.stroke_width(2),
                ))?;
            }
        }
    }
    if j.ratio.is_finite() {
        root.draw(&Circle::new((x(j.ratio), y), 4, col.filled()))?;
    }
    root.draw(&Text::new(
        format!("    {}", j.metric.label()),
        (16, y),
        font(13)
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center)),
    ))?;
    let ci = fmt_ci(j.ci);
    root.draw(&Text::new(
        format!("{} {ci} {}", num(j.ratio, 3), j.verdict.as_str()),
        (Scale::X1 + 14, y),
        font(13).color(&col).pos(Pos::new(HPos::Left, VPos::Center)),
    ))
}

/// The dashed line at 1 down the rows, and the ratio axis with its ticks under them.
fn axis(root: &Area, scale: &Scale, plot_bottom: i32) -> Drawn {
    let grey = RGBColor(120, 120, 120);
    let one = scale.x(1.0);
    let mut yy = TOP;
    while yy < plot_bottom {
        root.draw(&PathElement::new(
            vec![(one, yy), (one, (yy + 6).min(plot_bottom))],
            grey.stroke_width(1),
        ))?;
        yy += 10;
    }
    let (x0, x1) = (Scale::X0, Scale::X1);
    root.draw(&PathElement::new(
        vec![(x0, plot_bottom), (x1, plot_bottom)],
        BLACK.stroke_width(1),
    ))?;
    for tick in ticks(scale.lo, scale.hi) {
        let tx = scale.x(tick);
        root.draw(&PathElement::new(
            vec![(tx, plot_bottom), (tx, plot_bottom + 5)],
            BLACK.stroke_width(1),
        ))?;
        root.draw(&Text::new(
            num(tick, 2),
            (tx, plot_bottom + 8),
            font(12)
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    root.draw(&Text::new(
        "ratio new / baseline (1 = no change)".to_string(),
        ((x0 + x1) / 2, plot_bottom + 30),
        font(13)
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))
}
