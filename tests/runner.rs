//! Integration tests of `threadcenter run` and `threadcenter report`: the real binary runs
//! real servers and clients as child processes, and every file it writes is read back.
//!
//! A watcher records every descendant of the runner while it runs; each test then checks
//! that none of them is left. A test that fails part-way interrupts the runner (which
//! kills its children) and kills whatever it recorded, by pid, before it unwinds.

mod common;
mod sut;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sut::BIN;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

// ---------------------------------------------------------------------------------------------
// Processes

/// (pid, start time in clock ticks): a process identity that survives pid reuse.
type ProcId = (i32, u64);

/// State, ppid and start time of a process.
fn proc_info(pid: i32) -> Option<(String, i32, u64)> {
    let f = common::stat_fields(pid);
    Some((
        f.first()?.clone(),
        f.get(1)?.parse().ok()?,
        f.get(19)?.parse().ok()?,
    ))
}

fn cmdline(pid: i32) -> String {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
        .unwrap_or_default()
}

/// Records every descendant of a process while it runs.
struct Watcher {
    seen: Arc<Mutex<BTreeMap<ProcId, String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Watcher {
    fn start(root: i32) -> Watcher {
        let seen = Arc::new(Mutex::new(BTreeMap::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let mut parent: HashMap<i32, i32> = HashMap::new();
                let mut start: HashMap<i32, u64> = HashMap::new();
                for pid in common::pids() {
                    if let Some((_, ppid, t)) = proc_info(pid) {
                        parent.insert(pid, ppid);
                        start.insert(pid, t);
                    }
                }
                for (&pid, _) in parent.iter() {
                    let mut p = pid;
                    let mut depth = 0;
                    while let Some(&pp) = parent.get(&p) {
                        if pp == root {
                            // Read on every pass: a child seen between fork and exec
                            // still shows the runner's command line.
                            let now = cmdline(pid);
                            let mut seen = s.lock().unwrap();
                            let line = seen.entry((pid, start[&pid])).or_default();
                            if !now.is_empty() {
                                *line = now;
                            }
                            break;
                        }
                        p = pp;
                        depth += 1;
                        if depth > 32 || pp <= 1 {
                            break;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Watcher {
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn seen(&self) -> BTreeMap<ProcId, String> {
        self.seen.lock().unwrap().clone()
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// True if that very process (same start time) still exists and is not a zombie.
fn still_there(&(pid, start): &ProcId) -> bool {
    matches!(proc_info(pid), Some((state, _, t)) if t == start && state != "Z")
}

/// A running `threadcenter run`: its descendants are watched, its stdout and stderr
/// read as they come; on drop (a failed test) it is interrupted and everything it
/// started is killed.
struct Run {
    child: Option<Child>,
    watcher: Watcher,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    pub stdout: String,
    pub stderr: String,
}

/// Copies `from` into `to` as it arrives, until the other end closes.
fn collect(
    mut from: impl Read + Send + 'static,
    to: &Arc<Mutex<String>>,
) -> std::thread::JoinHandle<()> {
    let to = Arc::clone(to);
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            to.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    })
}

/// Polls `child` until it exits or `limit` passes; true if it exited.
fn exits_within(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Run {
    fn start(args: &[&str], cwd: &Path) -> Run {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start threadcenter");
        let watcher = Watcher::start(child.id() as i32);
        let (out, err) = (Arc::default(), Arc::default());
        let readers = vec![
            collect(child.stdout.take().unwrap(), &out),
            collect(child.stderr.take().unwrap(), &err),
        ];
        Run {
            child: Some(child),
            watcher,
            out,
            err,
            readers,
            stdout: String::new(),
            stderr: String::new(),
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the runner this test started.
        unsafe { libc::kill(self.pid(), sig) };
    }

    /// Waits until the runner's stderr so far holds `needle`; panics after `limit`.
    fn wait_for_stderr(&self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        while !self.err.lock().unwrap().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "the runner did not print {needle:?} within {limit:?}; stderr:\n{}",
                self.err.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits for the runner to exit, then checks that it started children and that none
    /// of them is left.
    fn finish(&mut self, limit: Duration) -> ExitStatus {
        self.finish_checked(limit, true)
    }

    /// [`Run::finish`], for a runner that may have started no child at all.
    fn finish_checked(&mut self, limit: Duration, had_children: bool) -> ExitStatus {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                self.child = Some(child);
                panic!(
                    "threadcenter did not finish within {limit:?}; stderr:\n{}",
                    self.err.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.watcher.stop();
        assert!(
            !had_children || !self.watcher.seen().is_empty(),
            "the watcher saw no child process at all"
        );
        self.assert_nothing_left();
        // Its children inherit neither pipe (the runner sends theirs to files), so both
        // are closed now that the runner and everything it started are gone.
        for r in self.readers.drain(..) {
            sut::wait_until(Duration::from_secs(5), || r.is_finished());
            r.join().unwrap();
        }
        self.stdout = self.out.lock().unwrap().clone();
        self.stderr = self.err.lock().unwrap().clone();
        status
    }

    fn assert_nothing_left(&self) {
        let seen = self.watcher.seen();
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            let left: Vec<_> = seen.iter().filter(|(id, _)| still_there(id)).collect();
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                for ((pid, _), _) in &left {
                    // SAFETY: a process this test's runner started.
                    unsafe { libc::kill(*pid, libc::SIGKILL) };
                }
                panic!(
                    "processes left after the run: {left:?}\nstderr:\n{}",
                    self.err.lock().unwrap()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // An interrupted runner stops its children; a second SIGINT makes it
            // SIGKILL their groups. Whatever is left then is killed below.
            // SAFETY: kill(2) on the runner this test started.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            if !exits_within(&mut child, Duration::from_secs(2)) {
                unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
                exits_within(&mut child, Duration::from_secs(2));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        self.watcher.stop();
        for (id, _) in self.watcher.seen() {
            if still_there(&id) {
                // SAFETY: a process this test's runner started (same start time).
                unsafe { libc::kill(id.0, libc::SIGKILL) };
            }
        }
    }
}

/// Starts `threadcenter run FILE --out OUT` in `cwd`.
fn start_experiment(file: &Path, out: &Path, cwd: &Path) -> Run {
    Run::start(
        &[
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        cwd,
    )
}

/// Runs `threadcenter run FILE --out OUT` in `cwd` to its end, bounded by `limit`.
fn run_to_end(file: &Path, out: &Path, cwd: &Path, limit: Duration) -> (ExitStatus, Run) {
    let mut run = start_experiment(file, out, cwd);
    let status = run.finish(limit);
    (status, run)
}

/// Starts `threadcenter run FILE --out OUT` in `cwd` and returns once the runner has
/// started its first client (so that a signal lands while a cell is being measured).
fn start_until_client(file: &Path, out: &Path, cwd: &Path) -> Run {
    let run = start_experiment(file, out, cwd);
    let limit = Duration::from_secs(30);
    let deadline = Instant::now() + limit;
    while !run.watcher.seen().values().any(|c| c.contains(" client ")) {
        assert!(
            Instant::now() < deadline,
            "no client was started within {limit:?}; the runner's children: {:?}; its stderr:\n{}",
            run.watcher.seen().values().collect::<Vec<_>>(),
            run.err.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    run
}

/// `threadcenter run --dry-run FILE`.
fn dry_run(file: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["run", "--dry-run"])
        .arg(file)
        .output()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Files

/// The backticked names in the first column of the tables under `## heading` in
/// docs/results.md: the documented columns, in order.
fn documented_columns(heading: &str) -> Vec<String> {
    let doc = fs::read_to_string(repo().join("docs/results.md")).unwrap();
    let mut cols = Vec::new();
    let mut inside = false;
    for line in doc.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            inside = h.trim() == heading;
            continue;
        }
        if !inside || !line.starts_with('|') {
            continue;
        }
        let first = line.split('|').nth(1).unwrap_or("");
        let mut rest = first;
        while let Some(a) = rest.find('`') {
            let Some(b) = rest[a + 1..].find('`') else {
                break;
            };
            cols.push(rest[a + 1..a + 1 + b].to_string());
            rest = &rest[a + b + 2..];
        }
    }
    assert!(
        !cols.is_empty(),
        "docs/results.md documents no columns under {heading}"
    );
    cols
}

struct Csv {
    headers: Vec<String>,
    rows: Vec<HashMap<String, String>>,
}

impl Csv {
    fn read(path: &Path) -> Csv {
        let mut r =
            csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let headers: Vec<String> = r.headers().unwrap().iter().map(str::to_string).collect();
        let rows = r
            .records()
            .map(|rec| {
                let rec = rec.unwrap();
                assert_eq!(rec.len(), headers.len(), "{}: ragged row", path.display());
                headers
                    .iter()
                    .cloned()
                    .zip(rec.iter().map(str::to_string))
                    .collect()
            })
            .collect();
        Csv { headers, rows }
    }
}

fn f(row: &HashMap<String, String>, col: &str) -> f64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("`{col}` = {:?} is not a number", row[col]))
}

fn u(row: &HashMap<String, String>, col: &str) -> u64 {
    row[col]
        .parse()
        .unwrap_or_else(|_| panic!("`{col}` = {:?} is not an integer", row[col]))
}

/// Every text node of an SVG, which must be well-formed XML.
fn svg_texts(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let doc = roxmltree::Document::parse(&text)
        .unwrap_or_else(|e| panic!("{} is not well-formed XML: {e}", path.display()));
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    doc.descendants()
        .filter(|n| n.is_text())
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn files_under(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.insert(p.clone(), fs::read(&p).unwrap());
        }
    }
    out
}

fn rendered(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = files_under(&dir.join("plots"));
    for f in ["summary.csv", "report.md"] {
        out.insert(dir.join(f), fs::read(dir.join(f)).unwrap());
    }
    out
}

// ---------------------------------------------------------------------------------------------

const TINY: &str = r#"
name = "tiny"
description = "The test suite's end-to-end experiment."
repetitions = 2
warmup = "250ms"
duration = "400ms"
order = "shuffled"
seed = 5

[server]
pool = "process"

[matrix]
workers = [1, 2]
concurrency = [1, 3]
size = [20_000]
"#;

#[test]
fn a_tiny_experiment_runs_end_to_end_and_every_output_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(tmp.path(), "tiny.toml", TINY);
    let out = tmp.path().join("out");
    let (status, run) = run_to_end(&file, &out, tmp.path(), Duration::from_secs(120));
    assert!(status.success(), "exit {status:?}\nstderr:\n{}", run.stderr);

    // stdout is the run directory; OUT/latest resolves to it.
    let dir = PathBuf::from(run.stdout.trim());
    assert!(dir.is_dir(), "stdout {:?}", run.stdout);
    assert!(dir
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .ends_with("-tiny"));
    assert_eq!(
        fs::canonicalize(out.join("latest")).unwrap(),
        fs::canonicalize(&dir).unwrap()
    );
    assert_eq!(
        fs::read_to_string(dir.join("experiment.toml")).unwrap(),
        TINY
    );

    // manifest.json
    let m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["schema_version"], threadcenter::rundir::SCHEMA_VERSION);
    assert_eq!(m["status"], "complete");
    assert_eq!(m["order"]["kind"], "shuffled");
    assert_eq!(m["order"]["seed"], 5);
    assert_eq!(m["cells"].as_array().unwrap().len(), 4);
    let order: Vec<&str> = m["order"]["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let want: BTreeSet<String> = ["c001", "c002", "c003", "c004"]
        .iter()
        .flat_map(|c| [format!("{c}-r1"), format!("{c}-r2")])
        .collect();
    assert_eq!(
        order.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>(),
        want
    );
    assert_eq!(
        (m["runs_done"].as_u64(), m["runs_failed"].as_u64()),
        (Some(8), Some(0))
    );
    assert!(m["machine"]["logical_cores"].as_u64().unwrap() >= 1);

    // results.csv: the documented columns; consistent numbers; in the recorded order.
    let results = Csv::read(&dir.join("results.csv"));
    assert_eq!(results.headers, documented_columns("results.csv"));
    assert_eq!(results.rows.len(), 8);
    let mut server_cpu = 0.0;
    for (i, r) in results.rows.iter().enumerate() {
        let run_name = format!("{}-r{}", r["cell"], r["rep"]);
        assert_eq!(run_name, order[i], "row {i} is not in the recorded order");
        assert_eq!(u(r, "seq"), i as u64 + 1);
        assert_eq!(r["status"], "ok", "{run_name}: {}", r["reason"]);
        assert_eq!(u(r, "ok") + u(r, "failed"), u(r, "sent"), "{run_name}");
        assert!(u(r, "ok") > 0);
        let (ok, dur, thr) = (f(r, "ok"), f(r, "duration_s"), f(r, "throughput_rps"));
        // duration_s is written to 1 µs and throughput_rps to 0.001: rounding the
        // duration by up to 0.5 µs moves ok/duration by up to thr × 0.5e-6 / duration.
        assert!(
            (ok / dur - thr).abs() <= 0.001 + thr * 0.6e-6 / dur,
            "{run_name}: {ok}/{dur} vs {thr}"
        );
        // The client measures until its last answer after the 0.4 s are up, and it
        // runs inside the server's lifetime, which `wall_s` (to 1 ms) spans along with
        // the 0.25 s warm-up.
        assert!(
            dur >= 0.4 - 1e-6 && dur <= f(r, "wall_s") - 0.25 + 1e-3,
            "{run_name}: measured {dur}s of 0.4s in a wall time of {}s",
            r["wall_s"]
        );
        let lat: Vec<f64> = ["p50", "p90", "p99", "p99_9", "max"]
            .iter()
            .map(|p| f(r, &format!("latency_{p}_us")))
            .collect();
        assert!(lat.windows(2).all(|w| w[0] <= w[1]), "{run_name}: {lat:?}");
        for col in [
            "server_cpu_pct",
            "client_cpu_pct",
            "machine_cpu_pct",
            "server_cpu_peak_pct",
        ] {
            assert!(f(r, col) >= 0.0, "{run_name}: {col}");
        }
        server_cpu += f(r, "server_cpu_pct");
        assert!(r["workers"].parse::<u64>().unwrap() > 0);
        assert_eq!(r["target"], "builtin");
        assert_eq!(r["pool"], "process");

        // cpu/<run>.csv
        let cpu = Csv::read(&dir.join("cpu").join(format!("{run_name}.csv")));
        assert_eq!(cpu.headers, documented_columns("cpu/&lt;run&gt;.csv"));
        assert!(
            cpu.rows.len() >= 3,
            "{run_name}: {} CPU samples",
            cpu.rows.len()
        );
        for w in cpu.rows.windows(2) {
            assert!(f(&w[1], "t_s") > f(&w[0], "t_s"));
            for c in ["server_cpu_s", "client_cpu_s", "machine_cpu_s"] {
                assert!(f(&w[1], c) >= f(&w[0], c), "{run_name}: {c} went backwards");
            }
        }
        // Each sample's phase is its time's, against the 0.25 s warm-up (when the first
        // sample lands is the scheduler's business), and the run ends measuring. t_s is
        // written to 1 ms: within half of it of the boundary, either phase is right.
        for row in &cpu.rows {
            let t = f(row, "t_s");
            let want = if t < 0.25 { "warmup" } else { "measure" };
            assert!(
                row["phase"] == want || (t - 0.25).abs() <= 0.0005,
                "{run_name}: {row:?}"
            );
        }
        assert_eq!(cpu.rows.last().unwrap()["phase"], "measure");

        // hdr/: the client's .hgrm, and the .hlog whose histogram holds every ok request.
        let hgrm = fs::read_to_string(dir.join("hdr").join(format!("{run_name}.hgrm"))).unwrap();
        assert!(hgrm.trim_start().starts_with("Value"), "{hgrm}");
        assert!(
            hgrm.contains(&format!("Total count    = {:>12}", r["ok"])),
            "{hgrm}"
        );
        let hlog = fs::read_to_string(dir.join("hdr").join(format!("{run_name}.hlog"))).unwrap();
        let line = hlog
            .lines()
            .find(|l| !l.starts_with('#') && !l.starts_with('"'))
            .unwrap();
        let h = threadcenter::hdr::decode_base64_v2(line.split(',').nth(3).unwrap()).unwrap();
        assert_eq!(h.len(), u(r, "ok"), "{run_name}");
        assert!(dir.join("client").join(format!("{run_name}.json")).exists());

        // hdr/<run>.intervals.hlog: the client's one-second interval log, read back with
        // the hdrhistogram crate's reader; its intervals add up to the run's ok requests.
        let log = fs::read(dir.join("hdr").join(format!("{run_name}.intervals.hlog"))).unwrap();
        let mut total = 0;
        let mut starts = Vec::new();
        for entry in hdrhistogram::serialization::interval_log::IntervalLogIterator::new(&log) {
            if let hdrhistogram::serialization::interval_log::LogEntry::Interval(i) =
                entry.unwrap_or_else(|e| panic!("{run_name}: {e:?}"))
            {
                assert!(i.tag().is_none(), "closed loop: no tagged intervals");
                let h = threadcenter::hdr::decode_base64_v2(i.encoded_histogram()).unwrap();
                total += h.len();
                starts.push(i.start_timestamp().as_secs_f64());
            }
        }
        assert_eq!(total, u(r, "ok"), "{run_name}: interval counts vs ok");
        assert!(
            !starts.is_empty() && starts[0] == 0.0,
            "{run_name}: {starts:?}"
        );

        // stats/: the server's stats at the warm-up's end (reset) and at the end; the
        // stage columns are the end snapshot's, and add up (one decimal each).
        let st: serde_json::Value = serde_json::from_str(
            &fs::read_to_string(dir.join("stats").join(format!("{run_name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(st["format"], "threadcenter-run-stats");
        assert_eq!(st["version"], 1);
        assert!(st["error"].is_null(), "{run_name}: {}", st["error"]);
        // The runner resets `stats` when the warm-up ends by its own clock (started when
        // it spawned the client), however late a loaded machine lets it look.
        let reset_at = st["reset_at_s"].as_f64().unwrap();
        assert!(reset_at >= 0.25, "{run_name}: reset at {reset_at}");
        assert!(st["read_at_s"].as_f64().unwrap() > reset_at);
        let end = &st["at_end"];
        assert_eq!(end["workers"], u(r, "workers"));
        let timed = end["stages_us"]["total"]["count"].as_u64().unwrap();
        assert_eq!(u(r, "server_timed"), timed, "{run_name}");
        // The server answered every request the client counted, and timed no more than
        // it answered. How the server's window lines up with the client's is a matter of
        // scheduling (the client's clock starts after the runner's, by a few ms, or
        // hundreds on a loaded machine), so it is printed, not asserted.
        let ok_at = |v: &serde_json::Value| v["responses"]["compute"]["ok"].as_u64().unwrap();
        let ok = u(r, "ok");
        assert!(
            ok <= ok_at(end) && timed <= ok_at(end),
            "{run_name}: the server answered {} in all, the client counted {ok}, {timed} timed",
            ok_at(end)
        );
        eprintln!("[tiny] {run_name}: server timed {timed}, client measured {ok}");
        let (q, sv, rt, t) = (
            f(r, "server_queue_mean_us"),
            f(r, "server_service_mean_us"),
            f(r, "server_return_mean_us"),
            f(r, "server_total_mean_us"),
        );
        assert!(
            (q + sv + rt - t).abs() <= 0.2,
            "{run_name}: {q}+{sv}+{rt} vs {t}"
        );
        assert_eq!(
            f(r, "server_total_mean_us"),
            (end["stages_us"]["total"]["mean"].as_f64().unwrap() * 10.0).round() / 10.0
        );
        // The reset's snapshot is the warm-up: its counters are the baseline, and the
        // requests answered after it are the ones timed. The snapshot reads the counters,
        // then drains the stages, so a request answered in between is counted here but
        // timed in the warm-up: a few, or many when the loaded machine preempts the
        // stats thread in between; that side is printed. The other way, a request is
        // counted just before it is timed: at most one per answering thread (a worker,
        // or a connection) can be counted before the reset and timed after it.
        let answered = ok_at(end) - ok_at(&st["at_reset"]);
        assert!(
            timed <= answered + u(r, "workers") + u(r, "concurrency"),
            "{run_name}: {answered} answered between the snapshots, {timed} timed"
        );
        eprintln!("[tiny] {run_name}: {answered} answered between the snapshots, {timed} timed");
    }
    // The server did work: its CPU, sampled in clock ticks, over all eight runs.
    assert!(server_cpu > 0.0, "the server used no CPU at all");

    // summary.csv: documented columns, medians inside their range, two reps each.
    let summary = Csv::read(&dir.join("summary.csv"));
    assert_eq!(summary.headers, documented_columns("summary.csv"));
    efficiency_is_consistent(
        &m,
        &summary,
        &fs::read_to_string(dir.join("report.md")).unwrap(),
    );
    assert_eq!(summary.rows.len(), 4);
    for s in &summary.rows {
        assert_eq!((u(s, "reps_ok"), u(s, "reps_failed")), (2, 0));
        let reps: Vec<f64> = results
            .rows
            .iter()
            .filter(|r| r["cell"] == s["cell"])
            .map(|r| f(r, "throughput_rps"))
            .collect();
        let median = (reps[0] + reps[1]) / 2.0;
        assert!(
            (f(s, "throughput_rps") - median).abs() < 0.002,
            "{}",
            s["cell"]
        );
        assert!(f(s, "throughput_min_rps") <= f(s, "throughput_rps"));
        assert!(f(s, "throughput_rps") <= f(s, "throughput_max_rps"));
        let sent: u64 = results
            .rows
            .iter()
            .filter(|r| r["cell"] == s["cell"])
            .map(|r| u(r, "sent"))
            .sum();
        assert_eq!(u(s, "sent"), sent);
    }

    // plots/: well-formed SVG, one legend entry per series.
    for (file, series) in [
        ("throughput_vs_concurrency.svg", true),
        ("p99_vs_concurrency.svg", true),
        ("latency_vs_throughput.svg", true),
        ("cpu_vs_concurrency.svg", true),
        ("percentile_spectrum.svg", true),
        ("cpu_timeline.svg", false),
        ("spectrum-workers-1.svg", false),
        ("spectrum-workers-2.svg", false),
        ("breakdown.svg", false),
    ] {
        let texts = svg_texts(&dir.join("plots").join(file));
        if series {
            for label in ["workers=1", "workers=2"] {
                assert!(
                    texts.contains(label),
                    "{file} has no series {label}:\n{texts}"
                );
            }
        }
        if file.starts_with("spectrum-") {
            assert!(
                texts.contains("concurrency 1") && texts.contains("concurrency 3"),
                "{file}"
            );
            assert!(texts.contains("99.9%"), "{file}: the percentile axis");
        }
        if file == "breakdown.svg" {
            for part in [
                "queue",
                "service",
                "return",
                "rest: network + client",
                "c004 c=3 w=2",
            ] {
                assert!(texts.contains(part), "{file} lacks {part}:\n{texts}");
            }
        }
        if file == "cpu_timeline.svg" {
            assert!(texts.contains("server with its workers") && texts.contains("client"));
        }
    }

    // report.md names the peak cell (the highest median throughput in summary.csv).
    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    let peak = summary
        .rows
        .iter()
        .max_by(|a, b| f(a, "throughput_rps").total_cmp(&f(b, "throughput_rps")))
        .unwrap();
    let peak_line = report
        .lines()
        .find(|l| l.contains("Peak throughput"))
        .unwrap_or_else(|| panic!("no peak in report.md:\n{report}"));
    assert!(
        peak_line.contains(&format!("`{}`", peak["cell"])),
        "{peak_line}"
    );
    // report.md rounds the median to 0.1 and summary.csv to 0.001: the two can round a
    // value near x.x5 differently, so compare the numbers, not their text.
    let shown: f64 = peak_line
        .split(" req/s")
        .next()
        .and_then(|head| head.rsplit(' ').next())
        .and_then(|n| n.replace(',', "").parse().ok())
        .unwrap_or_else(|| panic!("no req/s figure in {peak_line}"));
    assert!(
        (shown - f(peak, "throughput_rps")).abs() <= 0.05 + 1e-6,
        "{peak_line} vs summary.csv {}",
        f(peak, "throughput_rps")
    );
    assert!(report.contains("Saturation point"));
    assert!(report.contains("### Where the time goes"), "{report}");
    assert!(report.contains("% of mean latency is "), "{report}");
    // 400 ms runs have too few one-second intervals to show a trend over time.
    assert!(!report.contains("### Over time"), "{report}");
    assert!(!dir.join("plots").join("over_time.svg").exists());
    assert!(!report.contains("Partial run"));
    for image in report.lines().filter_map(|l| l.strip_prefix("![")) {
        let target = image.split("](").nth(1).unwrap().trim_end_matches(')');
        assert!(
            dir.join(target).exists(),
            "report.md shows a missing {target}"
        );
    }

    // `threadcenter report DIR` renders the same bytes again from the raw files.
    let before = rendered(&dir);
    fs::remove_dir_all(dir.join("plots")).unwrap();
    fs::remove_file(dir.join("summary.csv")).unwrap();
    fs::remove_file(dir.join("report.md")).unwrap();
    let again = Command::new(BIN).arg("report").arg(&dir).output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(rendered(&dir), before, "a re-render is not byte-identical");

    // A missing or corrupt raw file is named; an unknown schema version is refused.
    let broken = |name: &str, edit: &dyn Fn(&Path)| -> String {
        let copy = tmp.path().join(name);
        fs::create_dir_all(&copy).unwrap();
        for (path, bytes) in files_under(&dir) {
            let rel = path.strip_prefix(&dir).unwrap();
            fs::create_dir_all(copy.join(rel).parent().unwrap()).unwrap();
            fs::write(copy.join(rel), bytes).unwrap();
        }
        edit(&copy);
        let out = Command::new(BIN).arg("report").arg(&copy).output().unwrap();
        assert_eq!(out.status.code(), Some(3), "report of {name} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let err = broken("no-hlog", &|d| {
        fs::remove_file(d.join("hdr/c002-r1.hlog")).unwrap()
    });
    assert!(
        err.contains("hdr/c002-r1.hlog") && err.contains("missing"),
        "{err}"
    );
    let err = broken("bad-cpu", &|d| {
        fs::write(d.join("cpu/c003-r2.csv"), "t_s,phase\n1,x\n").unwrap()
    });
    assert!(err.contains("cpu/c003-r2.csv"), "{err}");
    let err = broken("bad-hlog", &|d| {
        fs::write(d.join("hdr/c001-r2.hlog"), "0.000,1.0,1.0,!!notbase64!!\n").unwrap()
    });
    assert!(
        err.contains("hdr/c001-r2.hlog") && err.contains("corrupt"),
        "{err}"
    );
    let err = broken("future", &|d| {
        let text = fs::read_to_string(d.join("manifest.json")).unwrap();
        fs::write(
            d.join("manifest.json"),
            text.replace(
                &format!(
                    "\"schema_version\": {}",
                    threadcenter::rundir::SCHEMA_VERSION
                ),
                "\"schema_version\": 99",
            ),
        )
        .unwrap()
    });
    assert!(err.contains("schema_version 99"), "{err}");
    let err = broken("no-results", &|d| {
        fs::remove_file(d.join("results.csv")).unwrap()
    });
    assert!(err.contains("results.csv"), "{err}");

    // A run written before stage timings (schema 1: no stats/, no stage columns) still
    // renders, and says it has none…
    let old = tmp.path().join("schema-1");
    for (path, bytes) in files_under(&dir) {
        let rel = path.strip_prefix(&dir).unwrap();
        if rel.starts_with("stats") {
            continue;
        }
        fs::create_dir_all(old.join(rel).parent().unwrap()).unwrap();
        fs::write(old.join(rel), bytes).unwrap();
    }
    // …and before machine limits (schema 3).
    let mut manifest = m.clone();
    manifest["schema_version"] = 1.into();
    manifest.as_object_mut().unwrap().remove("limits");
    fs::write(old.join("manifest.json"), manifest.to_string()).unwrap();
    let keep: Vec<usize> = results
        .headers
        .iter()
        .enumerate()
        .filter(|(_, h)| !h.starts_with("server_") || h.starts_with("server_cpu"))
        .map(|(i, _)| i)
        .collect();
    let mut w = csv::Writer::from_path(old.join("results.csv")).unwrap();
    let mut r = csv::Reader::from_path(dir.join("results.csv")).unwrap();
    let headers = r.headers().unwrap().clone();
    w.write_record(keep.iter().map(|&i| &headers[i])).unwrap();
    for rec in r.records() {
        let rec = rec.unwrap();
        w.write_record(keep.iter().map(|&i| &rec[i])).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    let out = Command::new(BIN).arg("report").arg(&old).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = fs::read_to_string(old.join("report.md")).unwrap();
    assert!(report.contains("No server stage timings"), "{report}");
    assert!(report.contains("predates machine limits"), "{report}");
    let summary = Csv::read(&old.join("summary.csv"));
    assert!(summary.rows.iter().all(|r| r["efficiency_pct"].is_empty()));
}

/// summary.csv's efficiency columns against manifest.json's limits: each ceiling as
/// docs/results.md defines it, each efficiency its ratio; report.md flags exactly the
/// cells above 100% beyond the stated tolerance (10%).
fn efficiency_is_consistent(m: &serde_json::Value, summary: &Csv, report: &str) {
    let flagged: BTreeSet<String> = report
        .lines()
        .find(|l| l.contains("**Warning:** efficiency above"))
        .map(|l| {
            l.split('`')
                .skip(1)
                .step_by(2)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let limits = &m["limits"];
    let cores = m["machine"]["logical_cores"].as_u64().unwrap();
    let levels = limits["loopback"]["levels"].as_array().unwrap();
    let concurrencies: Vec<u64> = levels
        .iter()
        .map(|l| l["concurrency"].as_u64().unwrap())
        .collect();
    assert_eq!(
        concurrencies,
        [1, 3],
        "an echo level per concurrency of the run"
    );
    let compute = limits["compute"].as_array().unwrap();
    assert_eq!(compute.len(), 1);
    assert_eq!(compute[0]["size"], 20_000);
    let t = compute[0]["min_s"].as_f64().unwrap();
    assert!(t > 0.0 && t <= compute[0]["median_s"].as_f64().unwrap());
    let close = |a: f64, b: f64| (a - b).abs() <= 0.05 + 1e-3 * b.abs();
    for s in &summary.rows {
        let c = u(s, "concurrency");
        let level = &levels[concurrencies.iter().position(|&x| x == c).unwrap()];
        let loopback = level["round_trips_per_s"].as_f64().unwrap();
        assert!(
            close(f(s, "loopback_ceiling_rps"), loopback),
            "{}",
            s["cell"]
        );
        let parallel = u(s, "workers").min(cores).min(c) as f64;
        assert!(
            close(f(s, "compute_ceiling_rps"), parallel / t),
            "{}",
            s["cell"]
        );
        let ceiling = f(s, "compute_ceiling_rps").min(f(s, "loopback_ceiling_rps"));
        assert!(close(f(s, "ceiling_rps"), ceiling), "{}", s["cell"]);
        // The columns are rounded (ceilings and efficiencies to 0.1, throughput to
        // 0.001): a low ceiling, as a loaded machine measures, makes its rounding count.
        let eff = f(s, "efficiency_pct");
        let (thr, ceil) = (f(s, "throughput_rps"), f(s, "ceiling_rps"));
        assert!(
            (eff - thr / ceil * 100.0).abs() <= 0.051 + eff * (0.051 / ceil + 0.0006 / thr),
            "{}: {eff}% for {thr} of {ceil}",
            s["cell"]
        );
        let floor = level["p50_us"].as_f64().unwrap() + t * 1e6;
        assert!(close(f(s, "latency_floor_us"), floor), "{}", s["cell"]);
        let lat = f(s, "latency_efficiency_pct");
        let (floor, p50) = (f(s, "latency_floor_us"), f(s, "latency_p50_us"));
        assert!(
            (lat - floor / p50 * 100.0).abs() <= 0.051 + lat * (0.051 / floor + 0.051 / p50),
            "{}: {lat}% for a floor of {floor} us at a p50 of {p50} us",
            s["cell"]
        );
        // At most 100% + the 10% tolerance, unless the limits were measured while the
        // machine was busier than during the cell (which a loaded machine can do): the
        // report then flags the cell. Within the columns' rounding of 110%, either way.
        assert!(eff > 0.0 && lat > 0.0, "{}", s["cell"]);
        let top = eff.max(lat);
        if (top - 110.0).abs() > 0.05 {
            assert_eq!(
                flagged.contains(&s["cell"]),
                top > 110.0,
                "{}: efficiency {eff}%, latency efficiency {lat}%; flagged: {flagged:?}",
                s["cell"]
            );
        }
        eprintln!(
            "[tiny] {}: efficiency {eff}%, latency efficiency {lat}%",
            s["cell"]
        );
        // How busy the client was depends on the machine (a client waiting on a loaded
        // server may use no measurable CPU); the column is there and a share.
        // `a_saturated_client_is_flagged` tests the rule on it.
        assert!(f(s, "throughput_spread_pct") >= 0.0 && f(s, "client_cpu_saturation_pct") >= 0.0);
    }
}

/// Rewrites results.csv's `client_cpu_pct` in `dir`, row by row, as `cpu(concurrency)`.
fn set_client_cpu(dir: &Path, cpu: &dyn Fn(u64) -> f64) {
    let path = dir.join("results.csv");
    let mut r = csv::Reader::from_path(&path).unwrap();
    let headers = r.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let (at, concurrency) = (col("client_cpu_pct"), col("concurrency"));
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let mut w = csv::Writer::from_path(&path).unwrap();
    w.write_record(&headers).unwrap();
    for row in rows {
        let c: u64 = row[concurrency].parse().unwrap();
        let value = format!("{:.1}", cpu(c));
        let fields: Vec<&str> = row
            .iter()
            .enumerate()
            .map(|(i, v)| if i == at { value.as_str() } else { v })
            .collect();
        w.write_record(&fields).unwrap();
    }
    w.flush().unwrap();
}

/// report.md's line on the client in its Noise section.
fn client_noise_line(dir: &Path) -> String {
    let out = Command::new(BIN).arg("report").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    let noise = report
        .split("## Noise")
        .nth(1)
        .unwrap_or_else(|| panic!("no Noise section:\n{report}"));
    noise
        .lines()
        .find(|l| l.contains("the client was CPU-saturated") || l.contains("**Client:**"))
        .unwrap_or_else(|| panic!("no line on the client:\n{noise}"))
        .to_string()
}

/// A client that used at least 90% of the CPU it could use (min(concurrency, cores)
/// cores) was the bottleneck, and the report says so, naming the runs. How busy a real
/// client gets depends on what else the machine runs, so the saturation is provoked
/// where the report reads it: in results.csv's `client_cpu_pct` of a real run, on a
/// manifest that says 2 cores.
#[test]
fn a_saturated_client_is_flagged() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "sat.toml",
        "name = \"sat\"\nwarmup = \"0s\"\nduration = \"300ms\"\n\
         [matrix]\nworkers = [1]\nconcurrency = [1, 2]\nsize = [1000]\n",
    );
    let out = tmp.path().join("out");
    let (status, run) = run_to_end(&file, &out, tmp.path(), Duration::from_secs(120));
    assert!(status.success(), "{}", run.stderr);
    let dir = PathBuf::from(run.stdout.trim());
    let manifest = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&manifest).unwrap()).unwrap();
    m["machine"]["logical_cores"] = 2.into();
    fs::write(&manifest, m.to_string()).unwrap();
    let results = Csv::read(&dir.join("results.csv"));
    let run_at = |c: u64| {
        let r = results
            .rows
            .iter()
            .find(|r| u(r, "concurrency") == c)
            .unwrap();
        format!("`{}-r{}`", r["cell"], r["rep"])
    };
    let (one, two) = (run_at(1), run_at(2));

    // 95% of one core at concurrency 1: saturated. 170% at concurrency 2 is 85% of the
    // two cores it could use: not saturated (a rule per core would flag it).
    set_client_cpu(&dir, &|c| if c == 1 { 95.0 } else { 170.0 });
    let line = client_noise_line(&dir);
    assert!(
        line.contains("**Warning: the client was CPU-saturated**")
            && line.contains("in 1 run(s)")
            && line.contains(&one)
            && !line.contains(&two),
        "{line}"
    );
    let summary = Csv::read(&dir.join("summary.csv"));
    let saturation: BTreeMap<u64, f64> = summary
        .rows
        .iter()
        .map(|s| (u(s, "concurrency"), f(s, "client_cpu_saturation_pct")))
        .collect();
    assert_eq!(saturation, BTreeMap::from([(1, 95.0), (2, 85.0)]));

    // Both at 90% of what they could use: both flagged.
    set_client_cpu(&dir, &|c| 90.0 * c as f64);
    let line = client_noise_line(&dir);
    assert!(
        line.contains("in 2 run(s)") && line.contains(&one) && line.contains(&two),
        "{line}"
    );

    // A client well below: never saturated.
    set_client_cpu(&dir, &|_| 10.0);
    let line = client_noise_line(&dir);
    assert!(line.contains("**Client:** never CPU-saturated"), "{line}");
}

#[test]
fn with_one_worker_at_concurrency_8_the_report_finds_queueing_dominant() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "queue.toml",
        r#"
name = "queue"
warmup = "300ms"
duration = "1500ms"

[matrix]
workers = [1]
concurrency = [1, 8]
size = [150_000]
"#,
    );
    let out = tmp.path().join("out");
    let (status, run) = run_to_end(&file, &out, tmp.path(), Duration::from_secs(120));
    assert!(status.success(), "{}", run.stderr);
    run.assert_nothing_left();
    let dir = out.join("latest");
    let results = Csv::read(&dir.join("results.csv"));
    let at8 = results
        .rows
        .iter()
        .find(|r| r["concurrency"] == "8")
        .unwrap();
    let (q, sv) = (
        f(at8, "server_queue_mean_us"),
        f(at8, "server_service_mean_us"),
    );
    // 8 requests wait for 1 worker: each queues behind about 7 others.
    assert!(q > 3.0 * sv, "queue {q} us vs service {sv} us");
    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    let row = report
        .lines()
        .find(|l| l.starts_with("| `c002` (concurrency=8)") && l.contains("% |"))
        .unwrap_or_else(|| panic!("no breakdown row for c002:\n{report}"));
    assert!(row.trim_end().ends_with('|'), "{row}");
    let dominant = row.rsplit('|').nth(1).unwrap().trim();
    assert!(dominant.starts_with("queue "), "{row}");
    let share: f64 = dominant["queue ".len()..]
        .trim_end_matches('%')
        .parse()
        .unwrap();
    assert!(share > 60.0, "{row}");
    // The findings name it at the series' saturation point or highest concurrency.
    let sentence = report
        .lines()
        .find(|l| l.contains("% of mean latency is"))
        .unwrap_or_else(|| panic!("no breakdown sentence:\n{report}"));
    assert!(sentence.contains("concurrency"), "{sentence}");
    eprintln!("{sentence}\n{row}");
    if sentence.contains("at concurrency 8 with 1 worker") {
        assert!(sentence.contains("is queueing"), "{sentence}");
    }
}

#[test]
fn a_server_that_exits_at_once_fails_its_cell_and_the_run_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "fail.toml",
        r#"
name = "fail"
warmup = "50ms"
duration = "300ms"

[targets.good]

[targets.crash]
command = ["sh", "-c", "echo 'boom: cannot bind {port}' >&2; exit 3"]

[targets.badflag]
args = ["--no-such-flag"]

[matrix]
target = ["crash", "good", "badflag"]
workers = [1]
concurrency = [2]
size = [1000]
"#,
    );
    let out = tmp.path().join("out");
    let (status, run) = run_to_end(&file, &out, tmp.path(), Duration::from_secs(60));
    assert_eq!(status.code(), Some(1), "failed runs exit 1\n{}", run.stderr);
    let dir = PathBuf::from(run.stdout.trim());
    let results = Csv::read(&dir.join("results.csv"));
    let by_target: HashMap<&str, &HashMap<String, String>> = results
        .rows
        .iter()
        .map(|r| (r["target"].as_str(), r))
        .collect();
    assert_eq!(results.rows.len(), 3);
    let crash = by_target["crash"];
    assert_eq!(crash["status"], "failed");
    assert!(
        crash["reason"].contains("exit status 3"),
        "{}",
        crash["reason"]
    );
    assert!(
        crash["reason"].contains("boom: cannot bind"),
        "quotes stderr: {}",
        crash["reason"]
    );
    assert_eq!(crash["pool"], "", "an external target has no pool");
    let bad = by_target["badflag"];
    assert_eq!(bad["status"], "failed");
    assert!(
        bad["reason"].contains("--no-such-flag"),
        "{}",
        bad["reason"]
    );
    let good = by_target["good"];
    assert_eq!(good["status"], "ok", "{}", good["reason"]);
    assert!(u(good, "ok") > 0);

    let m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(
        (m["status"].as_str(), m["runs_failed"].as_u64()),
        (Some("complete"), Some(2))
    );
    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains("## Failed runs") && report.contains("boom: cannot bind"),
        "{report}"
    );
    assert!(
        report.contains("Peak throughput"),
        "the good cell is still reported"
    );
    for plot in ["throughput_vs_concurrency.svg", "percentile_spectrum.svg"] {
        svg_texts(&dir.join("plots").join(plot));
    }
}

/// `run --set …` and the named overrides: applied before the checks, recorded in the
/// manifest, and the run directory's experiment.toml is the effective file.
#[test]
fn overrides_run_as_if_written_in_the_file_and_are_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "small.toml",
        "name = \"small\"\nrequests = 5\n[matrix]\nworkers = [1]\nconcurrency = [1]\nsize = [1000]\n",
    );
    let out = tmp.path().join("out");
    let mut run = Run::start(
        &[
            "run",
            file.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--set",
            "matrix.concurrency=[1,2]",
            "--set",
            "client.timeout=5s",
            "--repetitions",
            "2",
            "--duration",
            "200ms",
        ],
        tmp.path(),
    );
    let status = run.finish(Duration::from_secs(120));
    assert!(status.success(), "exit {status:?}\nstderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("2 cells × 2 repetitions = 4 runs"),
        "{}",
        run.stderr
    );
    let dir = PathBuf::from(run.stdout.trim());
    let m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let e = &m["experiment"];
    assert_eq!(
        e["overrides"],
        serde_json::json!([
            "matrix.concurrency=[1,2]",
            "client.timeout=\"5s\"",
            "repetitions=2",
            "duration=\"200ms\""
        ])
    );
    assert_eq!(
        (e["repetitions"].as_u64(), e["duration_s"].as_f64()),
        (Some(2), Some(0.2))
    );
    assert!(e["requests"].is_null(), "--duration replaces requests: {e}");
    assert_eq!(e["client_timeout_s"].as_f64(), Some(5.0));
    assert_eq!(Csv::read(&dir.join("results.csv")).rows.len(), 4);
    // The manifest's commit is the one --version names.
    let version = Command::new(BIN).arg("--version").output().unwrap();
    let commit = m["tool"]["git_commit"].as_str().unwrap();
    assert!(
        String::from_utf8_lossy(&version.stdout).contains(&format!("(commit {commit})")),
        "{commit}"
    );
    // experiment.toml is the effective file: run as it is, it plans the same runs.
    let effective = fs::read_to_string(dir.join("experiment.toml")).unwrap();
    assert!(effective.starts_with("# "), "{effective}");
    assert!(effective.contains("--repetitions 2"), "{effective}");
    let plan = dry_run(&dir.join("experiment.toml"));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains("2 cells × 2 repetitions = 4 runs"),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
}

#[test]
fn tls_targets_serve_the_runs_certificate_and_are_measured_over_tls() {
    let tmp = tempfile::tempdir().unwrap();
    // `ext` is an external command given the certificate through its placeholders;
    // `liar` says tls but serves plaintext, so its client's handshake must fail.
    let file = write(
        tmp.path(),
        "tls.toml",
        &format!(
            r#"
name = "tls"
warmup = "200ms"
duration = "600ms"
order = "interleaved"

[targets.plain]

[targets.tls]
tls = true

[targets.ext]
tls = true
command = ["{BIN}", "server", "--port", "{{port}}", "--workers", "{{workers}}",
           "--tls-cert", "{{tls_cert}}", "--tls-key", "{{tls_key}}"]

[targets.liar]
tls = true
command = ["{BIN}", "server", "--port", "{{port}}", "--workers", "{{workers}}"]

[matrix]
workers = [1]
concurrency = [2]
size = [1000]
"#
        ),
    );
    let plan = dry_run(&file);
    let plan = String::from_utf8_lossy(&plan.stdout);
    assert!(plan.contains("--tls-cert <run>/tls/cert.pem"), "{plan}");

    let out = tmp.path().join("out");
    let (status, run) = run_to_end(&file, &out, tmp.path(), Duration::from_secs(90));
    assert_eq!(status.code(), Some(1), "one cell fails\n{}", run.stderr);
    let dir = PathBuf::from(run.stdout.trim());
    let cert = fs::read_to_string(dir.join("tls/cert.pem")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");
    assert!(dir.join("tls/key.pem").is_file());

    let results = Csv::read(&dir.join("results.csv"));
    let row = |t: &str| {
        results
            .rows
            .iter()
            .find(|r| r["target"] == t)
            .unwrap_or_else(|| panic!("no row for {t}"))
    };
    for t in ["plain", "tls", "ext"] {
        let r = row(t);
        assert_eq!(r["status"], "ok", "{t}: {}", r["reason"]);
        assert!(u(r, "ok") > 0 && u(r, "failed") == 0, "{t}");
        // The runner's `stats` reset and read went over TLS too: the stages are there.
        assert!(f(r, "server_total_mean_us") > 0.0, "{t}: no stage timings");
    }
    let liar = row("liar");
    assert_eq!(liar["status"], "failed");
    assert!(
        liar["reason"].contains("TLS handshake failed"),
        "{}",
        liar["reason"]
    );

    let m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let tls_of = |t: &str| m["experiment"]["targets"][t]["tls"].as_bool();
    assert_eq!(
        (tls_of("plain"), tls_of("tls"), tls_of("ext")),
        (None, Some(true), Some(true))
    );
    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains("| target `tls` | built-in server, pool process; TLS"),
        "{report}"
    );
}

#[test]
fn sigint_stops_the_run_kills_its_children_and_writes_a_partial_report() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "long.toml",
        r#"
name = "long"
duration = "30s"

[matrix]
workers = [1]
concurrency = [1, 2, 4]
size = [1000]
"#,
    );
    let out = tmp.path().join("out");
    // Interrupt while the first cell's client is running.
    let mut run = start_until_client(&file, &out, tmp.path());
    let interrupted = Instant::now();
    run.signal(libc::SIGINT);
    // Far less than the 30 s cell it cuts short (the bound is a hang check, not a speed
    // requirement).
    let status = run.finish(Duration::from_secs(25));
    assert_eq!(status.code(), Some(130), "{}", run.stderr);
    eprintln!(
        "[sigint] the runner exited {:?} after SIGINT",
        interrupted.elapsed()
    );
    let servers = run
        .watcher
        .seen()
        .values()
        .filter(|c| c.contains(" server "))
        .count();
    assert!(servers >= 1, "the watcher saw the server");

    // The run cut short measured nothing: it is not run, like the two after it, not a
    // failure; `latest` is not pointed at a run without a measurement.
    let dir = PathBuf::from(run.stdout.trim());
    let m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "interrupted");
    assert_eq!(
        (m["runs_done"].as_u64(), m["runs_failed"].as_u64()),
        (Some(0), Some(0))
    );
    assert!(Csv::read(&dir.join("results.csv")).rows.is_empty());
    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("**Partial run.**"), "{report}");
    assert!(
        report.contains("| runs | 0 of 3 done, 0 failed, 3 not run; 3 cells |"),
        "{report}"
    );
    assert!(!report.contains("## Failed runs"), "{report}");
    assert!(!report.contains("No run succeeded"), "{report}");
    assert!(
        run.stderr
            .contains("c001 r1 concurrency=1: cut short by Ctrl-C: not run"),
        "{}",
        run.stderr
    );
    assert!(
        !out.join("latest").exists(),
        "latest points at a run that measured nothing"
    );
}

/// The runner's stderr so far, once a line of it satisfies `pred`; panics after `limit`.
fn wait_for_line(run: &Run, what: &str, pred: impl Fn(&str) -> bool, limit: Duration) -> String {
    let deadline = Instant::now() + limit;
    loop {
        let err = run.err.lock().unwrap().clone();
        if err.lines().any(&pred) {
            return err;
        }
        assert!(
            Instant::now() < deadline,
            "the runner printed no {what} within {limit:?}; stderr:\n{err}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn sigint_after_two_runs_leaves_the_rest_not_run_and_every_count_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "six.toml",
        "name = \"six\"\nrepetitions = 2\nwarmup = \"100ms\"\nduration = \"1s\"\n\
         [matrix]\nworkers = [1]\nconcurrency = [1, 2, 3]\nsize = [1000]\n",
    );
    let out = tmp.path().join("out");
    let mut run = start_experiment(&file, &out, tmp.path());
    // The second run's result line (not its start line, which ends in "…").
    let err = wait_for_line(
        &run,
        "result line of the second run",
        |l| l.starts_with("[2/6] ") && !l.ends_with('…'),
        Duration::from_secs(60),
    );
    assert!(
        !err.contains("FAILED"),
        "the first runs must succeed: {err}"
    );
    run.signal(libc::SIGINT);
    let status = run.finish(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{}", run.stderr);

    let dir = PathBuf::from(run.stdout.trim());
    let m: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["status"], "interrupted");
    // Two ran; a third may have ended before the signal landed.
    let done = m["runs_done"].as_u64().unwrap();
    assert!((2..=3).contains(&done), "{m}");
    assert_eq!(m["runs_failed"], 0, "{m}");
    let results = Csv::read(&dir.join("results.csv"));
    assert_eq!(results.rows.len() as u64, done);
    assert!(
        results.rows.iter().all(|r| r["status"] == "ok"),
        "{:?}",
        results.rows
    );

    let not_run = 6 - done;
    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(
        report.contains(&format!("after {done} of 6 runs ({not_run} not run)")),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "| runs | {done} of 6 done, 0 failed, {not_run} not run; 3 cells |"
        )),
        "{report}"
    );
    assert!(!report.contains("## Failed runs"), "{report}");
    assert!(
        report.contains(&format!("{not_run} of the 6 planned runs never ran")),
        "{report}"
    );
    let saturation = report
        .lines()
        .find(|l| l.starts_with("| builtin |"))
        .expect("a saturation row");
    assert!(saturation.contains("not run"), "{saturation}");
    assert!(!report.contains("no successful run"), "{report}");
    assert!(
        run.stderr
            .contains(&format!("interrupted after {done} of 6 runs"))
            && run
                .stderr
                .contains(&format!("0 failed, {not_run} not run; report: ")),
        "{}",
        run.stderr
    );
    // It measured something: `latest` is this run.
    assert_eq!(
        fs::canonicalize(out.join("latest")).unwrap(),
        fs::canonicalize(&dir).unwrap()
    );
}

#[test]
fn sigint_while_the_limits_are_measured_says_nothing_ran_and_keeps_latest() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "limits.toml",
        "name = \"limits\"\nduration = \"1s\"\n[matrix]\nworkers = [1]\n\
         concurrency = [1, 2, 4, 8, 16]\nsize = [1000]\n",
    );
    // An earlier run that `latest` points at.
    let out = tmp.path().join("out");
    fs::create_dir_all(out.join("earlier")).unwrap();
    std::os::unix::fs::symlink("earlier", out.join("latest")).unwrap();
    let mut run = start_experiment(&file, &out, tmp.path());
    run.wait_for_stderr("measuring the machine's limits", Duration::from_secs(30));
    run.signal(libc::SIGINT);
    // Stopped before the first cell, it may have started no server or client at all.
    let status = run.finish_checked(Duration::from_secs(30), false);
    assert_eq!(status.code(), Some(130), "{}", run.stderr);
    // The plan line, with the run's path, before the "interrupted" message.
    let plan = run
        .stderr
        .find("threadcenter run limits: 5 cells")
        .expect("the plan line");
    let interrupted = run
        .stderr
        .find("interrupted: stopping")
        .expect("the interrupt message");
    assert!(plan < interrupted, "{}", run.stderr);
    assert!(!run.stderr.contains("No run succeeded"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("latest not moved: this run measured nothing"),
        "{}",
        run.stderr
    );
    let dir = PathBuf::from(run.stdout.trim());
    assert!(
        run.stderr.contains(&dir.display().to_string()),
        "{}",
        run.stderr
    );
    let report = fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("nothing was measured"), "{report}");
    assert!(!report.contains("No run succeeded"), "{report}");
    assert!(
        report.contains("| runs | 0 of 5 done, 0 failed, 5 not run; 5 cells |"),
        "{report}"
    );
    assert_eq!(
        fs::read_link(out.join("latest")).unwrap(),
        PathBuf::from("earlier"),
        "latest moved to a run that measured nothing"
    );
}

#[test]
fn bad_experiment_files_are_refused_naming_the_key_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let head = "name = \"bad\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1]\n";
    for (body, line, key) in [
        (format!("{head}workers = [0, 2]\n"), 5, "matrix.workers"),
        (format!("{head}size = []\n"), 5, "matrix.size"),
        (format!("{head}threads = [2]\n"), 5, "matrix.threads"),
        (
            "name = \"bad\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1,\n 2,\n 1]\n"
                .to_string(),
            6,
            "matrix.concurrency",
        ),
        (format!("colour = \"red\"\n{head}"), 1, "colour"),
        (
            "name = \"bad\"\nwarmup = \"fast\"\nduration = \"1s\"\n[matrix]\nconcurrency = [1]\n"
                .to_string(),
            2,
            "warmup",
        ),
        (
            "name = \"bad\"\nduration = \"1s\"\norder = \"random\"\n[matrix]\nconcurrency = [1]\n"
                .to_string(),
            3,
            "order",
        ),
        (
            format!("{head}[[exclude]]\nthreads = 2\n"),
            6,
            "exclude[1].threads",
        ),
        (format!("{head}workers = [\"two\"]\n"), 5, "matrix.workers"),
    ] {
        let path = write(tmp.path(), "bad.toml", &body);
        let out = dry_run(&path);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{body}\n{err}");
        assert!(
            err.contains(&format!("bad.toml:{line}:")),
            "line {line} for:\n{body}\n{err}"
        );
        assert!(
            err.contains(&format!("`{key}`")),
            "key {key} for:\n{body}\n{err}"
        );
    }
}

#[test]
fn the_shipped_experiments_and_the_documented_example_are_valid() {
    // ci.toml names the two builds scripts/ci-bench.sh puts beside its copy: the dry
    // run checks they are there, so it is checked where they are.
    let ci = tempfile::tempdir().unwrap();
    for build in ["base", "head"] {
        fs::create_dir(ci.path().join(build)).unwrap();
        std::os::unix::fs::symlink(BIN, ci.path().join(build).join("threadcenter")).unwrap();
    }
    for entry in fs::read_dir(repo().join("experiments")).unwrap().flatten() {
        let path = if entry.file_name() == "ci.toml" {
            let copy = ci.path().join("ci.toml");
            fs::copy(entry.path(), &copy).unwrap();
            copy
        } else {
            entry.path()
        };
        let out = dry_run(&path);
        // compare-python.toml runs python3: without it, the dry run says so.
        if !common::runs("python3", "--version") {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("\"python3\" is not found on PATH") {
                continue;
            }
        }
        assert!(
            out.status.success(),
            "{}: {}",
            entry.path().display(),
            String::from_utf8_lossy(&out.stderr)
        );
        let plan = String::from_utf8_lossy(&out.stdout);
        if entry.file_name() == "quick.toml" {
            assert!(plan.contains("about "), "{plan}");
        }
    }
    let doc = fs::read_to_string(repo().join("docs/experiments.md")).unwrap();
    let example = doc
        .split("```toml\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .unwrap();
    // As if in docs/ of a checkout, with the other build it names in builds/main/.
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("docs")).unwrap();
    fs::create_dir_all(tmp.path().join("builds/main")).unwrap();
    std::os::unix::fs::symlink(BIN, tmp.path().join("builds/main/threadcenter")).unwrap();
    let path = write(&tmp.path().join("docs"), "example.toml", example);
    let out = dry_run(&path);
    let err = String::from_utf8_lossy(&out.stderr);
    let no_python =
        !common::runs("python3", "--version") && err.contains("\"python3\" is not found on PATH");
    assert!(out.status.success() || no_python, "{err}");
}

#[test]
fn a_quick_second_sigint_still_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let file = write(
        tmp.path(),
        "long.toml",
        "name = \"long\"\nduration = \"30s\"\n[matrix]\nworkers = [2]\nconcurrency = [2]\nsize = [1000]\n",
    );
    let out = tmp.path().join("out");
    let mut run = start_until_client(&file, &out, tmp.path());
    let interrupted = Instant::now();
    run.signal(libc::SIGINT);
    // Two signals sent back to back can merge into one: the second is sent once the
    // runner has taken the first. It lands while the first is still stopping the cell,
    // or after that finished: either way nothing may be left behind.
    run.wait_for_stderr(
        "interrupted: stopping the current cell",
        Duration::from_secs(20),
    );
    run.signal(libc::SIGINT);
    let status = run.finish(Duration::from_secs(25));
    assert_eq!(status.code(), Some(130), "{}", run.stderr);
    eprintln!(
        "[second sigint] the runner exited {:?} after the first SIGINT",
        interrupted.elapsed()
    );
}
