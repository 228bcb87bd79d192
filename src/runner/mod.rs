//! The experiment runner (`threadcenter run FILE.toml`): checks the experiment file,
//! expands its matrix, runs every cell × repetition in the recorded order with the real
//! server and client as child processes, writes the raw files of the run directory, then
//! renders the report from them.
//!
//! Modules: `experiment` (the file), `matrix` (cells and order), `launch` (process groups),
//! `cpu` (sampling), `store` (the run directory).

pub mod cpu;
pub mod experiment;
pub mod launch;
pub mod matrix;
pub mod store;

use std::time::Duration;

/// `1s`, `250ms`, `1500ms`, `10us`: what `parse_duration` reads back exactly.
pub fn fmt_duration(d: Duration) -> String {
    if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else if d.subsec_nanos() % 1_000_000 == 0 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}us", d.as_micros())
    }
}

/// The axes with more than one value among `cells`, in axis order.
pub fn varying_axes(cells: &[matrix::Cell]) -> Vec<matrix::Axis> {
    matrix::Axis::ALL
        .into_iter()
        .filter(|&a| cells.iter().any(|c| c.get(a) != cells[0].get(a)))
        .collect()
}
