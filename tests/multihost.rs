//! Multi-host runs over SSH (docs/multi-host.md) on the namespace hosts of
//! scripts/test-hosts.sh: three network namespaces on a bridge in 10.231.0.0/24, each
//! with its own sshd. Every test builds its hosts and removes them when it ends, even
//! when it fails (`TestHosts` tears them down on drop); the namespaces' names are
//! fixed, so the tests take turns.
//!
//! They need root and Debian's openssh-server: `#[ignore]`d, and failing (not passing)
//! when either is missing; `.ci/run` installs sshd and runs them with `--ignored`.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::ChildGuard;

const BIN: &str = env!("CARGO_BIN_EXE_threadcenter");
const TAG_ENV: &str = "THREADCENTER_REMOTE_TAG";

/// One set of test hosts at a time: their names and subnet are fixed.
static HOSTS_LOCK: Mutex<()> = Mutex::new(());

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn require_sshd_and_root() {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let sshd = Path::new("/usr/sbin/sshd").exists();
    let ip = Path::new("/usr/sbin/ip").exists() || Path::new("/sbin/ip").exists();
    common::require_peer(
        root && sshd && ip,
        "root, iproute2 and Debian's sshd (network namespaces with an sshd each)",
        "run as root; apt-get install openssh-server iproute2",
    );
}

/// The test hosts, up while this lives.
struct TestHosts {
    state: tempfile::TempDir,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl TestHosts {
    fn up() -> TestHosts {
        require_sshd_and_root();
        let turn = HOSTS_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        let state = tempfile::tempdir().unwrap();
        let hosts = TestHosts { state, _turn: turn };
        // A previous run killed before its teardown leaves the names taken.
        let _ = hosts.script("down");
        let out = hosts.script("up");
        assert!(
            out.status.success(),
            "test-hosts.sh up: {}",
            common::explain(&out)
        );
        hosts
    }

    fn script(&self, what: &str) -> Output {
        let mut cmd = Command::new(repo().join("scripts/test-hosts.sh"));
        cmd.arg(what)
            .env("TCH_STATE", self.state.path().join("hosts"));
        common::bounded(cmd)
    }

    /// The experiment file the script prints, with `edit` applied, written to `dir`.
    fn experiment(&self, dir: &Path, edit: impl Fn(String) -> String) -> PathBuf {
        let out = self.script("experiment");
        assert!(out.status.success(), "{}", common::explain(&out));
        let text = edit(String::from_utf8(out.stdout).unwrap());
        let path = dir.join("hosts.toml");
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Stops the sshd of `host` (srv, lg1, lg2): the host is unreachable from now on.
    fn stop_sshd(&self, host: &str) {
        let pidfile = self.state.path().join(format!("hosts/sshd-{host}.pid"));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The sshd the script started for this test (its pid file).
        assert!(Command::new("kill")
            .arg(pid.to_string())
            .status()
            .unwrap()
            .success());
        wait_for(Duration::from_secs(10), "sshd to exit", || {
            !Path::new(&format!("/proc/{pid}")).exists()
        });
    }
}

impl Drop for TestHosts {
    fn drop(&mut self) {
        let out = self.script("down");
        if !out.status.success() && !std::thread::panicking() {
            panic!("test-hosts.sh down: {}", common::explain(&out));
        }
    }
}

/// The script's experiment with `top` in place of its measurement settings and
/// `matrix` in place of its matrix; with `own_binary`, this test's binary is every
/// host's `binary` (they share this machine's files), else the run copies it there.
fn with<'a>(top: &'a str, matrix: &'a str, own_binary: bool) -> impl Fn(String) -> String + 'a {
    move |text: String| {
        let mut out = String::new();
        let mut in_matrix = false;
        for line in text.lines() {
            if ["repetitions", "warmup", "duration", "order"]
                .iter()
                .any(|k| line.starts_with(k))
            {
                continue;
            }
            if line.starts_with('[') {
                in_matrix = line.starts_with("[matrix]");
            }
            if in_matrix {
                continue;
            }
            out.push_str(line);
            out.push('\n');
            if line.starts_with("name = ") {
                out.push_str(top);
                out.push('\n');
            }
            if own_binary && line.starts_with("ssh_options") {
                out.push_str(&format!("binary = {BIN:?}\n"));
            }
        }
        out.push_str("\n[matrix]\n");
        out.push_str(matrix);
        out
    }
}

/// Pids of live processes whose command line contains `needle`.
fn with_cmdline(needle: &str) -> Vec<i32> {
    common::pids()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .filter(|&pid| common::alive(pid))
        .collect()
}

fn wait_for(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids of processes whose environment carries a multi-host tag containing `needle`
/// (the run directory's name is in every tag of its cells).
fn tagged(needle: &str) -> Vec<i32> {
    common::pids()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|&b| b == 0).any(|v| {
                    let v = String::from_utf8_lossy(v);
                    v.starts_with(&format!("{TAG_ENV}=")) && v.contains(needle)
                })
            })
        })
        .filter(|&pid| common::alive(pid))
        .collect()
}

/// Live children of `ppid` whose command name is `comm`.
fn children_named(ppid: u32, comm: &str) -> Vec<i32> {
    common::children(ppid)
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

fn csv_rows(path: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    r.deserialize().map(|row| row.unwrap()).collect()
}

fn run_dir(out: &Output) -> PathBuf {
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(
        text.lines()
            .last()
            .unwrap_or_else(|| panic!("{}", common::explain(out))),
    )
}

fn run(args: &[&str]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    common::bounded(cmd)
}

#[test]
#[ignore = "needs sshd and root"]
fn merged_counts_add_up_to_the_hosts_and_to_the_servers_own_count() {
    let hosts = TestHosts::up();
    // This test lets the run copy the binary to the hosts' cache directory (this
    // machine's ~/.cache/threadcenter): what it adds there goes when it ends.
    let _cache = CacheCleanup::new();
    let dir = tempfile::tempdir().unwrap();
    // No warm-up and a count per connection: the server's stats reset comes before the
    // go, so it counts exactly what the clients sent.
    let file = hosts.experiment(
        dir.path(),
        with(
            "requests = 20",
            "workers = [1]\nsize = [1000]\nconcurrency = [2, 3]\n",
            false,
        ),
    );
    let file = file.to_str().unwrap();

    let dry = run(&["run", "--dry-run", file]);
    assert!(dry.status.success(), "{}", common::explain(&dry));
    let text = String::from_utf8_lossy(&dry.stdout);
    let version = format!("threadcenter {}", env!("CARGO_PKG_VERSION"));
    for h in ["srv", "lg1", "lg2"] {
        assert!(
            text.lines()
                .any(|l| l.contains(&format!("{h}: ")) && l.contains(&version)),
            "{h} is not reported with {version}: {text}"
        );
    }

    let out_dir = dir.path().join("out");
    let out = run(&["run", file, "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::explain(&out));
    let rd = run_dir(&out);
    let results = csv_rows(&rd.join("results.csv"));
    assert_eq!(results.len(), 2, "one row per cell × repetition");
    let host_rows = csv_rows(&rd.join("hosts.csv"));
    assert_eq!(
        host_rows.len(),
        6,
        "server + two clients, per run: {host_rows:?}"
    );
    for r in &results {
        let name = format!("{}-r{}", r["cell"], r["rep"]);
        assert_eq!(r["status"], "ok", "{r:?}");
        let ok: u64 = r["ok"].parse().unwrap();
        let concurrency: u64 = r["concurrency"].parse().unwrap();
        assert_eq!(
            r["failed"], "0",
            "every answer is verified by the clients: {r:?}"
        );
        assert_eq!(ok, 20 * concurrency, "{r:?}");
        let mine: Vec<_> = host_rows.iter().filter(|h| h["run"] == name).collect();
        let roles: BTreeSet<(&str, &str)> = mine
            .iter()
            .map(|h| (h["role"].as_str(), h["host"].as_str()))
            .collect();
        assert_eq!(
            roles,
            BTreeSet::from([("server", "srv"), ("client", "lg1"), ("client", "lg2")])
        );
        let clients_ok: u64 = mine
            .iter()
            .filter(|h| h["role"] == "client")
            .map(|h| h["requests_ok"].parse::<u64>().unwrap())
            .sum();
        assert_eq!(clients_ok, ok, "the merged count is the hosts' sum");
        for h in &mine {
            assert_eq!(h["status"], "ok", "{h:?}");
            for col in ["cpu_group_pct", "cpu_host_pct", "start_skew_bound_ms"] {
                let v: f64 = h[col].parse().unwrap_or_else(|_| panic!("{col} in {h:?}"));
                assert!(v >= 0.0, "{col} in {h:?}");
            }
        }
        // The merged histogram holds every host's answers.
        let hlog = rundir_hlog_count(&rd.join("hdr").join(format!("{name}.hlog")));
        assert_eq!(hlog, ok, "the merged histogram's count");
        // The server's own count over the window.
        let stats: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(rd.join("stats").join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        let computes = |at: &str| stats[at]["requests"]["compute"].as_u64().unwrap();
        assert_eq!(computes("at_end") - computes("at_reset"), ok, "{stats}");
        // Each client host's own document is kept.
        for h in ["lg1", "lg2"] {
            assert!(rd.join("client").join(format!("{name}.{h}.json")).exists());
        }
    }
    let report = std::fs::read_to_string(rd.join("report.md")).unwrap();
    assert!(
        report.contains("## Hosts"),
        "the report has a per-host section"
    );
    assert!(tagged(rd.file_name().unwrap().to_str().unwrap()).is_empty());
}

#[test]
#[ignore = "needs sshd and root"]
fn machine_limits_are_measured_per_host_pair() {
    let hosts = TestHosts::up();
    let dir = tempfile::tempdir().unwrap();
    let file = hosts.experiment(
        dir.path(),
        with(
            "requests = 5",
            "workers = [1]\nsize = [1000]\nconcurrency = [2, 4]\n",
            true,
        ),
    );
    let out_dir = dir.path().join("out");
    let out = run(&[
        "run",
        file.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", common::explain(&out));
    let rd = run_dir(&out);
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rd.join("manifest.json")).unwrap()).unwrap();
    let limits = &manifest["limits"];
    let pairs = limits["pairs"].as_array().expect("limits.pairs");
    let clients: Vec<&str> = pairs
        .iter()
        .map(|p| p["client_host"].as_str().unwrap())
        .collect();
    assert_eq!(clients, ["lg1", "lg2"], "{limits}");
    for p in pairs {
        assert_eq!(p["server_host"], "srv", "{p}");
        // Concurrency 2 and 4 over two client hosts: 1 and 2 connections from each.
        let echo = p["echo"].as_array().unwrap();
        let levels: Vec<u64> = echo
            .iter()
            .map(|l| l["concurrency"].as_u64().unwrap())
            .collect();
        assert_eq!(levels, [1, 2], "{p}");
        for l in echo {
            let rate = l["round_trips_per_s"].as_f64().unwrap_or(0.0);
            let p50 = l["p50_us"].as_f64().unwrap_or(0.0);
            assert!(rate > 0.0 && p50 > 0.0, "{p}");
        }
    }
    let compute = &limits["server_host_compute"][0];
    assert_eq!(compute["host"], "srv", "{limits}");
    assert_eq!(compute["compute"][0]["size"], 1000, "{limits}");
    assert!(compute["compute"][0]["min_s"].as_f64().unwrap() > 0.0);

    let report = std::fs::read_to_string(rd.join("report.md")).unwrap();
    assert!(
        report.contains("### Machine limits per host pair"),
        "{report}"
    );
    for row in [
        "| lg1 | srv | 1 | ",
        "| lg2 | srv | 2 | ",
        "| srv | 1000 | ",
    ] {
        assert!(report.contains(row), "no row {row:?} in:\n{report}");
    }
    // The echo sides (and their ssh sessions) are gone with the run.
    wait_for(Duration::from_secs(10), "no limits-probe left", || {
        with_cmdline("limits-probe").is_empty()
    });
}

/// Removes the entries of ~/.cache/threadcenter that appeared while it lived.
struct CacheCleanup {
    dir: PathBuf,
    before: BTreeSet<std::ffi::OsString>,
}

impl CacheCleanup {
    fn new() -> CacheCleanup {
        let dir = PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()))
            .join(".cache/threadcenter");
        CacheCleanup {
            before: entries(&dir),
            dir,
        }
    }
}

fn entries(dir: &Path) -> BTreeSet<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

impl Drop for CacheCleanup {
    fn drop(&mut self) {
        for name in entries(&self.dir).difference(&self.before) {
            let _ = std::fs::remove_dir_all(self.dir.join(name));
        }
    }
}

fn rundir_hlog_count(path: &Path) -> u64 {
    threadcenter::rundir::read_hlog(path)
        .unwrap()
        .iter()
        .map(|data| threadcenter::hdr::decode_base64_v2(data).unwrap().len())
        .sum()
}

#[test]
#[ignore = "needs sshd and root"]
fn a_host_whose_sshd_is_down_fails_its_cells_and_the_run_goes_on() {
    let hosts = TestHosts::up();
    let dir = tempfile::tempdir().unwrap();
    let file = hosts.experiment(
        dir.path(),
        with(
            "requests = 10",
            "workers = [1]\nsize = [1000]\nconcurrency = [2, 4]\n",
            true,
        ),
    );
    let file = file.to_str().unwrap();
    hosts.stop_sshd("lg2");

    let dry = run(&["run", "--dry-run", file]);
    assert_eq!(dry.status.code(), Some(2), "{}", common::explain(&dry));
    let err = String::from_utf8_lossy(&dry.stderr);
    assert!(
        err.contains("host lg2") && err.contains("Connection refused"),
        "{err}"
    );

    let out_dir = dir.path().join("out");
    let out = run(&["run", file, "--out", out_dir.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "failed cells: {}",
        common::explain(&out)
    );
    let rd = run_dir(&out);
    let results = csv_rows(&rd.join("results.csv"));
    assert_eq!(results.len(), 2, "the run went on to the second cell");
    for r in &results {
        assert_eq!(r["status"], "failed");
        assert!(
            r["reason"].contains("host lg2") && r["reason"].contains("Connection refused"),
            "{r:?}"
        );
    }
    let host_rows = csv_rows(&rd.join("hosts.csv"));
    assert!(host_rows
        .iter()
        .filter(|h| h["host"] == "lg2")
        .all(|h| h["status"] == "failed" && h["reason"].contains("Connection refused")));
    assert!(tagged(rd.file_name().unwrap().to_str().unwrap()).is_empty());
}

/// Waits until both client hosts run the client of cell `cell` (`c001`).
fn await_clients(cell: &str) {
    wait_for(
        Duration::from_secs(90),
        &format!("{cell}'s clients to run on both hosts"),
        || {
            let clients = with_cmdline("--wait-go");
            tagged(&format!(".{cell}-"))
                .iter()
                .filter(|p| clients.contains(p))
                .count()
                >= 2
        },
    );
}

/// One run of two long cells: in the first, every ssh process of the runner is killed
/// (its sessions and its master connections); in the second, the runner gets Ctrl-C.
/// Neither leaves a process on any host, the run goes on after the first, and the
/// second ends it with exit status 130 and its ssh masters gone.
#[test]
#[ignore = "needs sshd and root"]
fn lost_ssh_connections_and_ctrl_c_leave_nothing_on_any_host() {
    let hosts = TestHosts::up();
    let dir = tempfile::tempdir().unwrap();
    let file = hosts.experiment(
        dir.path(),
        with(
            "duration = \"60s\"",
            "workers = [1]\nsize = [1000]\nconcurrency = [2, 4]\n",
            true,
        ),
    );
    let out_dir = dir.path().join("out");
    let mut cmd = Command::new(BIN);
    cmd.args([
        "run",
        file.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut runner = ChildGuard::spawn(cmd).unwrap();

    await_clients("c001");
    // Every ssh the runner started: its sessions, and the masters it reaps as subreaper.
    let ssh = children_named(runner.id(), "ssh");
    assert!(!ssh.is_empty());
    for pid in ssh {
        // One may have ended already (an ssh that was exiting): not an error.
        let _ = Command::new("kill")
            .args(["-9", &pid.to_string()])
            .stderr(Stdio::null())
            .status();
    }
    wait_for(Duration::from_secs(20), "c001's processes to go", || {
        tagged(".c001-").is_empty()
    });

    // The run goes on: new masters, the second cell.
    await_clients("c002");
    let _ = Command::new("kill")
        .args(["-INT", &runner.id().to_string()])
        .status();
    let status = runner
        .wait_timeout(Duration::from_secs(60))
        .expect("the runner exits");
    assert_eq!(status.code(), Some(130), "interrupted");
    assert!(
        tagged("").is_empty(),
        "nothing of the run is left on a host"
    );
    let control = format!("threadcenter-ssh-{}-", runner.id());
    wait_for(Duration::from_secs(10), "ssh's masters to exit", || {
        with_cmdline(&control).is_empty()
    });

    let rd = std::fs::read_dir(&out_dir)
        .unwrap()
        .flatten()
        .find(|e| e.path().join("results.csv").exists())
        .unwrap()
        .path();
    let results = csv_rows(&rd.join("results.csv"));
    assert!(results[0]["reason"].contains("went away"), "{results:?}");
    // The interrupted cell is not a result (or, if recorded, says it was interrupted).
    assert!(
        results
            .iter()
            .skip(1)
            .all(|r| r["reason"].contains("interrupted")),
        "{results:?}"
    );
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(rd.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["status"], "interrupted", "{manifest}");
}
