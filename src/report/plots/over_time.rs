//! Over time, for the cells that matter (the peak-throughput cell and each series'
//! saturation point) whose runs have interval logs (`hdr/<run>.intervals.hlog`) long
//! enough to show a trend: throughput (answers per second) and p99 in each second of the
//! measured phase, one line per repetition, as small multiples in one file (a row per
//! cell). Runs with fewer than [`MIN_INTERVALS`] seconds get no chart: two points show
//! no trend.

use super::axis::{fmt_num, latency_dim, linear_dim, Dim};
use super::draw::{grid, Line, Plot};
use super::{artefact, Chart, Figure};
use crate::report::analysis::Analysis;
use crate::report::load::RunData;
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;
use crate::rundir::{Interval, Status};

pub(crate) const FILE: &str = "over_time.svg";
const TITLE: &str = "Over time";

/// The fewest one-second intervals a run needs to be drawn.
pub(crate) const MIN_INTERVALS: usize = 5;

/// Each row's height (two panels side by side).
const ROW_H: u32 = 340;

/// report.md's paragraph above the image.
const INTRO: &str = "Throughput and p99 in each second of the measured phase, from the \
     client's interval logs (`hdr/<run>.intervals.hlog`), for the peak-throughput cell and \
     each series' saturation point, one line per repetition: a warm-up still under way \
     shows as a slope, a stall as a dip in throughput with a spike in p99. Runs shorter \
     than 5 intervals are not drawn.";

/// (repetition, interval log) of every successful run of `cell` whose log has at least
/// [`MIN_INTERVALS`] intervals.
pub(crate) fn runs<'a>(data: &'a RunData, cell: &str) -> Vec<(u32, &'a Vec<Interval>)> {
    data.rows
        .iter()
        .filter(|r| r.cell_id == cell && r.status == Status::Ok)
        .filter_map(|r| Some((r.rep, data.intervals.get(&r.run_name())?)))
        .filter(|(_, log)| log.iter().filter(|i| i.length_s > 0.0).count() >= MIN_INTERVALS)
        .collect()
}

/// (cell index, why it is drawn) of the cells that matter and have runs long enough,
/// in cell order.
fn chosen(run: &Analysed) -> Vec<(usize, String)> {
    let a: &Analysis = &run.analysis;
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut add = |i: usize, why: String| match out.iter_mut().find(|(j, _)| *j == i) {
        Some((_, w)) => {
            w.push_str(", ");
            w.push_str(&why);
        }
        None => out.push((i, why)),
    };
    if let Some(p) = a.peak {
        add(p, "peak".into());
    }
    for s in &a.series {
        if let Some(sat) = &s.saturation {
            let why = if a.series.len() > 1 {
                format!("saturation of {}", s.label)
            } else {
                "saturation point".into()
            };
            add(sat.cell, why);
        }
    }
    out.retain(|(i, _)| !runs(&run.data, &a.cells[*i].id).is_empty());
    out.sort_by_key(|(i, _)| *i);
    out
}

pub(crate) struct OverTime;

impl Output<Analysed> for OverTime {
    fn name(&self) -> &'static str {
        FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let cells = chosen(run);
        if cells.is_empty() {
            return Ok(Vec::new());
        }
        let a = &run.analysis;
        let panels: Vec<Panels> = cells
            .iter()
            .map(|(i, why)| {
                let id = &a.cells[*i].id;
                Panels::of(&format!("{id} ({why})"), &runs(&run.data, id))
            })
            .collect();
        let plots: Vec<Plot<'_>> = panels.iter().flat_map(Panels::plots).collect();
        Ok(vec![artefact(FILE, grid(&plots, 2, ROW_H)?)])
    }
}

impl Chart for OverTime {
    fn figures(&self, run: &Analysed) -> Vec<Figure> {
        let cells = chosen(run);
        if cells.is_empty() {
            return Vec::new();
        }
        let a = &run.analysis;
        let names: Vec<String> = cells
            .iter()
            .map(|(i, why)| format!("{} ({why})", a.cell_name(&a.cells[*i]).replace('`', "")))
            .collect();
        vec![Figure {
            heading: TITLE.into(),
            intro: Some(INTRO),
            images: vec![(format!("Over time: {}", names.join("; ")), FILE.into())],
        }]
    }
}

/// One cell's two panels: throughput and p99 per second, on the same time axis.
struct Panels {
    tput_title: String,
    p99_title: String,
    x: Dim,
    yt: Dim,
    yp: Dim,
    tput: Vec<Line>,
    p99: Vec<Line>,
}

impl Panels {
    fn of(name: &str, runs: &[(u32, &Vec<Interval>)]) -> Panels {
        let mut tput = Vec::new();
        let mut p99 = Vec::new();
        for (rep, intervals) in runs {
            let end = |i: &Interval| i.start_s + i.length_s;
            let line = |points| {
                Line::nth(
                    (*rep as usize).saturating_sub(1),
                    format!("repetition {rep}"),
                    points,
                )
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
            "seconds into the measured phase (a point: the second ending there)".into(),
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
        Panels {
            tput_title: format!("{name}: answers per second"),
            p99_title: format!("{name}: p99 per second"),
            x,
            yt,
            yp,
            tput,
            p99,
        }
    }

    fn plots(&self) -> [Plot<'_>; 2] {
        [
            Plot::new(&self.tput_title, &self.x, &self.yt, &self.tput),
            Plot::new(&self.p99_title, &self.x, &self.yp, &self.p99),
        ]
    }
}
