//! One cell × repetition of a multi-host run (docs/multi-host.md): the server under the
//! wrapper on its host, the load split evenly over the client hosts (each a client under
//! the wrapper, started with `--wait-go`), one `go` sent to every client once all are
//! connected, the server's `stats` reset when the warm-up that follows ends, then the
//! hosts' histograms merged exactly and their throughputs summed into the results row,
//! with one hosts.csv row per host. Whatever a host does (refuses ssh, goes away, leaves
//! a process behind) becomes the cell's failure reason; the run goes on.

use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

use super::cell::{self, ClientDoc, Env, RunFiles};
use super::experiment::Target;
use super::launch;
use super::stats::{self as server_stats, RunStats};
use crate::remote::ssh::{Fleet, Session};
use crate::remote::wrap::Event;
use crate::rundir::hosts::{HostRow, Role};
use crate::rundir::{self, Cell, CpuMeans, Measured, OpenMeasured, ResultRow, Sample, Status};

/// The name of a client run here (no `[client] hosts`) in hosts.csv.
const LOCAL: &str = "local";

/// One wrapped process and what its events told so far.
struct Tracked {
    session: Session,
    /// `[hosts]` name, or `local`.
    host: String,
    out: Vec<String>,
    /// (arrival, group CPU s, host busy s, cores)
    cpu: Vec<(Instant, f64, f64, u32)>,
    exit: Option<(String, Option<i32>)>,
    left: Option<Vec<i32>>,
    files: BTreeMap<String, Vec<u8>>,
    done: bool,
    /// The wrapper said it started the command (so ssh reached the host).
    started: bool,
    /// The session's stdout has ended (its reader thread is gone): every line it
    /// held has been taken in.
    eof: bool,
}

impl Tracked {
    fn new(session: Session) -> Tracked {
        Tracked {
            host: session.host.clone().unwrap_or_else(|| LOCAL.to_string()),
            session,
            out: Vec::new(),
            cpu: Vec::new(),
            exit: None,
            left: None,
            files: BTreeMap::new(),
            done: false,
            started: false,
            eof: false,
        }
    }

    /// Takes in every event that has arrived; the arrival of `out` lines that match
    /// `watch`.
    fn pump(&mut self, watch: &str) -> Option<Instant> {
        let mut seen = None;
        loop {
            let (at, e) = match self.session.events.try_recv() {
                Ok(x) => x,
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.eof = true;
                    break;
                }
            };
            match e {
                Event::Out(line) => {
                    if line.trim() == watch {
                        seen = Some(at);
                    }
                    self.out.push(line);
                }
                Event::Cpu {
                    group_s,
                    host_busy_s,
                    cores,
                    ..
                } => self.cpu.push((at, group_s, host_busy_s, cores)),
                Event::Exit { status, code } => self.exit = Some((status, code)),
                Event::Left(pids) => self.left = Some(pids),
                Event::File { name, bytes } => {
                    self.files.insert(name, bytes);
                }
                Event::Done => self.done = true,
                Event::Started { .. } => self.started = true,
            }
        }
        seen
    }

    /// The session's output ended without the wrapper's last line: the host (or ssh)
    /// went away.
    fn lost(&self) -> Option<String> {
        if self.done || !self.eof {
            return None;
        }
        let ssh = match self.session.log_tail() {
            t if t.is_empty() => String::new(),
            t => format!(" — its log (ssh and the command's stderr): {t}"),
        };
        if !self.started {
            return Some(format!(
                "cannot start the command on host {}: its ssh session ended first{ssh}",
                self.host
            ));
        }
        Some(format!(
            "host {} went away (its ssh session ended before the wrapper's report{}){}",
            self.host,
            self.exit.as_ref().map_or(String::new(), |(s, _)| format!(
                "; the command had ended: {s}"
            )),
            ssh
        ))
    }

    /// Mean CPU over [from, to] by arrival time: the group's % of one core, the host's
    /// % of its capacity, and its cores.
    fn cpu_means(&self, from: Instant, to: Instant) -> Option<(f64, f64, u32)> {
        let inside: Vec<_> = self
            .cpu
            .iter()
            .filter(|s| s.0 >= from && s.0 <= to)
            .collect();
        let pick = if inside.len() >= 2 {
            inside
        } else {
            self.cpu.iter().collect()
        };
        let (a, b) = (pick.first()?, pick.last()?);
        let dt = b.0.saturating_duration_since(a.0).as_secs_f64();
        if dt <= 0.0 {
            return None;
        }
        let cores = b.3.max(1);
        Some((
            (b.1 - a.1).max(0.0) / dt * 100.0,
            (b.2 - a.2).max(0.0) / dt / f64::from(cores) * 100.0,
            cores,
        ))
    }
}

/// Runs one cell × repetition across the hosts; its results row (hosts.csv rows are
/// appended here).
pub(crate) fn run(
    env: &Env<'_>,
    fleet: &Fleet,
    cell_id: &str,
    cell: &Cell,
    rep: u32,
    seq: usize,
) -> ResultRow {
    let started = Instant::now();
    let files = RunFiles::new(env.dir, rundir::run_name(cell_id, rep));
    // Memory and threads (`footprint`) are sampled on this machine only, not on hosts.
    let mut row = ResultRow::pending(cell_id, rep, seq, cell);
    let mut cellrun = CellRun {
        env,
        fleet,
        cell,
        files: &files,
        tag: format!(
            "{}.{}",
            env.dir
                .file_name()
                .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
            files.name
        ),
        problems: Vec::new(),
        hrows: Vec::new(),
        skew_ms: None,
        client_cpu: 0.0,
        started: std::collections::BTreeSet::new(),
    };
    cellrun.go(&mut row, started);
    row.reason = cellrun.problems.join("; ");
    row.status = if cellrun.problems.is_empty() {
        Status::Ok
    } else {
        Status::Failed
    };
    for h in &mut cellrun.hrows {
        h.start_skew_bound_ms = cellrun.skew_ms;
    }
    if let Err(e) = rundir::hosts::append(env.dir, &cellrun.hrows) {
        row.status = Status::Failed;
        row.reason = format!("{}; {e:#}", row.reason);
    }
    row.wall_s = started.elapsed().as_secs_f64();
    row
}

struct CellRun<'a> {
    env: &'a Env<'a>,
    fleet: &'a Fleet,
    cell: &'a Cell,
    files: &'a RunFiles,
    /// Marks every process of this cell on every host (the leftover check finds them).
    tag: String,
    problems: Vec<String>,
    hrows: Vec<HostRow>,
    skew_ms: Option<f64>,
    /// The client groups' CPU over the window, summed (% of one core).
    client_cpu: f64,
    /// The hosts where a wrapper was started (the ones the leftover check visits).
    started: std::collections::BTreeSet<String>,
}

impl CellRun<'_> {
    fn host_row(&self, role: Role, host: &str) -> HostRow {
        HostRow {
            run: self.files.name.clone(),
            cell_id: self.files.name.split('-').next().unwrap_or("").to_string(),
            rep: self
                .files
                .name
                .rsplit("-r")
                .next()
                .and_then(|r| r.parse().ok())
                .unwrap_or(0),
            role,
            host: host.to_string(),
            status: Status::Failed,
            requests_ok: None,
            requests_failed: None,
            throughput_rps: None,
            latency_p50_us: None,
            latency_p99_us: None,
            cpu_group_pct: None,
            cpu_host_pct: None,
            cpu_host_cores: None,
            start_skew_bound_ms: None,
            reason: String::new(),
        }
    }

    fn go(&mut self, row: &mut ResultRow, started: Instant) {
        let env = self.env;
        let hosts = &env.exp.hosts;
        let target = &env.exp.targets[&self.cell.target];
        let Some(server_host) = hosts.target_host.get(&self.cell.target).cloned() else {
            self.problems.push(format!(
                "target {} has no host, and its clients run on hosts: give it `host`",
                self.cell.target
            ));
            return;
        };
        let (mut tracked, addr) = match self.start_server(&server_host, target) {
            Ok(s) => s,
            Err(reason) => {
                let mut h = self.host_row(Role::Server, &server_host);
                h.reason.clone_from(&reason);
                self.hrows.push(h);
                self.problems.push(reason);
                return;
            }
        };
        row.startup_s = started.elapsed().as_secs_f64();
        let window = self.measure(addr, row);
        // Stop the server: SIGTERM through the wrapper, up to the grace, then its stdin
        // closes (the wrapper kills the group).
        let stopping = Instant::now();
        let crashed = tracked.exit.clone();
        tracked.session.send("term");
        let deadline = Instant::now() + target.stop_grace + Duration::from_secs(3);
        while !tracked.done && tracked.lost().is_none() && Instant::now() < deadline {
            tracked.pump("");
            std::thread::sleep(Duration::from_millis(5));
        }
        tracked.session.close(Duration::from_secs(2));
        tracked.pump("");
        row.stop_s = stopping.elapsed().as_secs_f64();
        let mut h = self.host_row(Role::Server, &server_host);
        let mut reasons = Vec::new();
        if let Some((status, _)) = crashed {
            reasons.push(format!(
                "the server on {server_host} exited during the cell ({status}){}",
                cell::log_tail(&tracked.session.log, "stderr")
            ));
        } else if let Some(lost) = tracked.lost().filter(|_| tracked.exit.is_none()) {
            reasons.push(lost);
        } else if let Some((status, code)) = &tracked.exit {
            if *code != Some(0) {
                reasons.push(format!(
                    "the server on {server_host} did not exit cleanly on SIGTERM ({status}){}",
                    cell::log_tail(&tracked.session.log, "stderr")
                ));
            }
        }
        if let Some(pids) = tracked.left.as_ref().filter(|p| !p.is_empty()) {
            reasons.push(format!(
                "processes of the server's group were still on {server_host} after SIGKILL: {pids:?}"
            ));
        }
        if let Some((from, to)) = window {
            if let Some((g, hp, cores)) = tracked.cpu_means(from, to) {
                h.cpu_group_pct = Some(g);
                h.cpu_host_pct = Some(hp);
                h.cpu_host_cores = Some(cores);
                self.server_cpu(row, &tracked, from, to);
            }
        }
        h.status = if reasons.is_empty() {
            Status::Ok
        } else {
            Status::Failed
        };
        h.reason = reasons.join("; ");
        self.hrows.insert(0, h);
        self.problems.extend(reasons);
        // Once everything is stopped (hosts may share a machine, as the test hosts do),
        // on each host where something was started.
        let hosts: Vec<String> = self
            .started
            .iter()
            .filter(|h| *h != LOCAL)
            .cloned()
            .collect();
        self.check_leftovers(&hosts);
    }

    /// The server under the wrapper on `host`, ready; the address clients use.
    fn start_server(
        &mut self,
        host: &str,
        target: &Target,
    ) -> Result<(Tracked, SocketAddr), String> {
        let cell = self.cell;
        // The host's address when it is one of its own (an IP); all of them otherwise.
        let address = &self.fleet.hosts[host].address;
        let bind = if address.parse::<std::net::IpAddr>().is_ok() {
            address.as_str()
        } else {
            "0.0.0.0"
        };
        let mut words: Vec<String> = ["{exe}", "server", "--host", bind, "--port", "0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        words.extend(["--workers".into(), cell.workers.to_string()]);
        if let Some(pool) = cell.pool {
            words.extend(["--pool".into(), pool.as_str().into()]);
        }
        if let super::experiment::TargetKind::Builtin { args, .. } = &target.kind {
            words.extend(args.iter().cloned());
        }
        let session =
            self.fleet
                .spawn(Some(host), &self.tag, &[], &words, &self.files.server_log)?;
        self.started.insert(host.to_string());
        let mut t = Tracked::new(session);
        let deadline = Instant::now() + target.ready_timeout + Duration::from_secs(10);
        loop {
            t.pump("");
            if let Some(line) = t
                .out
                .iter()
                .find(|l| l.starts_with("threadcenter listening"))
            {
                let port = launch::parse_ready_line(line)
                    .map_err(|e| format!("the server on {host}: {e}"))?
                    .port();
                let address = &self.fleet.hosts[host].address;
                let addr = (address.as_str(), port)
                    .to_socket_addrs()
                    .ok()
                    .and_then(|mut a| a.next())
                    .ok_or_else(|| {
                        format!("host {host}'s address {address:?} does not resolve: set `address` in [hosts.{host}]")
                    })?;
                return Ok((t, addr));
            }
            if let Some((status, _)) = &t.exit {
                return Err(format!(
                    "the server on {host} exited before it was ready ({status}){}",
                    cell::log_tail(&t.session.log, "stderr")
                ));
            }
            if let Some(lost) = t.lost() {
                return Err(lost);
            }
            if self
                .env
                .interrupted
                .load(std::sync::atomic::Ordering::Relaxed)
            {
                return Err(cell::INTERRUPTED.into());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "the server on {host} was not ready within {}{}",
                    super::fmt_duration(target.ready_timeout),
                    cell::log_tail(&t.session.log, "stderr")
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The clients: started, connected, released by one `go`, watched to their end,
    /// merged. The measured window (by the runner's clock) when there was one.
    fn measure(&mut self, addr: SocketAddr, row: &mut ResultRow) -> Option<(Instant, Instant)> {
        let env = self.env;
        let s = &env.exp.settings;
        let hosts: Vec<Option<String>> = if env.exp.hosts.client_hosts.is_empty() {
            vec![None]
        } else {
            env.exp
                .hosts
                .client_hosts
                .iter()
                .cloned()
                .map(Some)
                .collect()
        };
        let shares = split(self.cell.concurrency, hosts.len());
        let mut clients: Vec<Tracked> = Vec::new();
        for (host, &share) in hosts.iter().zip(&shares) {
            let name = host.clone().unwrap_or_else(|| LOCAL.into());
            let log = env
                .dir
                .join(rundir::LOGS_DIR)
                .join(format!("{}.client.{name}.log", self.files.name));
            let words = self.client_words(addr, share);
            match self.fleet.spawn(
                host.as_deref(),
                &self.tag,
                &[("json", "{tmp}/client.json")],
                &words,
                &log,
            ) {
                Ok(session) => {
                    self.started.insert(name.clone());
                    clients.push(Tracked::new(session));
                }
                Err(reason) => {
                    let mut h = self.host_row(Role::Client, &name);
                    h.reason.clone_from(&reason);
                    self.hrows.push(h);
                    self.problems.push(reason);
                }
            }
        }
        if clients.len() < hosts.len() {
            self.fail_clients(
                &mut clients,
                "not measured: another client host could not start its share (see its row)",
            );
            return None;
        }
        let deadline = Instant::now() + s.cell_timeout;
        // Every client connected and waiting.
        let mut ready = vec![false; clients.len()];
        while ready.iter().any(|r| !r) {
            for (i, c) in clients.iter_mut().enumerate() {
                ready[i] |= c.pump("ready").is_some() || c.out.iter().any(|l| l == "ready");
            }
            if let Some(why) = self.stop_reason(&clients, deadline) {
                self.fail_clients(&mut clients, &why);
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut stats = RunStats::new();
        let mut reset_due = true;
        // No warm-up: the window opens with the `go`, so the reset comes before it.
        if s.warmup.is_zero() {
            reset_due = false;
            match server_stats::query(addr, true, None) {
                Ok(v) => stats.at_reset = Some(v),
                Err(e) => stats.fail(e),
            }
            stats.reset_at_s = Some(0.0);
        }
        // One `go` to every host; each client answers `started` the moment it starts.
        // Host i started within [sent_i, acked_i], so any two starts are at most
        // max(acked) - min(sent) apart, whatever the hosts' clocks say.
        let mut sent = Vec::with_capacity(clients.len());
        for c in &mut clients {
            sent.push(Instant::now());
            c.session.send("go");
        }
        let go = sent[0];
        let go_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut acked: Vec<Option<Instant>> = vec![None; clients.len()];
        let warmup_end = go + s.warmup;
        let mut stop: Option<String> = None;
        while !clients.iter().all(|c| c.done) {
            for (i, c) in clients.iter_mut().enumerate() {
                if let Some(at) = c.pump("started") {
                    acked[i].get_or_insert(at);
                }
            }
            if reset_due && Instant::now() >= warmup_end {
                reset_due = false;
                match server_stats::query(addr, true, None) {
                    Ok(v) => stats.at_reset = Some(v),
                    Err(e) => stats.fail(e),
                }
                stats.reset_at_s = Some(go.elapsed().as_secs_f64());
            }
            if let Some(why) = self.stop_reason(&clients, deadline) {
                stop = Some(why);
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if acked.iter().all(Option::is_some) {
            let last = acked.iter().flatten().max().copied().unwrap_or(go);
            self.skew_ms = Some(last.saturating_duration_since(go).as_secs_f64() * 1000.0);
        }
        let end = Instant::now();
        if let Some(why) = stop {
            self.fail_clients(&mut clients, &why);
            return None;
        }
        if reset_due {
            stats.fail("the clients ended before their warm-up did".into());
        }
        stats.read_at_s = Some(go.elapsed().as_secs_f64());
        match server_stats::query(addr, false, None) {
            Ok(v) => stats.at_end = Some(v),
            Err(e) => stats.fail(e),
        }
        if let Err(e) = stats.write(&self.files.stats) {
            self.problems
                .push(format!("cannot write {}: {e}", self.files.stats.display()));
        }
        row.stages = stats.stages();
        for c in &mut clients {
            c.session.close(Duration::from_secs(2));
            c.pump("");
        }
        let from = warmup_end;
        let to = match s.duration {
            Some(d) => (warmup_end + d).min(end),
            None => end,
        };
        self.merge(&clients, row, go_epoch + s.warmup.as_secs_f64(), from, to);
        Some((from, to))
    }

    /// Why the clients must be stopped now: Ctrl-C, the cell timeout, a lost host.
    fn stop_reason(&self, clients: &[Tracked], deadline: Instant) -> Option<String> {
        if self
            .env
            .interrupted
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Some(cell::INTERRUPTED.into());
        }
        if Instant::now() >= deadline {
            return Some(cell::past_cell_timeout(self.env.exp.settings.cell_timeout));
        }
        for c in clients {
            if let Some(lost) = c.lost() {
                return Some(lost);
            }
            if let Some((status, _)) = c.exit.as_ref().filter(|_| !c.done) {
                // Ended before `ready`/`started` or early: its log says why.
                if !c.out.iter().any(|l| l == "started") {
                    return Some(format!(
                        "the client on {} ended before it started ({status}){}",
                        c.host,
                        cell::log_tail(&c.session.log, "client output")
                    ));
                }
            }
        }
        None
    }

    /// Stops every client (their wrappers kill their groups) and records `why`.
    fn fail_clients(&mut self, clients: &mut [Tracked], why: &str) {
        for c in clients.iter_mut() {
            c.session.close(Duration::from_secs(2));
            c.pump("");
            let mut h = self.host_row(Role::Client, &c.host);
            h.reason = why.to_string();
            self.hrows.push(h);
        }
        if !clients.is_empty() {
            self.problems.push(why.to_string());
        }
    }

    /// `threadcenter client` for one host's share of the connections (and the rate).
    fn client_words(&self, addr: SocketAddr, share: u64) -> Vec<String> {
        let env = self.env;
        let (s, cell) = (&env.exp.settings, self.cell);
        let mut w: Vec<String> = vec![
            "{exe}".into(),
            "client".into(),
            "--host".into(),
            addr.ip().to_string(),
            "--port".into(),
            addr.port().to_string(),
            "--concurrency".into(),
            share.to_string(),
            "--size".into(),
            cell.size.to_string(),
            "--cmd".into(),
            cell.cmd.as_str().into(),
            "--warmup".into(),
            super::fmt_duration(s.warmup),
            "--timeout".into(),
            super::fmt_duration(env.exp.client.timeout),
        ];
        if let Some(rate) = cell.rate {
            let r = rate as f64 * share as f64 / cell.concurrency as f64;
            w.extend([
                "--rate".into(),
                format!("{r}"),
                "--pipeline".into(),
                env.exp.client.pipeline.to_string(),
            ]);
        }
        if let Some(d) = s.duration {
            w.extend(["--duration".into(), super::fmt_duration(d)]);
        }
        if let Some(n) = s.requests {
            w.extend(["--requests".into(), n.to_string()]);
        }
        w.extend([
            "--json".into(),
            "{tmp}/client.json".into(),
            "--quiet".into(),
            "--wait-go".into(),
        ]);
        w
    }

    /// The clients' documents: each host's row, and the cell's figures (the exact
    /// merge of their histograms, the sum of their throughputs) in `row`.
    fn merge(
        &mut self,
        clients: &[Tracked],
        row: &mut ResultRow,
        start_epoch_s: f64,
        from: Instant,
        to: Instant,
    ) {
        let mut merged: Option<Histogram<u64>> = None;
        let mut docs: Vec<ClientDoc> = Vec::new();
        let mut client_cpu = 0.0;
        for c in clients {
            let mut h = self.host_row(Role::Client, &c.host);
            let mut reasons = Vec::new();
            if let Some((g, hp, cores)) = c.cpu_means(from, to) {
                h.cpu_group_pct = Some(g);
                h.cpu_host_pct = Some(hp);
                h.cpu_host_cores = Some(cores);
                client_cpu += g;
            }
            if let Some(pids) = c.left.as_ref().filter(|p| !p.is_empty()) {
                reasons.push(format!(
                    "processes of the client's group were still on {} after SIGKILL: {pids:?}",
                    c.host
                ));
            }
            match self.client_doc(c) {
                Ok(doc) => {
                    h.requests_ok = Some(doc.requests.ok);
                    h.requests_failed = Some(doc.requests.failed);
                    h.throughput_rps = Some(doc.throughput_rps);
                    h.latency_p50_us = doc.latency_us.p50;
                    h.latency_p99_us = doc.latency_us.p99;
                    if doc.requests.failed > 0 {
                        reasons.push(format!(
                            "{} of {} requests failed on {} ({})",
                            doc.requests.failed,
                            doc.requests.sent,
                            c.host,
                            cell::failure_kinds(&doc.failures)
                        ));
                    }
                    match crate::hdr::decode_base64_v2(&doc.histogram.data) {
                        Ok(hist) => {
                            // An auto-resizing histogram takes every host's range.
                            let m = merged.get_or_insert_with(|| {
                                Histogram::new(hist.sigfig()).expect("sigfig from a histogram")
                            });
                            if let Err(e) = m.add(&hist) {
                                reasons.push(format!("cannot merge {}'s histogram: {e}", c.host));
                            }
                        }
                        Err(e) => {
                            reasons.push(format!("{}'s histogram does not decode: {e}", c.host))
                        }
                    }
                    docs.push(doc);
                }
                Err(e) => reasons.push(e),
            }
            h.status = if reasons.is_empty() {
                Status::Ok
            } else {
                Status::Failed
            };
            h.reason = reasons.join("; ");
            self.problems.extend(reasons);
            self.hrows.push(h);
        }
        let (Some(hist), false) = (merged, docs.is_empty()) else {
            return;
        };
        if docs.len() < clients.len() {
            return;
        }
        row.measured = Some(merged_figures(&docs, &hist));
        self.client_cpu = client_cpu;
        let name = &self.files.name;
        let elapsed = docs.iter().map(|d| d.elapsed_s).fold(0.0, f64::max);
        let comment = format!(
            "threadcenter {}: {name} {}, the measured window as one interval, merged over {} client hosts",
            env!("CARGO_PKG_VERSION"),
            self.cell.label(),
            docs.len()
        );
        let max_ns = hist.max() as f64;
        if let Err(e) = rundir::write_hlog(
            &self.files.hlog,
            &comment,
            start_epoch_s,
            elapsed,
            max_ns,
            &crate::hdr::encode_base64_v2(&hist),
        ) {
            self.problems
                .push(format!("cannot write {}: {e}", self.files.hlog.display()));
        }
        let hgrm = std::fs::File::create(&self.files.hgrm)
            .and_then(|mut f| crate::hdr::write_hgrm(&hist, 1000.0, &mut f));
        if let Err(e) = hgrm {
            self.problems
                .push(format!("cannot write {}: {e}", self.files.hgrm.display()));
        }
    }

    /// A client's `--json` document, as sent back by its wrapper: kept as
    /// client/<run>.<host>.json and read.
    fn client_doc(&self, c: &Tracked) -> Result<ClientDoc, String> {
        let path = self
            .env
            .dir
            .join(rundir::CLIENT_DIR)
            .join(format!("{}.{}.json", self.files.name, c.host));
        let Some(bytes) = c.files.get("json") else {
            return Err(format!(
                "the client on {} wrote no --json document ({}){}",
                c.host,
                c.exit.as_ref().map_or("no exit seen", |e| e.0.as_str()),
                cell::log_tail(&c.session.log, "client output")
            ));
        };
        std::fs::write(&path, bytes)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        let doc =
            cell::read_client_doc(&path).map_err(|e| format!("the client on {}: {e}", c.host))?;
        if let Some(p) =
            cell::histogram_problem(&doc).or_else(|| cell::loop_problem(self.cell, &doc))
        {
            return Err(format!("the client on {}: {p}", c.host));
        }
        Ok(doc)
    }

    /// The server host's CPU in the results row and cpu/<run>.csv (the clients' groups
    /// summed as the client's).
    fn server_cpu(&mut self, row: &mut ResultRow, server: &Tracked, from: Instant, to: Instant) {
        let Some(&(t0, g0, h0, _)) = server.cpu.first() else {
            return;
        };
        let mut samples: Vec<Sample> = Vec::new();
        let mut prev: Option<(f64, f64, f64)> = None;
        for &(at, g, h, _) in &server.cpu {
            let t = at.saturating_duration_since(t0).as_secs_f64();
            let (sc, mc) = (g - g0, h - h0);
            let pct = |now: f64, before: f64, dt: f64| {
                if dt > 0.0 {
                    (now - before).max(0.0) / dt * 100.0
                } else {
                    0.0
                }
            };
            let (spct, mpct) = prev.map_or((0.0, 0.0), |(pt, ps, pm)| {
                (pct(sc, ps, t - pt), pct(mc, pm, t - pt))
            });
            samples.push(Sample {
                t_s: t,
                server_cpu_s: sc,
                client_cpu_s: 0.0,
                machine_cpu_s: mc,
                server_pct: spct,
                client_pct: 0.0,
                machine_pct: mpct,
                footprint: None,
            });
            prev = Some((t, sc, mc));
        }
        let from_s = from.saturating_duration_since(t0).as_secs_f64();
        let to_s = to.saturating_duration_since(t0).as_secs_f64();
        if let Err(e) = rundir::cpu::write_csv(&self.files.cpu, &samples, from_s) {
            self.problems
                .push(format!("cannot write {}: {e}", self.files.cpu.display()));
            return;
        }
        row.cpu = super::cpu::window_means(&samples, from_s, to_s).map(|m| CpuMeans {
            client_pct: self.client_cpu,
            ..m
        });
    }

    /// The after-cell check, on every host at once: nothing carrying this cell's tag
    /// is left there.
    fn check_leftovers(&mut self, hosts: &[String]) {
        let (fleet, tag) = (self.fleet, self.tag.as_str());
        let found: Vec<(&String, Result<Vec<i32>, String>)> = std::thread::scope(|s| {
            let checks: Vec<_> = hosts
                .iter()
                .map(|h| (h, s.spawn(move || fleet.leftovers(h, tag))))
                .collect();
            checks
                .into_iter()
                .map(|(h, j)| {
                    let r = j
                        .join()
                        .unwrap_or_else(|_| Err("the check's thread panicked".into()));
                    (h, r)
                })
                .collect()
        });
        for (host, r) in found {
            match r {
                Ok(pids) if pids.is_empty() => {}
                Ok(pids) => self.problems.push(format!(
                    "processes of this cell were still on host {host} after it (killed now): {pids:?}"
                )),
                Err(e) => self.problems.push(format!(
                    "cannot check host {host} for processes left by this cell: {e}"
                )),
            }
        }
    }
}

/// `total` connections over `n` hosts, as evenly as they go (the first get one more).
fn split(total: u64, n: usize) -> Vec<u64> {
    let n64 = n as u64;
    (0..n64)
        .map(|i| total / n64 + u64::from(i < total % n64))
        .collect()
}

/// The cell's figures from its hosts' documents: counts and throughputs summed,
/// latencies read from the merged histogram (ns), open-loop figures summed (offered,
/// sent) or the hosts' highest (uncorrected p99 and lateness p99: not merged exactly).
fn merged_figures(docs: &[ClientDoc], hist: &Histogram<u64>) -> Measured {
    let us = |q: f64| hist.value_at_quantile(q) as f64 / 1000.0;
    let sum = |f: &dyn Fn(&ClientDoc) -> f64| docs.iter().map(f).sum::<f64>();
    let open = docs
        .iter()
        .all(|d| d.open_loop.is_some())
        .then(|| OpenMeasured {
            offered_rps: sum(&|d| d.open_loop.as_ref().map_or(0.0, |o| o.offered_rps)),
            sent_rps: sum(&|d| d.open_loop.as_ref().map_or(0.0, |o| o.sent_rps)),
            latency_p99_uncorrected_us: docs
                .iter()
                .filter_map(|d| d.open_loop.as_ref()?.uncorrected_latency_us.p99)
                .fold(f64::NAN, f64::max),
            lateness_p99_us: docs
                .iter()
                .filter_map(|d| d.open_loop.as_ref()?.lateness_us.p99)
                .fold(f64::NAN, f64::max),
        });
    Measured {
        sent: docs.iter().map(|d| d.requests.sent).sum(),
        ok: docs.iter().map(|d| d.requests.ok).sum(),
        failed: docs.iter().map(|d| d.requests.failed).sum(),
        duration_s: docs.iter().map(|d| d.elapsed_s).fold(0.0, f64::max),
        throughput_rps: sum(&|d| d.throughput_rps),
        latency_mean_us: hist.mean() / 1000.0,
        latency_p50_us: us(0.5),
        latency_p90_us: us(0.9),
        latency_p99_us: us(0.99),
        latency_p99_9_us: us(0.999),
        latency_max_us: hist.max() as f64 / 1000.0,
        open,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client document with `values` (ns) as its histogram.
    fn doc(values: &[u64], throughput: f64) -> ClientDoc {
        let mut h = crate::hdr::new_latency_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        serde_json::from_value(serde_json::json!({
            "format": "threadcenter-client", "version": 1, "elapsed_s": 2.0,
            "requests": {"sent": values.len(), "ok": values.len(), "failed": 0},
            "throughput_rps": throughput,
            "latency_us": {"p50": 1.0, "p99": 2.0},
            "histogram": {"unit": "ns", "encoding": "hdr-v2-deflate-base64",
                          "data": crate::hdr::encode_base64_v2(&h)},
        }))
        .unwrap()
    }

    #[test]
    fn the_cells_figures_are_the_exact_merge_and_the_sums() {
        // Two hosts with different ranges: the merge is the histogram of all values.
        let a: Vec<u64> = (1..=900).map(|i| i * 1_000).collect();
        let b: Vec<u64> = (1..=100).map(|i| i * 1_000_000).collect();
        let docs = [doc(&a, 450.0), doc(&b, 50.0)];
        let mut merged = Histogram::<u64>::new(3).unwrap();
        let mut all = crate::hdr::new_latency_histogram();
        for d in &docs {
            merged
                .add(crate::hdr::decode_base64_v2(&d.histogram.data).unwrap())
                .unwrap();
        }
        for &v in a.iter().chain(&b) {
            all.record(v).unwrap();
        }
        let m = merged_figures(&docs, &merged);
        assert_eq!((m.sent, m.ok, m.failed), (1000, 1000, 0));
        assert_eq!(m.throughput_rps, 500.0);
        assert_eq!(merged.len(), all.len());
        for q in [0.5, 0.9, 0.99, 0.999] {
            let want = all.value_at_quantile(q) as f64 / 1000.0;
            let got = [
                m.latency_p50_us,
                m.latency_p90_us,
                m.latency_p99_us,
                m.latency_p99_9_us,
            ][[0.5, 0.9, 0.99, 0.999]
                .iter()
                .position(|x| *x == q)
                .unwrap()];
            assert_eq!(got, want, "q {q}");
        }
        // p99 is the slow host's, which an average of the hosts' p99s would miss.
        assert!(m.latency_p99_us > 90_000.0, "{}", m.latency_p99_us);
        assert!(m.open.is_none());
    }

    #[test]
    fn connections_split_evenly_and_add_up() {
        assert_eq!(split(8, 2), vec![4, 4]);
        assert_eq!(split(5, 2), vec![3, 2]);
        assert_eq!(split(7, 3), vec![3, 2, 2]);
        for (t, n) in [(1, 1), (9, 4), (100, 7)] {
            assert_eq!(split(t, n).iter().sum::<u64>(), t);
        }
    }
}
