//! Where the mean latency goes: one horizontal stacked bar per cell with stage timings
//! (queue, service, return, and the rest: network and client; µs, medians over
//! repetitions), in cell order from the top. Drawn when the run has stage timings;
//! report.md shows it in "Where the time goes", not among the plots.

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::axis::{fmt_num, latency_unit};
use super::draw::{svg, Area, Plain, GREY, PALETTE, SIZE};
use super::{artefact, Chart, Figure};
use crate::report::analysis::{Analysis, Breakdown as Parts};
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;
use crate::rundir::Axis;

pub(crate) const FILE: &str = "breakdown.svg";
const TITLE: &str = "Where the mean latency goes, per cell";

/// The parts' colours, in `analysis::Breakdown::PARTS`' order.
const COLORS: [RGBColor; 4] = [PALETTE[0], PALETTE[1], PALETTE[2], GREY];

/// The legend's row under the bars.
const LEGEND_H: u32 = 34;

pub(crate) struct Breakdown;

impl Output<Analysed> for Breakdown {
    fn name(&self) -> &'static str {
        FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let bars = bars(&run.analysis);
        if bars.is_empty() {
            return Ok(Vec::new());
        }
        let height = (160 + 28 * bars.len() as u32).max(320);
        let svg = svg((SIZE.0, height + LEGEND_H), |root| {
            let (plot_area, legend_area) = root.split_vertically(height);
            draw_bars(&plot_area, &bars)?;
            draw_legend(&legend_area)
        })?;
        Ok(vec![artefact(FILE, svg)])
    }
}

impl Chart for Breakdown {
    /// None: report.md shows this chart in "Where the time goes".
    fn figures(&self, _: &Analysed) -> Vec<Figure> {
        Vec::new()
    }
}

/// (label, breakdown) of each cell that has stage timings, in cell order.
fn bars(a: &Analysis) -> Vec<(String, Parts)> {
    a.cells
        .iter()
        .filter_map(|c| {
            let b = Parts::of(c)?;
            let mut label = format!("{} c={}", c.id, c.cell.concurrency);
            if a.varying.contains(&Axis::Workers) {
                label.push_str(&format!(" w={}", c.cell.workers));
            }
            Some((label, b))
        })
        .collect()
}

/// The axes, each bar's label left of the axis, and the stacked bars.
fn draw_bars(area: &Area<'_>, bars: &[(String, Parts)]) -> anyhow::Result<()> {
    let n = bars.len();
    let xmax = bars.iter().map(|(_, b)| b.sum_us()).fold(0.0, f64::max);
    let (unit, div) = latency_unit(xmax);
    let xmax = (xmax / div).max(1e-9) * 1.05;
    let mut chart: Plain<'_, '_> = ChartBuilder::on(area)
        .caption(TITLE, ("sans-serif", 22))
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
    let label_style =
        TextStyle::from(("sans-serif", 15).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
    for (i, (label, _)) in bars.iter().enumerate() {
        let (px, py) = chart.backend_coord(&(0.0, (n - i) as f64 - 0.5));
        area.draw(&Text::new(label.clone(), (px - 8, py), label_style.clone()))?;
    }
    for (i, (_, b)) in bars.iter().enumerate() {
        let y0 = (n - 1 - i) as f64 + 0.15;
        let y1 = (n - i) as f64 - 0.15;
        let mut x = 0.0;
        for (k, part) in b.parts().iter().enumerate() {
            let w = part / div;
            chart.draw_series(std::iter::once(Rectangle::new(
                [(x, y0), (x + w, y1)],
                COLORS[k].filled(),
            )))?;
            x += w;
        }
    }
    Ok(())
}

/// A swatch and a name per part, in a row.
fn draw_legend(area: &Area<'_>) -> anyhow::Result<()> {
    let (mut x, y) = (186, 6);
    for (k, name) in Parts::PARTS.iter().enumerate() {
        area.draw(&Rectangle::new(
            [(x, y), (x + 18, y + 16)],
            COLORS[k].filled(),
        ))?;
        area.draw(&Text::new(
            match *name {
                "rest" => "rest: network + client".to_string(),
                other => other.to_string(),
            },
            (x + 26, y + 1),
            ("sans-serif", 15),
        ))?;
        x += 60 + 8 * name.len() as i32 + if *name == "rest" { 150 } else { 0 };
    }
    Ok(())
}
