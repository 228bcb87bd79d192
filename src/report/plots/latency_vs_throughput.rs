//! Median p99 against median throughput, one line per series, a point per concurrency
//! labelled with it: the closed loop's "hockey stick". Past saturation throughput stays
//! put or falls back while p99 climbs, so a line can turn back on itself; the labels say
//! which way it goes.

use super::axis::spanning_dim;
use super::draw::Plot;
use super::{artefact, no_run_note, p99_axis, series_lines, series_values, Chart, Figure};
use crate::report::analysis::Metric;
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;

pub(crate) const FILE: &str = "latency_vs_throughput.svg";
pub(crate) const TITLE: &str = "p99 latency vs throughput (numbers at points: client concurrency)";

pub(crate) struct LatencyVsThroughput;

impl Output<Analysed> for LatencyVsThroughput {
    fn name(&self) -> &'static str {
        FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let a = &run.analysis;
        // Light and heavy requests differ by more than 10× in throughput: a log scale
        // keeps the heavy ones from being squashed against the axis.
        let x = spanning_dim(
            "throughput",
            "requests/s, median over repetitions",
            &series_values(a, Metric::Throughput),
            1.0,
        );
        let (y, div) = p99_axis(a);
        let lines = series_lines(
            a,
            &|c| {
                Some((
                    c.median(Metric::Throughput)?,
                    c.median(Metric::LatencyP99)? / div,
                ))
            },
            true,
        );
        let svg = Plot {
            note: no_run_note(a),
            ..Plot::new(TITLE, &x, &y, &lines)
        }
        .render()?;
        Ok(vec![artefact(FILE, svg)])
    }
}

impl Chart for LatencyVsThroughput {
    fn figures(&self, _: &Analysed) -> Vec<Figure> {
        vec![Figure::one(TITLE, FILE)]
    }
}
