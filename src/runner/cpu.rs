//! CPU sampling with sysinfo: the server with all its descendants, the client, and the
//! whole machine, every ~100 ms, from deltas of accumulated CPU time.
//!
//! A process's `cpu_usage()` reads 0% on its first refresh, so short-lived or just-spawned
//! processes would be missed; deltas of `accumulated_cpu_time()` (utime + stime) count
//! every tick they used between two samples. Each pid is tracked on its own, so a worker
//! that exits or appears between samples does not make the total jump backwards.

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use anyhow::Context as _;

use crate::rundir::{CpuMeans, Sample};
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
    fn update(&mut self, sys: &System, root: Option<Pid>, baseline: bool) {
        let Some(root) = root else { return };
        let members = descendants(sys, root);
        for pid in members {
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
        server.update(&sys, Some(server_root), true);
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
        self.server.update(&self.sys, Some(self.server_root), false);
        self.client
            .update(&self.sys, client_pid.map(Pid::from_u32), false);
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
        });
        self.last_t = t;
    }

    /// The samples and the System, for the next cell.
    pub(crate) fn finish(self) -> (Vec<Sample>, System) {
        (self.samples, self.sys)
    }
}

fn refresh(sys: &mut System) {
    sys.refresh_processes_specifics(
        ProcessesToUpdate::All,
        true,
        ProcessRefreshKind::nothing().with_cpu(),
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
    }
}
