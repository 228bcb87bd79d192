//! The process pool: `--workers` child processes running `threadcenter worker`, fed over pipes and supervised.
//!
//! Dispatch keeps one central queue, as the seed's model has it: a task goes straight
//! to an idle worker if there is one, and otherwise waits in the backlog. When a worker
//! reports a result and has at most one task left, whoever reads its results tops it
//! up from the backlog with a batch of up to a fair share (backlog / workers, at most
//! [`BATCH_MAX`], or [`BATCH_MAX_LENT`] when event loops read the results), written in
//! one `write`. Under light load every task goes to an idle worker; under heavy load
//! the pipes carry batches, so the IPC cost per task shrinks as the queue grows, and
//! the worker never idles between batches.
//!
//! Each worker has one supervisor thread that reads its results, answers the tasks,
//! and replaces the worker when it dies: the task it was computing is answered
//! WORKER_FAILED, the tasks queued behind it go to the replacement.
//!
//! Under `--io events` the supervisor lends the worker's result pipe to an event loop
//! (a [`PipeHost`]; worker i to loop i mod loops): the loop reads the results in its
//! own `epoll_wait` and answers them, so a result does not wake a thread of its own
//! when the loop is already awake. The loop gives the pipe back at its end of stream
//! (the worker died or was stopped), on a broken record, or when the loop itself ends;
//! the supervisor, asleep meanwhile except for `--task-timeout`, then goes on as above
//! (reading the pipe itself if it came back open).
//!
//! `--task-timeout`: the supervisor knows since when its worker has been on the task
//! at the head of its list (since the previous result came back, or since the task
//! was written to an idle worker), and waits for results with `poll(2)` and that
//! deadline. A worker past it (looping, or stopped by SIGSTOP) is killed with SIGKILL
//! and handled as a death: its task is answered WORKER_FAILED, the rest go to the
//! replacement.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Admission, Done, Pool, Refused, RoomWaker, Task, Waiters, WhenFull};
use crate::protocol::ErrorCode;
use crate::server::metrics::{Metrics, WorkerStats};
use crate::server::stages::Recorder;
use crate::server::worker::{decode_result, encode_task, RESULT_LEN};
use crate::sync;

/// The largest batch of tasks written to one worker at once, when its supervisor
/// reads its results (and tops it up the moment it reports).
pub(crate) const BATCH_MAX: usize = 16;
/// The same when an event loop reads them: the loop reads a worker's results between
/// connections, so a worker may finish its batch some tens of microseconds before it
/// is topped up again, and a larger share keeps it busy meanwhile.
pub(crate) const BATCH_MAX_LENT: usize = 64;

pub(crate) struct ProcessPool {
    shared: Arc<Shared>,
    supervisors: Mutex<Vec<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    not_full: Condvar,
    /// Signalled when a lent result pipe comes back ([`Slot::returned`]).
    returned: Condvar,
    /// The event loops result pipes are lent to (none: supervisors read them).
    hosts: Vec<Arc<dyn PipeHost>>,
    capacity: usize,
    when_full: WhenFull,
    task_timeout: Duration,
    exe: PathBuf,
    metrics: Arc<Metrics>,
}

struct State {
    slots: Vec<Slot>,
    backlog: VecDeque<Task>,
    closing: bool,
    next_seq: u64,
    rotate: usize,
    scratch: Vec<u8>,
    /// [`BATCH_MAX`] or [`BATCH_MAX_LENT`].
    batch_max: usize,
    /// Producers and event loops waiting for room in a full backlog.
    waiters: Waiters,
}

struct Slot {
    /// Tasks written to this worker, in the order it answers them.
    inflight: VecDeque<(u64, Task)>,
    /// Since when the worker has been on the head of `inflight` (at the latest).
    head_since: Instant,
    /// `None` while the worker is being replaced, or once it was told to stop.
    stdin: Option<ChildStdin>,
    /// 0 once the process has been reaped (so nobody signals a reused pid).
    pid: u32,
    /// A lent result pipe's return, for the supervisor waiting on `returned`.
    returned: Option<Return>,
    /// `inflight.len()` as of the last task written or result read, for a loop to see
    /// without the lock whether a read of the results may find any (a hint: a result
    /// it misses wakes the loop anyway).
    awaited: Arc<AtomicUsize>,
    tasks: u64,
    busy_ns: u64,
    restarts: u64,
}

impl Slot {
    /// SIGKILLs the worker, unless it has been reaped. Called under the pool's lock,
    /// under which `pid` is zeroed before the child is reaped, so it never signals a
    /// reused pid.
    fn kill(&self) {
        if self.pid != 0 {
            // SAFETY: kill(2) on our own unreaped child's pid (see above).
            unsafe { libc::kill(self.pid as i32, libc::SIGKILL) };
        }
    }
}

impl State {
    /// Writes `tasks` to worker `i` in one write; they join its in-flight list.
    fn assign(&mut self, i: usize, tasks: impl IntoIterator<Item = Task>) {
        self.scratch.clear();
        let slot = &mut self.slots[i];
        if slot.inflight.is_empty() {
            slot.head_since = Instant::now();
        }
        for task in tasks {
            encode_task(&mut self.scratch, self.next_seq, task.n);
            slot.inflight.push_back((self.next_seq, task));
            self.next_seq += 1;
        }
        slot.awaited.store(slot.inflight.len(), Relaxed);
        if let Some(stdin) = &mut slot.stdin {
            // At most (1 + BATCH_MAX_LENT) * 16 bytes are ever unread in the pipe, far
            // below its capacity, so this never blocks under the lock. A failed write
            // means the worker died: its supervisor resends these to the replacement.
            let _ = stdin.write_all(&self.scratch);
        }
    }

    /// Resends every in-flight task of worker `i` (to its replacement).
    fn resend(&mut self, i: usize) {
        self.scratch.clear();
        self.slots[i].head_since = Instant::now();
        for (seq, task) in &self.slots[i].inflight {
            encode_task(&mut self.scratch, *seq, task.n);
        }
        if let Some(stdin) = &mut self.slots[i].stdin {
            let _ = stdin.write_all(&self.scratch);
        }
    }

    /// Gives worker `i` a fair share of the backlog if it has at most one task left.
    /// True if it took any.
    fn top_up(&mut self, i: usize) -> bool {
        if self.slots[i].inflight.len() > 1
            || self.backlog.is_empty()
            || self.slots[i].stdin.is_none()
        {
            return false;
        }
        let share = self
            .backlog
            .len()
            .div_ceil(self.slots.len())
            .clamp(1, self.batch_max);
        let batch: Vec<Task> = self.backlog.drain(..share).collect();
        self.assign(i, batch);
        true
    }

    fn idle_slot(&mut self) -> Option<usize> {
        let n = self.slots.len();
        let start = self.rotate;
        let found = (0..n)
            .map(|k| (start + k) % n)
            .find(|&i| self.slots[i].stdin.is_some() && self.slots[i].inflight.is_empty())?;
        self.rotate = (found + 1) % n;
        Some(found)
    }

    /// Gives `task` to an idle worker, or puts it in the backlog if that holds fewer
    /// than `capacity`; gives it back if not.
    fn place(&mut self, task: Task, capacity: usize) -> Result<(), Task> {
        if let Some(i) = self.idle_slot() {
            self.assign(i, [task]);
        } else if self.backlog.len() < capacity {
            self.backlog.push_back(task);
        } else {
            return Err(task);
        }
        Ok(())
    }

    fn all_done(&self) -> bool {
        self.backlog.is_empty() && self.slots.iter().all(|s| s.inflight.is_empty())
    }
}

impl Admission for State {
    fn closed(&self) -> bool {
        self.closing
    }
    fn waiters(&mut self) -> &mut Waiters {
        &mut self.waiters
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        sync::lock(&self.state)
    }

    /// How long slot `i`'s supervisor may wait for a result: until the head task's
    /// deadline, or a whole `--task-timeout` while the worker is idle.
    fn result_wait(&self, i: usize) -> Duration {
        self.result_wait_locked(&self.lock(), i)
    }

    /// [`Shared::result_wait`] under the lock already held.
    fn result_wait_locked(&self, st: &State, i: usize) -> Duration {
        let slot = &st.slots[i];
        if slot.inflight.is_empty() {
            self.task_timeout
        } else {
            (slot.head_since + self.task_timeout).saturating_duration_since(Instant::now())
        }
    }

    fn spawn_worker(&self) -> io::Result<Child> {
        Command::new(&self.exe)
            .arg("worker")
            .arg("--parent")
            .arg(std::process::id().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot start worker process {}: {e}", self.exe.display()),
                )
            })
    }
}

impl ProcessPool {
    /// Starts `workers` worker processes of the executable `exe`.
    pub(crate) fn start(
        exe: PathBuf,
        workers: usize,
        capacity: usize,
        when_full: WhenFull,
        task_timeout: Duration,
        metrics: Arc<Metrics>,
        hosts: Vec<Arc<dyn PipeHost>>,
    ) -> io::Result<ProcessPool> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                slots: Vec::new(),
                backlog: VecDeque::new(),
                closing: false,
                next_seq: 0,
                rotate: 0,
                scratch: Vec::new(),
                batch_max: if hosts.is_empty() {
                    BATCH_MAX
                } else {
                    BATCH_MAX_LENT
                },
                waiters: Waiters::default(),
            }),
            not_full: Condvar::new(),
            returned: Condvar::new(),
            hosts,
            capacity,
            when_full,
            task_timeout,
            exe,
            metrics,
        });
        let pool = ProcessPool {
            shared: Arc::clone(&shared),
            supervisors: Mutex::new(Vec::new()),
        };
        for i in 0..workers {
            let mut child = match shared.spawn_worker() {
                Ok(child) => child,
                Err(e) => {
                    pool.close();
                    pool.join(Duration::from_secs(2));
                    return Err(e);
                }
            };
            shared.lock().slots.push(Slot {
                inflight: VecDeque::new(),
                head_since: Instant::now(),
                stdin: child.stdin.take(),
                pid: child.id(),
                returned: None,
                awaited: Arc::default(),
                tasks: 0,
                busy_ns: 0,
                restarts: 0,
            });
            let sh = Arc::clone(&shared);
            let handle = std::thread::Builder::new()
                .name(format!("pool-worker-{i}"))
                .spawn(move || supervise(&sh, i, child))?;
            sync::lock(&pool.supervisors).push(handle);
        }
        Ok(pool)
    }
}

impl Pool for ProcessPool {
    fn submit(&self, task: Task, park: Option<&RoomWaker>) -> Result<(), (Task, Refused)> {
        let sh = &self.shared;
        let st = sh.lock();
        super::submit(st, &sh.not_full, sh.when_full, park, task, |st, task| {
            st.place(task, sh.capacity)
        })
    }

    /// Placed one by one as [`Pool::submit`] places them (so `--queue-capacity` and
    /// `--when-full` mean the same), under one lock: an idle worker gets one task, in
    /// one write; the rest waits in the backlog, from which each worker is topped up
    /// with a share (in one write) when it reports.
    fn submit_batch(
        &self,
        tasks: &mut Vec<Task>,
        park: &RoomWaker,
        refused: &mut Vec<(Task, Refused)>,
    ) {
        let sh = &self.shared;
        let mut st = sh.lock();
        for task in tasks.drain(..) {
            if let Err(r) = super::admit(&mut *st, sh.when_full, park, task, |st, task| {
                st.place(task, sh.capacity)
            }) {
                refused.push(r);
            }
        }
    }

    fn queue_depth(&self) -> usize {
        self.shared.lock().backlog.len()
    }

    fn workers(&self) -> Vec<WorkerStats> {
        self.shared
            .lock()
            .slots
            .iter()
            .map(|s| WorkerStats {
                pid: s.pid,
                tasks: s.tasks,
                busy_s: s.busy_ns as f64 / 1e9,
                restarts: s.restarts,
            })
            .collect()
    }

    fn close(&self) {
        let mut st = self.shared.lock();
        st.closing = true;
        if st.all_done() {
            // Idle workers stop now; busy ones once their supervisor sees them done.
            for slot in &mut st.slots {
                slot.stdin = None;
            }
        }
        self.shared.not_full.notify_all();
        // Loops with a connection paused on the queue hear that it is closed.
        st.waiters.room(&self.shared.not_full);
    }

    fn join(&self, grace: Duration) -> bool {
        self.close();
        let deadline = Instant::now() + grace;
        let handles = std::mem::take(&mut *sync::lock(&self.supervisors));
        let mut clean = true;
        while handles.iter().any(|h| !h.is_finished()) {
            if Instant::now() >= deadline {
                clean = false;
                let st = self.shared.lock();
                for slot in &st.slots {
                    slot.kill();
                }
                drop(st);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        for h in handles {
            clean &= h.join().is_ok();
        }
        clean
    }
}

/// An event loop that reads result pipes lent to it (see the module doc).
pub(crate) trait PipeHost: Send + Sync {
    /// Takes `pipe` to read in the loop, or gives it back if the loop has ended.
    fn lend(&self, pipe: LentPipe) -> Result<(), LentPipe>;
}

/// How a lent result pipe came back to its supervisor.
enum Return {
    /// Still open: the loop ended first. The supervisor reads it from here on.
    Open(Results),
    /// Unusable (end of stream, a read error, a record out of order): why.
    Closed(String),
}

/// Worker `i`'s result pipe, lent to an event loop: [`LentPipe::drain`] whenever it is
/// readable, [`LentPipe::give_back`] once that says it is over or the loop ends.
pub(crate) struct LentPipe {
    sh: Arc<Shared>,
    i: usize,
    awaited: Arc<AtomicUsize>,
    results: Results,
    answered: Vec<(Task, Done)>,
}

impl LentPipe {
    pub(crate) fn fd(&self) -> std::os::fd::RawFd {
        self.results.out.as_raw_fd()
    }

    /// Whether the worker had tasks in flight when last looked at: a read between
    /// connections is worth it only then.
    pub(crate) fn awaited(&self) -> bool {
        self.awaited.load(Relaxed) > 0
    }

    /// Reads every result the pipe holds now and answers them. `Err` with the reason
    /// once the pipe is over: give it back then.
    pub(crate) fn drain(&mut self, rec: &Recorder) -> Result<(), String> {
        loop {
            let got = self.results.read_some();
            let sh = &*self.sh;
            if self.results.buffered() {
                let desync = {
                    let mut st = sh.lock();
                    take_results(sh, &mut st, self.i, &mut self.results, &mut self.answered)
                };
                for (task, done) in self.answered.drain(..) {
                    task.answer(done, &sh.metrics, rec);
                }
                if let Some(seq) = desync {
                    return Err(format!("answered task {seq} out of order"));
                }
            }
            match got {
                Ok(Got::Full) => {}
                Ok(Got::Short | Got::Nothing) => return Ok(()),
                Ok(Got::End) => return Err("closed its output".to_string()),
                Err(e) => return Err(format!("could not be read: {e}")),
            }
        }
    }

    /// Hands the pipe back to its supervisor: `why` it is over, or `None` if it is
    /// still open (the loop is ending).
    pub(crate) fn give_back(self, why: Option<String>) {
        let LentPipe { sh, i, results, .. } = self;
        let ret = match why {
            Some(why) => Return::Closed(why),
            None => Return::Open(results),
        };
        sh.lock().slots[i].returned = Some(ret);
        sh.returned.notify_all();
    }
}

/// What one read of a result pipe got.
enum Got {
    /// As much as the buffer had room for: there may be more.
    Full,
    /// Less: the pipe was empty when it returned. A result written after that makes
    /// the pipe readable anew, so the loop hears of it without reading again now.
    Short,
    /// Nothing (a non-blocking pipe, empty).
    Nothing,
    /// The end of the stream: the worker is gone.
    End,
}

enum Filled {
    Records,
    Eof,
    TimedOut,
}

/// `poll(2)` for input (or hang-up) on `fd`, up to `timeout`.
fn readable_within(fd: &impl AsRawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Rounded up, so a wait never ends just before its deadline.
    let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd that lives across the call.
        match unsafe { libc::poll(&mut pfd, 1, ms) } {
            -1 => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
            0 => return Ok(false),
            _ => return Ok(true),
        }
    }
}

/// Reads fixed-size result records from a worker's stdout.
struct Results {
    out: ChildStdout,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
}

impl Results {
    fn new(out: ChildStdout) -> Results {
        Results {
            out,
            buf: vec![0; RESULT_LEN * 256].into_boxed_slice(),
            start: 0,
            end: 0,
        }
    }

    /// Waits until at least one whole record is buffered, the stream ends, or
    /// `timeout` passes.
    fn fill(&mut self, timeout: Duration) -> io::Result<Filled> {
        let deadline = Instant::now() + timeout;
        while !self.buffered() {
            let left = deadline.saturating_duration_since(Instant::now());
            if !readable_within(&self.out, left)? {
                return Ok(Filled::TimedOut);
            }
            // Readable, so this read does not block; a pipe that was lent is
            // non-blocking, and nothing read just means poll again.
            if let Got::End = self.read_some()? {
                return Ok(Filled::Eof);
            }
        }
        Ok(Filled::Records)
    }

    /// True if a whole record is buffered.
    fn buffered(&self) -> bool {
        self.end - self.start >= RESULT_LEN
    }

    /// One read into the buffer, after what is left of a record is moved to its front
    /// (it blocks only on a blocking pipe with nothing in it).
    fn read_some(&mut self) -> io::Result<Got> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.out.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(Got::End),
                Ok(n) => {
                    let room = self.buf.len() - self.end;
                    self.end += n;
                    return Ok(if n < room { Got::Short } else { Got::Full });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Got::Nothing),
                Err(e) => return Err(e),
            }
        }
    }

    fn next(&mut self) -> Option<(u64, Done)> {
        self.buffered().then(|| {
            let rec = decode_result(&self.buf[self.start..self.start + RESULT_LEN]);
            self.start += RESULT_LEN;
            rec
        })
    }
}

/// The supervisor of worker slot `i`: answers its results, tops it up from the
/// backlog, and replaces it when it dies. Returns once the pool is closed and idle.
fn supervise(sh: &Arc<Shared>, i: usize, mut child: Child) {
    let mut answered: Vec<(Task, Done)> = Vec::new();
    let rec = sh.metrics.stages.recorder();
    loop {
        let results = Results::new(child.stdout.take().expect("worker stdout is piped"));
        let (why, timed_out) = match lend(sh, i, results) {
            Ok((why, timed_out)) => (why, timed_out),
            Err(mut results) => serve_worker(sh, i, &mut results, &mut answered, &rec),
        };

        // The worker is gone or unusable: reap it, fail its current task, replace it.
        let mut st = sh.lock();
        let stopping = st.slots[i].stdin.is_none() && st.closing;
        st.slots[i].stdin = None;
        let pid = std::mem::replace(&mut st.slots[i].pid, 0);
        let failed = st.slots[i].inflight.pop_front();
        drop(st);
        let _ = child.kill();
        let status = child.wait();
        if let Some((_, task)) = failed {
            let message = if timed_out {
                format!(
                    "worker process {pid} did not finish this request within --task-timeout {:?}; it was killed and replaced",
                    sh.task_timeout
                )
            } else {
                format!(
                    "worker process {pid} {} while computing this request",
                    describe_exit(&status)
                )
            };
            eprintln!("threadcenter server: {message}; starting a replacement");
            task.fail(&sh.metrics, ErrorCode::WorkerFailed, &message);
        } else if !stopping {
            eprintln!(
                "threadcenter server: worker process {pid} {} ({why}); starting a replacement",
                describe_exit(&status)
            );
        }
        {
            let st = sh.lock();
            if st.closing && st.slots[i].inflight.is_empty() && st.backlog.is_empty() {
                return;
            }
        }
        child = match respawn(sh, i) {
            Some(child) => child,
            None => return,
        };
    }
}

/// Lends worker `i`'s result pipe to its event loop, if there are loops, and waits for
/// it to come back, killing the worker past `--task-timeout` meanwhile (the loop then
/// sees the pipe end). Returns why the pipe is over and whether that was the task
/// timeout, or the pipe, if no loop takes it or it came back open: the caller reads
/// it itself.
fn lend(sh: &Arc<Shared>, i: usize, results: Results) -> Result<(String, bool), Results> {
    if sh.hosts.is_empty() {
        return Err(results);
    }
    // SAFETY: fcntl(2) on a descriptor this pipe owns; the loop must never block on it.
    unsafe {
        let fd = results.out.as_raw_fd();
        let flags = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK);
    }
    let awaited = Arc::clone(&sh.lock().slots[i].awaited);
    let pipe = LentPipe {
        sh: Arc::clone(sh),
        i,
        awaited,
        results,
        answered: Vec::new(),
    };
    if let Err(pipe) = sh.hosts[i % sh.hosts.len()].lend(pipe) {
        return Err(pipe.results);
    }
    let mut killed = false;
    let mut st = sh.lock();
    loop {
        match st.slots[i].returned.take() {
            Some(Return::Open(results)) => return Err(results),
            Some(Return::Closed(why)) if killed => {
                return Ok((
                    format!("exceeded --task-timeout {:?} ({why})", sh.task_timeout),
                    true,
                ))
            }
            Some(Return::Closed(why)) => return Ok((why, false)),
            None => {}
        }
        let wait = sh.result_wait_locked(&st, i);
        if wait.is_zero() && !killed {
            // Its pipe then ends, and the loop gives it back.
            st.slots[i].kill();
            killed = true;
            continue;
        }
        let wait = if killed { Duration::from_secs(1) } else { wait };
        st = sync::wait_timeout_while(&sh.returned, st, wait, |st| st.slots[i].returned.is_none());
    }
}

/// Matches the records buffered in `results` with worker `i`'s tasks in flight (under
/// the lock `st`), moving each answered task to `answered` (to be answered once the
/// lock is let go), and tops the worker up. Returns the sequence number of a record
/// that matched no task in order, if one did.
fn take_results(
    sh: &Shared,
    st: &mut State,
    i: usize,
    results: &mut Results,
    answered: &mut Vec<(Task, Done)>,
) -> Option<u64> {
    let mut desync = None;
    while let Some((seq, done)) = results.next() {
        match st.slots[i].inflight.pop_front() {
            Some((want, task)) if want == seq => {
                let slot = &mut st.slots[i];
                slot.tasks += 1;
                slot.busy_ns += done.end_ns.saturating_sub(done.start_ns);
                answered.push((task, done));
            }
            other => {
                if let Some(entry) = other {
                    st.slots[i].inflight.push_front(entry);
                }
                desync = Some(seq);
                break;
            }
        }
    }
    // The worker went on to its next task when it wrote the last result: that task
    // (or the next one written to an idle worker) has a whole timeout.
    st.slots[i].head_since = Instant::now();
    st.slots[i]
        .awaited
        .store(st.slots[i].inflight.len(), Relaxed);
    if st.top_up(i) {
        st.waiters.room(&sh.not_full);
    }
    if st.closing && st.all_done() {
        for slot in &mut st.slots {
            slot.stdin = None;
        }
    }
    desync
}

/// Serves worker `i` through `results` until it fails: hands each result to its task,
/// in order. Returns why it stopped, and whether that was the task timeout.
fn serve_worker(
    sh: &Shared,
    i: usize,
    results: &mut Results,
    answered: &mut Vec<(Task, Done)>,
    rec: &crate::server::stages::Recorder,
) -> (String, bool) {
    let mut wait = sh.result_wait(i);
    loop {
        if wait.is_zero() {
            return (
                format!("exceeded --task-timeout {:?}", sh.task_timeout),
                true,
            );
        }
        match results.fill(wait) {
            Ok(Filled::Records) => {}
            Ok(Filled::TimedOut) => {
                // A task may have been written meanwhile: its deadline counts now.
                wait = sh.result_wait(i);
                continue;
            }
            Ok(Filled::Eof) => return ("closed its output".to_string(), false),
            Err(e) => return (format!("could not be read: {e}"), false),
        }
        let mut st = sh.lock();
        let desync = take_results(sh, &mut st, i, results, answered);
        wait = sh.task_timeout;
        drop(st);
        for (task, done) in answered.drain(..) {
            task.answer(done, &sh.metrics, rec);
        }
        if let Some(seq) = desync {
            return (format!("answered task {seq} out of order"), false);
        }
    }
}

/// Starts a replacement for slot `i`, retrying with backoff. While it cannot, the
/// slot's queued tasks are answered WORKER_FAILED rather than left waiting.
fn respawn(sh: &Shared, i: usize) -> Option<Child> {
    let mut backoff = Duration::from_millis(20);
    for attempt in 1.. {
        match sh.spawn_worker() {
            Ok(mut child) => {
                let mut st = sh.lock();
                let slot = &mut st.slots[i];
                slot.stdin = child.stdin.take();
                slot.pid = child.id();
                slot.restarts += 1;
                st.resend(i);
                // The backlog may have waited for this worker alone.
                if st.top_up(i) {
                    st.waiters.room(&sh.not_full);
                }
                return Some(child);
            }
            Err(e) => {
                eprintln!("threadcenter server: {e} (attempt {attempt}); retrying in {backoff:?}");
                let stranded: Vec<Task> = {
                    let mut st = sh.lock();
                    if st.closing && st.slots[i].inflight.is_empty() && st.backlog.is_empty() {
                        return None;
                    }
                    if attempt >= 3 {
                        st.slots[i].inflight.drain(..).map(|(_, t)| t).collect()
                    } else {
                        Vec::new()
                    }
                };
                for task in stranded {
                    task.fail(
                        &sh.metrics,
                        ErrorCode::WorkerFailed,
                        &format!("no worker process can be started: {e}"),
                    );
                }
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    None
}

fn describe_exit(status: &io::Result<ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(code), _) => format!("exited with status {code}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => format!("ended ({s})"),
        },
        Err(e) => format!("could not be waited for ({e})"),
    }
}
