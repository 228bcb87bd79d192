//! The thread pool: the same work as the process pool, on threads inside the server.
//!
//! A mutex-and-condvar queue rather than a channel: crossbeam's blocking receive spins
//! and yields before it parks, which on a 2-core machine measured ~3 `sched_yield`
//! per request and a third of the server's CPU. Here an idle thread parks at once and
//! a producer wakes one only when one is waiting.
//!
//! A thread cannot be killed from outside, so `--task-timeout` works by cooperation:
//! compute checks the clock every 2^20 steps (a few milliseconds) and gives the task
//! up once its time is over; the request is answered WORKER_FAILED and the thread goes
//! on to the next task. Unlike a worker process, a thread stuck in something that
//! never checks (there is no such thing in compute today) would stay stuck.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{
    mono_ns, run_compute_until, Admission, Done, Pool, Refused, RoomWaker, Task, Waiters, WhenFull,
};
use crate::protocol::ErrorCode;
use crate::server::metrics::{Metrics, WorkerStats};
use crate::sync;

pub(crate) struct ThreadPool {
    shared: Arc<Shared>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    queue: Mutex<Queue>,
    not_empty: Condvar,
    not_full: Condvar,
    capacity: usize,
    when_full: WhenFull,
    task_timeout: Duration,
    metrics: Arc<Metrics>,
    /// Per worker thread: tasks done, nanoseconds busy.
    counters: Vec<(AtomicU64, AtomicU64)>,
}

#[derive(Default)]
struct Queue {
    tasks: VecDeque<Task>,
    closed: bool,
    idle_workers: usize,
    waiters: Waiters,
}

impl Admission for Queue {
    fn closed(&self) -> bool {
        self.closed
    }
    fn waiters(&mut self) -> &mut Waiters {
        &mut self.waiters
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        sync::lock(&self.queue)
    }

    /// The next task, or `None` once the pool is closed and the queue empty.
    fn take(&self) -> Option<Task> {
        let mut q = self.lock();
        loop {
            if let Some(task) = q.tasks.pop_front() {
                q.waiters.room_for_one(&self.not_full);
                return Some(task);
            }
            if q.closed {
                return None;
            }
            q.idle_workers += 1;
            q = sync::wait(&self.not_empty, q);
            q.idle_workers -= 1;
        }
    }
}

impl ThreadPool {
    pub(crate) fn start(
        workers: usize,
        capacity: usize,
        when_full: WhenFull,
        task_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<ThreadPool> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            not_empty: Condvar::new(),
            not_full: Condvar::new(),
            capacity,
            when_full,
            task_timeout,
            metrics,
            counters: (0..workers).map(|_| Default::default()).collect(),
        });
        let mut handles = Vec::new();
        for i in 0..workers {
            let sh = Arc::clone(&shared);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("pool-thread-{i}"))
                    .spawn(move || {
                        let rec = sh.metrics.stages.recorder();
                        while let Some(task) = sh.take() {
                            let start_ns = mono_ns();
                            let deadline = Instant::now() + sh.task_timeout;
                            let result = run_compute_until(task.n, deadline);
                            let end_ns = mono_ns();
                            sh.counters[i].0.fetch_add(1, Relaxed);
                            sh.counters[i].1.fetch_add(end_ns - start_ns, Relaxed);
                            match result {
                                Some(result) => task.answer(
                                    Done {
                                        result,
                                        start_ns,
                                        end_ns,
                                    },
                                    &sh.metrics,
                                    &rec,
                                ),
                                None => task.fail(
                                    &sh.metrics,
                                    ErrorCode::WorkerFailed,
                                    &format!(
                                        "worker thread {i} did not finish this request within --task-timeout {:?} and gave it up",
                                        sh.task_timeout
                                    ),
                                ),
                            }
                        }
                    })?,
            );
        }
        Ok(ThreadPool {
            shared,
            handles: Mutex::new(handles),
        })
    }
}

impl Pool for ThreadPool {
    fn submit(&self, task: Task, park: Option<&RoomWaker>) -> Result<(), (Task, Refused)> {
        let sh = &self.shared;
        super::submit(
            sh.lock(),
            &sh.not_full,
            sh.when_full,
            park,
            task,
            |q, task| {
                if q.tasks.len() >= sh.capacity {
                    return Err(task);
                }
                q.tasks.push_back(task);
                if q.idle_workers > 0 {
                    sh.not_empty.notify_one();
                }
                Ok(())
            },
        )
    }

    /// One lock for the batch, and at most one wakeup per idle worker thread.
    fn submit_batch(
        &self,
        tasks: &mut Vec<Task>,
        park: &RoomWaker,
        refused: &mut Vec<(Task, Refused)>,
    ) {
        let sh = &self.shared;
        let mut q = sh.lock();
        let mut added = 0;
        for task in tasks.drain(..) {
            let placed = super::admit(&mut *q, sh.when_full, park, task, |q, task| {
                if q.tasks.len() >= sh.capacity {
                    return Err(task);
                }
                q.tasks.push_back(task);
                Ok(())
            });
            match placed {
                Ok(()) => added += 1,
                Err(r) => refused.push(r),
            }
        }
        for _ in 0..added.min(q.idle_workers) {
            sh.not_empty.notify_one();
        }
    }

    fn queue_depth(&self) -> usize {
        self.shared.lock().tasks.len()
    }

    fn workers(&self) -> Vec<WorkerStats> {
        self.shared
            .counters
            .iter()
            .map(|(tasks, busy)| WorkerStats {
                pid: std::process::id(),
                tasks: tasks.load(Relaxed),
                busy_s: busy.load(Relaxed) as f64 / 1e9,
                restarts: 0,
            })
            .collect()
    }

    fn close(&self) {
        let mut q = self.shared.lock();
        q.closed = true;
        self.shared.not_empty.notify_all();
        self.shared.not_full.notify_all();
        q.waiters.room(&self.shared.not_full);
    }

    fn join(&self, grace: Duration) -> bool {
        self.close();
        let deadline = Instant::now() + grace;
        let handles = std::mem::take(&mut *sync::lock(&self.handles));
        for h in &handles {
            while !h.is_finished() {
                if Instant::now() > deadline {
                    return false; // threads cannot be killed; the process exit ends them
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        handles.into_iter().all(|h| h.join().is_ok())
    }
}
