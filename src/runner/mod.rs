//! The experiment runner (`threadcenter run FILE.toml`): checks the experiment file,
//! expands its matrix, runs every cell × repetition in the recorded order with the real
//! server and client as child processes, writes the raw files of the run directory, then
//! renders the report from them.
//!
//! Modules: `experiment` (the file), `matrix` (cells and order).

pub mod experiment;
pub mod matrix;
