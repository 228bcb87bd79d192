//! CPU sampling with sysinfo: the server with all its descendants, the client, and the
//! whole machine, every ~100 ms, from deltas of accumulated CPU time; with each sample,
//! the resident memory and threads of the server's process tree and the client's, read
//! from /proc/PID/status.
//!
//! A process's `cpu_usage()` reads 0% on its first refresh, so short-lived or just-spawned
//! processes would be missed; deltas of `accumulated_cpu_time()` (utime + stime) count
//! every tick they used between two samples. Each pid is tracked on its own, so a worker
//! that exits or appears between samples does not make the total jump backwards.
//!
//! Memory is RSS (`VmRSS`), summed over the tree: PSS would split the pages the server
//! and its workers share (the executable's text, libraries), but reading it means
//! `/proc/PID/smaps_rollup`, which walks every mapping of the process under its memory
//! lock, and a thread-per-connection server at 10,000 connections has some 40,000 of
//! them: at 10 samples a second that would slow the very server being measured. RSS is
//! a constant from `/proc/PID/status`. The shared pages it counts twice are a fixed
//! offset of a few MiB that does not grow with connections, so differences between
//! cells (memory per connection) are the same either way.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::Context as _;

use crate::rundir::{CpuMeans, Footprint, Sample};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

/// The sampling period.
pub(crate) const PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// Accumulated CPU time per pid, summed over a process tree.
#[derive(Default)]
struct Tree {
    seen: HashMap<Pid, u64>,
    total_ms: u64,
}

impl Tree {
    /// Adds what each member used since its last reading. A pid seen for the first time
    /// counts from zero unless this is the baseline (then it only sets the start point).
    fn update(&mut self, sys: &System, members: &[Pid], baseline: bool) {
        for &pid in members {
            let Some(p) = sys.process(pid) else { continue };
            let now = p.accumulated_cpu_time();
            let before = self
                .seen
                .insert(pid, now)
                .unwrap_or(if baseline { now } else { 0 });
            self.total_ms += now.saturating_sub(before);
        }
    }
}

/// `root` and every process below it (by parent links), threads excluded.
fn descendants(sys: &System, root: Pid) -> Vec<Pid> {
    let mut children: HashMap<Pid, Vec<Pid>> = HashMap::new();
    for (pid, p) in sys.processes() {
        if p.thread_kind().is_some() {
            continue;
        }
        if let Some(parent) = p.parent() {
            children.entry(parent).or_default().push(*pid);
        }
    }
    let mut out = Vec::new();
    let mut seen = HashSet::new();
    let mut stack = vec![root];
    while let Some(pid) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        if sys.process(pid).is_some() {
            out.push(pid);
        }
        if let Some(kids) = children.get(&pid) {
            stack.extend(kids.iter().copied());
        }
    }
    out
}

/// Resident memory (KiB) and threads of one process, from `/proc/PID/status`; `None`
/// when it is gone. A zombie has no `VmRSS` line: it holds no memory.
fn proc_status(pid: Pid) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<u64>().ok())
    };
    Some((field("VmRSS:").unwrap_or(0), field("Threads:")?))
}

/// RSS (KiB) and threads summed over `members`; `None` when none could be read.
fn tree_status(members: &[Pid]) -> Option<(u64, u64)> {
    members
        .iter()
        .filter_map(|&pid| proc_status(pid))
        .reduce(|(r, t), (r2, t2)| (r + r2, t + t2))
}

/// Samples one cell × repetition.
pub(crate) struct Sampler {
    sys: System,
    cores: f64,
    start: Instant,
    last_t: f64,
    server_root: Pid,
    server: Tree,
    client: Tree,
    machine_s: f64,
    samples: Vec<Sample>,
}

impl Sampler {
    /// Takes the baseline: CPU the server used while starting is not counted.
    pub(crate) fn begin(mut sys: System, server_pid: u32) -> Sampler {
        let cores = sys.cpus().len().max(1) as f64;
        let server_root = Pid::from_u32(server_pid);
        refresh(&mut sys);
        let mut server = Tree::default();
        server.update(&sys, &descendants(&sys, server_root), true);
        Sampler {
            sys,
            cores,
            start: Instant::now(),
            last_t: 0.0,
            server_root,
            server,
            client: Tree::default(),
            machine_s: 0.0,
            samples: Vec::new(),
        }
    }

    /// A fresh System with the CPU list loaded (its first usage reading starts here).
    pub(crate) fn system() -> anyhow::Result<System> {
        let mut sys = System::new().context("cannot read CPU statistics (sysinfo)")?;
        sys.refresh_cpu_all();
        Ok(sys)
    }

    /// Resets the clock to "the client starts now".
    pub(crate) fn mark_start(&mut self) {
        self.start = Instant::now();
        self.last_t = 0.0;
    }

    pub(crate) fn sample(&mut self, client_pid: Option<u32>) {
        refresh(&mut self.sys);
        let t = self.start.elapsed().as_secs_f64();
        let dt = (t - self.last_t).max(1e-9);
        let (s0, c0) = (self.server.total_ms, self.client.total_ms);
        let server = descendants(&self.sys, self.server_root);
        let client =
            client_pid.map_or(Vec::new(), |pid| descendants(&self.sys, Pid::from_u32(pid)));
        self.server.update(&self.sys, &server, false);
        self.client.update(&self.sys, &client, false);
        let footprint = tree_status(&server).map(|(rss, threads)| Footprint {
            server_rss_kib: rss,
            client_rss_kib: tree_status(&client).map(|(rss, _)| rss).filter(|r| *r > 0),
            server_threads: threads,
        });
        let machine_pct = f64::from(self.sys.global_cpu_usage()) * self.cores;
        self.machine_s += machine_pct / 100.0 * dt;
        let server_pct = (self.server.total_ms - s0) as f64 / 1000.0 / dt * 100.0;
        let client_pct = (self.client.total_ms - c0) as f64 / 1000.0 / dt * 100.0;
        self.samples.push(Sample {
            t_s: t,
            server_cpu_s: self.server.total_ms as f64 / 1000.0,
            client_cpu_s: self.client.total_ms as f64 / 1000.0,
            machine_cpu_s: self.machine_s,
            server_pct,
            client_pct,
            machine_pct,
            footprint,
        });
        self.last_t = t;
    }

    /// The samples and the System, for the next cell.
    pub(crate) fn finish(self) -> (Vec<Sample>, System) {
        (self.samples, self.sys)
    }
}

/// Processes only: a process's CPU time already counts all its threads, and listing
/// every thread (sysinfo's default) would read 20,000 files a sample from a
/// thread-per-connection server at 10,000 connections.
fn refresh(sys: &mut System) {
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_cpu().without_tasks(),
    );
    sys.refresh_cpu_usage();
}

/// Mean CPU over `[from_s, to_s]` from cumulative samples: the CPU time between the first
/// sample at or after `from_s` and the last one at or before `to_s`, over that span. Falls
/// back to every sample when the window holds fewer than two.
pub(crate) fn window_means(samples: &[Sample], from_s: f64, to_s: f64) -> Option<CpuMeans> {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_s >= from_s - 1e-9 && s.t_s <= to_s + 1e-9)
        .collect();
    let (first, last, peak_from) = if inside.len() >= 2 {
        (*inside[0], **inside.last()?, 1)
    } else if samples.len() >= 2 {
        (samples[0], *samples.last()?, 1)
    } else {
        return None;
    };
    let span = last.t_s - first.t_s;
    if span <= 0.0 {
        return None;
    }
    let pct = |a: f64, b: f64| (b - a) / span * 100.0;
    let peak_src: &[&Sample] = if inside.len() >= 2 {
        &inside[peak_from..]
    } else {
        &[]
    };
    let server_peak_pct = if peak_src.is_empty() {
        samples
            .iter()
            .skip(1)
            .map(|s| s.server_pct)
            .fold(0.0, f64::max)
    } else {
        peak_src.iter().map(|s| s.server_pct).fold(0.0, f64::max)
    };
    Some(CpuMeans {
        server_pct: pct(first.server_cpu_s, last.server_cpu_s),
        client_pct: pct(first.client_cpu_s, last.client_cpu_s),
        machine_pct: pct(first.machine_cpu_s, last.machine_cpu_s),
        server_peak_pct,
    })
}

/// The peak memory and threads over `[from_s, to_s]`, each figure on its own: the most
/// the server's tree and the client held while measured (every sample when the window
/// holds none).
pub(crate) fn window_footprint(samples: &[Sample], from_s: f64, to_s: f64) -> Option<Footprint> {
    let peak = |it: &mut dyn Iterator<Item = Footprint>| {
        it.reduce(|a, b| Footprint {
            server_rss_kib: a.server_rss_kib.max(b.server_rss_kib),
            client_rss_kib: a.client_rss_kib.max(b.client_rss_kib),
            server_threads: a.server_threads.max(b.server_threads),
        })
    };
    let inside = |s: &&Sample| s.t_s >= from_s - 1e-9 && s.t_s <= to_s + 1e-9;
    peak(&mut samples.iter().filter(inside).filter_map(|s| s.footprint))
        .or_else(|| peak(&mut samples.iter().filter_map(|s| s.footprint)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(t: f64, server: f64) -> Sample {
        Sample {
            t_s: t,
            server_cpu_s: server,
            client_cpu_s: server / 2.0,
            machine_cpu_s: server * 2.0,
            server_pct: 0.0,
            client_pct: 0.0,
            machine_pct: 0.0,
            footprint: None,
        }
    }

    #[test]
    fn window_means_use_cumulative_deltas() {
        let samples = [s(0.1, 0.0), s(0.5, 0.1), s(1.5, 1.1), s(2.5, 2.1)];
        let m = window_means(&samples, 0.5, 2.5).unwrap();
        assert!((m.server_pct - 100.0).abs() < 1e-9, "{m:?}");
        assert!((m.client_pct - 50.0).abs() < 1e-9);
        assert!((m.machine_pct - 200.0).abs() < 1e-9);
        assert!(window_means(&samples[..1], 0.0, 1.0).is_none());
    }

    #[test]
    fn a_busy_child_is_measured() {
        let sys = Sampler::system().unwrap();
        // A child that spins for ~300 ms of CPU.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
            .spawn()
            .unwrap();
        let mut sampler = Sampler::begin(sys, std::process::id());
        sampler.mark_start();
        while child.try_wait().unwrap().is_none() {
            std::thread::sleep(PERIOD);
            sampler.sample(None);
        }
        let (samples, _) = sampler.finish();
        let last = samples.last().unwrap();
        assert!(last.server_cpu_s > 0.05, "{samples:?}");
        assert!(last.machine_cpu_s > 0.05, "{samples:?}");
        // This test process is the "server": it holds memory and at least this thread.
        let f = window_footprint(&samples, 0.0, f64::MAX).unwrap();
        assert!(f.server_rss_kib > 0 && f.server_threads >= 1, "{f:?}");
    }

    #[test]
    fn the_footprint_is_each_figures_peak_in_the_window() {
        let at = |t: f64, rss: u64, client: Option<u64>, threads: u64| Sample {
            footprint: Some(Footprint {
                server_rss_kib: rss,
                client_rss_kib: client,
                server_threads: threads,
            }),
            ..s(t, 0.0)
        };
        let samples = [
            at(0.1, 9_000, Some(50), 90),
            at(0.6, 300, None, 3),
            at(1.1, 500, Some(40), 2),
            s(1.6, 0.0),
        ];
        let f = window_footprint(&samples, 0.5, 2.0).unwrap();
        assert_eq!(
            f,
            Footprint {
                server_rss_kib: 500,
                client_rss_kib: Some(40),
                server_threads: 3
            }
        );
        // No sample in the window: every sample.
        assert_eq!(
            window_footprint(&samples, 5.0, 6.0).unwrap().server_rss_kib,
            9_000
        );
        assert_eq!(window_footprint(&samples[3..], 0.0, 9.0), None);
    }
}
