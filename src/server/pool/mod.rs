//! The worker pool: where compute tasks wait, run and get answered. Two kinds share one interface.

pub(crate) mod process;
pub(crate) mod thread;

use std::sync::{Arc, Condvar, MutexGuard};

use crate::protocol::message::{encode_error, encode_result};
use crate::protocol::{ErrorCode, OwnedId};
use crate::server::metrics::{CmdKind, Metrics, WorkerStats};
use crate::server::outbox::Outbox;
use crate::server::stages::Recorder;
use crate::sync;

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
    /// The queue is full, the policy is to wait, and the caller may not block (an event
    /// loop): its [`RoomWaker`] is called once there is room. The task comes back to be
    /// submitted again then.
    Later,
    /// The pool is closing.
    Closed,
}

/// What the queue does when it is full (`--when-full`).
pub(crate) use crate::domain::WhenFull;

/// Called (under the pool's lock: it must not block) when a full queue gets room: how a
/// pool wakes an event loop that has a connection paused on it.
pub(crate) type RoomWaker = Arc<dyn Fn() + Send + Sync>;

/// Who waits for room in a full queue: producer threads blocked on the pool's
/// `not_full` condvar, and event loops that asked to be woken.
#[derive(Default)]
pub(crate) struct Waiters {
    producers: usize,
    loops: Vec<RoomWaker>,
}

impl Waiters {
    /// Wakes every waiter after room was made (a notify costs a syscall: none at 0).
    pub(crate) fn room(&mut self, not_full: &Condvar) {
        if self.producers > 0 {
            not_full.notify_all();
        }
        for wake in self.loops.drain(..) {
            wake();
        }
    }

    /// [`Waiters::room`] for one task's room: wakes one blocked producer, not all of
    /// them (each loop is woken: it may have several connections waiting).
    pub(crate) fn room_for_one(&mut self, not_full: &Condvar) {
        if self.producers > 0 {
            not_full.notify_one();
        }
        for wake in self.loops.drain(..) {
            wake();
        }
    }

    fn park(&mut self, waker: &RoomWaker) {
        if !self.loops.iter().any(|w| Arc::ptr_eq(w, waker)) {
            self.loops.push(Arc::clone(waker));
        }
    }
}

/// A pool's locked state as [`submit`] sees it.
trait Admission {
    /// The pool takes no more tasks.
    fn closed(&self) -> bool;
    /// Who waits for room; whoever makes room calls [`Waiters::room`].
    fn waiters(&mut self) -> &mut Waiters;
}

/// Submit-when-full, for both pools: under the pool's lock `st`, `place` either takes
/// the task (to a worker or the queue) or gives it back because the queue is full.
/// Then `when_full` decides: [`WhenFull::Reject`] gives it back as
/// [`Refused::Full`], [`WhenFull::Wait`] waits on `not_full` and tries again, or, with
/// `park` (a caller that must not block), registers it and gives the task back as
/// [`Refused::Later`]. A closed pool refuses with [`Refused::Closed`], also after a wait.
/// (Generic over the task only so that its tests need no connection.)
fn submit<S: Admission, T>(
    mut st: MutexGuard<'_, S>,
    not_full: &Condvar,
    when_full: WhenFull,
    park: Option<&RoomWaker>,
    mut task: T,
    mut place: impl FnMut(&mut S, T) -> Result<(), T>,
) -> Result<(), (T, Refused)> {
    loop {
        if st.closed() {
            return Err((task, Refused::Closed));
        }
        task = match place(&mut st, task) {
            Ok(()) => return Ok(()),
            Err(task) => task,
        };
        match (when_full, park) {
            (WhenFull::Reject, _) => return Err((task, Refused::Full)),
            (WhenFull::Wait, Some(waker)) => {
                st.waiters().park(waker);
                return Err((task, Refused::Later));
            }
            (WhenFull::Wait, None) => {
                st.waiters().producers += 1;
                st = sync::wait(not_full, st);
                st.waiters().producers -= 1;
            }
        }
    }
}

/// [`submit`] for one task of a batch, whose caller must not block: under the lock
/// already held, `place` takes the task, or it is refused as [`submit`] with `park`
/// would refuse it.
fn admit<S: Admission, T>(
    st: &mut S,
    when_full: WhenFull,
    park: &RoomWaker,
    task: T,
    place: impl FnOnce(&mut S, T) -> Result<(), T>,
) -> Result<(), (T, Refused)> {
    if st.closed() {
        return Err((task, Refused::Closed));
    }
    let task = match place(st, task) {
        Ok(()) => return Ok(()),
        Err(task) => task,
    };
    match when_full {
        WhenFull::Reject => Err((task, Refused::Full)),
        WhenFull::Wait => {
            st.waiters().park(park);
            Err((task, Refused::Later))
        }
    }
}

pub trait Pool: Send + Sync {
    /// Hands a task to the pool, or gives it back with the reason. Under
    /// `--when-full wait` a full queue blocks the caller, unless it gives a `park`
    /// waker: then the task comes back as [`Refused::Later`] and the waker is called
    /// once there is room.
    fn submit(&self, task: Task, park: Option<&RoomWaker>) -> Result<(), (Task, Refused)>;
    /// Hands over every task of `tasks` (an event loop's batch: what one turn of the
    /// loop read across its connections), in order, as if each were given to
    /// [`Pool::submit`] with `park`, but under one lock and with one wakeup (and, for
    /// processes, one pipe write) per worker. Those it does not take are moved to
    /// `refused` with the reason; `tasks` is left empty.
    fn submit_batch(
        &self,
        tasks: &mut Vec<Task>,
        park: &RoomWaker,
        refused: &mut Vec<(Task, Refused)>,
    ) {
        for task in tasks.drain(..) {
            if let Err(r) = self.submit(task, Some(park)) {
                refused.push(r);
            }
        }
    }
    /// Tasks waiting for a worker.
    fn queue_depth(&self) -> usize;
    fn workers(&self) -> Vec<WorkerStats>;
    /// Takes no more tasks; workers stop once every queued task is answered.
    fn close(&self);
    /// Waits for the workers to stop; after `grace`, kills them. True if they stopped by themselves.
    fn join(&self, grace: std::time::Duration) -> bool;
}

/// Does the compute work of one task, with the test-only slowdown applied.
pub(crate) fn run_compute(n: u64) -> u64 {
    let extra = test_hooks::extra_work_pct();
    if extra > 0 {
        std::hint::black_box(crate::protocol::compute(n.saturating_mul(extra) / 100));
    }
    crate::protocol::compute(n)
}

/// [`run_compute`] that gives up (`None`) once `deadline` has passed, checking the
/// clock every [`crate::protocol::compute::CHECK_EVERY`] steps (a few milliseconds).
pub(crate) fn run_compute_until(n: u64, deadline: std::time::Instant) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::{Duration, Instant};

    /// A queue of capacity 1.
    #[derive(Default)]
    struct Q {
        items: Vec<u32>,
        closed: bool,
        waiting: Waiters,
    }

    impl Admission for Q {
        fn closed(&self) -> bool {
            self.closed
        }
        fn waiters(&mut self) -> &mut Waiters {
            &mut self.waiting
        }
    }

    struct Shared {
        q: Mutex<Q>,
        not_full: Condvar,
    }

    fn put(sh: &Shared, when_full: WhenFull, item: u32) -> Result<(), (u32, Refused)> {
        submit(
            sync::lock(&sh.q),
            &sh.not_full,
            when_full,
            None,
            item,
            |q, item| {
                if q.items.is_empty() {
                    q.items.push(item);
                    Ok(())
                } else {
                    Err(item)
                }
            },
        )
    }

    fn full() -> Arc<Shared> {
        let sh = Arc::new(Shared {
            q: Mutex::new(Q::default()),
            not_full: Condvar::new(),
        });
        put(&sh, WhenFull::Reject, 1).unwrap();
        sh
    }

    /// Starts a producer that submits 2 with `Wait`, and returns once it is blocked.
    fn blocked_producer(sh: &Arc<Shared>) -> std::thread::JoinHandle<Result<(), (u32, Refused)>> {
        let sh2 = Arc::clone(sh);
        let producer = std::thread::spawn(move || put(&sh2, WhenFull::Wait, 2));
        let deadline = Instant::now() + Duration::from_secs(30);
        while sync::lock(&sh.q).waiting.producers == 0 {
            assert!(Instant::now() < deadline, "the producer never waited");
            std::thread::yield_now();
        }
        producer
    }

    #[test]
    fn reject_gives_the_task_back_when_full_and_closed_refuses_first() {
        let sh = full();
        assert_eq!(put(&sh, WhenFull::Reject, 2), Err((2, Refused::Full)));
        sync::lock(&sh.q).closed = true;
        sync::lock(&sh.q).items.clear();
        assert_eq!(put(&sh, WhenFull::Reject, 3), Err((3, Refused::Closed)));
        assert_eq!(put(&sh, WhenFull::Wait, 4), Err((4, Refused::Closed)));
        assert!(sync::lock(&sh.q).items.is_empty());
    }

    #[test]
    fn wait_blocks_until_room_is_made_then_places_the_task() {
        let sh = full();
        let producer = blocked_producer(&sh);
        {
            let mut q = sync::lock(&sh.q);
            assert_eq!(q.items, [1], "nothing placed while full");
            q.items.clear();
            sh.not_full.notify_all();
        }
        assert_eq!(producer.join().unwrap(), Ok(()));
        let q = sync::lock(&sh.q);
        assert_eq!(q.items, [2]);
        assert_eq!(q.waiting.producers, 0, "the producer counted itself out");
    }

    #[test]
    fn a_waiting_producer_is_refused_when_the_pool_closes() {
        let sh = full();
        let producer = blocked_producer(&sh);
        sync::lock(&sh.q).closed = true;
        sh.not_full.notify_all();
        assert_eq!(producer.join().unwrap(), Err((2, Refused::Closed)));
        assert_eq!(sync::lock(&sh.q).waiting.producers, 0);
    }
}

/// Test-only behaviour switched on by environment variables; never set in production.
pub(crate) mod test_hooks {
    use std::sync::OnceLock;
    use std::time::{Duration, Instant};

    /// `THREADCENTER_TEST_STALL=AFTER_MS:DURATION_MS`: once, AFTER_MS after the server
    /// started listening, the server freezes for DURATION_MS: every response that is
    /// ready in that window (ping, stats, compute results, errors) waits until it ends,
    /// so every request in flight or arriving then is delayed. The open-loop tests'
    /// stall. Unset, this costs one load of an initialised `OnceLock` per response.
    pub(crate) fn stall_window() -> Option<(Instant, Instant)> {
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
    pub(crate) fn stall_if_due() {
        if let Some((from, until)) = stall_window() {
            let now = Instant::now();
            if now >= from && now < until {
                std::thread::sleep(until - now);
            }
        }
    }

    /// `THREADCENTER_TEST_EXTRA_WORK_PCT=30`: every compute does 30% more steps
    /// (and still answers compute(n)). The CI gate's planted slowdown.
    pub(crate) fn extra_work_pct() -> u64 {
        static PCT: OnceLock<u64> = OnceLock::new();
        *PCT.get_or_init(|| {
            std::env::var("THREADCENTER_TEST_EXTRA_WORK_PCT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        })
    }
}
