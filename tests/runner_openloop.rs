//! `threadcenter run` with a `rate` axis, end to end: closed- and open-loop cells in one
//! small experiment, their rows in results.csv and summary.csv, the load model and the
//! sustainable rate in report.md, the hockey-stick plot, and a re-render that matches.

mod common;

use std::collections::HashMap;
use std::fs;

use common::{num, read_csv, run_experiment, threadcenter};

const EXPERIMENT: &str = r#"name = "openloop"
description = "closed loop beside two open-loop rates"
repetitions = 1
warmup = "200ms"
duration = "1s"

[client]
pipeline = 8

[slo]
p99 = "2s"

[matrix]
workers = [1]
cmd = "ping"
concurrency = [2]
rate = ["closed", 200, 400]
"#;

#[test]
fn a_rate_axis_runs_open_loop_cells_and_the_report_names_the_model_and_the_sustainable_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = run_experiment(tmp.path(), "openloop.toml", EXPERIMENT);

    // results.csv: one row per cell, the rate and load model, the open-loop figures.
    let rows = read_csv(&dir.join("results.csv"));
    assert_eq!(rows.len(), 3, "{rows:?}");
    let by_rate: HashMap<&str, &HashMap<String, String>> =
        rows.iter().map(|r| (r["rate"].as_str(), r)).collect();
    let closed = by_rate["closed"];
    assert_eq!(closed["load_model"], "closed");
    for col in ["offered_rps", "sent_rps", "latency_p99_uncorrected_us"] {
        assert_eq!(closed[col], "", "closed loop has no {col}");
    }
    for rate in ["200", "400"] {
        let r = by_rate[rate];
        assert_eq!(r["status"], "ok", "{r:?}");
        assert_eq!(r["load_model"], "open");
        let offered: f64 = rate.parse().unwrap();
        assert_eq!(num(r, "offered_rps"), offered);
        // 1 s at the rate, after the warm-up: the client's exact schedule.
        assert_eq!(num(r, "sent"), offered, "{r:?}");
        // Never ahead of that schedule (how far behind is the scheduler's, on a loaded
        // machine); sent_rps is written to 0.001.
        assert!(
            num(r, "sent_rps") > 0.0 && num(r, "sent_rps") <= offered + 0.0005,
            "{r:?}"
        );
        assert!(num(r, "latency_p99_uncorrected_us") <= num(r, "latency_p99_us"));
        assert!(num(r, "lateness_p99_us") >= 0.0);
        // The client was asked for the open loop with the file's pipeline.
        let doc: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(dir.join("client").join(format!("{}-r1.json", r["cell"]))).unwrap(),
        )
        .unwrap();
        assert_eq!(doc["load_model"], "open");
        assert_eq!(doc["config"]["pipeline"], 8);
    }

    // summary.csv carries the rate and the open-loop medians.
    let summary = read_csv(&dir.join("summary.csv"));
    let open: Vec<_> = summary.iter().filter(|r| r["rate"] != "closed").collect();
    assert_eq!(open.len(), 2);
    for r in open {
        assert!(num(r, "sent_rps") > 0.0 && num(r, "latency_p99_uncorrected_us") > 0.0);
    }

    // report.md: the model of every cell, the sustainable rate at the SLO, the plot.
    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    for needle in [
        "| load model |",
        "| closed loop |",
        "| open loop, 200 req/s, pipeline 8 |",
        "| open loop, 400 req/s, pipeline 8 |",
        "SLO: **p99 ≤ 2.00 s**",
        "every tested rate met the SLO, up to 400 req/s",
        "open_loop_latency_vs_throughput.svg",
    ] {
        assert!(
            report.contains(needle),
            "{needle:?} not in report.md:\n{report}"
        );
    }
    let svg = fs::read_to_string(
        dir.join("plots")
            .join("open_loop_latency_vs_throughput.svg"),
    )
    .unwrap();
    for needle in ["(corrected)", "(uncorrected)", "SLO: p99 2.00 s"] {
        assert!(svg.contains(needle), "{needle:?} not in the plot");
    }

    // The report re-renders from the raw files to the same bytes.
    let before = (report, svg);
    let again = threadcenter(&["report", dir.to_str().unwrap()]);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let after = (
        fs::read_to_string(dir.join("report.md")).unwrap(),
        fs::read_to_string(
            dir.join("plots")
                .join("open_loop_latency_vs_throughput.svg"),
        )
        .unwrap(),
    );
    assert!(
        before == after,
        "re-rendering changed the report or the plot"
    );
}
