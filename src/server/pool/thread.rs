//! The thread pool: the same work as the process pool, on threads inside the server.
//!
//! A thread cannot be killed from outside, so `--task-timeout` works by cooperation:
//! compute checks the clock every 2^20 steps (a few milliseconds) and gives the task
//! up once its time is over; the request is answered WORKER_FAILED and the thread goes
//! on to the next task. Unlike a worker process, a thread stuck in something that
//! never checks (there is no such thing in compute today) would stay stuck.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use super::{mono_ns, run_compute_until, Done, Pool, Refused, Task, WhenFull};
use crate::protocol::ErrorCode;
use crate::server::metrics::{Metrics, WorkerStats};

pub struct ThreadPool {
    tx: Sender<Task>,
    closed: Arc<AtomicBool>,
    rx: Receiver<Task>,
    when_full: WhenFull,
    counters: Arc<Vec<(AtomicU64, AtomicU64)>>,
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl ThreadPool {
    pub fn start(
        workers: usize,
        capacity: usize,
        when_full: WhenFull,
        task_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<ThreadPool> {
        let (tx, rx) = crossbeam_channel::bounded::<Task>(capacity);
        let counters: Arc<Vec<(AtomicU64, AtomicU64)>> =
            Arc::new((0..workers).map(|_| Default::default()).collect());
        let closed = Arc::new(AtomicBool::new(false));
        let mut handles = Vec::new();
        for i in 0..workers {
            let rx = rx.clone();
            let closed = Arc::clone(&closed);
            let counters = Arc::clone(&counters);
            let metrics = Arc::clone(&metrics);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("pool-thread-{i}"))
                    .spawn(move || loop {
                        let task = match rx.recv_timeout(Duration::from_millis(100)) {
                            Ok(task) => task,
                            Err(RecvTimeoutError::Timeout) if !closed.load(Relaxed) => continue,
                            Err(_) => break,
                        };
                        let start_ns = mono_ns();
                        let result = run_compute_until(task.n, Instant::now() + task_timeout);
                        let end_ns = mono_ns();
                        counters[i].0.fetch_add(1, Relaxed);
                        counters[i].1.fetch_add(end_ns - start_ns, Relaxed);
                        match result {
                            Some(result) => task.answer(Done {
                                result,
                                start_ns,
                                end_ns,
                            }),
                            None => task.fail(
                                &metrics,
                                ErrorCode::WorkerFailed,
                                &format!(
                                    "worker thread {i} did not finish this request within --task-timeout {task_timeout:?} and gave it up"
                                ),
                            ),
                        }
                    })?,
            );
        }
        Ok(ThreadPool {
            tx,
            closed,
            rx,
            when_full,
            counters,
            handles: Mutex::new(handles),
        })
    }
}

impl Pool for ThreadPool {
    fn submit(&self, task: Task) -> Result<(), (Task, Refused)> {
        if self.closed.load(Relaxed) {
            return Err((task, Refused::Closed));
        }
        let tx = &self.tx;
        match self.when_full {
            WhenFull::Wait => tx.send(task).map_err(|e| (e.0, Refused::Closed)),
            WhenFull::Reject => tx.try_send(task).map_err(|e| match e {
                TrySendError::Full(t) => (t, Refused::Full),
                TrySendError::Disconnected(t) => (t, Refused::Closed),
            }),
        }
    }

    fn queue_depth(&self) -> usize {
        self.rx.len()
    }

    fn workers(&self) -> Vec<WorkerStats> {
        self.counters
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
        // Workers leave once the queue is empty; close() comes after the last submit.
        self.closed.store(true, Relaxed);
    }

    fn join(&self, grace: Duration) -> bool {
        let deadline = std::time::Instant::now() + grace;
        let handles = std::mem::take(&mut *self.handles.lock().unwrap_or_else(|e| e.into_inner()));
        for h in &handles {
            while !h.is_finished() {
                if std::time::Instant::now() > deadline {
                    return false; // threads cannot be killed; the process exit ends them
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        handles.into_iter().all(|h| h.join().is_ok())
    }
}
