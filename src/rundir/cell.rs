//! A cell of the matrix as the run directory records it: the axes, their values, and the
//! cell that one row of results.csv measured.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::domain::{ClientCmd, IoModel, PoolKind};

/// A matrix axis. `ALL` is the product's order: the last axis varies fastest, so a
/// sequential run sweeps concurrency within each combination of the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Axis {
    Target,
    Pool,
    /// The built-in server's I/O model (`--io`): `threads` or `events`.
    Io,
    Workers,
    Cmd,
    Size,
    Concurrency,
    /// The open-loop rate (`--rate`, requests per second), or `closed` for the closed
    /// loop. Last, so a sequential run sweeps the rate within each combination.
    Rate,
}

impl Axis {
    pub const ALL: [Axis; 8] = [
        Axis::Target,
        Axis::Pool,
        Axis::Io,
        Axis::Workers,
        Axis::Cmd,
        Axis::Size,
        Axis::Concurrency,
        Axis::Rate,
    ];

    /// The key in `[matrix]` and the column name in the CSV files.
    pub fn name(self) -> &'static str {
        match self {
            Axis::Target => "target",
            Axis::Pool => "pool",
            Axis::Io => "io",
            Axis::Workers => "workers",
            Axis::Cmd => "cmd",
            Axis::Size => "size",
            Axis::Concurrency => "concurrency",
            Axis::Rate => "rate",
        }
    }

    pub fn from_name(name: &str) -> Option<Axis> {
        Axis::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// One value of an axis.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AxisValue {
    Int(u64),
    Str(String),
}

impl fmt::Display for AxisValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AxisValue::Int(v) => write!(f, "{v}"),
            AxisValue::Str(s) => write!(f, "{s}"),
        }
    }
}

/// One point of the matrix: everything that tells one measurement from another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    pub target: String,
    /// The built-in server's pool; `None` for an external target, which chooses its own.
    pub pool: Option<PoolKind>,
    /// The built-in server's `--io`; `None` when the matrix has no `io` axis (the server's
    /// own default, no flag passed) or for an external target (schema 4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub io: Option<IoModel>,
    pub workers: u64,
    pub cmd: ClientCmd,
    pub size: u64,
    pub concurrency: u64,
    /// Open loop at this many requests per second (`--rate`); `None`: closed loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<u64>,
}

/// The value of the `rate` axis that means the closed loop.
pub const CLOSED: &str = "closed";

impl Cell {
    pub fn get(&self, axis: Axis) -> AxisValue {
        match axis {
            Axis::Target => AxisValue::Str(self.target.clone()),
            Axis::Pool => AxisValue::Str(self.pool.map_or("", |p| p.as_str()).to_string()),
            Axis::Io => AxisValue::Str(self.io.map_or("", |p| p.as_str()).to_string()),
            Axis::Workers => AxisValue::Int(self.workers),
            Axis::Cmd => AxisValue::Str(self.cmd.as_str().to_string()),
            Axis::Size => AxisValue::Int(self.size),
            Axis::Concurrency => AxisValue::Int(self.concurrency),
            Axis::Rate => match self.rate {
                Some(r) => AxisValue::Int(r),
                None => AxisValue::Str(CLOSED.to_string()),
            },
        }
    }

    /// `"closed"` or `"open"`: the client's load model for this cell.
    pub fn load_model(&self) -> &'static str {
        if self.rate.is_some() {
            "open"
        } else {
            "closed"
        }
    }

    /// Sets one axis's value (the matrix's expansion).
    pub fn set(&mut self, axis: Axis, value: &AxisValue) {
        match (axis, value) {
            (Axis::Target, AxisValue::Str(s)) => self.target = s.clone(),
            (Axis::Pool, AxisValue::Str(s)) => {
                self.pool = s.parse::<PoolKind>().ok();
            }
            (Axis::Io, AxisValue::Str(s)) => {
                self.io = s.parse::<IoModel>().ok();
            }
            (Axis::Workers, AxisValue::Int(v)) => self.workers = *v,
            (Axis::Cmd, AxisValue::Str(s)) => {
                self.cmd = s.parse::<ClientCmd>().unwrap_or(ClientCmd::Compute);
            }
            (Axis::Size, AxisValue::Int(v)) => self.size = *v,
            (Axis::Concurrency, AxisValue::Int(v)) => self.concurrency = *v,
            (Axis::Rate, AxisValue::Int(v)) => self.rate = Some(*v),
            (Axis::Rate, AxisValue::Str(_)) => self.rate = None,
            (axis, value) => unreachable!("{value:?} is not a value of {axis:?}"),
        }
    }

    /// `workers=2 concurrency=8 …`: every axis, for logs and error messages.
    pub fn label(&self) -> String {
        Axis::ALL
            .iter()
            .filter(|&&a| {
                !(a == Axis::Pool && self.pool.is_none()
                    || a == Axis::Io && self.io.is_none()
                    || a == Axis::Rate && self.rate.is_none())
            })
            .map(|&a| format!("{}={}", a.name(), self.get(a)))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The id of cell `index` (0-based) among `count`: `c001`, `c002`, …
pub fn cell_id(index: usize, count: usize) -> String {
    let width = count.to_string().len().max(3);
    format!("c{:0width$}", index + 1)
}

/// The axes with more than one value among `cells`, in axis order. Empty values (the
/// pool or io of an external target) do not count: they are "not applicable", not a value.
pub fn varying_axes(cells: &[Cell]) -> Vec<Axis> {
    Axis::ALL
        .into_iter()
        .filter(|&a| {
            let mut values: Vec<AxisValue> = cells
                .iter()
                .map(|c| c.get(a))
                .filter(|v| *v != AxisValue::Str(String::new()))
                .collect();
            values.sort();
            values.dedup();
            values.len() > 1
        })
        .collect()
}

/// `workers=2 concurrency=8`: the given axes with their values, leaving out empty ones
/// (the pool of an external target: not applicable rather than a value).
pub fn axes_label(parts: impl IntoIterator<Item = (Axis, AxisValue)>) -> String {
    parts
        .into_iter()
        .filter(|(_, v)| *v != AxisValue::Str(String::new()))
        .map(|(a, v)| format!("{}={v}", a.name()))
        .collect::<Vec<_>>()
        .join(" ")
}
