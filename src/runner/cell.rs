//! One cell × repetition: start the target server, wait until it is ready, run the client
//! with `--json`, `--hgrm` and `--interval-log` while sampling CPU (resetting the server's
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

use super::cpu::{self, Sampler};
use super::experiment::{Experiment, Target, TargetKind};
use super::launch::{self, Group};
use super::stats::{self as server_stats, RunStats};
use super::tls::RunCert;
use crate::rundir::{self, Cell, Measured, OpenMeasured, ResultRow, Status};

/// Everything a run of one cell needs from the run as a whole.
pub struct Env<'a> {
    /// This executable: `server` and `client` are its subcommands.
    pub exe: &'a Path,
    pub exp: &'a Experiment,
    pub dir: &'a Path,
    /// The experiment file's directory, for `{dir}` in external commands.
    pub exp_dir: PathBuf,
    pub interrupted: &'a AtomicBool,
    /// The run's certificate, when a target has `tls = true`.
    pub tls: Option<&'a RunCert>,
}

/// The client's `--json` document, as docs/formats.md defines it (only what is used).
#[derive(Debug, Deserialize)]
struct ClientDoc {
    format: String,
    version: u32,
    elapsed_s: f64,
    requests: Requests,
    #[serde(default)]
    failures: BTreeMap<String, serde_json::Value>,
    throughput_rps: f64,
    latency_us: Latency,
    histogram: Histogram,
    /// Open loop only (docs/formats.md); `latency_us` is then corrected.
    #[serde(default)]
    open_loop: Option<OpenLoop>,
}

#[derive(Debug, Deserialize)]
struct OpenLoop {
    offered_rps: f64,
    sent_rps: f64,
    uncorrected_latency_us: Latency,
    lateness_us: Latency,
}

#[derive(Debug, Deserialize)]
struct Requests {
    sent: u64,
    ok: u64,
    failed: u64,
}

#[derive(Debug, Deserialize)]
struct Latency {
    mean: Option<f64>,
    p50: Option<f64>,
    p90: Option<f64>,
    p99: Option<f64>,
    p99_9: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct Histogram {
    unit: String,
    encoding: String,
    data: String,
}

/// Runs one cell × repetition and returns its row (it never panics on a failed cell).
pub fn run(
    env: &Env<'_>,
    sys: &mut Option<System>,
    cell_id: &str,
    cell: &Cell,
    rep: u32,
    seq: usize,
) -> ResultRow {
    let started = Instant::now();
    let name = rundir::run_name(cell_id, rep);
    let mut row = ResultRow {
        cell_id: cell_id.to_string(),
        rep,
        seq,
        cell: cell.clone(),
        status: Status::Failed,
        reason: String::new(),
        measured: None,
        cpu: None,
        stages: None,
        startup_s: 0.0,
        stop_s: 0.0,
        wall_s: 0.0,
    };
    let target = &env.exp.targets[&cell.target];
    // The run's certificate, when this target serves TLS: its server gets it, and the
    // client and the `stats` connections trust it.
    let tls = target.tls.then(|| {
        env.tls
            .expect("the run makes a certificate when a target has tls")
    });
    let server_log = env
        .dir
        .join(rundir::LOGS_DIR)
        .join(format!("{name}.server.log"));
    let (server, addr) = match start_server(env, target, cell, tls, &server_log) {
        Ok(x) => x,
        Err(reason) => {
            row.reason = reason;
            row.wall_s = started.elapsed().as_secs_f64();
            return row;
        }
    };

    row.startup_s = started.elapsed().as_secs_f64();

    let outcome = measure(env, sys, cell, &name, server.pid(), addr, tls);
    let stopping = Instant::now();
    // The server must still be up when the client is done: otherwise it crashed.
    let crashed = server.peek_exit();
    let stopped = server.stop(target.stop_grace);
    row.stop_s = stopping.elapsed().as_secs_f64();

    let mut problems: Vec<String> = Vec::new();
    if let Some(p) = &outcome.problem {
        problems.push(p.clone());
    }
    if let Some(status) = crashed {
        problems.push(format!(
            "the server exited during the cell ({status}){}",
            stderr_tail(&server_log)
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
            stderr_tail(&server_log)
        ));
    }
    if !stopped.leftover.is_empty() {
        problems.push(format!(
            "processes of the server's group were still there after SIGKILL: {:?}",
            stopped.leftover
        ));
    }
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
    row.measured = outcome.measured;
    row.cpu = outcome.cpu;
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

/// " — stderr: last | lines" (or nothing when the log is empty).
fn stderr_tail(log: &Path) -> String {
    let tail = launch::tail(log, 6);
    if tail.is_empty() {
        String::new()
    } else {
        format!(
            " — stderr: {}",
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
) -> Result<(Group, SocketAddr), String> {
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
                Ok(addr) => Ok((group, addr)),
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
                Ok(()) => Ok((group, addr)),
                Err(why) => {
                    group.kill();
                    Err(format!("{why}{}", stderr_tail(log)))
                }
            }
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

struct Outcome {
    measured: Option<Measured>,
    cpu: Option<rundir::CpuMeans>,
    /// The server's stage timings over the measured window.
    stages: Option<rundir::StageFigures>,
    /// Why the measurement is not to be trusted (client error, timeout, interrupt).
    problem: Option<String>,
    /// "io=2 timeout=1" when requests failed.
    failure_kinds: String,
}

/// Runs the client against `addr` with CPU sampling; writes cpu/, hdr/ and client/ files.
fn measure(
    env: &Env<'_>,
    sys: &mut Option<System>,
    cell: &Cell,
    name: &str,
    server_pid: u32,
    addr: SocketAddr,
    tls: Option<&RunCert>,
) -> Outcome {
    let s = &env.exp.settings;
    let json = env
        .dir
        .join(rundir::CLIENT_DIR)
        .join(format!("{name}.json"));
    let hgrm = env.dir.join(rundir::HDR_DIR).join(format!("{name}.hgrm"));
    let intervals = env
        .dir
        .join(rundir::HDR_DIR)
        .join(rundir::intervals_file(name));
    let log = env
        .dir
        .join(rundir::LOGS_DIR)
        .join(format!("{name}.client.log"));
    let mut out = Outcome {
        measured: None,
        cpu: None,
        stages: None,
        problem: None,
        failure_kinds: String::new(),
    };

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
    if let Some(cert) = tls {
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
        .arg(&json)
        .arg("--hgrm")
        .arg(&hgrm)
        .arg("--interval-log")
        .arg(&intervals)
        .arg("--quiet");
    match File::create(&log).and_then(|f| Ok((f.try_clone()?, f))) {
        Ok((a, b)) => {
            cmd.stdout(Stdio::from(a)).stderr(Stdio::from(b));
        }
        Err(e) => {
            out.problem = Some(format!("cannot create {}: {e}", log.display()));
            return out;
        }
    }

    // The server's stage histograms are reset when the client's warm-up ends (at once
    // when there is none), so stats/<run>.json covers the measured window.
    let mut run_stats = RunStats::new();
    let reset_stats = |run_stats: &mut RunStats, at_s: f64| {
        match server_stats::query(addr, true, tls.map(|t| &t.client)) {
            Ok(v) => run_stats.at_reset = Some(v),
            Err(e) => run_stats.fail(e),
        }
        run_stats.reset_at_s = Some(at_s);
    };
    let mut reset_due = !s.warmup.is_zero();
    if !reset_due {
        reset_stats(&mut run_stats, 0.0);
    }

    let mut sampler = sys.take().map(|sys| Sampler::begin(sys, server_pid));
    let start_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    let client = match Group::spawn(&mut cmd) {
        Ok(c) => c,
        Err(e) => {
            if let Some(s) = sampler {
                *sys = Some(s.finish().1);
            }
            out.problem = Some(format!("cannot start `{} client`: {e}", env.exe.display()));
            return out;
        }
    };
    if let Some(s) = sampler.as_mut() {
        s.mark_start();
    }
    let started = Instant::now();
    let deadline = started + s.cell_timeout;
    let mut next_sample = started + cpu::PERIOD;
    let warmup_end = started + s.warmup;
    let ended = loop {
        if client.has_exited() {
            break None;
        }
        let now = Instant::now();
        if reset_due && now >= warmup_end {
            reset_due = false;
            reset_stats(&mut run_stats, started.elapsed().as_secs_f64());
        }
        if env.interrupted.load(Ordering::Relaxed) {
            break Some("interrupted (Ctrl-C) before the cell finished".to_string());
        }
        if now >= deadline {
            break Some(format!(
                "timed out: the cell ran past cell_timeout ({})",
                super::fmt_duration(s.cell_timeout)
            ));
        }
        if now >= next_sample {
            if let Some(s) = sampler.as_mut() {
                s.sample(Some(client.pid()));
            }
            next_sample += cpu::PERIOD;
            if next_sample < now {
                next_sample = now + cpu::PERIOD;
            }
        }
        let mut wait = next_sample
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(5));
        if reset_due {
            wait = wait.min(warmup_end.saturating_duration_since(Instant::now()));
        }
        std::thread::sleep(wait);
    };
    // A last sample while the exited client is still unreaped (its CPU time still counts).
    if let Some(s) = sampler.as_mut() {
        s.sample(Some(client.pid()));
    }
    if ended.is_none() {
        if reset_due {
            run_stats.fail("the client ended before its warm-up did".into());
        }
        run_stats.read_at_s = Some(started.elapsed().as_secs_f64());
        match server_stats::query(addr, false, tls.map(|t| &t.client)) {
            Ok(v) => run_stats.at_end = Some(v),
            Err(e) => run_stats.fail(e),
        }
        let path = env.dir.join(rundir::STATS_DIR).join(format!("{name}.json"));
        match run_stats.write(&path) {
            Ok(()) => out.stages = run_stats.stages(),
            Err(e) => out.problem = Some(format!("cannot write {}: {e}", path.display())),
        }
    }
    let stopped = if ended.is_some() {
        client.kill()
    } else {
        client.stop(Duration::from_secs(2))
    };
    let samples = match sampler {
        Some(s) => {
            let (samples, back) = s.finish();
            *sys = Some(back);
            samples
        }
        None => Vec::new(),
    };
    let warmup_s = s.warmup.as_secs_f64();
    let cpu_path = env.dir.join(rundir::CPU_DIR).join(format!("{name}.csv"));
    if !samples.is_empty() {
        if let Err(e) = rundir::cpu::write_csv(&cpu_path, &samples, warmup_s) {
            out.problem = Some(format!("cannot write {}: {e}", cpu_path.display()));
        }
    }
    if let Some(reason) = ended {
        out.problem = Some(reason);
        return out;
    }

    let doc = match read_client_doc(&json) {
        Ok(doc) => doc,
        Err(e) => {
            let tail = launch::tail(&log, 6);
            out.problem = Some(format!(
                "the client failed ({}): {e}{}",
                stopped.status,
                if tail.is_empty() {
                    String::new()
                } else {
                    format!(
                        " — client output: {}",
                        tail.lines().collect::<Vec<_>>().join(" | ")
                    )
                }
            ));
            return out;
        }
    };
    let l = &doc.latency_us;
    let z = |v: Option<f64>| v.unwrap_or(f64::NAN);
    out.measured = Some(Measured {
        sent: doc.requests.sent,
        ok: doc.requests.ok,
        failed: doc.requests.failed,
        duration_s: doc.elapsed_s,
        throughput_rps: doc.throughput_rps,
        latency_mean_us: z(l.mean),
        latency_p50_us: z(l.p50),
        latency_p90_us: z(l.p90),
        latency_p99_us: z(l.p99),
        latency_p99_9_us: z(l.p99_9),
        latency_max_us: z(l.max),
        open: doc.open_loop.as_ref().map(|o| OpenMeasured {
            offered_rps: o.offered_rps,
            sent_rps: o.sent_rps,
            latency_p99_uncorrected_us: z(o.uncorrected_latency_us.p99),
            lateness_p99_us: z(o.lateness_us.p99),
        }),
    });
    if cell.rate.is_some() != doc.open_loop.is_some() {
        out.problem = Some(format!(
            "the cell asked for the {} loop, and the client's document is {} loop",
            cell.load_model(),
            if doc.open_loop.is_some() {
                "an open"
            } else {
                "a closed"
            }
        ));
    }
    out.failure_kinds = failure_kinds(&doc.failures);
    if doc.requests.sent == 0 {
        out.problem = Some(format!(
            "the client measured no request ({}): the warm-up took the whole run, or the machine stalled",
            stopped.status
        ));
    } else if stopped.exit_code != Some(0) && doc.requests.failed == 0 {
        out.problem = Some(format!(
            "the client ended with {} although it counted no failed request",
            stopped.status
        ));
    }
    out.cpu = cpu::window_means(&samples, warmup_s, warmup_s + doc.elapsed_s);
    let hlog = env.dir.join(rundir::HDR_DIR).join(format!("{name}.hlog"));
    if let Err(e) = rundir::write_hlog(
        &hlog,
        &format!(
            "threadcenter {}: {name} {}, the measured window as one interval",
            env!("CARGO_PKG_VERSION"),
            cell.label()
        ),
        start_epoch + warmup_s,
        doc.elapsed_s,
        z(l.max) * 1000.0,
        &doc.histogram.data,
    ) {
        out.problem = Some(format!("cannot write {}: {e}", hlog.display()));
    }
    if doc.histogram.unit != "ns" || doc.histogram.encoding != "hdr-v2-deflate-base64" {
        out.problem = Some(format!(
            "the client's histogram is {} in {}; this runner reads ns in hdr-v2-deflate-base64",
            doc.histogram.unit, doc.histogram.encoding
        ));
    }
    out
}

fn read_client_doc(path: &Path) -> Result<ClientDoc, String> {
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
fn failure_kinds(failures: &BTreeMap<String, serde_json::Value>) -> String {
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
