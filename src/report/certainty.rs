//! How sure the findings are, said where they are stated: the range over repetitions of a
//! bold figure (or that one repetition cannot be repeated), whether a series' saturation
//! point holds repetition by repetition, what weakens a finding (a busy machine, a
//! CPU-saturated client, a stalled machine), and the one-sentence answer when a single
//! axis besides concurrency varies ("2 workers instead of 1 raise peak throughput 1.80×
//! (range 1.61–1.92×, 6 repetitions)").

use std::collections::BTreeSet;

use super::analysis::{saturation_at, Analysis, CellSummary, Metric, Series};
use super::load::RunData;
use super::noise::{busy, client_saturated};
use crate::rundir::{Axis, AxisValue, Status};

/// What a figure measured once says about its certainty.
pub(crate) const NOT_REPEATABLE: &str = "one repetition: not repeatable";

/// `1, 2 and 3`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// `range 1200.0–1250.0 req/s over 6 repetitions, spread 4%`, or [`NOT_REPEATABLE`]:
/// how far a cell's median throughput can be trusted.
pub(crate) fn throughput_range(c: &CellSummary) -> String {
    match c.stats.get(&Metric::Throughput) {
        Some(s) if c.reps_ok >= 2 => format!(
            "range {:.1}–{:.1} req/s over {} repetitions, spread {:.0}%",
            s.min,
            s.max,
            c.reps_ok,
            c.noise.throughput_spread_pct.unwrap_or(0.0)
        ),
        _ => NOT_REPEATABLE.to_string(),
    }
}

/// The repetitions every one of `points` measured successfully.
fn common_reps(a: &Analysis, points: &[usize]) -> BTreeSet<u32> {
    let mut reps: Option<BTreeSet<u32>> = None;
    for &i in points {
        let these: BTreeSet<u32> = a.cells[i].per_rep.keys().copied().collect();
        reps = Some(match reps {
            None => these,
            Some(r) => r.intersection(&these).copied().collect(),
        });
    }
    reps.unwrap_or_default()
}

/// Whether a series' saturation point (or its absence) holds in each repetition taken
/// alone: `same point in 5 of 6 repetitions`, or [`NOT_REPEATABLE`].
pub(crate) fn saturation_agreement(a: &Analysis, s: &Series) -> String {
    let reps = common_reps(a, &s.points);
    if reps.len() < 2 {
        return NOT_REPEATABLE.to_string();
    }
    let by_medians = s
        .saturation
        .and_then(|sat| s.points.iter().position(|&i| i == sat.cell));
    let agree = reps
        .iter()
        .filter(|r| {
            let t: Vec<Option<f64>> = s
                .points
                .iter()
                .map(|&i| a.cells[i].per_rep.get(r).map(|v| v.0))
                .collect();
            let p: Vec<Option<f64>> = s
                .points
                .iter()
                .map(|&i| a.cells[i].per_rep.get(r).map(|v| v.1))
                .collect();
            saturation_at(&t, &p).map(|(k, _, _)| k) == by_medians
        })
        .count();
    let what = if by_medians.is_some() {
        "same point"
    } else {
        "not reached"
    };
    format!("{what} in {agree} of {} repetitions", reps.len())
}

/// What weakens a finding about `cells`: a machine busy before the run, a client that
/// was CPU-saturated in some of their repetitions, a machine that stalled during one.
/// Each is a sentence to put beside the finding.
pub(crate) fn caveats(data: &RunData, a: &Analysis, cells: &[usize]) -> Vec<String> {
    let m = &data.manifest;
    let mut out = Vec::new();
    if busy(&m.machine) {
        out.push(format!(
            "the machine was busy before the run (load {:.2} on {} cores): expect noise",
            m.machine.load_before[0],
            m.machine.logical_cores.max(1)
        ));
    }
    let cores = m.machine.logical_cores;
    for &i in cells {
        let c = &a.cells[i];
        let ok: Vec<_> = data
            .rows
            .iter()
            .filter(|r| r.cell_id == c.id && r.status == Status::Ok)
            .collect();
        let saturated = ok.iter().filter(|r| client_saturated(r, cores)).count();
        if saturated > 0 {
            out.push(format!(
                "the client was CPU-saturated in {saturated} of {} repetitions of `{}`: there the \
                 figures are a limit of the client, not of the server",
                ok.len(),
                c.id
            ));
        }
        let prefix = format!("{}-r", c.id);
        let stalled: Vec<String> = a
            .stalls
            .iter()
            .filter(|(run, _)| run.starts_with(&prefix))
            .map(|(run, _)| format!("`{run}`"))
            .collect();
        if !stalled.is_empty() {
            out.push(format!(
                "the machine stalled during {} (see Stalls)",
                and_list(&stalled)
            ));
        }
    }
    out
}

/// ` **Caution:** a; b.`, or nothing: to end the bullet of the finding they weaken.
pub(crate) fn caution(caveats: &[String]) -> String {
    if caveats.is_empty() {
        String::new()
    } else {
        format!(" **Caution:** {}.", caveats.join("; "))
    }
}

/// The effect of the one axis that varies besides concurrency on peak throughput: each
/// other value's series peak against the first's, repetition by repetition.
pub(crate) struct Effect {
    pub axis: Axis,
    pub base: AxisValue,
    pub base_peak: usize,
    /// (value, its series' peak cell, ratios of the peaks in each common repetition).
    pub others: Vec<(AxisValue, usize, Vec<f64>)>,
}

/// The peak cell of a series: its highest median throughput.
fn series_peak(a: &Analysis, s: &Series) -> Option<usize> {
    s.points.iter().copied().max_by(|&x, &y| {
        let t = |i: usize| a.cells[i].median(Metric::Throughput).unwrap_or(0.0);
        t(x).total_cmp(&t(y))
    })
}

/// The [`Effect`] of the run's one varying axis besides concurrency, when there is
/// exactly one, every cell is closed loop, and each value has a successful cell.
pub(crate) fn effect(a: &Analysis) -> Option<Effect> {
    let others: Vec<Axis> = a
        .varying
        .iter()
        .copied()
        .filter(|x| *x != Axis::Concurrency)
        .collect();
    let [axis] = others[..] else {
        return None;
    };
    if axis == Axis::Rate || a.series.len() < 2 || a.cells.iter().any(|c| c.cell.rate.is_some()) {
        return None;
    }
    let peaks: Vec<usize> = a
        .series
        .iter()
        .map(|s| series_peak(a, s))
        .collect::<Option<_>>()?;
    let base_peak = peaks[0];
    let base_cell = &a.cells[base_peak];
    let others = peaks[1..]
        .iter()
        .map(|&p| {
            let ratios = common_reps(a, &[base_peak, p])
                .iter()
                .map(|r| a.cells[p].per_rep[r].0 / base_cell.per_rep[r].0)
                .filter(|v| v.is_finite())
                .collect();
            (a.cells[p].cell.get(axis), p, ratios)
        })
        .collect();
    Some(Effect {
        axis,
        base: base_cell.cell.get(axis),
        base_peak,
        others,
    })
}

/// `2 workers instead of 1`, `size=1000 instead of size=200`.
fn instead(axis: Axis, to: &AxisValue, from: &AxisValue) -> String {
    match axis {
        Axis::Workers => format!("{to} workers instead of {from}"),
        _ => format!("{}={to} instead of {}={from}", axis.name(), axis.name()),
    }
}

/// `peak throughput rises 1.80× (range 1.61–1.92×, 6 repetitions)`: the ratios'
/// median, with their range, and the verb the range allows.
/// `context` ends the parenthesis.
fn change(ratios: &[f64], context: &str) -> String {
    let mut sorted = ratios.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = super::stats::median_of_sorted(&sorted);
    let (lo, hi) = (sorted[0], sorted[sorted.len() - 1]);
    let mut certainty = if sorted.len() < 2 {
        NOT_REPEATABLE.to_string()
    } else {
        format!("range {lo:.2}–{hi:.2}×, {} repetitions", sorted.len())
    };
    if lo <= 1.0 && hi >= 1.0 && sorted.len() >= 2 {
        certainty.push_str(", on both sides of 1");
    }
    if !context.is_empty() {
        certainty = format!("{certainty}; {context}");
    }
    if lo > 1.0 {
        format!("peak throughput rises {median:.2}× ({certainty})")
    } else if hi < 1.0 {
        format!("peak throughput falls to {median:.2}× ({certainty})")
    } else {
        format!("peak throughput does not clearly change: {median:.2}× ({certainty})")
    }
}

/// The one-sentence answer to what the run varied, from its [`Effect`], and the peak
/// cells it rests on; none when the run has no such axis or no repetition measured both
/// peaks.
pub(crate) fn answer(a: &Analysis) -> Option<(String, Vec<usize>)> {
    let e = effect(a)?;
    let parts: Vec<String> = e
        .others
        .iter()
        .filter(|(_, _, ratios)| !ratios.is_empty())
        .map(|(value, peak, ratios)| {
            let context = format!(
                "`{}` against `{}`, paired by repetition",
                a.cells[*peak].id, a.cells[e.base_peak].id
            );
            format!(
                "with {}, {}",
                instead(e.axis, value, &e.base),
                change(ratios, &context)
            )
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    let mut sentence = parts.join("; ");
    if let Some(first) = sentence.get(..1) {
        sentence = first.to_uppercase() + &sentence[1..];
    }
    let mut peaks = vec![e.base_peak];
    peaks.extend(e.others.iter().map(|(_, p, _)| *p));
    Some((format!("{sentence}."), peaks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_says_its_range_or_that_it_cannot_be_repeated() {
        assert_eq!(
            change(&[1.9, 1.6, 1.8], ""),
            "peak throughput rises 1.80× (range 1.60–1.90×, 3 repetitions)"
        );
        assert_eq!(
            change(&[0.5], "x"),
            "peak throughput falls to 0.50× (one repetition: not repeatable; x)"
        );
        assert_eq!(
            change(&[0.9, 1.1], ""),
            "peak throughput does not clearly change: 1.00× (range 0.90–1.10×, 2 \
             repetitions, on both sides of 1)"
        );
        assert_eq!(
            instead(Axis::Workers, &AxisValue::Int(2), &AxisValue::Int(1)),
            "2 workers instead of 1"
        );
        assert_eq!(
            and_list(&["a".into(), "b".into(), "c".into()]),
            "a, b and c"
        );
    }
}

#[cfg(test)]
mod findings {
    use super::*;
    use crate::report::analysis::analyse;
    use crate::report::fixture::two_workers;

    #[test]
    fn one_varying_axis_is_answered_in_one_sentence_with_its_range() {
        let run = two_workers(3);
        let (sentence, peaks) = answer(&run.analysis).unwrap();
        // Peaks at concurrency 4: 1900 × (1, 1.05, 0.95) against 1050.
        assert_eq!(
            sentence,
            "With 2 workers instead of 1, peak throughput rises 1.81× (range 1.72–1.90×, 3 \
             repetitions; `c004` against `c002`, paired by repetition)."
        );
        let ids: Vec<&str> = peaks
            .iter()
            .map(|&i| run.analysis.cells[i].id.as_str())
            .collect();
        assert_eq!(ids, ["c002", "c004"]);
        let (one, _) = answer(&two_workers(1).analysis).unwrap();
        assert!(one.contains("(one repetition: not repeatable;"), "{one}");
    }

    #[test]
    fn a_saturation_point_is_checked_repetition_by_repetition() {
        let run = two_workers(3);
        let a = &run.analysis;
        // workers=1: flat throughput, p99 ×4: saturated at concurrency 1 in each repetition.
        assert_eq!(
            saturation_agreement(a, &a.series[0]),
            "same point in 3 of 3 repetitions"
        );
        // workers=2 still gains: not reached, in each repetition too.
        assert_eq!(
            saturation_agreement(a, &a.series[1]),
            "not reached in 3 of 3 repetitions"
        );
        // One repetition says nothing about repeatability.
        let one = two_workers(1);
        assert_eq!(
            saturation_agreement(&one.analysis, &one.analysis.series[0]),
            NOT_REPEATABLE
        );
        // A repetition that disagrees is counted as such: r2 of c002 gains 20%.
        let mut run = two_workers(3);
        for r in &mut run.data.rows {
            if r.cell_id == "c002" && r.rep == 2 {
                r.measured.as_mut().unwrap().throughput_rps = 1250.0;
            }
        }
        run.analysis = analyse(&run.data);
        let a = &run.analysis;
        assert_eq!(
            saturation_agreement(a, &a.series[0]),
            "same point in 2 of 3 repetitions"
        );
    }

    #[test]
    fn a_busy_machine_and_a_saturated_client_are_said_beside_the_finding() {
        let mut run = two_workers(3);
        assert!(caveats(&run.data, &run.analysis, &[1]).is_empty());
        run.data.manifest.machine.load_before = [2.9, 2.0, 2.0];
        for r in &mut run.data.rows {
            if r.cell_id == "c002" && r.rep == 1 {
                r.cpu.as_mut().unwrap().client_pct = 199.0;
            }
        }
        run.analysis = analyse(&run.data);
        let said = caution(&caveats(&run.data, &run.analysis, &[1]));
        assert_eq!(
            said,
            " **Caution:** the machine was busy before the run (load 2.90 on 2 cores): expect \
             noise; the client was CPU-saturated in 1 of 3 repetitions of `c002`: there the \
             figures are a limit of the client, not of the server."
        );
        let text = crate::report::markdown::render(&run, &[]);
        let peak = text
            .lines()
            .find(|l| l.starts_with("- **Peak throughput"))
            .unwrap();
        assert!(peak.contains("at `c004`"), "{peak}");
        assert!(
            peak.contains("range 1805.0–1995.0 req/s over 3 repetitions, spread 10%"),
            "{peak}"
        );
        assert!(peak.contains("**Caution:** the machine was busy"), "{peak}");
        let answer = text
            .lines()
            .find(|l| l.starts_with("- **Answer:**"))
            .unwrap();
        assert!(
            answer.contains("rises 1.81×") && answer.contains("of `c002`"),
            "{answer}"
        );
    }
}
