//! Over time, per cell whose runs have interval logs (`hdr/<run>.intervals.hlog`):
//! throughput (answers per second) and p99 in each second of the measured phase, one line
//! per repetition, in two panels of one file.

use super::axis::{fmt_num, latency_dim, linear_dim};
use super::draw::{color, dashed, draw_two, Line};
use super::{artefact, Chart, Figure};
use crate::report::load::RunData;
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;
use crate::rundir::{Interval, Status};

/// `over-time-<cell>.svg`.
pub fn file(cell: &str) -> String {
    format!("over-time-{cell}.svg")
}

/// report.md's paragraph above the images.
const INTRO: &str = "Throughput and p99 in each second of the measured phase, from the \
     client's interval logs (`hdr/<run>.intervals.hlog`), one line per repetition: a \
     warm-up still under way shows as a slope, a stall as a dip in throughput with a \
     spike in p99.";

/// (repetition, interval log) of every successful run of `cell` that has one; none, and
/// the cell gets no chart.
pub fn runs<'a>(data: &'a RunData, cell: &str) -> Vec<(u32, &'a Vec<Interval>)> {
    data.rows
        .iter()
        .filter(|r| r.cell_id == cell && r.status == Status::Ok)
        .filter_map(|r| Some((r.rep, data.intervals.get(&r.run_name())?)))
        .collect()
}

pub struct OverTime;

impl Output<Analysed> for OverTime {
    fn name(&self) -> &'static str {
        "over-time-<cell>.svg"
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let mut out = Vec::new();
        for c in &run.analysis.cells {
            let runs = runs(&run.data, &c.id);
            if !runs.is_empty() {
                out.push(artefact(&file(&c.id), chart(&c.id, &runs)?));
            }
        }
        Ok(out)
    }
}

impl Chart for OverTime {
    fn figures(&self, run: &Analysed) -> Vec<Figure> {
        let a = &run.analysis;
        let images: Vec<(String, String)> = a
            .cells
            .iter()
            .filter(|c| !runs(&run.data, &c.id).is_empty())
            .map(|c| {
                let alt = format!("Over time: {}", a.cell_name(c).replace('`', ""));
                (alt, file(&c.id))
            })
            .collect();
        if images.is_empty() {
            return Vec::new();
        }
        vec![Figure {
            heading: "Over time".into(),
            intro: Some(INTRO),
            images,
        }]
    }
}

/// One cell's two panels.
fn chart(cell: &str, runs: &[(u32, &Vec<Interval>)]) -> anyhow::Result<String> {
    let mut tput = Vec::new();
    let mut p99 = Vec::new();
    for (k, (rep, intervals)) in runs.iter().enumerate() {
        let end = |i: &Interval| i.start_s + i.length_s;
        let line = |points| Line {
            label: format!("repetition {rep}"),
            points,
            color: color(k),
            dashed: dashed(k),
            markers: true,
        };
        tput.push(line(
            intervals
                .iter()
                .filter(|i| i.length_s > 0.0)
                .map(|i| (end(i), i.hist.len() as f64 / i.length_s))
                .collect(),
        ));
        p99.push(line(
            intervals
                .iter()
                .filter(|i| !i.hist.is_empty())
                .map(|i| (end(i), i.hist.value_at_quantile(0.99) as f64 / 1e3))
                .collect(),
        ));
    }
    let all = |lines: &[Line], f: fn(&(f64, f64)) -> f64| -> Vec<f64> {
        lines.iter().flat_map(|l| l.points.iter().map(f)).collect()
    };
    let x = linear_dim(
        "seconds into the measured phase (each point: the second that ends there)".into(),
        0.0,
        all(&tput, |p| p.0).into_iter().fold(1.0, f64::max),
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
        (&format!("{cell}: throughput per second"), &yt, &tput),
        (&format!("{cell}: p99 latency per second"), &yp, &p99),
        &x,
        None,
    )
}
