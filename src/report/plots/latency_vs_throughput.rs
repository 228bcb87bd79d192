//! Median p99 against median throughput, one line per series, a point per concurrency:
//! the closed loop's "hockey stick".

use super::axis::{fmt_num, linear_dim};
use super::draw::draw;
use super::{artefact, no_run_note, p99_axis, series_lines, series_values, Chart, Figure};
use crate::report::analysis::Metric;
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;

pub const FILE: &str = "latency_vs_throughput.svg";
pub const TITLE: &str = "p99 latency vs throughput";

pub struct LatencyVsThroughput;

impl Output<Analysed> for LatencyVsThroughput {
    fn name(&self) -> &'static str {
        FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let a = &run.analysis;
        let tmax = series_values(a, Metric::Throughput)
            .into_iter()
            .fold(0.0, f64::max);
        let x = linear_dim("throughput (requests/s)".into(), 0.0, tmax, fmt_num);
        let (y, div) = p99_axis(a);
        let lines = series_lines(a, &|c| {
            Some((
                c.median(Metric::Throughput)?,
                c.median(Metric::LatencyP99)? / div,
            ))
        });
        let svg = draw(TITLE, &x, &y, &lines, None, no_run_note(a))?;
        Ok(vec![artefact(FILE, svg)])
    }
}

impl Chart for LatencyVsThroughput {
    fn figures(&self, _: &Analysed) -> Vec<Figure> {
        vec![Figure::one(TITLE, FILE)]
    }
}
