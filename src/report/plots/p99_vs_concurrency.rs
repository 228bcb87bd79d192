//! Median p99 against concurrency, one line per series: past saturation, added
//! concurrency only queues.

use super::draw::Plot;
use super::{artefact, by_concurrency, concurrency_axis, no_run_note, p99_axis, Chart, Figure};
use crate::report::analysis::Metric;
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;

pub(crate) const FILE: &str = "p99_vs_concurrency.svg";
pub(crate) const TITLE: &str = "p99 latency vs concurrency";

pub(crate) struct P99VsConcurrency;

impl Output<Analysed> for P99VsConcurrency {
    fn name(&self) -> &'static str {
        FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let a = &run.analysis;
        let (y, div) = p99_axis(a);
        let lines = by_concurrency(a, Metric::LatencyP99, div);
        let x = concurrency_axis(a);
        let svg = Plot {
            note: no_run_note(a),
            ..Plot::new(TITLE, &x, &y, &lines)
        }
        .render()?;
        Ok(vec![artefact(FILE, svg)])
    }
}

impl Chart for P99VsConcurrency {
    fn figures(&self, _: &Analysed) -> Vec<Figure> {
        vec![Figure::one(TITLE, FILE)]
    }
}
