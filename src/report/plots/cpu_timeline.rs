//! CPU over time of the peak-throughput cell's first successful repetition that has CPU
//! samples: the server with its workers, the client and the whole machine, every 100 ms.
//! The warm-up is shaded, and so is what follows the measured window: the runner takes
//! its last sample once the client has exited, so that interval holds the client's
//! teardown (joining its threads, merging their histograms, writing its JSON and
//! interval logs) and the client's CPU rises there although no load is sent.

use super::axis::{fmt_num, linear_dim};
use super::draw::{Line, Marks, Plot};
use super::{artefact, machine_cores, machine_line, Chart, Figure};
use crate::report::output::{Artefact, Output};
use crate::report::Analysed;
use crate::rundir::{Sample, Status};

pub(crate) const FILE: &str = "cpu_timeline.svg";
pub(crate) const TITLE: &str = "CPU over time, peak cell";

pub(crate) struct CpuTimeline;

/// A line's label and the figure of a sample it plots.
type Part = (&'static str, fn(&Sample) -> f64);

const PARTS: [Part; 3] = [
    ("server with its workers", |s| s.server_pct),
    ("client", |s| s.client_pct),
    ("whole machine", |s| s.machine_pct),
];

/// The run it plots (`c003-r1`) and the end of its measured window (s since the
/// client started), if any.
fn peak_run(run: &Analysed) -> Option<(String, f64)> {
    let a = &run.analysis;
    let peak = &a.cells[a.peak?].id;
    run.data
        .rows
        .iter()
        .filter(|r| &r.cell_id == peak && r.status == Status::Ok)
        .map(|r| {
            let measured = r.measured.as_ref().map_or(0.0, |m| m.duration_s);
            (r.run_name(), warmup_s(run) + measured)
        })
        .find(|(name, _)| run.data.cpu.contains_key(name))
}

fn warmup_s(run: &Analysed) -> f64 {
    run.data.manifest.experiment.warmup_s
}

impl Output<Analysed> for CpuTimeline {
    fn name(&self) -> &'static str {
        FILE
    }

    fn render(&self, run: &Analysed) -> anyhow::Result<Vec<Artefact>> {
        let chosen = peak_run(run);
        let name = chosen.as_ref().map(|(r, _)| r);
        let samples: &[Sample] = name
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
            .map(|(k, (label, pct))| {
                let points = samples.iter().map(|s| (s.t_s, pct(s))).collect();
                let mut line = Line::nth(k, label.to_string(), points);
                line.marks = Marks::Spaced(70);
                line
            })
            .collect();
        let mut spans = Vec::new();
        if let Some(&(_, end)) = chosen.as_ref().filter(|_| !samples.is_empty()) {
            let warmup = warmup_s(run);
            if warmup > 0.0 {
                spans.push((0.0, warmup, "warm-up".to_string()));
            }
            if tmax_s > end + 1e-3 {
                spans.push((end, tmax_s, "after: client exits".to_string()));
            }
        }
        let title = match name {
            Some(r) => format!("CPU over time: {r} (the peak-throughput cell)"),
            None => TITLE.to_string(),
        };
        let (lines, note) = if samples.is_empty() {
            (&[][..], Some("no CPU samples"))
        } else {
            (&lines[..], None)
        };
        let svg = Plot {
            hline: Some(machine_line(run)),
            spans,
            note,
            ..Plot::new(&title, &x, &y, lines)
        }
        .render()?;
        Ok(vec![artefact(FILE, svg)])
    }
}

impl Chart for CpuTimeline {
    fn figures(&self, _: &Analysed) -> Vec<Figure> {
        vec![Figure::one(TITLE, FILE)]
    }
}
