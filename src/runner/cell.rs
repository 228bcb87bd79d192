//! One cell × repetition: start the target server, wait until it is ready, run the client
//! with `--json`, `--hgrm` and `--interval-log` while sampling CPU and memory (resetting the server's
//! `stats` when the warm-up ends and reading them at the end), stop everything, and turn
//! what the client wrote into a results row. Every failure becomes a `failed` row with
//! its reason.
//!
//! The server and the client are this executable's own `server` and `client` commands
//! run as child processes (or the target's external command), read only through their
//! documented outputs (docs/formats.md), exactly as a user's script could.

use std::collections::BTreeMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use sysinfo::System;

use super::container::{self, Server};
use super::cpu::{self, Sampler};
use super::experiment::{Experiment, Target, TargetKind};
use super::launch::{self, Group};
use super::stats::{self as server_stats, RunStats};
use super::tls::RunCert;
use crate::client::tls::TlsTarget;
use crate::rundir::{self, Cell, Measured, OpenMeasured, ResultRow, Sample, Status};

/// Everything a run of one cell needs from the run as a whole.
pub(crate) struct Env<'a> {
    /// This executable: `server` and `client` are its subcommands.
    pub exe: &'a Path,
    pub exp: &'a Experiment,
    pub dir: &'a Path,
    /// The experiment file's directory, for `{dir}` in external commands.
    pub exp_dir: PathBuf,
    pub interrupted: &'a AtomicBool,
    /// The run's certificate, when a target has `tls = true`.
    pub tls: Option<&'a RunCert>,
    /// The run's hosts, when the experiment has `[hosts]` (docs/multi-host.md).
    pub fleet: Option<&'a crate::remote::ssh::Fleet>,
}

/// The client's `--json` document, as docs/formats.md defines it (only what is used).
#[derive(Debug, Deserialize)]
pub(super) struct ClientDoc {
    pub(super) format: String,
    pub(super) version: u32,
    pub(super) elapsed_s: f64,
    pub(super) requests: Requests,
    #[serde(default)]
    pub(super) failures: BTreeMap<String, serde_json::Value>,
    pub(super) throughput_rps: f64,
    pub(super) latency_us: Latency,
    pub(super) histogram: Histogram,
    /// Open loop only (docs/formats.md); `latency_us` is then corrected.
    #[serde(default)]
    pub(super) open_loop: Option<OpenLoop>,
}

#[derive(Debug, Deserialize)]
pub(super) struct OpenLoop {
    pub(super) offered_rps: f64,
    pub(super) sent_rps: f64,
    pub(super) uncorrected_latency_us: Latency,
    pub(super) lateness_us: Latency,
}

#[derive(Debug, Deserialize)]
pub(super) struct Requests {
    pub(super) sent: u64,
    pub(super) ok: u64,
    pub(super) failed: u64,
}

#[derive(Debug, Deserialize)]
pub(super) struct Latency {
    pub(super) mean: Option<f64>,
    pub(super) p50: Option<f64>,
    pub(super) p90: Option<f64>,
    pub(super) p99: Option<f64>,
    pub(super) p99_9: Option<f64>,
    pub(super) max: Option<f64>,
}

#[derive(Debug, Deserialize)]
pub(super) struct Histogram {
    pub(super) unit: String,
    pub(super) encoding: String,
    pub(super) data: String,
}

/// Where one cell × repetition's files go in the run directory.
pub(super) struct RunFiles {
    /// The run's name, `c001-r1`.
    pub(super) name: String,
    pub(super) server_log: PathBuf,
    pub(super) client_log: PathBuf,
    /// The client's `--json` document.
    pub(super) json: PathBuf,
    pub(super) hgrm: PathBuf,
    /// The client's `--interval-log`.
    pub(super) intervals: PathBuf,
    /// The measured window as one interval.
    pub(super) hlog: PathBuf,
    pub(super) stats: PathBuf,
    pub(super) cpu: PathBuf,
}

impl RunFiles {
    pub(super) fn new(dir: &Path, name: String) -> RunFiles {
        let at = |sub: &str, file: String| dir.join(sub).join(file);
        RunFiles {
            server_log: at(rundir::LOGS_DIR, format!("{name}.server.log")),
            client_log: at(rundir::LOGS_DIR, format!("{name}.client.log")),
            json: at(rundir::CLIENT_DIR, format!("{name}.json")),
            hgrm: at(rundir::HDR_DIR, format!("{name}.hgrm")),
            intervals: at(rundir::HDR_DIR, rundir::intervals_file(&name)),
            hlog: at(rundir::HDR_DIR, format!("{name}.hlog")),
            stats: at(rundir::STATS_DIR, format!("{name}.json")),
            cpu: at(rundir::CPU_DIR, format!("{name}.csv")),
            name,
        }
    }
}

/// Runs one cell × repetition and returns its row (it never panics on a failed cell).
pub(crate) fn run(
    env: &Env<'_>,
    sys: &mut Option<System>,
    cell_id: &str,
    cell: &Cell,
    rep: u32,
    seq: usize,
) -> ResultRow {
    if let Some(fleet) = env.fleet.filter(|_| env.exp.hosts.is_remote(&cell.target)) {
        return super::multihost::run(env, fleet, cell_id, cell, rep, seq);
    }
    let started = Instant::now();
    let files = RunFiles::new(env.dir, rundir::run_name(cell_id, rep));
    let mut row = ResultRow::pending(cell_id, rep, seq, cell);
    let target = &env.exp.targets[&cell.target];
    // The run's certificate, when this target serves TLS: its server gets it, and the
    // client and the `stats` connections trust it.
    let tls = target.tls.then(|| {
        env.tls
            .expect("the run makes a certificate when a target has tls")
    });
    let (server, addr) = match start_server(env, target, cell, tls, &files.server_log) {
        Ok(x) => x,
        Err(reason) => {
            row.reason = reason;
            row.wall_s = started.elapsed().as_secs_f64();
            return row;
        }
    };

    row.startup_s = started.elapsed().as_secs_f64();

    let client = Client { cell, addr, tls };
    let outcome = measure(env, sys, &client, &files, server.pid());
    let stopping = Instant::now();
    // The server must still be up when the client is done: otherwise it crashed.
    let crashed = server.peek_exit();
    let stopped = server.stop(target.stop_grace);
    row.stop_s = stopping.elapsed().as_secs_f64();

    let mut problems = problems(&outcome, crashed, &stopped, target, &files.server_log);
    if let Some(note) = refused_note(cell, target, &outcome.failure_kinds) {
        problems.push(note);
    }
    row.measured = outcome.measured;
    row.cpu = outcome.cpu;
    row.footprint = outcome.footprint;
    row.stages = outcome.stages;
    row.status = if problems.is_empty() {
        Status::Ok
    } else {
        Status::Failed
    };
    row.reason = problems.join("; ");
    row.wall_s = started.elapsed().as_secs_f64();
    row
}

/// What went wrong in a cell, most telling first: the measurement's problem or its
/// failed requests, then the server's crash or unclean exit, then leftover processes.
fn problems(
    outcome: &Outcome,
    crashed: Option<String>,
    stopped: &launch::Stopped,
    target: &Target,
    server_log: &Path,
) -> Vec<String> {
    let mut problems: Vec<String> = Vec::new();
    if let Some(p) = &outcome.problem {
        problems.push(p.clone());
    }
    if let Some(status) = crashed {
        problems.push(format!(
            "the server exited during the cell ({status}){}",
            stderr_tail(server_log)
        ));
    } else if !target.is_external() && stopped.exit_code != Some(0) {
        problems.push(format!(
            "the server did not exit cleanly on SIGTERM ({}{}){}",
            stopped.status,
            if stopped.graceful {
                ""
            } else {
                ", killed after the grace period"
            },
            stderr_tail(server_log)
        ));
    }
    if !stopped.leftover.is_empty() {
        problems.push(format!(
            "processes of the server's group were still there after SIGKILL: {:?}",
            stopped.leftover
        ));
    }
    problems.extend(stopped.problems.iter().cloned());
    if let Some(m) = &outcome.measured {
        if m.failed > 0 && outcome.problem.is_none() {
            problems.insert(
                0,
                format!(
                    "{} of {} requests failed ({})",
                    m.failed, m.sent, outcome.failure_kinds
                ),
            );
        }
    }
    problems
}

/// Why a built-in server answered OVERLOADED, when the cell asked for more connections
/// than its default `--max-connections` holds on this machine: the same rule the server
/// applies at start-up (`server::capacity`: its open-file limit raised to the hard one,
/// and with `--io threads` the kernel's memory-map limit), so a refused cell says so.
fn refused_note(cell: &Cell, target: &Target, failure_kinds: &str) -> Option<String> {
    let TargetKind::Builtin { args, binary, .. } = &target.kind else {
        return None;
    };
    if !failure_kinds.contains("OVERLOADED")
        || binary.is_some()
        || args.iter().any(|a| a.starts_with("--max-connections"))
    {
        return None;
    }
    use crate::server::capacity;
    let io = cell.io.unwrap_or_default();
    let nofile = capacity::raise_nofile();
    let maps = capacity::max_map_count();
    let allowed = capacity::connections_allowed(io, nofile, maps);
    (cell.concurrency > allowed).then(|| {
        format!(
            "the server holds at most {allowed} connections by default with --io {} on this machine (open-file limit {nofile}{}), so the connections past it were refused with OVERLOADED instead of crashing it; measure {} connections with --io events",
            io.as_str(),
            match (io, maps) {
                (crate::domain::IoModel::Threads, Some(m)) => {
                    format!(", vm.max_map_count {m}: 8 maps per connection")
                }
                _ => String::new(),
            },
            cell.concurrency
        )
    })
}

/// " — stderr: last | lines" (or nothing when the log is empty).
fn stderr_tail(log: &Path) -> String {
    log_tail(log, "stderr")
}

/// " — `what`: last | lines" of a child's log (or nothing when the log is empty).
pub(super) fn log_tail(log: &Path, what: &str) -> String {
    let tail = launch::tail(log, 6);
    if tail.is_empty() {
        String::new()
    } else {
        format!(
            " — {what}: {}",
            tail.lines().collect::<Vec<_>>().join(" | ")
        )
    }
}

/// Starts the cell's server and waits for it to be ready; on failure, stops what was
/// started and returns the reason (quoting the server's stderr).
fn start_server(
    env: &Env<'_>,
    target: &Target,
    cell: &Cell,
    tls: Option<&RunCert>,
    log: &Path,
) -> Result<(Server, SocketAddr), String> {
    let log_file =
        File::create(log).map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    let clone = |f: &File| {
        f.try_clone()
            .map_err(|e| format!("cannot open the log: {e}"))
    };
    match &target.kind {
        TargetKind::Builtin { args, binary, .. } => {
            let exe = binary.as_ref().map_or(env.exe.to_path_buf(), |b| {
                PathBuf::from(fill(b, 0, 0, &env.exp_dir, None))
            });
            let mut cmd = Command::new(&exe);
            cmd.args(["server", "--host", "127.0.0.1", "--port", "0"])
                .arg("--workers")
                .arg(cell.workers.to_string());
            if let Some(pool) = cell.pool {
                cmd.args(["--pool", pool.as_str()]);
            }
            if let Some(io) = cell.io {
                cmd.args(["--io", io.as_str()]);
            }
            if let Some(cert) = tls {
                cmd.arg("--tls-cert")
                    .arg(&cert.cert)
                    .arg("--tls-key")
                    .arg(&cert.key);
            }
            cmd.args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::from(log_file));
            let mut group = Group::spawn(&mut cmd)
                .map_err(|e| format!("cannot start `{} server`: {e}", exe.display()))?;
            match launch::await_ready_line(&mut group, target.ready_timeout, env.interrupted) {
                Ok(addr) => Ok((Server::Process(group), addr)),
                Err(why) => {
                    group.kill();
                    Err(format!("{why}{}", stderr_tail(log)))
                }
            }
        }
        TargetKind::External { command } => {
            let port = launch::free_port().map_err(|e| format!("cannot find a free port: {e}"))?;
            let words: Vec<String> = command
                .iter()
                .map(|w| fill(w, port, cell.workers, &env.exp_dir, tls))
                .collect();
            let mut cmd = Command::new(&words[0]);
            cmd.args(&words[1..])
                .stdout(Stdio::from(clone(&log_file)?))
                .stderr(Stdio::from(log_file));
            let group = Group::spawn(&mut cmd)
                .map_err(|e| format!("cannot start {:?}: {e}", words.join(" ")))?;
            let addr: SocketAddr = ([127, 0, 0, 1], port).into();
            match launch::await_connectable(&group, addr, target.ready_timeout, env.interrupted) {
                Ok(()) => Ok((Server::Process(group), addr)),
                Err(why) => {
                    group.kill();
                    Err(format!("{why}{}", stderr_tail(log)))
                }
            }
        }
        TargetKind::Container(spec) => {
            let at = container::start(
                spec,
                cell.workers,
                target.ready_timeout,
                env.interrupted,
                log_file,
            );
            at.map(|(c, addr)| (Server::Container(c), addr))
                .map_err(|why| format!("{why}{}", stderr_tail(log)))
        }
    }
}

/// `{host}`, `{port}`, `{workers}` and `{dir}` filled in, and `{tls_cert}`/`{tls_key}`
/// when given the certificate (a `tls` target: the only kind the file lets use them).
fn fill(word: &str, port: u16, workers: u64, dir: &Path, tls: Option<&RunCert>) -> String {
    let word = word
        .replace("{host}", super::tls::HOST)
        .replace("{port}", &port.to_string())
        .replace("{workers}", &workers.to_string())
        .replace("{dir}", &dir.display().to_string());
    match tls {
        Some(t) => word
            .replace("{tls_cert}", &t.cert.display().to_string())
            .replace("{tls_key}", &t.key.display().to_string()),
        None => word,
    }
}

/// What the client is run against: the cell, the ready server's address, and the run's
/// certificate when the target serves TLS.
struct Client<'a> {
    cell: &'a Cell,
    addr: SocketAddr,
    tls: Option<&'a RunCert>,
}

#[derive(Default)]
struct Outcome {
    measured: Option<Measured>,
    cpu: Option<rundir::CpuMeans>,
    /// Peak memory and threads over the measured window.
    footprint: Option<rundir::Footprint>,
    /// The server's stage timings over the measured window.
    stages: Option<rundir::StageFigures>,
    /// Why the measurement is not to be trusted (client error, timeout, interrupt).
    problem: Option<String>,
    /// "io=2 timeout=1" when requests failed.
    failure_kinds: String,
}

impl Outcome {
    /// Notes a problem, when there is one; the last one noted is the one kept.
    fn note(&mut self, problem: Option<String>) {
        if problem.is_some() {
            self.problem = problem;
        }
    }
}

/// Runs the client against the server with CPU sampling, then reads what it wrote;
/// writes the run's cpu/, hdr/, stats/ and client/ files.
fn measure(
    env: &Env<'_>,
    sys: &mut Option<System>,
    client: &Client<'_>,
    files: &RunFiles,
    server_pid: u32,
) -> Outcome {
    let mut out = Outcome::default();
    let mut cmd = client_command(env, client, files);
    if let Err(problem) = log_to(&mut cmd, &files.client_log) {
        out.problem = Some(problem);
        return out;
    }
    // The server's stage histograms are reset when the client's warm-up ends (at once
    // when there is none), so stats/<run>.json covers the measured window.
    let mut window = StatsWindow::open(client, env.exp.settings.warmup);
    let mut sampler = sys.take().map(|sys| Sampler::begin(sys, server_pid));
    let start_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let child = match Group::spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            finish_sampling(sampler, sys);
            out.problem = Some(format!("cannot start `{} client`: {e}", env.exe.display()));
            return out;
        }
    };
    if let Some(s) = sampler.as_mut() {
        s.mark_start();
    }
    let started = Instant::now();
    let ended = watch_client(env, &child, &mut sampler, &mut window, started);
    // A last sample while the exited client is still unreaped (its CPU time still counts).
    if let Some(s) = sampler.as_mut() {
        s.sample(Some(child.pid()));
    }
    if ended.is_none() {
        match window.close(started.elapsed().as_secs_f64(), &files.stats) {
            Ok(stages) => out.stages = stages,
            Err(problem) => out.problem = Some(problem),
        }
    }
    let stopped = if ended.is_some() {
        child.kill()
    } else {
        child.stop(Duration::from_secs(2))
    };
    let samples = finish_sampling(sampler, sys);
    let warmup_s = env.exp.settings.warmup.as_secs_f64();
    out.note(write_cpu(&files.cpu, &samples, warmup_s).err());
    if let Some(reason) = ended {
        out.problem = Some(reason);
        return out;
    }
    let doc = match read_client_doc(&files.json) {
        Ok(doc) => doc,
        Err(e) => {
            out.problem = Some(format!(
                "the client failed ({}): {e}{}",
                stopped.status,
                log_tail(&files.client_log, "client output")
            ));
            return out;
        }
    };
    out.measured = Some(doc.measured());
    out.note(loop_problem(client.cell, &doc));
    out.failure_kinds = failure_kinds(&doc.failures);
    out.note(count_problem(&doc, &stopped));
    out.cpu = cpu::window_means(&samples, warmup_s, warmup_s + doc.elapsed_s);
    out.footprint = cpu::window_footprint(&samples, warmup_s, warmup_s + doc.elapsed_s);
    let hlog_start = start_epoch + warmup_s;
    out.note(write_hlog(files, client.cell, &doc, hlog_start).err());
    out.note(histogram_problem(&doc));
    out
}

/// `threadcenter client` against the server, writing the run's `--json`, `--hgrm` and
/// `--interval-log` files.
fn client_command(env: &Env<'_>, client: &Client<'_>, files: &RunFiles) -> Command {
    let s = &env.exp.settings;
    let (cell, addr) = (client.cell, client.addr);
    let mut cmd = Command::new(env.exe);
    cmd.arg("client")
        .args([
            "--host",
            &addr.ip().to_string(),
            "--port",
            &addr.port().to_string(),
        ])
        .args(["--concurrency", &cell.concurrency.to_string()])
        .args(["--size", &cell.size.to_string()])
        .args(["--cmd", cell.cmd.as_str()])
        .args(["--warmup", &super::fmt_duration(s.warmup)])
        .args(["--timeout", &super::fmt_duration(env.exp.client.timeout)]);
    if let Some(threads) = env.exp.client.threads {
        // The client refuses more threads than connections: each thread needs one.
        cmd.args(["--threads", &threads.min(cell.concurrency).to_string()]);
    }
    if let Some(cert) = client.tls {
        cmd.arg("--tls").arg("--ca").arg(&cert.cert);
    }
    if let Some(rate) = cell.rate {
        cmd.args(["--rate", &rate.to_string()])
            .args(["--pipeline", &env.exp.client.pipeline.to_string()]);
    }
    if let Some(d) = s.duration {
        cmd.args(["--duration", &super::fmt_duration(d)]);
    }
    if let Some(n) = s.requests {
        cmd.args(["--requests", &n.to_string()]);
    }
    cmd.arg("--json")
        .arg(&files.json)
        .arg("--hgrm")
        .arg(&files.hgrm)
        .arg("--interval-log")
        .arg(&files.intervals)
        .arg("--quiet");
    cmd
}

/// Sends the command's stdout and stderr to `log`.
fn log_to(cmd: &mut Command, log: &Path) -> Result<(), String> {
    let (out, err) = File::create(log)
        .and_then(|f| Ok((f.try_clone()?, f)))
        .map_err(|e| format!("cannot create {}: {e}", log.display()))?;
    cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
    Ok(())
}

/// Waits for the client to exit, sampling CPU every [`cpu::PERIOD`] and resetting the
/// server's stats when the warm-up ends. `Some(why)` when the cell is to be stopped
/// first: Ctrl-C, or `cell_timeout` has passed.
fn watch_client(
    env: &Env<'_>,
    child: &Group,
    sampler: &mut Option<Sampler>,
    window: &mut StatsWindow<'_>,
    started: Instant,
) -> Option<String> {
    let s = &env.exp.settings;
    let deadline = started + s.cell_timeout;
    let mut next_sample = started + cpu::PERIOD;
    let warmup_end = started + s.warmup;
    loop {
        if child.has_exited() {
            return None;
        }
        let now = Instant::now();
        if window.reset_due && now >= warmup_end {
            window.reset(started.elapsed().as_secs_f64());
        }
        if env.interrupted.load(Ordering::Relaxed) {
            return Some(INTERRUPTED.to_string());
        }
        if now >= deadline {
            return Some(past_cell_timeout(s.cell_timeout));
        }
        if now >= next_sample {
            if let Some(s) = sampler.as_mut() {
                s.sample(Some(child.pid()));
            }
            next_sample += cpu::PERIOD;
            if next_sample < now {
                next_sample = now + cpu::PERIOD;
            }
        }
        let mut wait = next_sample
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(5));
        if window.reset_due {
            wait = wait.min(warmup_end.saturating_duration_since(Instant::now()));
        }
        std::thread::sleep(wait);
    }
}

/// The samples taken, and the System back in `sys` for the next cell.
fn finish_sampling(sampler: Option<Sampler>, sys: &mut Option<System>) -> Vec<Sample> {
    match sampler {
        Some(s) => {
            let (samples, back) = s.finish();
            *sys = Some(back);
            samples
        }
        None => Vec::new(),
    }
}

/// `cpu/<run>.csv`, when there are samples.
fn write_cpu(path: &Path, samples: &[Sample], warmup_s: f64) -> Result<(), String> {
    if samples.is_empty() {
        return Ok(());
    }
    rundir::cpu::write_csv(path, samples, warmup_s)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The server's `stats` around the measured window: reset when the client's warm-up
/// ends, read once the client has exited, both kept in `stats/<run>.json`.
struct StatsWindow<'a> {
    addr: SocketAddr,
    tls: Option<&'a TlsTarget>,
    stats: RunStats,
    /// The warm-up has not ended yet: the reset is still to come.
    reset_due: bool,
}

impl<'a> StatsWindow<'a> {
    /// Resets the server's stats now when there is no warm-up.
    fn open(client: &Client<'a>, warmup: Duration) -> StatsWindow<'a> {
        let mut window = StatsWindow {
            addr: client.addr,
            tls: client.tls.map(|t| &t.client),
            stats: RunStats::new(),
            reset_due: !warmup.is_zero(),
        };
        if !window.reset_due {
            window.reset(0.0);
        }
        window
    }

    /// Resets the server's stats, `at_s` seconds after the client started.
    fn reset(&mut self, at_s: f64) {
        self.reset_due = false;
        match server_stats::query(self.addr, true, self.tls) {
            Ok(v) => self.stats.at_reset = Some(v),
            Err(e) => self.stats.fail(e),
        }
        self.stats.reset_at_s = Some(at_s);
    }

    /// Reads the server's stats once the client has exited (`at_s` seconds after it
    /// started) and writes both snapshots to `path`; the stage figures of the window.
    fn close(mut self, at_s: f64, path: &Path) -> Result<Option<rundir::StageFigures>, String> {
        if self.reset_due {
            self.stats
                .fail("the client ended before its warm-up did".into());
        }
        self.stats.read_at_s = Some(at_s);
        match server_stats::query(self.addr, false, self.tls) {
            Ok(v) => self.stats.at_end = Some(v),
            Err(e) => self.stats.fail(e),
        }
        self.stats
            .write(path)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(self.stats.stages())
    }
}

impl ClientDoc {
    /// The document's figures as results.csv holds them (NaN where it has none).
    pub(super) fn measured(&self) -> Measured {
        let l = &self.latency_us;
        let z = |v: Option<f64>| v.unwrap_or(f64::NAN);
        Measured {
            sent: self.requests.sent,
            ok: self.requests.ok,
            failed: self.requests.failed,
            duration_s: self.elapsed_s,
            throughput_rps: self.throughput_rps,
            latency_mean_us: z(l.mean),
            latency_p50_us: z(l.p50),
            latency_p90_us: z(l.p90),
            latency_p99_us: z(l.p99),
            latency_p99_9_us: z(l.p99_9),
            latency_max_us: z(l.max),
            open: self.open_loop.as_ref().map(|o| OpenMeasured {
                offered_rps: o.offered_rps,
                sent_rps: o.sent_rps,
                latency_p99_uncorrected_us: z(o.uncorrected_latency_us.p99),
                lateness_p99_us: z(o.lateness_us.p99),
            }),
        }
    }
}

/// The client ran the other load model than the cell asked for.
pub(super) fn loop_problem(cell: &Cell, doc: &ClientDoc) -> Option<String> {
    (cell.rate.is_some() != doc.open_loop.is_some()).then(|| {
        format!(
            "the cell asked for the {} loop, and the client's document is {} loop",
            cell.load_model(),
            if doc.open_loop.is_some() {
                "an open"
            } else {
                "a closed"
            }
        )
    })
}

/// No request measured, or a failing exit with no failed request to explain it.
fn count_problem(doc: &ClientDoc, stopped: &launch::Stopped) -> Option<String> {
    if doc.requests.sent == 0 {
        Some(format!(
            "the client measured no request ({}): the warm-up took the whole run, or the machine stalled",
            stopped.status
        ))
    } else if stopped.exit_code != Some(0) && doc.requests.failed == 0 {
        Some(format!(
            "the client ended with {} although it counted no failed request",
            stopped.status
        ))
    } else {
        None
    }
}

/// `hdr/<run>.hlog`: the client's histogram of the measured window, which starts at
/// `start_epoch_s`, as one interval.
fn write_hlog(
    files: &RunFiles,
    cell: &Cell,
    doc: &ClientDoc,
    start_epoch_s: f64,
) -> Result<(), String> {
    let comment = format!(
        "threadcenter {}: {} {}, the measured window as one interval",
        env!("CARGO_PKG_VERSION"),
        files.name,
        cell.label()
    );
    rundir::write_hlog(
        &files.hlog,
        &comment,
        start_epoch_s,
        doc.elapsed_s,
        doc.latency_us.max.unwrap_or(f64::NAN) * 1000.0,
        &doc.histogram.data,
    )
    .map_err(|e| format!("cannot write {}: {e}", files.hlog.display()))
}

/// The histogram is not in the unit and encoding this runner reads.
pub(super) fn histogram_problem(doc: &ClientDoc) -> Option<String> {
    let h = &doc.histogram;
    (h.unit != "ns" || h.encoding != "hdr-v2-deflate-base64").then(|| {
        format!(
            "the client's histogram is {} in {}; this runner reads ns in hdr-v2-deflate-base64",
            h.unit, h.encoding
        )
    })
}

pub(super) fn read_client_doc(path: &Path) -> Result<ClientDoc, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("no --json document ({}: {e})", path.display()))?;
    let doc: ClientDoc = serde_json::from_str(&text)
        .map_err(|e| format!("its --json document does not parse: {e}"))?;
    if doc.format != "threadcenter-client" || doc.version != 1 {
        return Err(format!(
            "its --json document is {} version {}; this runner reads threadcenter-client version 1",
            doc.format, doc.version
        ));
    }
    Ok(doc)
}

/// "io=2 server_error.OVERLOADED=1" from the document's `failures` object.
pub(super) fn failure_kinds(failures: &BTreeMap<String, serde_json::Value>) -> String {
    let mut parts = Vec::new();
    for (kind, v) in failures {
        match v {
            serde_json::Value::Number(n) if n.as_u64().unwrap_or(0) > 0 => {
                parts.push(format!("{kind}={n}"));
            }
            serde_json::Value::Object(codes) => {
                for (code, n) in codes {
                    if n.as_u64().unwrap_or(0) > 0 {
                        parts.push(format!("{kind}.{code}={n}"));
                    }
                }
            }
            _ => {}
        }
    }
    parts.join(" ")
}

/// Why a cell stopped when Ctrl-C came while it ran (local and multi-host cells alike).
pub(super) const INTERRUPTED: &str = "interrupted (Ctrl-C) before the cell finished";

/// Why a cell stopped when it ran past `cell_timeout`.
pub(super) fn past_cell_timeout(cell_timeout: Duration) -> String {
    format!(
        "timed out: the cell ran past cell_timeout ({})",
        super::fmt_duration(cell_timeout)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            fill(
                "--bind={host}:{port} -w{workers} {dir}/s.py",
                4000,
                3,
                Path::new("/x"),
                None
            ),
            "--bind=127.0.0.1:4000 -w3 /x/s.py"
        );
        let dir = tempfile::tempdir().unwrap();
        let cert = RunCert::generate(dir.path()).unwrap();
        assert_eq!(
            fill(
                "--cert={tls_cert} {tls_key}",
                1,
                1,
                Path::new("/x"),
                Some(&cert)
            ),
            format!("--cert={} {}", cert.cert.display(), cert.key.display())
        );
    }

    #[test]
    fn failure_kinds_name_every_nonzero_count() {
        let f: BTreeMap<String, serde_json::Value> = serde_json::from_str(
            r#"{"connect":0,"io":2,"server_error":{"OVERLOADED":1,"BAD_REQUEST":0}}"#,
        )
        .unwrap();
        assert_eq!(failure_kinds(&f), "io=2 server_error.OVERLOADED=1");
    }
}
