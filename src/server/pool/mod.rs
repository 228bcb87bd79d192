//! The worker pool: where compute tasks wait, run and get answered. Two kinds share one interface.

pub mod process;
pub mod thread;

use std::sync::Arc;

use crate::protocol::message::{encode_error, encode_result};
use crate::protocol::{ErrorCode, OwnedId};
use crate::server::metrics::{CmdKind, Metrics, WorkerStats};
use crate::server::outbox::Outbox;
use crate::server::stages::Recorder;

/// One compute request on its way through the pool.
pub struct Task {
    pub n: u64,
    pub id: OwnedId,
    pub conn: Arc<Outbox>,
    /// [`mono_ns`] when its frame was fully read.
    pub received_ns: u64,
}

/// The monotonic clock as nanoseconds, comparable across processes on one machine
/// (CLOCK_MONOTONIC), so a worker's timestamps line up with the server's.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes a timespec we own; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// What a worker reports for one task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub result: u64,
    /// [`mono_ns`] when the worker started and finished computing.
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Task {
    /// Records the request's stage timings in `rec`, then sends the result. Recording
    /// first means a client that has its answer finds it in the next `stats` (and a
    /// `stats` reset it sends next cannot miss it or count it in the new window).
    pub fn answer(self, done: Done, metrics: &Metrics, rec: &Recorder) {
        let Task {
            id,
            conn,
            received_ns,
            ..
        } = self;
        metrics.respond(CmdKind::Compute, Ok(()));
        if rec.enabled() {
            rec.record(received_ns, done.start_ns, done.end_ns, mono_ns());
        }
        conn.complete(|out| encode_result(out, id.json(), done.result));
    }

    pub fn fail(self, metrics: &Metrics, code: ErrorCode, message: &str) {
        metrics.respond(CmdKind::Compute, Err(code));
        let Task { id, conn, .. } = self;
        conn.complete(|out| encode_error(out, id.json(), code, message));
    }
}

/// Why the pool did not take a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue is full and the admission policy is to reject.
    Full,
    /// The pool is closing.
    Closed,
}

/// What the queue does when it is full (`--when-full`).
pub use crate::cli::WhenFull;

pub trait Pool: Send + Sync {
    /// Hands a task to the pool, or gives it back with the reason.
    fn submit(&self, task: Task) -> Result<(), (Task, Refused)>;
    /// Tasks waiting for a worker.
    fn queue_depth(&self) -> usize;
    fn workers(&self) -> Vec<WorkerStats>;
    /// Takes no more tasks; workers stop once every queued task is answered.
    fn close(&self);
    /// Waits for the workers to stop; after `grace`, kills them. True if they stopped by themselves.
    fn join(&self, grace: std::time::Duration) -> bool;
}

/// Does the compute work of one task, with the test-only slowdown applied.
pub fn run_compute(n: u64) -> u64 {
    let extra = test_hooks::extra_work_pct();
    if extra > 0 {
        std::hint::black_box(crate::protocol::compute(n.saturating_mul(extra) / 100));
    }
    crate::protocol::compute(n)
}

/// [`run_compute`] that gives up (`None`) once `deadline` has passed, checking the
/// clock every [`crate::protocol::compute::CHECK_EVERY`] steps (a few milliseconds).
pub fn run_compute_until(n: u64, deadline: std::time::Instant) -> Option<u64> {
    let keep_going = || std::time::Instant::now() < deadline;
    let extra = test_hooks::extra_work_pct();
    if extra > 0 {
        std::hint::black_box(crate::protocol::compute_until(
            n.saturating_mul(extra) / 100,
            keep_going,
        )?);
    }
    crate::protocol::compute_until(n, keep_going)
}

/// Test-only behaviour switched on by environment variables; never set in production.
pub mod test_hooks {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// `THREADCENTER_TEST_STALL=AFTER_MS:DURATION_MS`: once, AFTER_MS after the server
    /// started listening, the server freezes for DURATION_MS: every response that is
    /// ready in that window (ping, stats, compute results, errors) waits until it ends,
    /// so every request in flight or arriving then is delayed. The open-loop tests'
    /// stall. Unset, this costs one load of an initialised `OnceLock` per response.
    pub fn stall_window() -> Option<(Instant, Instant)> {
        static WINDOW: OnceLock<Option<(Instant, Instant)>> = OnceLock::new();
        *WINDOW.get_or_init(|| {
            let spec = std::env::var("THREADCENTER_TEST_STALL").ok()?;
            let (after, duration) = spec.split_once(':')?;
            let from = Instant::now() + Duration::from_millis(after.trim().parse().ok()?);
            Some((
                from,
                from + Duration::from_millis(duration.trim().parse().ok()?),
            ))
        })
    }

    /// Holds the calling thread until the stall window is over, if it is open now.
    #[inline]
    pub fn stall_if_due() {
        if let Some((from, until)) = stall_window() {
            let now = Instant::now();
            if now >= from && now < until {
                std::thread::sleep(until - now);
            }
        }
    }

    /// `THREADCENTER_TEST_EXTRA_WORK_PCT=30`: every compute does 30% more steps
    /// (and still answers compute(n)). The CI gate's planted slowdown.
    pub fn extra_work_pct() -> u64 {
        static PCT: OnceLock<u64> = OnceLock::new();
        *PCT.get_or_init(|| {
            std::env::var("THREADCENTER_TEST_EXTRA_WORK_PCT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
    }
}
