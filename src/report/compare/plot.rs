//! compare.svg: every ratio (new / baseline) with its interval, one row per cell ×
//! metric, over a grey band of ±threshold and a dashed line at 1, coloured by verdict
//! (Okabe and Ito's colour-blind-safe colours). Ratios are on a log axis, so 0.5 and 2
//! lie as far from 1; one beyond the axis (it stops at 1/[`LIMIT`] and [`LIMIT`]) is an
//! arrowhead at the edge, its figure in the column at the right. Drawn in pixel
//! coordinates computed here, so the same comparison gives the same bytes.

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fmt::fmt_ci;
use super::{Comparison, Judged, Pair, Verdict, COMPARE_SVG};
use crate::report::output::{Artefact, Output};
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

/// The largest ratio (and 1 / the smallest) the axis shows.
pub(super) const LIMIT: f64 = 20.0;

fn colour(v: Verdict) -> RGBColor {
    match v {
        Verdict::Regressed => RGBColor(213, 94, 0),
        Verdict::Improved => RGBColor(0, 114, 178),
        Verdict::Unchanged => RGBColor(90, 90, 90),
        Verdict::Inconclusive => RGBColor(204, 121, 167),
    }
}

fn font(size: u32) -> FontDesc<'static> {
    ("sans-serif", size).into_font()
}

/// Tick candidates, roundest first: each is shown if it is on the axis and clear of
/// those already chosen.
const TICKS: [f64; 19] = [
    1.0, 2.0, 0.5, 5.0, 0.2, 10.0, 0.1, 20.0, 0.05, 1.5, 0.67, 1.25, 0.8, 1.1, 0.9, 4.0, 0.25,
    1.05, 0.95,
];

/// The ratio axis, log-scaled: from `lo` to `hi` over the pixels from LEFT to
/// WIDTH - RIGHT.
struct Scale {
    lo: f64,
    hi: f64,
}

/// Where a value falls on the axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    On(i32),
    Below,
    Above,
}

impl Scale {
    const X0: i32 = LEFT;
    const X1: i32 = WIDTH - RIGHT;

    /// Every ratio and interval end within [1/LIMIT, LIMIT], and every threshold band,
    /// with 10% room.
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
                if v.is_finite() && v > 0.0 {
                    lo = lo.min(v);
                    hi = hi.max(v);
                }
            }
        }
        Scale {
            lo: (lo / 1.1).max(1.0 / LIMIT),
            hi: (hi * 1.1).min(LIMIT),
        }
    }

    /// The pixel column of `v`, or the side it is off the axis.
    fn place(&self, v: f64) -> Place {
        if v.is_nan() || v < self.lo {
            // 0 and below (a side with no answers) are off the low end.
            return Place::Below;
        }
        if v > self.hi {
            return Place::Above;
        }
        let at = (v.ln() - self.lo.ln()) / (self.hi.ln() - self.lo.ln());
        Place::On(Self::X0 + (at * f64::from(Self::X1 - Self::X0)).round() as i32)
    }

    /// The pixel column of `v`, clamped to the axis.
    fn x(&self, v: f64) -> i32 {
        match self.place(v) {
            Place::On(x) => x,
            Place::Below => Self::X0,
            Place::Above => Self::X1,
        }
    }

    /// The ticks shown: the candidates on the axis, roundest first, each at least 40 px
    /// from every one chosen before it; in axis order.
    fn ticks(&self) -> Vec<f64> {
        let mut out: Vec<(f64, i32)> = Vec::new();
        for t in TICKS {
            if let Place::On(x) = self.place(t) {
                if out.iter().all(|&(_, o)| (x - o).abs() >= 40) {
                    out.push((t, x));
                }
            }
        }
        out.sort_by_key(|&(_, x)| x);
        out.into_iter().map(|(t, _)| t).collect()
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
            // An end off the axis gets no cap: the line runs out at the edge.
            for end in [a, b] {
                if let Place::On(px) = scale.place(end) {
                    root.draw(&PathElement::new(
                        vec![(px, y - 5), (px, y + 5)],
                        col.stroke_width(2),
                    ))?;
                }
            }
        }
    }
    match scale.place(j.ratio) {
        Place::On(px) => root.draw(&Circle::new((px, y), 4, col.filled()))?,
        // Off the axis: an arrowhead at the edge, pointing the way the value lies.
        Place::Below => root.draw(&Polygon::new(
            vec![(Scale::X0 - 9, y), (Scale::X0, y - 6), (Scale::X0, y + 6)],
            col.filled(),
        ))?,
        Place::Above => root.draw(&Polygon::new(
            vec![(Scale::X1 + 9, y), (Scale::X1, y - 6), (Scale::X1, y + 6)],
            col.filled(),
        ))?,
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

/// `0.5`, `1`, `1.25`: a tick's ratio without trailing zeros.
fn tick_label(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
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
    for tick in scale.ticks() {
        let tx = scale.x(tick);
        root.draw(&PathElement::new(
            vec![(tx, plot_bottom), (tx, plot_bottom + 5)],
            BLACK.stroke_width(1),
        ))?;
        root.draw(&Text::new(
            tick_label(tick),
            (tx, plot_bottom + 8),
            font(12)
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top)),
        ))?;
    }
    root.draw(&Text::new(
        format!(
            "ratio new / baseline (1 = no change; log scale, ends at 1/{LIMIT:.0} and {LIMIT:.0}: \
             an arrowhead marks a value beyond)"
        ),
        ((x0 + x1) / 2, plot_bottom + 30),
        font(13)
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Top)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratios_lie_on_a_log_axis_and_beyond_it_are_off_scale() {
        let s = Scale { lo: 0.5, hi: 18.0 };
        // Log: 1 lies as far from 0.5 as 2 from 1.
        let (half, one, two) = (s.x(0.5), s.x(1.0), s.x(2.0));
        assert!(
            ((one - half) - (two - one)).abs() <= 1,
            "{half} {one} {two}"
        );
        // 16.3 (the ratio) is on the axis, short of its end.
        assert!(matches!(s.place(16.3), Place::On(x) if x < Scale::X1));
        assert_eq!(s.place(40.0), Place::Above);
        assert_eq!(s.place(0.0), Place::Below);
        assert_eq!(s.place(f64::NAN), Place::Below);
        // Ticks: 1 and round values both sides, spread out, bracketing 16.3 from below.
        let t = s.ticks();
        assert!(
            t.contains(&1.0) && t.contains(&0.5) && t.contains(&10.0),
            "{t:?}"
        );
        let xs: Vec<i32> = t.iter().map(|&v| s.x(v)).collect();
        assert!(xs.windows(2).all(|w| w[1] - w[0] >= 40), "{t:?} at {xs:?}");
        assert_eq!(tick_label(1.0), "1");
        assert_eq!(tick_label(0.67), "0.67");
        assert_eq!(tick_label(1.5), "1.5");
    }
}
