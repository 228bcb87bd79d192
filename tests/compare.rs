//! `threadcenter report DIR --baseline OTHER` on synthetic run directories: manifest.json
//! and results.csv written here with chosen figures (through the run store's own writers,
//! so they are what a run writes), then judged by the real binary, whose exit status and
//! files (compare.md, compare.csv, compare.svg) are read back.
//!
//! A clear regression exits 1, a clear improvement 0, pure noise and too few repetitions
//! 2, and every error 3, so an error is never read as a verdict. Two cells × five
//! metrics make a family of 10 tests (Holm), which needs 6 repetitions a side.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use threadcenter::rundir::{
    cell_id, run_name, CpuMeans, MachineInfo, Measured, ResultRow, ResultsWriter, RunStatus, Status,
};
use threadcenter::runner::{experiment, store::new_manifest};

/// What one repetition measured.
#[derive(Clone, Copy)]
struct Fig {
    throughput: f64,
    p50: f64,
    server_cpu: f64,
}

impl Fig {
    fn scaled(self, speed: f64) -> Fig {
        // `speed` times the throughput, latency divided by it, same CPU per request.
        Fig {
            throughput: self.throughput * speed,
            p50: self.p50 / speed,
            server_cpu: self.server_cpu * speed,
        }
    }
}

/// A deterministic jitter of about ±1%.
fn jitter(rep: u32) -> f64 {
    [
        1.0, 1.008, 0.992, 1.004, 0.996, 1.01, 0.99, 1.002, 0.998, 1.006,
    ][rep as usize % 10]
}

const BASE: Fig = Fig {
    throughput: 1000.0,
    p50: 2000.0,
    server_cpu: 100.0,
};

/// Every repetition of every cell measures [`BASE`], with its jitter.
fn steady(_: usize, _: &str, rep: u32) -> Option<Fig> {
    Some(BASE.scaled(jitter(rep)))
}

/// Writes a run directory for `toml` whose repetition `rep` of cell `i` (target `t`)
/// measured `fig(i, t, rep)`, or failed when it gives `None`.
fn write_run(dir: &Path, toml: &str, fig: &dyn Fn(usize, &str, u32) -> Option<Fig>) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let exp = experiment::parse(&dir.join("experiment.toml"), toml).unwrap();
    let ids: Vec<String> = (0..exp.cells.len())
        .map(|i| cell_id(i, exp.cells.len()))
        .collect();
    let machine = MachineInfo {
        cpu_model: "Synthetic CPU".into(),
        logical_cores: 4,
        physical_cores: Some(4),
        memory_bytes: 1 << 33,
        os: "test".into(),
        kernel: "test".into(),
        governor: Some("performance".into()),
        load_before: [0.1, 0.1, 0.1],
    };
    let reps = exp.settings.repetitions;
    let runs: Vec<String> = (1..=reps)
        .flat_map(|r| ids.iter().map(move |id| run_name(id, r)))
        .collect();
    let mut manifest = new_manifest(&exp, machine, &ids, None, runs);
    let mut results = ResultsWriter::create(dir).unwrap();
    let mut seq = 0;
    for rep in 1..=reps {
        for (i, cell) in exp.cells.iter().enumerate() {
            seq += 1;
            let mut row = ResultRow {
                cell_id: ids[i].clone(),
                rep,
                seq,
                cell: cell.clone(),
                status: Status::Failed,
                reason: "the server exited during the cell".into(),
                measured: None,
                cpu: None,
                footprint: None,
                stages: None,
                startup_s: 0.05,
                stop_s: 0.05,
                wall_s: 1.2,
            };
            if let Some(f) = fig(i, &cell.target, rep) {
                let ok = f.throughput.round() as u64;
                row.status = Status::Ok;
                row.reason.clear();
                row.measured = Some(Measured {
                    sent: ok,
                    ok,
                    failed: 0,
                    duration_s: 1.0,
                    throughput_rps: f.throughput,
                    latency_mean_us: f.p50 * 1.1,
                    latency_p50_us: f.p50,
                    latency_p90_us: f.p50 * 1.5,
                    latency_p99_us: f.p50 * 2.0,
                    latency_p99_9_us: f.p50 * 3.0,
                    latency_max_us: f.p50 * 4.0,
                    open: None,
                });
                row.cpu = Some(CpuMeans {
                    server_pct: f.server_cpu,
                    client_pct: 20.0,
                    machine_pct: f.server_cpu + 20.0,
                    server_peak_pct: f.server_cpu + 5.0,
                });
            }
            manifest.runs_done += 1;
            if row.status == Status::Failed {
                manifest.runs_failed += 1;
            }
            results.append(&row).unwrap();
        }
    }
    manifest.status = RunStatus::Complete;
    manifest.finished_at = Some(manifest.started_at.clone());
    manifest.write(dir).unwrap();
    fs::write(dir.join("experiment.toml"), toml).unwrap();
    dir.to_path_buf()
}

fn toml(reps: u32, extra: &str) -> String {
    format!(
        "name = \"syn\"\nrepetitions = {reps}\nduration = \"1s\"\n{extra}\n[matrix]\nworkers = [2]\nsize = [1000]\nconcurrency = [2, 8]\n"
    )
}

fn report(args: &[&Path], flags: &[&str]) -> Output {
    let mut all: Vec<String> = vec!["report".into()];
    all.push(args[0].display().to_string());
    if let Some(base) = args.get(1) {
        all.push("--baseline".into());
        all.push(base.display().to_string());
    }
    all.extend(flags.iter().map(|s| s.to_string()));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    common::threadcenter(&refs)
}

fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// compare.csv as (new cell, metric) → row.
type Verdicts = HashMap<(String, String), HashMap<String, String>>;

fn verdicts(dir: &Path) -> Verdicts {
    let mut r = csv::Reader::from_path(dir.join("compare.csv")).unwrap();
    let headers: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
    r.records()
        .map(|rec| {
            let row: HashMap<String, String> = headers
                .iter()
                .cloned()
                .zip(rec.unwrap().iter().map(str::to_string))
                .collect();
            ((row["new_cell"].clone(), row["metric"].clone()), row)
        })
        .collect()
}

/// The compare.csv row of `cell` (new side) and metric `m`.
fn row<'a>(v: &'a Verdicts, cell: &str, m: &str) -> &'a HashMap<String, String> {
    &v[&(cell.to_string(), m.to_string())]
}

fn verdict(v: &Verdicts, cell: &str, m: &str) -> String {
    row(v, cell, m)["verdict"].clone()
}

/// Two runs (6 repetitions) in `dir`: a steady baseline, and a new run whose cell c002
/// (concurrency 8) is 20% slower while c001 is the same. Returns (base, new).
fn a_slower_c002(dir: &Path) -> (PathBuf, PathBuf) {
    let t = toml(6, "");
    let base = write_run(&dir.join("base"), &t, &steady);
    let new = write_run(&dir.join("new"), &t, &|i, _, r| {
        let speed = if i == 1 { 0.8 } else { 1.0 };
        Some(BASE.scaled(speed * jitter(r + 3)))
    });
    (base, new)
}

#[test]
fn a_clear_regression_exits_1_and_writes_its_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (base, new) = a_slower_c002(tmp.path());
    let out = report(&[&new, &base], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = verdicts(&new);
    assert_eq!(verdict(&v, "c002", "throughput"), "regressed");
    assert_eq!(verdict(&v, "c002", "p50"), "regressed");
    assert_eq!(verdict(&v, "c002", "p99_9"), "regressed");
    assert_eq!(verdict(&v, "c002", "cpu_per_request"), "unchanged");
    assert_eq!(verdict(&v, "c001", "throughput"), "unchanged");
    let row = row(&v, "c002", "throughput");
    let ratio: f64 = row["ratio"].parse().unwrap();
    let (lo, hi): (f64, f64) = (
        row["ci_low"].parse().unwrap(),
        row["ci_high"].parse().unwrap(),
    );
    assert!(
        (ratio - 0.8).abs() < 0.02 && lo <= ratio && ratio <= hi && hi < 0.95,
        "{row:?}"
    );
    assert_eq!(row["design"], "independent");

    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("REGRESSED") && stdout.contains("exit 1"),
        "{stdout}"
    );
    let md = fs::read_to_string(new.join("compare.md")).unwrap();
    assert!(md.starts_with("# Comparison: REGRESSION"), "{md}");
    assert!(md.contains("(compare.svg)"));
    let svg = fs::read_to_string(new.join("compare.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("compare.svg is well-formed XML");
    let texts: String = doc
        .descendants()
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        texts.contains("regressed") && texts.contains("p99.9"),
        "{texts}"
    );

    // Deterministic: the same comparison gives the same bytes.
    let before: Vec<Vec<u8>> = ["compare.md", "compare.csv", "compare.svg"]
        .iter()
        .map(|f| fs::read(new.join(f)).unwrap())
        .collect();
    let again = report(&[&new, &base], &[]);
    assert_eq!(again.status.code(), Some(1));
    let after: Vec<Vec<u8>> = ["compare.md", "compare.csv", "compare.svg"]
        .iter()
        .map(|f| fs::read(new.join(f)).unwrap())
        .collect();
    assert!(before == after, "a second comparison wrote different bytes");
}

#[test]
fn a_clear_improvement_exits_0() {
    let tmp = tempfile::tempdir().unwrap();
    let t = toml(6, "");
    let base = write_run(&tmp.path().join("base"), &t, &steady);
    let new = write_run(&tmp.path().join("new"), &t, &|_, _, r| {
        Some(BASE.scaled(1.25 * jitter(r + 5)))
    });
    let out = report(&[&new, &base], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = verdicts(&new);
    for cell in ["c001", "c002"] {
        assert_eq!(verdict(&v, cell, "throughput"), "improved");
        assert_eq!(verdict(&v, cell, "p99"), "improved");
    }
    assert!(String::from_utf8_lossy(&out.stdout).contains("NO REGRESSION"));
}

#[test]
fn pure_noise_is_inconclusive_and_exits_2() {
    let tmp = tempfile::tempdir().unwrap();
    let t = toml(6, "");
    // Both sides draw from the same wide spread (±30%), in different orders.
    let wide = |k: u32| [1.0, 1.3, 0.7, 1.15, 0.85, 1.25, 0.75, 1.05][k as usize % 8];
    let base = write_run(&tmp.path().join("base"), &t, &|_, _, r| {
        Some(BASE.scaled(wide(r)))
    });
    let new = write_run(&tmp.path().join("new"), &t, &|_, _, r| {
        Some(BASE.scaled(wide(r + 3)))
    });
    let out = report(&[&new, &base], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let v = verdicts(&new);
    let tp = row(&v, "c001", "throughput");
    assert_eq!(tp["verdict"], "inconclusive");
    assert!(tp["reason"].contains("too noisy"), "{tp:?}");
    assert!(v.values().all(|r| r["verdict"] != "regressed"));
    // The spread is called out.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("too wide to trust a comparison"),
        "{stdout}"
    );
}

#[test]
fn too_few_repetitions_are_inconclusive_and_say_how_many_are_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let t = toml(3, "");
    let base = write_run(&tmp.path().join("base"), &t, &steady);
    // Even a halving cannot be told apart with 3 against 3.
    let new = write_run(&tmp.path().join("new"), &t, &|_, _, r| {
        Some(BASE.scaled(0.5 * jitter(r)))
    });
    let out = report(&[&new, &base], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let v = verdicts(&new);
    for row in v.values() {
        assert_eq!(row["verdict"], "inconclusive");
        // 2 cells × 5 metrics = 10 tests: Holm's first step asks p ≤ 0.005, which takes
        // 6 repetitions a side; a 95% interval of a median takes 6 as well.
        assert_eq!(
            row["reason"], "too few repetitions: 3 and 3, 6 needed a side",
            "{row:?}"
        );
        // Three values cannot support a 95% interval: none is given.
        assert_eq!(
            (row["ci_low"].as_str(), row["ci_high"].as_str()),
            ("", ""),
            "{row:?}"
        );
    }
    // What is missing and how to get it is said once, on lines a terminal can show.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout
            .matches("inconclusive for too few repetitions")
            .count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains("`repetitions = 6`"), "{stdout}");
    assert!(
        stdout.lines().all(|l| l.chars().count() <= 160),
        "a line longer than 160 characters:\n{stdout}"
    );
    let md = fs::read_to_string(new.join("compare.md")).unwrap();
    assert_eq!(md.matches("**Too few repetitions.**").count(), 1, "{md}");
    assert!(md.contains("10 of 10 verdicts are inconclusive"), "{md}");
}

#[test]
fn two_targets_of_one_run_are_paired_and_drift_cancels() {
    let tmp = tempfile::tempdir().unwrap();
    let t = "name = \"pair\"\nrepetitions = 8\nduration = \"1s\"\norder = \"interleaved\"\n\
             [targets.base]\n[targets.head]\n[matrix]\nworkers = [2]\nsize = [1000]\nconcurrency = [2]\n";
    // The machine's speed drifts by ±30% between repetitions; head is 10% slower in
    // every pair.
    let drift = |r: u32| [1.0, 1.3, 0.75, 1.2, 0.8, 1.1, 0.7, 1.25, 0.9][r as usize % 9];
    let dir = write_run(&tmp.path().join("run"), t, &|_, target, r| {
        let own = if target == "head" { 0.9 } else { 1.0 };
        Some(BASE.scaled(drift(r) * own * jitter(r)))
    });
    let out = report(&[&dir], &["--baseline-target", "base"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = verdicts(&dir);
    let row = row(&v, "c002", "throughput");
    assert_eq!(row["verdict"], "regressed", "{row:?}");
    assert_eq!(row["design"], "paired");
    assert_eq!(row["base_cell"], "c001");
    // Each side alone spreads 60%: as two independent runs, that is noise.
    let base = write_run(&tmp.path().join("a"), &toml(8, ""), &|_, _, r| {
        Some(BASE.scaled(drift(r)))
    });
    let new = write_run(&tmp.path().join("b"), &toml(8, ""), &|_, _, r| {
        Some(BASE.scaled(drift(r) * 0.9))
    });
    let out = report(&[&new, &base], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}

#[test]
fn thresholds_come_from_the_experiment_file_and_the_command_line() {
    let tmp = tempfile::tempdir().unwrap();
    let slower = |_: usize, _: &str, r: u32| Some(BASE.scaled(0.92 * jitter(r + 1)));
    // 8% slower: a regression at the default 5%.
    let base = write_run(&tmp.path().join("base"), &toml(6, ""), &steady);
    let new = write_run(&tmp.path().join("new"), &toml(6, ""), &slower);
    let out = report(&[&new, &base], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    // Not at 12%, given on the command line.
    let out = report(&[&new, &base], &["--threshold", "12%"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // Nor when the new run's experiment file says so…
    let lenient = toml(6, "[compare]\nthreshold = \"12%\"\n");
    let new2 = write_run(&tmp.path().join("new2"), &lenient, &slower);
    let out = report(&[&new2, &base], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v = verdicts(&new2);
    assert_eq!(
        v[&("c001".to_string(), "p50".to_string())]["threshold_pct"],
        "12.00"
    );
    // …unless the command line overrides it for one metric.
    let out = report(&[&new2, &base], &["--threshold", "throughput=5%"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = verdicts(&new2);
    assert_eq!(verdict(&v, "c001", "throughput"), "regressed");
    assert_eq!(verdict(&v, "c001", "p50"), "unchanged");
}

#[test]
fn errors_exit_3_and_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let t = toml(6, "");
    let base = write_run(&tmp.path().join("base"), &t, &steady);
    let new = write_run(&tmp.path().join("new"), &t, &steady);
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    let missing = tmp.path().join("nowhere");
    let out = report(&[&new, &missing], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(stderr(&out).contains("nowhere"), "{}", stderr(&out));

    let out = report(&[&new, &base], &["--threshold", "5"]);
    assert_eq!(out.status.code(), Some(3), "bad flag: {}", text(&out));
    let out = report(&[&new, &base], &["--no-such-flag"]);
    assert_eq!(out.status.code(), Some(3), "unknown flag: {}", text(&out));

    let corrupt = write_run(&tmp.path().join("corrupt"), &t, &steady);
    fs::write(corrupt.join("results.csv"), "cell,rep\nc001,x\n").unwrap();
    let out = report(&[&new, &corrupt], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(stderr(&out).contains("results.csv"), "{}", stderr(&out));

    let future = write_run(&tmp.path().join("future"), &t, &steady);
    let m = fs::read_to_string(future.join("manifest.json")).unwrap();
    fs::write(
        future.join("manifest.json"),
        m.replace(
            &format!(
                "\"schema_version\": {}",
                threadcenter::rundir::SCHEMA_VERSION
            ),
            "\"schema_version\": 99",
        ),
    )
    .unwrap();
    let out = report(&[&new, &future], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stderr(&out).contains("schema_version 99"),
        "{}",
        stderr(&out)
    );

    // Nothing in common: other concurrencies.
    let other = write_run(
        &tmp.path().join("other"),
        &t.replace("concurrency = [2, 8]", "concurrency = [16]"),
        &steady,
    );
    let out = report(&[&new, &other], &[]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stderr(&out).contains("nothing to compare"),
        "{}",
        stderr(&out)
    );

    // A target that is not there.
    let out = report(&[&new], &["--baseline-target", "nope"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stderr(&out).contains("no target \"nope\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn failed_repetitions_are_left_out_and_said() {
    let tmp = tempfile::tempdir().unwrap();
    let t = toml(8, "");
    let base = write_run(&tmp.path().join("base"), &t, &steady);
    // Two of c001's repetitions failed: 6 are left, still enough for the test.
    let new = write_run(&tmp.path().join("new"), &t, &|i, _, r| {
        (i != 0 || r > 2).then(|| BASE.scaled(0.7 * jitter(r)))
    });
    let out = report(&[&new, &base], &[]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let v = verdicts(&new);
    let row = row(&v, "c001", "throughput");
    assert_eq!((row["n_base"].as_str(), row["n_new"].as_str()), ("8", "6"));
    assert_eq!(row["verdict"], "regressed");
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 failed repetitions left out"));
}

#[test]
fn a_reader_that_goes_away_does_not_change_the_verdict() {
    // `report NEW --baseline OLD | head -1`: the pipe closes before the table is
    // written. The comparison still writes its files and exits by its verdict (1 here),
    // never with a panic.
    let tmp = tempfile::tempdir().unwrap();
    let (base, new) = a_slower_c002(tmp.path());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_threadcenter"));
    cmd.arg("report")
        .arg(&new)
        .arg("--baseline")
        .arg(&base)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut guard = common::ChildGuard::spawn(cmd).unwrap();
    drop(guard.child_mut().stdout.take()); // the reader is gone before a byte is read
    let mut stderr = String::new();
    std::io::Read::read_to_string(guard.child_mut().stderr.as_mut().unwrap(), &mut stderr).unwrap();
    let status = guard
        .wait_timeout(common::PROCESS_LIMIT)
        .expect("report exits");
    assert_eq!(status.code(), Some(1), "stderr: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(new.join("compare.csv").exists());
}
