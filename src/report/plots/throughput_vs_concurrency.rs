//! Median throughput against concurrency, one line per series: where it stops rising is
//! where the server saturates.

use super::axis::spanning_dim;
use super::draw::Plot;
use super::{
    artefact, by_concurrency, concurrency_axis, no_run_note, series_values, Chart, Figure,
};
use crate::report::analysis::Metric;
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;

pub(crate) const FILE: &str = "throughput_vs_concurrency.svg";
pub(crate) const TITLE: &str = "Throughput vs concurrency";

pub(crate) struct ThroughputVsConcurrency;

impl Output<Analysed> for ThroughputVsConcurrency {
    fn name(&self) -> &'static str {
        FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let a = &run.analysis;
        // Series that differ by more than 10× (light and heavy requests) get a log scale,
        // which keeps every plateau visible.
        let y = spanning_dim(
            "throughput",
            "requests/s, median over repetitions",
            &series_values(a, Metric::Throughput),
            1.0,
        );
        let lines = by_concurrency(a, Metric::Throughput, 1.0);
        let x = concurrency_axis(a);
        let svg = Plot {
            note: no_run_note(a),
            ..Plot::new(TITLE, &x, &y, &lines)
        }
        .render()?;
        Ok(vec![artefact(FILE, svg)])
    }
}

impl Chart for ThroughputVsConcurrency {
    fn figures(&self, _: &Analysed) -> Vec<Figure> {
        vec![Figure::one(TITLE, FILE)]
    }
}
