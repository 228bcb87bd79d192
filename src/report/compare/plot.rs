//! compare.svg: every ratio (new / baseline) with its interval, one row per cell ×
//! metric, over a grey band of ±threshold and a dashed line at 1, coloured by verdict.
//! Drawn in pixel coordinates computed here, so the same comparison gives the same bytes.

use std::path::Path;

use anyhow::Context as _;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::{fmt_ci, Comparison, Verdict};
use crate::report::plots::tick_step;
use crate::rundir::num;

const WIDTH: i32 = 1100;
const LEFT: i32 = 330;
const RIGHT: i32 = 300;
const TOP: i32 = 70;
const ROW: i32 = 24;
const BOTTOM: i32 = 60;

fn colour(v: Verdict) -> RGBColor {
    match v {
        Verdict::Regressed => RGBColor(214, 39, 40),
        Verdict::Improved => RGBColor(44, 160, 44),
        Verdict::Unchanged => RGBColor(90, 90, 90),
        Verdict::Inconclusive => RGBColor(255, 127, 14),
    }
}

/// Round ticks (the report plots' [`tick_step`] apart) within [lo, hi].
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let step = tick_step((hi - lo).max(1e-9));
    let (a, b) = ((lo / step).ceil() as i64, (hi / step).floor() as i64);
    (a..=b).map(|k| k as f64 * step).collect()
}

pub fn write(path: &Path, c: &Comparison) -> anyhow::Result<()> {
    let rows: usize = c.pairs.iter().map(|p| 1 + p.metrics.len()).sum();
    let height = TOP + ROW * rows as i32 + BOTTOM;
    // The x range: every finite ratio and interval end, and every threshold band.
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
    let (lo, hi) = (lo - pad, hi + pad);
    let x0 = LEFT;
    let x1 = WIDTH - RIGHT;
    let x = |v: f64| -> i32 {
        let v = v.clamp(lo, hi);
        x0 + ((v - lo) / (hi - lo) * f64::from(x1 - x0)).round() as i32
    };

    let root = SVGBackend::new(path, (WIDTH as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE)?;
    let font = |size: u32| ("sans-serif", size).into_font();
    let grey = RGBColor(120, 120, 120);
    root.draw(&Text::new(
        "Ratio new / baseline with its 95% interval (grey band: ±threshold)".to_string(),
        (16, 14),
        font(20),
    ))?;
    let mut lx = 16;
    for v in [
        Verdict::Regressed,
        Verdict::Improved,
        Verdict::Unchanged,
        Verdict::Inconclusive,
    ] {
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

    let plot_bottom = TOP + ROW * rows as i32;
    let mut row = 0;
    for p in &c.pairs {
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
        ))?;
        row += 1;
        for j in &p.metrics {
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
                (x1 + 14, y),
                font(13).color(&col).pos(Pos::new(HPos::Left, VPos::Center)),
            ))?;
            row += 1;
        }
    }
    // The line at 1 and the axis.
    let one = x(1.0);
    let mut yy = TOP;
    while yy < plot_bottom {
        root.draw(&PathElement::new(
            vec![(one, yy), (one, (yy + 6).min(plot_bottom))],
            grey.stroke_width(1),
        ))?;
        yy += 10;
    }
    root.draw(&PathElement::new(
        vec![(x0, plot_bottom), (x1, plot_bottom)],
        BLACK.stroke_width(1),
    ))?;
    for tick in ticks(lo, hi) {
        let tx = x(tick);
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
    ))?;
    root.present()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
