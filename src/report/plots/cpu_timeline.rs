//! CPU over time of the peak-throughput cell's first successful repetition that has CPU
//! samples: the server with its workers, the client and the whole machine, every 100 ms.

use super::axis::{fmt_num, linear_dim};
use super::draw::{color, draw, Line};
use super::{artefact, machine_cores, machine_line, Chart, Figure};
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;
use crate::rundir::{Sample, Status};

pub const FILE: &str = "cpu_timeline.svg";
pub const TITLE: &str = "CPU over time, peak cell";

pub struct CpuTimeline;

/// A line's label and the figure of a sample it plots.
type Part = (&'static str, fn(&Sample) -> f64);

const PARTS: [Part; 3] = [
    ("server with its workers", |s| s.server_pct),
    ("client", |s| s.client_pct),
    ("whole machine", |s| s.machine_pct),
];

/// The run it plots (`c003-r1`), if any.
fn peak_run(run: &Analysed) -> Option<String> {
    let a = &run.analysis;
    let peak = &a.cells[a.peak?].id;
    run.data
        .rows
        .iter()
        .filter(|r| &r.cell_id == peak && r.status == Status::Ok)
        .map(|r| r.run_name())
        .find(|name| run.data.cpu.contains_key(name))
}

impl Output<Analysed> for CpuTimeline {
    fn name(&self) -> &'static str {
        FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let name = peak_run(run);
        let samples: &[Sample] = name
            .as_ref()
            .and_then(|r| run.data.cpu.get(r))
            .map_or(&[], Vec::as_slice);
        let tmax_s = samples.iter().map(|s| s.t_s).fold(1.0, f64::max);
        let x = linear_dim(
            "time since the client started (s)".into(),
            0.0,
            tmax_s,
            fmt_num,
        );
        let ymax = samples
            .iter()
            .map(|s| s.machine_pct.max(s.server_pct).max(s.client_pct))
            .fold(machine_cores(run) * 100.0, f64::max);
        let y = linear_dim("CPU (%, 100 = one core)".into(), 0.0, ymax, fmt_num);
        let lines: Vec<Line> = PARTS
            .iter()
            .enumerate()
            .map(|(k, (label, pct))| Line {
                label: label.to_string(),
                points: samples.iter().map(|s| (s.t_s, pct(s))).collect(),
                color: color(k),
                dashed: false,
                markers: false,
            })
            .collect();
        let title = match &name {
            Some(r) => format!("CPU over time: {r} (the peak-throughput cell)"),
            None => TITLE.to_string(),
        };
        let (lines, note) = if samples.is_empty() {
            (&[][..], Some("no CPU samples"))
        } else {
            (&lines[..], None)
        };
        let svg = draw(&title, &x, &y, lines, Some(machine_line(run)), note)?;
        Ok(vec![artefact(FILE, svg)])
    }
}

impl Chart for CpuTimeline {
    fn figures(&self, _: &Analysed) -> Vec<Figure> {
        vec![Figure::one(TITLE, FILE)]
    }
}
