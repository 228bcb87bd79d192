//! Where a compute request's time goes inside the server: per-stage HDR histograms.
//!
//! Four stages, each from timestamps on the machine's monotonic clock ([`mono_ns`], so a
//! worker process's timestamps line up with the server's):
//!
//! | stage   | from                                   | to                                      |
//! |---------|----------------------------------------|-----------------------------------------|
//! | queue   | the request's frame fully read         | a worker starts computing it            |
//! | service | the worker starts computing            | the worker is done (measured in the worker) |
//! | return  | the worker is done                     | the response is handed to the socket    |
//! | total   | the request's frame fully read         | the response is handed to the socket    |
//!
//! so `total = queue + service + return` for every request. "Handed to the socket"
//! is when the answering thread is about to encode and send the response: the timings
//! are recorded then, before the client can have its answer, so a `stats` read (or
//! reset) sent after an answer arrived always counts that request in the window it
//! closes. The send itself (the kernel's loopback work, or the queue of a connection's
//! writer thread) is the network's part, in what the client sees beyond `total`.
//!
//! Recording takes no shared lock. Each thread that answers compute requests (a
//! process-pool supervisor, a pool thread) owns a [`Recorder`]: histograms of its own
//! behind a mutex that only a reader of the stats ever contends for. A read
//! ([`StageTimings::drain`]) moves every recorder's counts into two accumulators,
//! one since the last `stats` reset and one since the start (for Prometheus, whose
//! histograms must only grow), so each sample is counted exactly once in each.

use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::hdr::new_latency_histogram;
use crate::sync::lock;

pub use crate::server::pool::mono_ns;

/// The stages, in the order they happen (`Total` spans the three others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Queue = 0,
    Service = 1,
    Return = 2,
    Total = 3,
}

impl Stage {
    pub const ALL: [Stage; 4] = [Stage::Queue, Stage::Service, Stage::Return, Stage::Total];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queue => "queue",
            Stage::Service => "service",
            Stage::Return => "return",
            Stage::Total => "total",
        }
    }
}

/// One stage's samples: the histogram (ns) and the exact sum (ns).
#[derive(Debug, Clone)]
pub struct StageHist {
    pub hist: Histogram<u64>,
    pub sum_ns: u128,
}

impl Default for StageHist {
    fn default() -> Self {
        StageHist {
            hist: new_latency_histogram(),
            sum_ns: 0,
        }
    }
}

impl StageHist {
    fn record(&mut self, ns: u64) {
        // `record` grows the histogram (`saturating_record` would clamp to its
        // current range); it fails only for values near u64::MAX.
        if self.hist.record(ns).is_err() {
            self.hist.saturating_record(ns);
        }
        self.sum_ns += u128::from(ns);
    }

    fn add(&mut self, other: &StageHist) {
        // Both grow on demand, so adding never runs out of range.
        let _ = self.hist.add(&other.hist);
        self.sum_ns += other.sum_ns;
    }

    fn reset(&mut self) {
        self.hist.reset();
        self.sum_ns = 0;
    }

    /// The summary `stats` shows, in microseconds.
    pub fn summary(&self) -> StageSummary {
        let h = &self.hist;
        let us = |ns: u64| ns as f64 / 1e3;
        let q = |p: f64| {
            if h.is_empty() {
                0.0
            } else {
                us(h.value_at_quantile(p))
            }
        };
        let count = h.len();
        StageSummary {
            count,
            mean: if count == 0 {
                0.0
            } else {
                self.sum_ns as f64 / count as f64 / 1e3
            },
            p50: q(0.5),
            p90: q(0.9),
            p99: q(0.99),
            p99_9: q(0.999),
            max: if count == 0 { 0.0 } else { us(h.max()) },
        }
    }
}

/// All four stages.
pub type StageSet = [StageHist; 4];

/// One stage as `stats` shows it: microseconds, except `count`. `mean` is exact; the
/// quantiles and `max` are HDR values (3 significant digits: within 0.1%).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StageSummary {
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

/// The `stages_us` object of `stats`.
#[derive(Debug, Clone, Serialize)]
pub struct StageSummaries {
    pub queue: StageSummary,
    pub service: StageSummary,
    #[serde(rename = "return")]
    pub return_: StageSummary,
    pub total: StageSummary,
}

/// What one thread records into; see the module doc.
#[derive(Clone)]
pub struct Recorder {
    local: Option<Arc<Mutex<StageSet>>>,
}

impl Recorder {
    /// A recorder that records nothing (stage timing disabled).
    pub fn disabled() -> Recorder {
        Recorder { local: None }
    }

    pub fn enabled(&self) -> bool {
        self.local.is_some()
    }

    /// Records one request from its timestamps ([`mono_ns`]): frame read, worker start,
    /// worker done, response handed to the socket.
    pub fn record(&self, received_ns: u64, start_ns: u64, end_ns: u64, sent_ns: u64) {
        let Some(local) = &self.local else { return };
        let mut set = lock(local);
        set[Stage::Queue as usize].record(start_ns.saturating_sub(received_ns));
        set[Stage::Service as usize].record(end_ns.saturating_sub(start_ns));
        set[Stage::Return as usize].record(sent_ns.saturating_sub(end_ns));
        set[Stage::Total as usize].record(sent_ns.saturating_sub(received_ns));
    }
}

/// Every recorder of one server, and what has been read from them.
pub struct StageTimings {
    enabled: bool,
    recorders: Mutex<Vec<Arc<Mutex<StageSet>>>>,
    read: Mutex<Accumulated>,
}

struct Accumulated {
    since_reset: StageSet,
    since_start: StageSet,
    reset_at_ns: u64,
}

/// What one read of the stage timings sees.
pub struct StageRead<'a> {
    /// Since the last reset (or the start).
    pub since_reset: &'a StageSet,
    /// Since the server started, never reset.
    pub since_start: &'a StageSet,
    /// Seconds since the last reset (or the start).
    pub window_s: f64,
}

impl StageTimings {
    pub fn new(enabled: bool) -> StageTimings {
        StageTimings {
            enabled,
            recorders: Mutex::new(Vec::new()),
            read: Mutex::new(Accumulated {
                since_reset: Default::default(),
                since_start: Default::default(),
                reset_at_ns: mono_ns(),
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// A recorder for the calling thread (or a disabled one when timing is off).
    pub fn recorder(&self) -> Recorder {
        if !self.enabled {
            return Recorder::disabled();
        }
        let local = Arc::new(Mutex::new(StageSet::default()));
        lock(&self.recorders).push(Arc::clone(&local));
        Recorder { local: Some(local) }
    }

    /// Moves every recorder's samples into the accumulators, then calls `read` with
    /// them (under the lock, so no copy is made); with `reset`, the since-reset
    /// accumulator starts over afterwards.
    pub fn drain<T>(&self, reset: bool, read: impl FnOnce(&StageRead) -> T) -> T {
        let mut acc = lock(&self.read);
        {
            let mut recorders = lock(&self.recorders);
            // A recorder whose thread has ended is read one last time, then dropped.
            recorders.retain(|local| {
                let mut set = lock(local);
                for (i, stage) in set.iter_mut().enumerate() {
                    if !stage.hist.is_empty() {
                        acc.since_reset[i].add(stage);
                        acc.since_start[i].add(stage);
                        stage.reset();
                    }
                }
                Arc::strong_count(local) > 1
            });
        }
        let now = mono_ns();
        let window_s = now.saturating_sub(acc.reset_at_ns) as f64 / 1e9;
        let out = read(&StageRead {
            since_reset: &acc.since_reset,
            since_start: &acc.since_start,
            window_s,
        });
        if reset {
            for stage in &mut acc.since_reset {
                stage.reset();
            }
            acc.reset_at_ns = now;
        }
        out
    }
}

/// The summaries of a set, as `stats` shows them.
pub fn summaries(set: &StageSet) -> StageSummaries {
    StageSummaries {
        queue: set[Stage::Queue as usize].summary(),
        service: set[Stage::Service as usize].summary(),
        return_: set[Stage::Return as usize].summary(),
        total: set[Stage::Total as usize].summary(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_from_every_thread_and_resets_only_the_window() {
        let t = StageTimings::new(true);
        let handles: Vec<_> = (0..3)
            .map(|k| {
                let rec = t.recorder();
                std::thread::spawn(move || {
                    for i in 0..1000u64 {
                        // queue 1000+k, service 2000, return 500, total the sum.
                        let r = i * 10_000;
                        rec.record(r, r + 1000 + k, r + 3000 + k, r + 3500 + k);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        let s = t.drain(true, |r| summaries(r.since_reset));
        assert_eq!(s.queue.count, 3000);
        assert_eq!(s.total.count, 3000);
        assert!((s.queue.mean - 1.001).abs() < 1e-9, "{s:?}");
        assert!((s.service.mean - 2.0).abs() < 1e-9);
        assert!((s.return_.mean - 0.5).abs() < 1e-9);
        assert!((s.total.mean - 3.501).abs() < 1e-9);
        assert!((s.service.p99 - 2.0).abs() <= 2.0 * 0.001);
        // The threads ended: their recorders were read once more and let go.
        assert!(lock(&t.recorders).is_empty());
        let lens = t.drain(false, |r| {
            (r.since_reset[0].hist.len(), r.since_start[0].hist.len())
        });
        assert_eq!(lens, (0, 3000));
    }

    #[test]
    fn large_values_grow_the_histogram_rather_than_clamp() {
        let t = StageTimings::new(true);
        let rec = t.recorder();
        // 2 ms queued, 40 s of service.
        rec.record(0, 2_000_000, 40_002_000_000, 40_002_100_000);
        let s = t.drain(false, |r| summaries(r.since_reset));
        assert!((s.queue.max - 2000.0).abs() <= 2.0, "{s:?}");
        assert!((s.service.p50 - 40e6).abs() <= 40e3, "{s:?}");
        assert!((s.return_.max - 100.0).abs() <= 0.1, "{s:?}");
    }

    #[test]
    fn a_disabled_timing_records_nothing() {
        let t = StageTimings::new(false);
        let rec = t.recorder();
        assert!(!rec.enabled());
        rec.record(1, 2, 3, 4);
        assert_eq!(t.drain(false, |r| r.since_start[3].hist.len()), 0);
    }

    #[test]
    fn an_empty_summary_is_all_zero() {
        let s = StageHist::default().summary();
        assert_eq!(s.count, 0);
        assert_eq!((s.mean, s.p50, s.p99_9, s.max), (0.0, 0.0, 0.0, 0.0));
    }
}
