//! Run directories written by every schema version still read: one fixture a version in
//! tests/fixtures/rundir/ (its README says which commit wrote each), read back through
//! `rundir` and checked against the raw text of its files, then rendered by the real
//! binary's `report` from a copy (the fixtures are never written).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use threadcenter::rundir::{
    self, Manifest, ResultRow, RunStatus, Status, SCHEMA_VERSION, SCHEMA_VERSIONS_READ,
};

/// A fixture run directory, and what the threadcenter that wrote it recorded.
struct Fixture {
    /// Under tests/fixtures/rundir/.
    dir: &'static str,
    schema_version: u32,
    /// The writer's build (`tool.git_commit`): the commit README.md names.
    git_commit: &'static str,
    /// Every cell of the manifest, in order.
    cells: &'static [&'static str],
    /// Every row of results.csv, in file order.
    runs: &'static [Run],
    /// Columns of today's results.csv that this version did not write yet.
    absent_columns: &'static [&'static str],
    /// The version wrote the server's stage timings (`stats/`, `server_*` columns).
    stages: bool,
    /// The manifest holds the machine's `limits`.
    limits: bool,
    /// The manifest holds `[compare]` thresholds.
    compare: bool,
    /// `[slo] p99` in microseconds, as the manifest records it.
    slo_p99_us: Option<f64>,
    /// The target run from another threadcenter executable (`binary`), if any.
    binary_target: Option<&'static str>,
}

/// One row of results.csv as the file holds it.
struct Run {
    cell: &'static str,
    status: Status,
    /// `sent`, `throughput_rps` and `rate`; `None` where the run measured nothing.
    sent: Option<u64>,
    throughput_rps: Option<f64>,
    rate: Option<u64>,
}

const STAGE_COLUMNS: [&str; 13] = [
    "server_timed",
    "server_queue_mean_us",
    "server_queue_p50_us",
    "server_queue_p99_us",
    "server_service_mean_us",
    "server_service_p50_us",
    "server_service_p99_us",
    "server_return_mean_us",
    "server_return_p50_us",
    "server_return_p99_us",
    "server_total_mean_us",
    "server_total_p50_us",
    "server_total_p99_us",
];

const FIXTURES: &[Fixture] = &[
    Fixture {
        dir: "v1-early",
        schema_version: 1,
        git_commit: "784b3daa0bc6",
        cells: &["c001", "c002"],
        runs: &[
            ok("c001", 10365, 19937.145, None),
            ok("c002", 677, 1348.548, None),
        ],
        absent_columns: &[
            "startup_s",
            "stop_s",
            "rate",
            "load_model",
            "offered_rps",
            "sent_rps",
            "latency_p99_uncorrected_us",
            "lateness_p99_us",
            "server_timed",
        ],
        stages: false,
        limits: false,
        compare: false,
        slo_p99_us: None,
        binary_target: None,
    },
    Fixture {
        dir: "v1",
        schema_version: 1,
        git_commit: "942293a2b514",
        cells: &["c001", "c002", "c003"],
        runs: &[
            ok("c001", 3014, 6025.150, None),
            ok("c002", 250, 501.864, Some(500)),
            NEVER_STARTED,
        ],
        absent_columns: &STAGE_COLUMNS,
        stages: false,
        limits: false,
        compare: false,
        slo_p99_us: Some(20_000.0),
        binary_target: None,
    },
    Fixture {
        dir: "v2",
        schema_version: 2,
        git_commit: "277a0b769042",
        cells: &["c001", "c002", "c003"],
        runs: &[
            ok("c001", 17705, 35308.742, None),
            ok("c002", 250, 479.716, Some(500)),
            NEVER_STARTED,
        ],
        absent_columns: &[],
        stages: true,
        limits: false,
        compare: false,
        slo_p99_us: Some(20_000.0),
        binary_target: None,
    },
    Fixture {
        dir: "v2-compare",
        schema_version: 2,
        git_commit: "945c5f607099",
        cells: &["c001", "c002"],
        runs: &[
            ok("c001", 6762, 13516.252, None),
            ok("c002", 4268, 8478.418, None),
        ],
        absent_columns: &[
            "rate",
            "load_model",
            "offered_rps",
            "sent_rps",
            "latency_p99_uncorrected_us",
            "lateness_p99_us",
            "server_timed",
        ],
        stages: false,
        limits: true,
        compare: true,
        slo_p99_us: None,
        binary_target: Some("other"),
    },
    Fixture {
        dir: "v3",
        schema_version: 3,
        git_commit: "d3058d4a9126",
        cells: &["c001", "c002", "c003"],
        runs: &[
            ok("c001", 16875, 33536.962, None),
            ok("c002", 250, 501.968, Some(500)),
            NEVER_STARTED,
        ],
        absent_columns: &[],
        stages: true,
        limits: true,
        compare: true,
        slo_p99_us: Some(20_000.0),
        binary_target: None,
    },
    Fixture {
        dir: "v4",
        schema_version: 4,
        git_commit: "e5e621f484b1",
        cells: &["c001", "c002", "c003", "c004"],
        runs: &[
            ok("c001", 6871, 13737.503, None),
            ok("c002", 1658, 3306.770, None),
            ok("c003", 250, 454.247, Some(500)),
            Run {
                cell: "c004",
                ..NEVER_STARTED
            },
        ],
        absent_columns: &[],
        stages: true,
        limits: true,
        compare: true,
        slo_p99_us: Some(20_000.0),
        binary_target: None,
    },
];

const fn ok(cell: &'static str, sent: u64, throughput_rps: f64, rate: Option<u64>) -> Run {
    Run {
        cell,
        status: Status::Ok,
        sent: Some(sent),
        throughput_rps: Some(throughput_rps),
        rate,
    }
}

/// c003 of the fixtures with a `broken` target: an external command that exits at once.
const NEVER_STARTED: Run = Run {
    cell: "c003",
    status: Status::Failed,
    sent: None,
    throughput_rps: None,
    rate: None,
};

fn fixture_path(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/rundir")
        .join(dir)
}

/// Copies a directory tree (files and directories only: the fixtures hold nothing else).
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A fixture copied into a fresh temporary directory, which `report` may write into.
fn copy_of(f: &Fixture) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join(f.dir);
    copy_dir(&fixture_path(f.dir), &dir);
    (tmp, dir)
}

/// A CSV file as text: its header and each record by column name, with no typing at all.
fn raw_csv(path: &Path) -> (Vec<String>, Vec<BTreeMap<String, String>>) {
    let mut reader =
        csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let header: Vec<String> = reader.headers().unwrap().iter().map(String::from).collect();
    let records = reader
        .records()
        .map(|r| {
            let r = r.unwrap();
            assert_eq!(r.len(), header.len(), "{}: ragged record", path.display());
            header
                .iter()
                .cloned()
                .zip(r.iter().map(String::from))
                .collect()
        })
        .collect();
    (header, records)
}

/// A numeric column as the file holds it: `None` when absent or empty.
fn num(raw: &BTreeMap<String, String>, column: &str) -> Option<f64> {
    raw.get(column).filter(|v| !v.is_empty()).map(|v| {
        v.parse()
            .unwrap_or_else(|e| panic!("column {column} = {v:?}: {e}"))
    })
}

fn int(raw: &BTreeMap<String, String>, column: &str) -> Option<u64> {
    raw.get(column).filter(|v| !v.is_empty()).map(|v| {
        v.parse()
            .unwrap_or_else(|e| panic!("column {column} = {v:?}: {e}"))
    })
}

/// Every field of a row read by `rundir::read_results` against the raw text of its line.
fn check_row_against_raw(row: &ResultRow, raw: &BTreeMap<String, String>) {
    let what = format!("run {}", row.run_name());
    assert_eq!(row.cell_id, raw["cell"], "{what}");
    assert_eq!(Some(u64::from(row.rep)), int(raw, "rep"), "{what}");
    assert_eq!(Some(row.seq as u64), int(raw, "seq"), "{what}");
    assert_eq!(row.cell.target, raw["target"], "{what}");
    assert_eq!(
        row.cell.pool.map_or("", |p| p.as_str()),
        raw["pool"],
        "{what}"
    );
    // Absent before schema 4: no `--io` was passed then.
    assert_eq!(
        row.cell.io.map_or("", |p| p.as_str()),
        raw.get("io").map_or("", String::as_str),
        "{what}"
    );
    assert_eq!(Some(row.cell.workers), int(raw, "workers"), "{what}");
    assert_eq!(row.cell.cmd.as_str(), raw["cmd"], "{what}");
    assert_eq!(Some(row.cell.size), int(raw, "size"), "{what}");
    assert_eq!(
        Some(row.cell.concurrency),
        int(raw, "concurrency"),
        "{what}"
    );
    match raw.get("rate").map(String::as_str) {
        None | Some("closed") => assert_eq!(row.cell.rate, None, "{what}"),
        Some(r) => assert_eq!(row.cell.rate, Some(r.parse().unwrap()), "{what}"),
    }
    assert_eq!(row.status.as_str(), raw["status"], "{what}");
    assert_eq!(row.reason, raw["reason"], "{what}");

    match &row.measured {
        None => assert_eq!(raw["sent"], "", "{what}: sent"),
        Some(m) => {
            assert_eq!(Some(m.sent), int(raw, "sent"), "{what}");
            assert_eq!(Some(m.ok), int(raw, "ok"), "{what}");
            assert_eq!(Some(m.failed), int(raw, "failed"), "{what}");
            for (column, value) in [
                ("duration_s", m.duration_s),
                ("throughput_rps", m.throughput_rps),
                ("latency_mean_us", m.latency_mean_us),
                ("latency_p50_us", m.latency_p50_us),
                ("latency_p90_us", m.latency_p90_us),
                ("latency_p99_us", m.latency_p99_us),
                ("latency_p99_9_us", m.latency_p99_9_us),
                ("latency_max_us", m.latency_max_us),
            ] {
                assert_eq!(Some(value), num(raw, column), "{what}: {column}");
            }
            match &m.open {
                None => assert_eq!(num(raw, "offered_rps"), None, "{what}"),
                Some(o) => {
                    for (column, value) in [
                        ("offered_rps", o.offered_rps),
                        ("sent_rps", o.sent_rps),
                        ("latency_p99_uncorrected_us", o.latency_p99_uncorrected_us),
                        ("lateness_p99_us", o.lateness_p99_us),
                    ] {
                        assert_eq!(Some(value), num(raw, column), "{what}: {column}");
                    }
                }
            }
        }
    }
    match &row.cpu {
        None => assert_eq!(num(raw, "server_cpu_pct"), None, "{what}"),
        Some(c) => {
            for (column, value) in [
                ("server_cpu_pct", c.server_pct),
                ("client_cpu_pct", c.client_pct),
                ("machine_cpu_pct", c.machine_pct),
                ("server_cpu_peak_pct", c.server_peak_pct),
            ] {
                assert_eq!(Some(value), num(raw, column), "{what}: {column}");
            }
        }
    }
    // Absent before startup_s and stop_s were written: read as 0.
    assert_eq!(
        row.startup_s,
        num(raw, "startup_s").unwrap_or(0.0),
        "{what}"
    );
    assert_eq!(row.stop_s, num(raw, "stop_s").unwrap_or(0.0), "{what}");
    // Schema 4's memory and threads: absent before, read as not measured.
    let f = row.footprint.as_ref();
    assert_eq!(
        f.map(|f| f.server_rss_kib),
        int(raw, "server_rss_kib"),
        "{what}"
    );
    assert_eq!(
        f.and_then(|f| f.client_rss_kib),
        int(raw, "client_rss_kib"),
        "{what}"
    );
    assert_eq!(
        f.map(|f| f.server_threads),
        int(raw, "server_threads"),
        "{what}"
    );
    assert_eq!(Some(row.wall_s), num(raw, "wall_s"), "{what}");
    match &row.stages {
        None => assert_eq!(int(raw, "server_timed"), None, "{what}"),
        Some(s) => {
            assert_eq!(Some(s.count), int(raw, "server_timed"), "{what}");
            for (stage, fig) in [
                ("queue", s.queue),
                ("service", s.service),
                ("return", s.return_),
                ("total", s.total),
            ] {
                for (stat, value) in [
                    ("mean", fig.mean_us),
                    ("p50", fig.p50_us),
                    ("p99", fig.p99_us),
                ] {
                    let column = format!("server_{stage}_{stat}_us");
                    assert_eq!(Some(value), num(raw, &column), "{what}: {column}");
                }
            }
        }
    }
}

fn check_manifest(f: &Fixture, dir: &Path) -> Manifest {
    let m = Manifest::read(dir).unwrap_or_else(|e| panic!("{}: {e:#}", f.dir));
    assert_eq!(m.schema_version, f.schema_version, "{}", f.dir);
    assert!(
        m.tool.git_commit.starts_with(f.git_commit),
        "{}: written by {}, README says {}",
        f.dir,
        m.tool.git_commit,
        f.git_commit
    );
    assert_eq!(m.status, RunStatus::Complete, "{}", f.dir);
    let ids: Vec<&str> = m.cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, f.cells, "{}", f.dir);
    assert_eq!(m.runs_done, f.runs.len(), "{}", f.dir);
    let failed = f.runs.iter().filter(|r| r.status == Status::Failed).count();
    assert_eq!(m.runs_failed, failed, "{}", f.dir);
    assert_eq!(m.order.runs.len(), f.runs.len(), "{}", f.dir);
    assert_eq!(m.limits.is_some(), f.limits, "{}: limits", f.dir);
    if let Some(limits) = &m.limits {
        assert!(!limits.compute.is_empty(), "{}: limits.compute", f.dir);
        assert!(!limits.loopback.levels.is_empty(), "{}", f.dir);
    }
    assert_eq!(
        !m.experiment.compare.is_empty(),
        f.compare,
        "{}: compare",
        f.dir
    );
    assert_eq!(m.experiment.slo_p99_us, f.slo_p99_us, "{}: slo", f.dir);
    for (name, target) in &m.experiment.targets {
        let want = f.binary_target == Some(name.as_str());
        assert_eq!(target.binary.is_some(), want, "{}: target {name}", f.dir);
    }
    m
}

/// Each row's cell is the manifest's cell of that id, axis for axis.
fn check_cells_agree(f: &Fixture, manifest: &Manifest, rows: &[ResultRow]) {
    for row in rows {
        let entry = manifest.cells.iter().find(|c| c.id == row.cell_id);
        assert_eq!(
            entry.map(|e| &e.cell),
            Some(&row.cell),
            "{}: {}",
            f.dir,
            row.cell_id
        );
    }
}

fn check_results(f: &Fixture, dir: &Path) -> Vec<ResultRow> {
    let rows = rundir::read_results(dir).unwrap_or_else(|e| panic!("{}: {e:#}", f.dir));
    let (header, raw) = raw_csv(&dir.join(rundir::RESULTS_FILE));
    for column in f.absent_columns {
        assert!(
            !header.iter().any(|h| h == column),
            "{}: results.csv has `{column}`, which this fixture is here to lack",
            f.dir
        );
    }
    assert_eq!(rows.len(), f.runs.len(), "{}", f.dir);
    assert_eq!(raw.len(), f.runs.len(), "{}", f.dir);
    for ((row, raw), want) in rows.iter().zip(&raw).zip(f.runs) {
        check_row_against_raw(row, raw);
        let what = format!("{}: run {}", f.dir, row.run_name());
        assert_eq!(row.cell_id, want.cell, "{what}");
        assert_eq!(row.rep, 1, "{what}");
        assert_eq!(row.status, want.status, "{what}");
        assert_eq!(row.cell.rate, want.rate, "{what}");
        let m = row.measured.as_ref();
        assert_eq!(m.map(|m| m.sent), want.sent, "{what}");
        assert_eq!(m.map(|m| m.throughput_rps), want.throughput_rps, "{what}");
        assert_eq!(row.reason.is_empty(), row.status == Status::Ok, "{what}");
        if let Some(m) = m {
            assert_eq!(m.ok + m.failed, m.sent, "{what}");
            // throughput_rps = ok / duration_s, each rounded to its column's decimals.
            let lo = m.ok as f64 / (m.duration_s + 5e-7) - 5e-4;
            let hi = m.ok as f64 / (m.duration_s - 5e-7) + 5e-4;
            assert!(
                (lo..=hi).contains(&m.throughput_rps),
                "{what}: {} not in {lo}..={hi}",
                m.throughput_rps
            );
            assert_eq!(m.open.is_some(), row.cell.rate.is_some(), "{what}");
            if let Some(o) = &m.open {
                assert_eq!(Some(o.offered_rps), want.rate.map(|r| r as f64), "{what}");
            }
        }
        if row.status == Status::Ok {
            assert!(row.cpu.is_some(), "{what}: cpu");
            // Memory and threads came with schema 4.
            assert_eq!(
                row.footprint.is_some(),
                f.schema_version >= 4,
                "{what}: footprint"
            );
            if let Some(fp) = &row.footprint {
                assert!(fp.server_rss_kib > 0 && fp.server_threads >= 1, "{what}");
            }
            assert_eq!(row.stages.is_some(), f.stages, "{what}: stages");
            assert!(row.wall_s > 0.0, "{what}");
        } else {
            assert!(row.stages.is_none(), "{what}");
        }
    }
    rows
}

/// The stems of a directory's files with this extension (`c001-r1` of `c001-r1.csv`).
fn stems(dir: &Path, ext: &str) -> Vec<String> {
    let mut out: Vec<String> = match fs::read_dir(dir) {
        Err(_) => Vec::new(),
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter_map(|n| n.strip_suffix(ext).map(String::from))
            .filter(|n| !n.contains('.'))
            .collect(),
    };
    out.sort();
    out
}

/// Every cpu/ and hdr/ file reads back, and agrees with its row; each ok run has both,
/// and a run that measured nothing has neither.
fn check_run_files(f: &Fixture, dir: &Path, rows: &[ResultRow]) {
    let mut ok_runs: Vec<String> = rows
        .iter()
        .filter(|r| r.status == Status::Ok)
        .map(ResultRow::run_name)
        .collect();
    ok_runs.sort();
    assert_eq!(
        stems(&dir.join(rundir::CPU_DIR), ".csv"),
        ok_runs,
        "{}: cpu/",
        f.dir
    );
    assert_eq!(
        stems(&dir.join(rundir::HDR_DIR), ".hlog"),
        ok_runs,
        "{}: hdr/",
        f.dir
    );
    let stats = if f.stages {
        ok_runs.clone()
    } else {
        Vec::new()
    };
    assert_eq!(
        stems(&dir.join(rundir::STATS_DIR), ".json"),
        stats,
        "{}: stats/",
        f.dir
    );
    for row in rows.iter().filter(|r| r.status == Status::Ok) {
        let name = row.run_name();
        let what = format!("{}: run {name}", f.dir);
        let cpu = dir.join(rundir::CPU_DIR).join(format!("{name}.csv"));
        let hlog = dir.join(rundir::HDR_DIR).join(format!("{name}.hlog"));
        let samples = rundir::cpu::read_csv(&cpu).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let (_, raw) = raw_csv(&cpu);
        assert!(!samples.is_empty(), "{what}: no CPU sample");
        assert_eq!(samples.len(), raw.len(), "{what}");
        for (s, r) in samples.iter().zip(&raw) {
            assert_eq!(Some(s.t_s), num(r, "t_s"), "{what}");
            assert_eq!(Some(s.server_cpu_s), num(r, "server_cpu_s"), "{what}");
            assert_eq!(Some(s.server_pct), num(r, "server_pct"), "{what}");
            assert_eq!(Some(s.machine_pct), num(r, "machine_pct"), "{what}");
            let fp = s.footprint.as_ref();
            assert_eq!(
                fp.map(|f| f.server_rss_kib),
                int(r, "server_rss_kib"),
                "{what}"
            );
            assert_eq!(
                fp.map(|f| f.server_threads),
                int(r, "server_threads"),
                "{what}"
            );
        }
        assert!(
            samples.windows(2).all(|w| w[0].t_s <= w[1].t_s),
            "{what}: samples out of order"
        );

        let histograms = rundir::read_hlog(&hlog).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let mut count = 0;
        for data in &histograms {
            count += threadcenter::hdr::decode_base64_v2(data)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .len();
        }
        let m = row.measured.as_ref().unwrap();
        assert_eq!(count, m.ok, "{what}: the histogram holds every ok request");

        let intervals = dir
            .join(rundir::HDR_DIR)
            .join(rundir::intervals_file(&name));
        if intervals.exists() {
            let log =
                rundir::read_interval_log(&intervals).unwrap_or_else(|e| panic!("{what}: {e:#}"));
            assert!(!log.is_empty(), "{what}: an empty interval log");
        }
    }
}

/// `threadcenter report` on a copy: exit 0, report.md and summary.csv naming every cell.
fn check_report(f: &Fixture) {
    let (_, results) = raw_csv(&fixture_path(f.dir).join(rundir::RESULTS_FILE));
    let (_tmp, dir) = copy_of(f);
    let out = common::threadcenter(&["report", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}: {}", f.dir, common::explain(&out));
    let report = fs::read_to_string(dir.join(rundir::REPORT_FILE))
        .unwrap_or_else(|e| panic!("{}: no report.md ({e})", f.dir));
    for cell in f.cells {
        assert!(
            report.contains(&format!("`{cell}`")),
            "{}: report.md lacks {cell}",
            f.dir
        );
    }
    let (_, summary) = raw_csv(&dir.join(rundir::SUMMARY_FILE));
    let cells: Vec<&str> = summary.iter().map(|r| r["cell"].as_str()).collect();
    assert_eq!(cells, f.cells, "{}: summary.csv", f.dir);
    for s in &summary {
        let what = format!("{}: summary.csv, cell {}", f.dir, s["cell"]);
        // One repetition each: the cell's median is its one run's figure.
        let ok_run = results
            .iter()
            .find(|r| r["cell"] == s["cell"] && r["status"] == "ok");
        assert_eq!(
            s["throughput_rps"],
            ok_run.map_or("", |r| &r["throughput_rps"]),
            "{what}"
        );
        assert_eq!(
            int(s, "reps_ok"),
            Some(u64::from(ok_run.is_some())),
            "{what}"
        );
        let staged = ok_run.is_some() && f.stages;
        assert_eq!(num(s, "server_total_mean_us").is_some(), staged, "{what}");
        let efficiency = ok_run.is_some() && f.limits;
        assert_eq!(num(s, "efficiency_pct").is_some(), efficiency, "{what}");
    }
    assert!(
        !fixture_path(f.dir).join(rundir::REPORT_FILE).exists(),
        "{}: report wrote into the fixture",
        f.dir
    );
}

#[test]
fn every_schema_version_read_has_a_fixture() {
    for version in SCHEMA_VERSIONS_READ {
        assert!(
            FIXTURES.iter().any(|f| f.schema_version == version),
            "schema {version} is read but has no fixture in tests/fixtures/rundir/"
        );
    }
    assert!(SCHEMA_VERSIONS_READ.contains(&SCHEMA_VERSION));
    for f in FIXTURES {
        assert!(
            SCHEMA_VERSIONS_READ.contains(&f.schema_version),
            "{}",
            f.dir
        );
        assert!(fixture_path(f.dir).is_dir(), "{} is missing", f.dir);
    }
}

#[test]
fn every_fixture_reads_back_through_rundir() {
    for f in FIXTURES {
        let dir = fixture_path(f.dir);
        let manifest = check_manifest(f, &dir);
        let rows = check_results(f, &dir);
        check_cells_agree(f, &manifest, &rows);
        check_run_files(f, &dir, &rows);
    }
}

#[test]
fn every_fixture_renders_with_the_report_command() {
    for f in FIXTURES {
        check_report(f);
    }
}

#[test]
fn a_schema_version_this_build_does_not_read_is_refused_by_name() {
    let f = FIXTURES.last().unwrap();
    let (_tmp, dir) = copy_of(f);
    let path = dir.join(rundir::MANIFEST_FILE);
    let mut manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    manifest["schema_version"] = 99.into();
    fs::write(&path, serde_json::to_string_pretty(&manifest).unwrap()).unwrap();

    let versions = format!("{SCHEMA_VERSIONS_READ:?}");
    let err = format!("{:#}", Manifest::read(&dir).unwrap_err());
    assert!(err.contains("schema_version 99"), "{err}");
    assert!(err.contains(&versions), "{err}");

    let out = common::threadcenter(&["report", dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(i32::from(threadcenter::EXIT_REPORT_ERROR)),
        "{}",
        common::explain(&out)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("schema_version 99"), "{stderr}");
    assert!(stderr.contains(&versions), "{stderr}");
    assert!(
        !dir.join(rundir::REPORT_FILE).exists(),
        "nothing is rendered"
    );
}
