//! compare.csv: one row per matched pair × metric, for scripts. [`CompareRow`] is the
//! file's layout: each column's name, position, type and decimals, written once.

use serde::{Serialize, Serializer};

use crate::domain::{ClientCmd, IoModel, PoolKind};
use crate::report::output::{Artefact, Output};
use crate::rundir::{num, Cell};

use super::{Comparison, Judged, Pair, COMPARE_CSV};

/// compare.csv, an [`Output`] of a comparison.
pub(super) struct CompareCsv;

impl Output<Comparison> for CompareCsv {
    fn name(&self) -> &'static str {
        COMPARE_CSV
    }

    fn render(&self, c: &Comparison) -> anyhow::Result<Vec<Artefact>> {
        Ok(vec![Artefact::new(COMPARE_CSV, csv(c)?)])
    }
}

/// One row of compare.csv: a metric of a matched pair of cells.
#[derive(Debug, Default, Serialize)]
struct CompareRow<'a> {
    new_cell: &'a str,
    base_cell: &'a str,
    // The matched cell's axes (the new side's), in `Axis::ALL`'s order.
    target: &'a str,
    /// Empty for an external target.
    pool: Option<PoolKind>,
    /// Empty when the run has no `io` axis, and for an external target.
    io: Option<IoModel>,
    workers: u64,
    /// Always set; an `Option` so that a blank row (for [`header`]) can be made.
    cmd: Option<ClientCmd>,
    size: u64,
    concurrency: u64,
    /// Requests per second, or `closed`.
    rate: Rate,
    /// `CMetric::key`: throughput, p50, p99, p99_9, cpu_per_request.
    metric: &'static str,
    unit: &'static str,
    /// `higher` or `lower`: which way is better.
    better: &'static str,
    n_base: usize,
    n_new: usize,
    #[serde(serialize_with = "fixed::<3, _>")]
    base_median: f64,
    #[serde(serialize_with = "fixed::<3, _>")]
    new_median: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    ratio: f64,
    /// The interval's ends; empty without one.
    #[serde(serialize_with = "fixed::<4, _>")]
    ci_low: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    ci_high: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    p_value: f64,
    #[serde(serialize_with = "fixed::<4, _>")]
    p_adjusted: f64,
    #[serde(serialize_with = "fixed::<2, _>")]
    threshold_pct: f64,
    #[serde(serialize_with = "fixed::<1, _>")]
    base_spread_pct: f64,
    #[serde(serialize_with = "fixed::<1, _>")]
    new_spread_pct: f64,
    /// `independent` or `paired`.
    design: &'static str,
    verdict: &'static str,
    reason: &'a str,
}

impl<'a> CompareRow<'a> {
    fn new(p: &'a Pair, j: &'a Judged) -> CompareRow<'a> {
        let c: &Cell = &p.cell;
        let (lo, hi) = j.ci.unwrap_or((f64::NAN, f64::NAN));
        CompareRow {
            new_cell: &p.new_cell,
            base_cell: &p.base_cell,
            target: &c.target,
            pool: c.pool,
            io: c.io,
            workers: c.workers,
            cmd: Some(c.cmd),
            size: c.size,
            concurrency: c.concurrency,
            rate: Rate(c.rate),
            metric: j.metric.key(),
            unit: j.metric.unit(),
            better: if j.metric.higher_is_better() {
                "higher"
            } else {
                "lower"
            },
            n_base: j.n_base,
            n_new: j.n_new,
            base_median: j.base_median,
            new_median: j.new_median,
            ratio: j.ratio,
            ci_low: lo,
            ci_high: hi,
            p_value: j.p,
            p_adjusted: j.p_adjusted,
            threshold_pct: j.threshold_pct,
            base_spread_pct: j.base_spread_pct,
            new_spread_pct: j.new_spread_pct,
            design: j.design.as_str(),
            verdict: j.verdict.as_str(),
            reason: &j.reason,
        }
    }
}

/// The `rate` axis: a number, or `closed` for the closed loop (as `Cell::get` shows it).
#[derive(Debug, Default)]
struct Rate(Option<u64>);

impl Serialize for Rate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(r) => s.serialize_u64(r),
            None => s.serialize_str(crate::rundir::CLOSED),
        }
    }
}

/// `D` decimals, through the run directory's [`num`]: not finite prints empty.
fn fixed<const D: usize, S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&num(*v, D))
}

/// compare.csv's bytes.
fn csv(c: &Comparison) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut out);
        let mut rows = 0;
        for p in &c.pairs {
            for j in &p.metrics {
                w.serialize(CompareRow::new(p, j))?;
                rows += 1;
            }
        }
        if rows == 0 {
            // The csv crate writes a struct's header before its first row only.
            w.write_record(header()?.iter())?;
        }
        w.flush()?;
    }
    Ok(out)
}

/// compare.csv's column names, read back from a blank row written aside.
fn header() -> anyhow::Result<csv::StringRecord> {
    let mut scratch = Vec::new();
    {
        let mut w = csv::Writer::from_writer(&mut scratch);
        w.serialize(CompareRow::default())?;
        w.flush()?;
    }
    Ok(csv::Reader::from_reader(scratch.as_slice())
        .headers()?
        .clone())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::judge::{judge, Design};
    use super::*;
    use crate::domain::CMetric;
    use crate::rundir::Axis;

    fn comparison(metrics: Vec<Judged>, rate: Option<u64>) -> Comparison {
        let cell = Cell {
            target: "head".into(),
            pool: Some(PoolKind::Thread),
            io: None,
            workers: 2,
            cmd: ClientCmd::Ping,
            size: 1000,
            concurrency: 4,
            rate,
        };
        Comparison {
            design: Design::Independent,
            base_name: "base".into(),
            new_name: "new".into(),
            planned_reps: 6,
            thresholds: BTreeMap::new(),
            pairs: vec![Pair {
                label: "concurrency=4".into(),
                base_cell: "c001".into(),
                new_cell: "c002".into(),
                cell,
                metrics,
                notes: vec![],
            }],
            only_new: vec![],
            only_base: vec![],
            notes: vec![],
        }
    }

    fn read(bytes: &[u8]) -> (Vec<String>, Vec<Vec<String>>) {
        let mut r = csv::Reader::from_reader(bytes);
        let header = r.headers().unwrap().iter().map(str::to_string).collect();
        let rows = r
            .records()
            .map(|rec| rec.unwrap().iter().map(str::to_string).collect())
            .collect();
        (header, rows)
    }

    #[test]
    fn the_columns_are_the_documented_ones_in_order() {
        let mut want = vec!["new_cell", "base_cell"];
        // The axes follow `Axis::ALL`: a new axis needs a field in `CompareRow`.
        want.extend(Axis::ALL.map(Axis::name));
        want.extend([
            "metric",
            "unit",
            "better",
            "n_base",
            "n_new",
            "base_median",
            "new_median",
            "ratio",
            "ci_low",
            "ci_high",
            "p_value",
            "p_adjusted",
            "threshold_pct",
            "base_spread_pct",
            "new_spread_pct",
            "design",
            "verdict",
            "reason",
        ]);
        // With no figure at all (every repetition failed on both sides) the header is
        // still written.
        let empty = csv(&comparison(vec![], None)).unwrap();
        assert_eq!(
            read(&empty),
            (want.iter().map(|s| s.to_string()).collect(), vec![])
        );
        assert_eq!(empty, format!("{}\n", want.join(",")).into_bytes());
        let j = judge(
            CMetric::P99,
            &[1.0, 2.0],
            &[3.0, 4.0],
            Design::Independent,
            5.0,
            1,
        );
        let (header, _) = read(&csv(&comparison(vec![j], None)).unwrap());
        assert_eq!(header, want);
    }

    #[test]
    fn a_row_holds_the_cell_and_fixed_decimals() {
        let base = [1000.0, 1010.0, 990.0, 1000.0, 1005.0, 995.0];
        let new = [800.0, 805.0, 795.0, 800.0, 802.0, 798.0];
        let mut j = judge(
            CMetric::Throughput,
            &base,
            &new,
            Design::Independent,
            5.0,
            1,
        );
        j.reason = "a reason, with a comma".into();
        let closed = comparison(vec![j.clone()], None);
        let mut no_ci = j.clone();
        no_ci.ci = None;
        no_ci.ratio = f64::NAN;
        let (header, rows) = read(&csv(&comparison(vec![j, no_ci], Some(500))).unwrap());
        let col = |row: &[String], name: &str| {
            row[header.iter().position(|h| h == name).unwrap()].clone()
        };
        assert_eq!(rows.len(), 2);
        let r = &rows[0];
        for (name, want) in [
            ("new_cell", "c002"),
            ("base_cell", "c001"),
            ("target", "head"),
            ("pool", "thread"),
            ("workers", "2"),
            ("cmd", "ping"),
            ("size", "1000"),
            ("concurrency", "4"),
            ("rate", "500"),
            ("metric", "throughput"),
            ("better", "higher"),
            ("n_base", "6"),
            ("base_median", "1000.000"),
            ("new_median", "800.000"),
            ("ratio", "0.8000"),
            ("threshold_pct", "5.00"),
            ("design", "independent"),
            ("reason", "a reason, with a comma"),
        ] {
            assert_eq!(col(r, name), want, "{name}: {r:?}");
        }
        for name in ["ci_low", "ci_high", "p_value", "p_adjusted"] {
            let decimals = col(r, name).split_once('.').map(|(_, d)| d.len());
            assert_eq!(decimals, Some(4), "{name}: {r:?}");
        }
        // Not finite and no interval print empty.
        for name in ["ratio", "ci_low", "ci_high"] {
            assert_eq!(col(&rows[1], name), "", "{name}: {:?}", rows[1]);
        }
        let (_, rows) = read(&csv(&closed).unwrap());
        assert_eq!(col(&rows[0], "rate"), "closed");
    }
}
