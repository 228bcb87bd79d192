//! The experiment runner (`threadcenter run FILE.toml`): checks the experiment file,
//! expands its matrix, runs every cell × repetition in the recorded order with the real
//! server and client as child processes, writes the raw files of the run directory, then
//! renders the report from them.
//!
//! Modules: `experiment` (the file), `matrix` (cells and order), `launch` (process groups),
//! `cpu` (sampling).

pub mod cpu;
pub mod experiment;
pub mod launch;
pub mod matrix;

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
