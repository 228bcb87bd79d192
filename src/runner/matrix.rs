//! The experiment matrix: its axes, the cells their product makes (after `exclude` and
//! `include`), and the seeded order in which cell × repetition runs execute.
//!
//! Adding an axis (as the open-loop `rate` was added) means: a variant in [`Axis`] (its place in
//! `ALL` sets where it goes in the product and in every CSV), a field in [`Cell`] with its
//! arms in `get`/`set`, a parse rule in `experiment::axis_value`, and the client flag it
//! turns into in `cell.rs`.

use std::collections::BTreeMap;

use super::experiment::{Target, TargetKind};
use crate::domain::ClientCmd;
pub(crate) use crate::rundir::cell_id;
use crate::rundir::{Axis, AxisValue, Cell};

/// Gives the pool its meaning for the cell's target: the target's own pool when the
/// matrix leaves it open, none at all for an external command (nor an `io`: an external
/// command chooses its own I/O too).
fn settle_pool(cell: &mut Cell, targets: &BTreeMap<String, Target>) {
    match targets.get(&cell.target).map(|t| &t.kind) {
        Some(TargetKind::Builtin { pool, .. }) => {
            if cell.pool.is_none() {
                cell.pool = Some(*pool);
            }
        }
        _ => {
            cell.pool = None;
            cell.io = None;
        }
    }
}

/// An `[[exclude]]` or `[[include]]` table: for each axis it names, the values it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub values: BTreeMap<Axis, Vec<AxisValue>>,
}

impl Filter {
    /// An exclude matches a cell when every axis it names holds one of its values.
    pub fn matches(&self, cell: &Cell) -> bool {
        self.values
            .iter()
            .all(|(axis, values)| values.contains(&cell.get(*axis)))
    }
}

/// The cartesian product of `axes`, less the cells an `exclude` matches, plus each
/// `include`'s own product (its axes over the matrix's single values), without repeats.
pub(crate) fn expand(
    axes: &BTreeMap<Axis, Vec<AxisValue>>,
    exclude: &[Filter],
    include: &[Filter],
    targets: &BTreeMap<String, Target>,
) -> Vec<Cell> {
    let mut cells: Vec<Cell> = Vec::new();
    let push = |cell: Cell, cells: &mut Vec<Cell>| {
        if !cells.contains(&cell) {
            cells.push(cell);
        }
    };
    for mut cell in product(axes) {
        settle_pool(&mut cell, targets);
        if !exclude.iter().any(|f| f.matches(&cell)) {
            push(cell, &mut cells);
        }
    }
    for inc in include {
        let mut own = axes.clone();
        for (axis, values) in &inc.values {
            own.insert(*axis, values.clone());
        }
        if !inc.values.contains_key(&Axis::Pool) {
            own.insert(Axis::Pool, vec![AxisValue::Str(String::new())]);
        }
        for mut cell in product(&own) {
            settle_pool(&mut cell, targets);
            push(cell, &mut cells);
        }
    }
    cells
}

fn product(axes: &BTreeMap<Axis, Vec<AxisValue>>) -> Vec<Cell> {
    let mut cells = vec![Cell {
        target: String::new(),
        pool: None,
        io: None,
        workers: 1,
        cmd: ClientCmd::Compute,
        size: 0,
        concurrency: 1,
        rate: None,
    }];
    for axis in Axis::ALL {
        let Some(values) = axes.get(&axis) else {
            continue;
        };
        cells = cells
            .into_iter()
            .flat_map(|cell| {
                values.iter().map(move |v| {
                    let mut c = cell.clone();
                    c.set(axis, v);
                    c
                })
            })
            .collect();
    }
    cells
}

/// One measurement to make: a cell (by index) and its repetition (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Slot {
    pub cell: usize,
    pub rep: u32,
}

/// Sequential: repetition 1 of every cell in matrix order, then repetition 2, … (so slow
/// drift spreads over every cell). Shuffled: all of those in a random order drawn from
/// `seed`, reproducibly (SplitMix64 + Fisher–Yates, independent of any crate's RNG).
pub(crate) fn schedule(cells: usize, repetitions: u32, shuffle_seed: Option<u64>) -> Vec<Slot> {
    let mut slots: Vec<Slot> = (1..=repetitions)
        .flat_map(|rep| (0..cells).map(move |cell| Slot { cell, rep }))
        .collect();
    if let Some(seed) = shuffle_seed {
        let mut state = seed;
        let mut next = move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        for i in (1..slots.len()).rev() {
            let j = (next() % (i as u64 + 1)) as usize;
            slots.swap(i, j);
        }
    }
    slots
}

/// Interleaved: repetition by repetition; within one, the cells that differ only in their
/// target run back to back (groups in matrix order of their first cell), the targets'
/// order reversed every other repetition (A B, B A, …), so drift in the machine and any
/// first-or-second effect fall on every target alike.
pub(crate) fn schedule_interleaved(cells: &[Cell], repetitions: u32) -> Vec<Slot> {
    let others: Vec<Axis> = Axis::ALL
        .into_iter()
        .filter(|a| *a != Axis::Target)
        .collect();
    let mut groups: Vec<(Vec<AxisValue>, Vec<usize>)> = Vec::new();
    for (i, c) in cells.iter().enumerate() {
        let key: Vec<AxisValue> = others.iter().map(|a| c.get(*a)).collect();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let mut slots = Vec::with_capacity(cells.len() * repetitions as usize);
    for rep in 1..=repetitions {
        for (_, members) in &groups {
            let mut order = members.clone();
            if rep % 2 == 0 {
                order.reverse();
            }
            slots.extend(order.into_iter().map(|cell| Slot { cell, rep }));
        }
    }
    slots
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_schedules_alternate_targets_within_each_cell() {
        let cell = |target: &str, concurrency: u64| Cell {
            target: target.into(),
            pool: None,
            io: None,
            workers: 1,
            cmd: ClientCmd::Compute,
            size: 1,
            concurrency,
            rate: None,
        };
        // Matrix order: every cell of target a, then every cell of target b.
        let cells = [cell("a", 1), cell("a", 2), cell("b", 1), cell("b", 2)];
        let order: Vec<(usize, u32)> = schedule_interleaved(&cells, 2)
            .into_iter()
            .map(|s| (s.cell, s.rep))
            .collect();
        assert_eq!(
            order,
            [
                (0, 1),
                (2, 1),
                (1, 1),
                (3, 1),
                (2, 2),
                (0, 2),
                (3, 2),
                (1, 2)
            ]
        );
    }

    #[test]
    fn ids_are_zero_padded() {
        assert_eq!(cell_id(0, 5), "c001");
        assert_eq!(cell_id(1233, 2000), "c1234");
    }

    #[test]
    fn schedules_cover_every_slot_once_and_shuffles_are_reproducible() {
        let seq = schedule(3, 2, None);
        assert_eq!(seq[0], Slot { cell: 0, rep: 1 });
        assert_eq!(seq[3], Slot { cell: 0, rep: 2 });
        let a = schedule(10, 3, Some(7));
        assert_eq!(a, schedule(10, 3, Some(7)));
        assert_ne!(a, schedule(10, 3, Some(8)));
        let mut sorted = a.clone();
        sorted.sort_by_key(|s| (s.rep, s.cell));
        assert_eq!(sorted, schedule(10, 3, None));
    }
}
