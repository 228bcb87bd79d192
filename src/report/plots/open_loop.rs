//! The open loop's hockey stick, drawn when the run has open-loop (`rate`) cells: per rate
//! series, median p99 against median throughput, one point per rate, corrected (from the
//! intended send time) solid and uncorrected dashed in the same colour, with the SLO as
//! a horizontal line.

use super::axis::{fmt_num, latency_dim, linear_dim};
use super::draw::{Line, Marks, Plot};
use super::{artefact, Chart, Figure};
use crate::report::analysis::{Analysis, Metric};
use crate::report::markdown::fmt_us;
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;

pub(crate) const FILE: &str = "open_loop_latency_vs_throughput.svg";
pub(crate) const TITLE: &str =
    "Open loop: p99 vs throughput, corrected (solid) and uncorrected (dashed); numbers: offered rate";

pub(crate) struct OpenLoop;

/// (median throughput, median `m`) of cell `i`.
fn point(a: &Analysis, i: usize, m: Metric) -> Option<(f64, f64)> {
    let c = &a.cells[i];
    Some((c.median(Metric::Throughput)?, c.median(m)?))
}

const P99S: [Metric; 2] = [Metric::LatencyP99, Metric::LatencyP99Uncorrected];

impl Output<Analysed> for OpenLoop {
    fn name(&self) -> &'static str {
        FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let a = &run.analysis;
        if a.rate_series.is_empty() {
            return Ok(Vec::new());
        }
        let points = || {
            a.rate_series
                .iter()
                .flat_map(|s| &s.points)
                .flat_map(|&i| P99S.into_iter().filter_map(move |m| point(a, i, m)))
        };
        let tmax = points().map(|(t, _)| t).fold(0.0, f64::max);
        let mut ys: Vec<f64> = points().map(|(_, p)| p).collect();
        ys.extend(a.slo_p99_us);
        let (y, div) = latency_dim("p99 latency, median over repetitions", &ys);
        let x = linear_dim(
            "throughput (requests/s answered)".into(),
            0.0,
            tmax,
            fmt_num,
        );
        let lines = lines(a, div);
        let hline = a
            .slo_p99_us
            .map(|slo| (slo / div, format!("SLO: p99 {}", fmt_us(slo))));
        let none = lines
            .iter()
            .all(|l| l.points.is_empty())
            .then_some("no successful open-loop run to plot");
        let svg = Plot {
            hline,
            note: none,
            ..Plot::new(TITLE, &x, &y, &lines)
        }
        .render()?;
        Ok(vec![artefact(FILE, svg)])
    }
}

/// Two lines per rate series, corrected then uncorrected, p99 divided by `div`.
fn lines(a: &Analysis, div: f64) -> Vec<Line> {
    let mut lines = Vec::new();
    for (k, s) in a.rate_series.iter().enumerate() {
        for (m, dashed, what) in [
            (Metric::LatencyP99, false, "corrected"),
            (Metric::LatencyP99Uncorrected, true, "uncorrected"),
        ] {
            let (points, tags): (Vec<_>, Vec<_>) = s
                .points
                .iter()
                .filter_map(|&i| {
                    let (t, p) = point(a, i, m)?;
                    let rate = a.cells[i].cell.rate.map(|r| r.to_string());
                    Some(((t, p / div), rate.filter(|_| !dashed).unwrap_or_default()))
                })
                .unzip();
            let mut line = Line::nth(k, format!("{} ({what})", s.label), points);
            line.dashed = dashed;
            if dashed {
                line.marks = Marks::None;
            }
            line.tags = tags;
            lines.push(line);
        }
    }
    lines
}

impl Chart for OpenLoop {
    fn figures(&self, run: &Analysed) -> Vec<Figure> {
        if run.analysis.rate_series.is_empty() {
            return Vec::new();
        }
        vec![Figure::one(TITLE, FILE)]
    }
}
