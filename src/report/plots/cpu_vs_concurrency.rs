//! The server's median CPU (with its workers) against concurrency, one line per series,
//! with the whole machine's capacity as a horizontal line.

use super::axis::{fmt_num, linear_dim};
use super::draw::Plot;
use super::{
    artefact, by_concurrency, concurrency_axis, machine_cores, machine_line, no_run_note,
    series_values, Chart, Figure,
};
use crate::report::analysis::Metric;
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;

pub(crate) const FILE: &str = "cpu_vs_concurrency.svg";
pub(crate) const TITLE: &str = "Server CPU vs concurrency";

pub(crate) struct CpuVsConcurrency;

impl Output<Analysed> for CpuVsConcurrency {
    fn name(&self) -> &'static str {
        FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let a = &run.analysis;
        let cmax = series_values(a, Metric::ServerCpu)
            .into_iter()
            .fold(machine_cores(run) * 100.0, f64::max);
        let y = linear_dim(
            "server CPU with its workers (%, 100 = one core)".into(),
            0.0,
            cmax,
            fmt_num,
        );
        let lines = by_concurrency(a, Metric::ServerCpu, 1.0);
        let x = concurrency_axis(a);
        let svg = Plot {
            hline: Some(machine_line(run)),
            note: no_run_note(a),
            ..Plot::new(TITLE, &x, &y, &lines)
        }
        .render()?;
        Ok(vec![artefact(FILE, svg)])
    }
}

impl Chart for CpuVsConcurrency {
    fn figures(&self, _: &Analysed) -> Vec<Figure> {
        vec![Figure::one(TITLE, FILE)]
    }
}
