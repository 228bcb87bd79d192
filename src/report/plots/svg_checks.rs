//! Tests that read the charts back as SVG text, as a reader sees them: each must name
//! its axes, its tick labels must reach past the data on both axes, and its legend must
//! list exactly the series that have points.

use std::collections::BTreeMap;

use super::*;
use crate::report::fixture::{cell, row, run};
use crate::rundir::{Cell, Interval, ResultRow, Sample};

/// The text of an SVG `<text>` element, with its anchor and whether it is rotated.
struct Label {
    text: String,
    anchor: String,
    rotated: bool,
}

fn labels(svg: &str) -> Vec<Label> {
    let doc = roxmltree::Document::parse(svg).expect("well-formed SVG");
    doc.descendants()
        .filter(|n| n.has_tag_name("text"))
        .map(|n| Label {
            text: n.text().unwrap_or("").trim().to_string(),
            anchor: n.attribute("text-anchor").unwrap_or("start").to_string(),
            rotated: n
                .attribute("transform")
                .is_some_and(|t| t.contains("rotate")),
        })
        .collect()
}

/// A tick label's value: `500`, `0.25`, `45k`, `1.5M`.
fn value(label: &str) -> Option<f64> {
    let (num, mult) = match label.strip_suffix('k') {
        Some(n) => (n, 1e3),
        None => match label.strip_suffix('M') {
            Some(n) => (n, 1e6),
            None => (label, 1.0),
        },
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

/// The values of the tick labels with `anchor` (plotters right-aligns the y axis's,
/// centres the x axis's).
fn ticks(labels: &[Label], anchor: &str) -> Vec<f64> {
    labels
        .iter()
        .filter(|l| l.anchor == anchor && !l.rotated)
        .filter_map(|l| value(&l.text))
        .collect()
}

/// Asserts `file` has both axis titles and ticks bracketing the data (`x`, `y`: the
/// lowest and highest value plotted on each axis).
fn assert_readable(file: &str, svg: &str, titles: (&str, &str), x: (f64, f64), y: (f64, f64)) {
    let ls = labels(svg);
    assert!(
        ls.iter().any(|l| !l.rotated && l.text.contains(titles.0)),
        "{file}: no x-axis title with {:?}",
        titles.0
    );
    assert!(
        ls.iter().any(|l| l.rotated && l.text.contains(titles.1)),
        "{file}: no y-axis title with {:?}",
        titles.1
    );
    for (axis, anchor, (lo, hi)) in [("x", "middle", x), ("y", "end", y)] {
        let t = ticks(&ls, anchor);
        let (first, last) = (
            t.iter().copied().fold(f64::INFINITY, f64::min),
            t.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        );
        assert!(t.len() >= 2, "{file}: {axis} axis has ticks {t:?}");
        assert!(
            first <= lo * (1.0 + 1e-9) && last >= hi * (1.0 - 1e-9),
            "{file}: {axis} ticks {t:?} do not span the data {lo}..{hi}"
        );
    }
}

/// The saturation run, made up: workers 1, 2, 4 × light (30–45k/s) and heavy
/// (~500/s) requests over concurrency 1–32, p99 800 µs–9 ms; and a seventh series
/// (workers 8) whose only run failed.
fn saturation_like() -> Analysed {
    let mut cells = Vec::new();
    let mut rows: Vec<ResultRow> = Vec::new();
    for workers in [1, 2, 4] {
        for size in [10_000, 500_000] {
            for conc in [1u64, 2, 4, 8, 16, 32] {
                let id = format!("c{:03}", cells.len() + 1);
                let mut c = cell(conc, None);
                c.workers = workers;
                c.size = size;
                let k = conc.ilog2() as f64;
                let (tput, p99) = if size == 10_000 {
                    (
                        30_000.0 + 2_500.0 * k + 500.0 * workers as f64,
                        800.0 + 100.0 * k,
                    )
                } else {
                    (480.0 + 10.0 * k * workers as f64, 1500.0 + 1500.0 * k)
                };
                rows.push(row(&id, &c, 1, Some((tput, p99))));
                cells.push((id, c));
            }
        }
    }
    let mut c = cell(4, None);
    c.workers = 8;
    rows.push(row("c037", &c, 1, None));
    cells.push(("c037".into(), c));
    let cells: Vec<(&str, Cell)> = cells.iter().map(|(i, c)| (i.as_str(), c.clone())).collect();
    run(&cells, rows, None)
}

/// Every file `chart` renders from `run`, by name.
fn render(chart: &dyn Chart, run: &Analysed) -> BTreeMap<String, String> {
    chart
        .render(run)
        .unwrap()
        .into_iter()
        .map(|a| {
            let name = a.path.file_name().unwrap().to_string_lossy().into_owned();
            (name, String::from_utf8(a.bytes).unwrap())
        })
        .collect()
}

fn one(chart: &dyn Chart, run: &Analysed) -> String {
    let files = render(chart, run);
    assert_eq!(files.len(), 1, "{:?}", files.keys());
    files.into_values().next().unwrap()
}

/// A chart, its file, its axis titles and the data's x and y extents.
type Case<'a> = (
    &'a dyn Chart,
    &'a str,
    (&'a str, &'a str),
    (f64, f64),
    (f64, f64),
);

#[test]
fn series_charts_name_their_axes_and_tick_past_the_data() {
    let r = saturation_like();
    let (tput, p99) = ((480.0, 44_500.0), (800.0, 9_000.0));
    let conc = (1.0, 32.0);
    let cases: [Case; 4] = [
        (
            &throughput_vs_concurrency::ThroughputVsConcurrency,
            "throughput_vs_concurrency",
            ("client concurrency", "throughput"),
            conc,
            tput,
        ),
        (
            &p99_vs_concurrency::P99VsConcurrency,
            "p99_vs_concurrency",
            ("client concurrency", "p99 latency"),
            conc,
            p99,
        ),
        (
            &latency_vs_throughput::LatencyVsThroughput,
            "latency_vs_throughput",
            ("throughput", "p99 latency"),
            tput,
            p99,
        ),
        (
            &cpu_vs_concurrency::CpuVsConcurrency,
            "cpu_vs_concurrency",
            ("client concurrency", "server CPU"),
            conc,
            // The fixture's server CPU (150%) and the machine's 2 cores.
            (150.0, 200.0),
        ),
    ];
    for (chart, file, titles, x, y) in cases {
        let svg = one(chart, &r);
        assert_readable(file, &svg, titles, x, y);
        // The legend lists the six series with points, not the one whose run failed.
        let ls = labels(&svg);
        let listed = |label: &str| ls.iter().any(|l| l.text == label);
        let (empty, full): (Vec<_>, Vec<_>) = r.analysis.series.iter().partition(|s| {
            s.points
                .iter()
                .all(|&p| r.analysis.cells[p].median(Metric::Throughput).is_none())
        });
        assert_eq!((empty.len(), full.len()), (1, 6), "the fixture's series");
        assert!(!listed(&empty[0].label), "{file} lists {}", empty[0].label);
        for s in full {
            assert!(listed(&s.label), "{file} does not list {}", s.label);
        }
    }
}

#[test]
fn the_p99_vs_throughput_points_say_their_concurrency() {
    let svg = one(
        &latency_vs_throughput::LatencyVsThroughput,
        &saturation_like(),
    );
    let ls = labels(&svg);
    // Point labels are left-anchored (tick labels are centred or right-aligned).
    let tags: Vec<&str> = ls
        .iter()
        .filter(|l| l.anchor == "start")
        .map(|l| l.text.as_str())
        .collect();
    for c in ["1", "2", "4", "8", "16", "32"] {
        assert_eq!(
            tags.iter().filter(|t| **t == c).count(),
            6,
            "concurrency {c} labels the six series' points: {tags:?}"
        );
    }
}

/// `n` one-second intervals of 100 answers each.
fn seconds(n: u64) -> Vec<Interval> {
    (0..n)
        .map(|s| {
            let mut hist = hdrhistogram::Histogram::new(3).unwrap();
            for k in 0..100 {
                hist.record(500_000 + k * 1_000).unwrap();
            }
            Interval {
                start_s: s as f64,
                length_s: 1.0,
                hist,
            }
        })
        .collect()
}

#[test]
fn over_time_draws_the_cells_that_matter_once_runs_are_long_enough() {
    let mut r = saturation_like();
    let peak = r.analysis.cells[r.analysis.peak.unwrap()].id.clone();
    r.data.intervals.insert(format!("{peak}-r1"), seconds(4));
    assert!(
        render(&over_time::OverTime, &r).is_empty(),
        "4 intervals: no chart"
    );
    assert!(over_time::OverTime.figures(&r).is_empty());
    // Another cell's long log is not drawn: it is neither the peak nor a saturation point.
    r.data.intervals.insert("c001-r1".into(), seconds(8));
    r.data.intervals.insert(format!("{peak}-r1"), seconds(6));
    let svg = one(&over_time::OverTime, &r);
    let texts: Vec<String> = labels(&svg).into_iter().map(|l| l.text).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with(&format!("{peak} (peak"))),
        "{texts:?}"
    );
    assert!(!texts.iter().any(|t| t.starts_with("c001 ")), "{texts:?}");
    assert_readable(
        "over_time.svg",
        &svg,
        ("seconds into the measured phase", "answers per second"),
        (1.0, 6.0),
        (100.0, 100.0),
    );
}

#[test]
fn the_cpu_timeline_marks_the_warm_up_and_the_clients_exit() {
    let mut r = saturation_like();
    let peak = r.analysis.cells[r.analysis.peak.unwrap()].id.clone();
    // Warm-up 0.5 s and 2 s measured (the fixture's), then one sample after the client
    // exited.
    let samples: Vec<Sample> = [0.1, 0.6, 1.2, 2.4, 2.55]
        .iter()
        .map(|&t| Sample {
            t_s: t,
            server_cpu_s: t,
            client_cpu_s: t / 2.0,
            machine_cpu_s: t * 2.0,
            server_pct: 100.0,
            client_pct: 50.0,
            machine_pct: 190.0,
            footprint: None,
        })
        .collect();
    r.data.cpu.insert(format!("{peak}-r1"), samples);
    let svg = one(&cpu_timeline::CpuTimeline, &r);
    let texts: Vec<String> = labels(&svg).into_iter().map(|l| l.text).collect();
    for t in ["warm-up", "after: client exits"] {
        assert!(texts.iter().any(|x| x == t), "{t}: {texts:?}");
    }
    assert_readable(
        "cpu_timeline.svg",
        &svg,
        ("time since the client started", "CPU"),
        (0.1, 2.55),
        (50.0, 200.0),
    );
}
