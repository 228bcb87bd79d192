//! The load engine: `--threads` event-loop threads share the `--concurrency` connections
//! (connection i belongs to thread i mod T, as wrk spreads -c over -t), each thread an
//! epoll loop (mio) over its non-blocking connections, with the results of all of them
//! in one [`Tally`] of its own, merged once at the end.
//!
//! One engine, two pacing policies (`pacing.rs`): the closed loop sends a connection's
//! next request when its answer is in; the open loop sends on a schedule. Per connection:
//!
//! - every request that is due goes into its output buffer, as long as fewer than the
//!   pipeline depth are in flight (1 in the closed loop), and is written at once; what
//!   the socket does not take is written when it says it is writable;
//! - answers are read when the socket says readable, cut into frames in place and
//!   matched by id against the connection's in-flight table (`book.rs`);
//! - a timeout, a broken or confused connection abandons it: every request in flight
//!   on it counts under the failure that ended it, and it reconnects (non-blocking, with
//!   the closed loop's backoff as a timer, so no connection holds up the others). Once
//!   the server has answered SHUTTING_DOWN, a connection that ends means the server is
//!   going away: the connection stops and what it still planned counts as `server_gone`.
//!
//! Each connection keeps one timer, the earliest of: its next due send, its earliest
//! request deadline, the end of a back-off, a connect's deadline. A thread sleeps until
//! the earliest timer of its connections or an event. An open-loop due time is kept
//! precisely: the thread waits in ppoll(2) on the epoll descriptor with 1 ns of timer
//! slack (epoll_wait itself counts in milliseconds) and spins (yielding) through the
//! last [`SPIN`], so sends leave within microseconds of their due time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use mio::{Events, Poll, Registry, Token};

use super::book::{Book, Tally, Unsent};
use super::intervals::{self, IntervalRecorder};
use super::link::{Fill, Link, State};
use super::load::{
    backoff, run_threads, Outcome, Shared, MAX_CONNECT_ATTEMPTS, MAX_RESPONSE_FRAME,
};
use super::pacing::Pacer;
use super::report::{ClientCpu, OpenReport, Report, LATE_THRESHOLD};
use super::{LoadModel, Mode};
use crate::protocol::frame::FrameError;
use crate::protocol::message::encode_request_with_id;

/// The last stretch before a due time is spun through rather than slept.
pub(super) const SPIN: Duration = Duration::from_micros(50);
/// Longest single sleep, so a thread looks at its state now and then.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Events taken from epoll at a time.
const EVENTS: usize = 1024;
/// An event-loop thread busier than this (not waiting) draws a warning.
const BUSY_WARNING: f64 = 0.9;
/// Sends late by the client's own doing, as a share of all sends, that draw a warning
/// (and at least [`OWN_LATE_MIN`] of them, so a few hiccups in a short run do not).
const OWN_LATE_WARNING: f64 = 0.01;
const OWN_LATE_MIN: u64 = 10;
/// Descriptors the process needs besides its connections (stdio, epoll, files).
const SPARE_FILES: u64 = 64;

/// Runs the load of `shared.config` on its event-loop threads and merges what they
/// measured.
pub(super) fn run(shared: Arc<Shared>) -> anyhow::Result<Report> {
    let config = shared.config.clone();
    let cpu_before = ClientCpu::now();
    let run = run_threads(&shared, |thread, s| EventLoop::run_thread(&s, thread))?;

    let open = matches!(config.model, LoadModel::Open { .. });
    let (total, thread_intervals, busy) = merge_threads(run.threads, open)?;
    let cpu = cpu_before.until_now();
    // With --duration the window lasts until its end even when the last answer came
    // just before it and the next request was not sent (the end had passed): the
    // connections were there and ready for the whole of it. A run that stopped early
    // (the server went away) ends when its threads did.
    let window_end = match config.mode {
        Mode::Duration(d) => Some((run.measure_from + d).min(run.joined)),
        _ => None,
    };
    let elapsed = total.last_done.map_or(Duration::ZERO, |t| {
        t.max(window_end.unwrap_or(t))
            .saturating_duration_since(run.measure_from)
    });
    let intervals = if config.intervals {
        Some(intervals::merge(thread_intervals, elapsed, open)?)
    } else {
        None
    };
    let busy_max = busy.iter().copied().fold(0.0, f64::max);
    let busy_mean = if busy.is_empty() {
        0.0
    } else {
        busy.iter().sum::<f64>() / busy.len() as f64
    };
    let open = match config.model {
        LoadModel::Closed => None,
        LoadModel::Open { rate, pipeline } => {
            let send_window = match (total.first_due, total.last_send) {
                (Some(first), Some(last)) => {
                    last.saturating_duration_since(first) + Duration::from_secs_f64(1.0 / rate)
                }
                _ => Duration::ZERO,
            };
            Some(OpenReport {
                rate,
                pipeline,
                sent: total.sent,
                send_window,
                uncorrected: total.uncorrected,
                lateness: total.lateness,
                late: total.late,
                late_own: total.late_own,
                busy_max,
                busy_mean,
            })
        }
    };
    let warnings = open.as_ref().map_or_else(Vec::new, |o| warnings(o, &cpu));
    Ok(Report {
        config,
        addr: shared.addr,
        ok: total.ok,
        failures: total.failures,
        elapsed,
        histogram: total.corrected,
        first_errors: total.first_errors,
        measure_start: run.measure_start,
        intervals,
        open,
        cpu,
        warnings,
    })
}

/// Merges what each event-loop thread measured: counts, histograms, interval logs,
/// and each thread's busy share.
fn merge_threads(
    threads: Vec<anyhow::Result<Tally>>,
    open: bool,
) -> anyhow::Result<(Tally, Vec<Vec<intervals::EncodedInterval>>, Vec<f64>)> {
    let mut total = Tally::new(open);
    let mut thread_intervals = Vec::new();
    let mut busy = Vec::new();
    for t in threads {
        let t = t?;
        busy.push(t.busy());
        thread_intervals.extend(t.intervals.map(IntervalRecorder::finish));
        total.ok += t.ok;
        total.failures.merge(&t.failures);
        for (kind, message) in t.first_errors {
            total.first_errors.entry(kind).or_insert(message);
        }
        for (into, from) in [
            (&mut total.corrected, &t.corrected),
            (&mut total.uncorrected, &t.uncorrected),
            (&mut total.lateness, &t.lateness),
        ] {
            into.add(from)
                .map_err(|e| anyhow!("cannot merge latency histograms: {e:?}"))?;
        }
        total.sent += t.sent;
        total.late += t.late;
        total.late_own += t.late_own;
        total.last_done = total.last_done.max(t.last_done);
        total.last_send = total.last_send.max(t.last_send);
        total.first_due = match (total.first_due, t.first_due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    Ok((total, thread_intervals, busy))
}

/// Says when the client, not the server, may have set the figures.
fn warnings(open: &OpenReport, cpu: &ClientCpu) -> Vec<String> {
    let mut out = Vec::new();
    if open.busy_max >= BUSY_WARNING {
        out.push(format!(
            "the client could not keep up: an event-loop thread was busy {:.0}% of the run (not waiting for its schedule or for the server; the client used {:.2} cores of {}); raise --threads, or run the client on another machine",
            open.busy_max * 100.0,
            cpu.cores_used(),
            crate::machine::available_cores()
        ));
    }
    if open.late_own >= OWN_LATE_MIN && open.late_own as f64 >= OWN_LATE_WARNING * open.sent as f64
    {
        out.push(format!(
            "the client fell behind its schedule: {} of {} sends ({:.1}%) left at least {} late while their connection was up and had room in its pipeline, so the server was not holding them back",
            open.late_own,
            open.sent,
            open.late_own as f64 * 100.0 / open.sent as f64,
            crate::human::duration(LATE_THRESHOLD)
        ));
    }
    out
}

/// Raises the soft open-file limit to the hard one when `connections` need more than
/// the soft limit allows; a clear error when even the hard limit is too low.
pub(super) fn ensure_open_files(connections: u64) -> anyhow::Result<()> {
    let need = connections + SPARE_FILES;
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit fill or read a struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 || lim.rlim_cur >= need {
        return Ok(());
    }
    if lim.rlim_max < need {
        bail!(
            "--concurrency {connections} needs about {need} open files, and this process may open at most {} (ulimit -Hn): lower --concurrency or raise the limit",
            lim.rlim_max
        );
    }
    lim.rlim_cur = lim.rlim_max;
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        bail!(
            "--concurrency {connections} needs about {need} open files and the limit could not be raised: {}",
            io::Error::last_os_error()
        );
    }
    Ok(())
}

/// Asks the kernel to wake this thread's timed sleeps within 1 ns of their deadline
/// rather than the default 50 µs of slack.
fn set_fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer and affects only the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

/// What a connection's step needs of its thread.
struct Cx<'a> {
    shared: &'a Shared,
    registry: &'a Registry,
    tally: &'a mut Tally,
}

/// One connection of a thread.
struct Conn {
    link: Option<Link>,
    /// No reconnect before this (the backoff after losses in a row).
    retry_at: Option<Instant>,
    /// Encoded requests; bytes before `out_pos` are written.
    out: Vec<u8>,
    out_pos: usize,
    /// (end offset in `out`, slot) of the requests not wholly written yet.
    unsent: VecDeque<(usize, usize)>,
    book: Book,
    pacer: Pacer,
    connects_failed: u32,
    /// The server went away (SHUTTING_DOWN, then the connection ended): no reconnect.
    gone: bool,
    /// ... and nothing was in flight then: the request the closed loop was about to
    /// send would have met the close, and counts as `server_gone`.
    gone_idle: bool,
    /// Nothing more to send or wait for.
    done: bool,
    /// The timer this connection has in its thread's heap, and whether it is a due time.
    armed: Option<Instant>,
    armed_precise: bool,
}

impl Conn {
    /// Does what the connection can do now: finish a connect, read and settle answers,
    /// send what is due, reconnect, or give up.
    fn step(&mut self, cx: &mut Cx<'_>, token: usize) {
        if self.done {
            return;
        }
        let shared = cx.shared;
        let cfg = &shared.config;
        let now = Instant::now();
        if self.book.check_at.is_some_and(|t| now >= t) && self.book.timed_out(now, cfg.timeout) {
            self.abandon(Outcome::Timeout, cx, now);
        }
        let Some(link) = self.link.as_mut() else {
            self.reconnect(cx, token, now);
            return;
        };
        if link.state != State::Ready {
            match link.progress() {
                Ok(true) => {
                    self.connects_failed = 0;
                    self.book.room_at = now;
                }
                Ok(false) if now >= link.deadline => {
                    let e = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!(
                            "no connection within {}",
                            crate::human::duration(cfg.timeout)
                        ),
                    );
                    return self.connect_failed(cx, e, now);
                }
                Ok(false) => return,
                Err(e) => return self.connect_failed(cx, e, now),
            }
        }
        self.read_answers(cx);
        if self.link.is_none() {
            return;
        }
        let now = Instant::now();
        self.queue_due(cx, now);
        if let Err(e) = self.flush(cx) {
            return self.abandon(Outcome::Io(format!("sending: {e}")), cx, now);
        }
        if self.book.in_flight == 0 && self.pacer.exhausted(now) {
            self.finish(cx);
        }
    }

    /// Starts a connect, unless the connection is to wait, stop or give up.
    fn reconnect(&mut self, cx: &mut Cx<'_>, token: usize, now: Instant) {
        if self.gone {
            let n = self.pacer.give_up(now, self.gone_idle);
            cx.tally.unsent(Unsent::ServerGone, n, now, || {
                "the server went away; these requests were never sent".to_string()
            });
            return self.finish(cx);
        }
        if self.pacer.exhausted(now) {
            return self.finish(cx);
        }
        if self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        self.retry_at = None;
        let s = cx.shared;
        let deadline = now + s.config.timeout;
        match Link::connect(
            s.addr,
            cx.registry,
            Token(token),
            s.tls.as_ref(),
            deadline,
            MAX_RESPONSE_FRAME,
        ) {
            Ok(link) => self.link = Some(link),
            Err(e) => self.connect_failed(cx, e, now),
        }
    }

    /// A connect (or TLS handshake) failed: counts the request it cost, and gives up
    /// after [`MAX_CONNECT_ATTEMPTS`] in a row, or at once if the server is going away.
    fn connect_failed(&mut self, cx: &mut Cx<'_>, e: io::Error, now: Instant) {
        if let Some(link) = self.link.take() {
            link.close(cx.registry);
        }
        let addr = cx.shared.addr;
        if cx.shared.going_away() {
            let n = self.pacer.give_up(now, true);
            cx.tally.unsent(Unsent::ServerGone, n, now, || {
                format!("the server answered SHUTTING_DOWN, then refused a new connection ({addr}: {e})")
            });
            return self.finish(cx);
        }
        self.book.lost_in_row += 1;
        self.connects_failed += 1;
        if self.pacer.skip_one(now) {
            cx.tally
                .unsent(Unsent::Connect, 1, now, || format!("{addr}: {e}"));
        }
        if self.connects_failed >= MAX_CONNECT_ATTEMPTS {
            // The server is gone: the requests still planned cannot be sent.
            let n = self.pacer.give_up(now, false);
            cx.tally
                .unsent(Unsent::Connect, n, now, || format!("{addr}: {e}"));
            return self.finish(cx);
        }
        self.retry_at = self.backoff_from(now);
    }

    fn backoff_from(&self, now: Instant) -> Option<Instant> {
        (self.book.lost_in_row >= 2).then(|| now + backoff(self.book.lost_in_row))
    }

    /// Gives the connection up: what is in flight on it fails with `outcome`, or as
    /// `server_gone` if it ended after the server said SHUTTING_DOWN.
    fn abandon(&mut self, outcome: Outcome<'_>, cx: &mut Cx<'_>, now: Instant) {
        let outcome = if self.book.told_shutting_down || cx.shared.going_away() {
            outcome.after_shutting_down()
        } else {
            outcome
        };
        if matches!(outcome, Outcome::ServerGone(_)) && !self.gone {
            self.gone = true;
            self.gone_idle = self.book.in_flight == 0;
        }
        self.book.told_shutting_down = false;
        self.book
            .abandon_all(&outcome, now, &cx.shared.config, cx.tally);
        self.pacer.answered(false, now);
        if let Some(link) = self.link.take() {
            link.close(cx.registry);
        }
        self.out.clear();
        self.out_pos = 0;
        self.unsent.clear();
        self.retry_at = self.backoff_from(now);
    }

    fn finish(&mut self, cx: &mut Cx<'_>) {
        if let Some(link) = self.link.take() {
            link.close(cx.registry);
        }
        self.done = true;
    }

    /// Reads and settles every answer that has arrived.
    fn read_answers(&mut self, cx: &mut Cx<'_>) {
        let shared = cx.shared;
        let cfg = &shared.config;
        loop {
            let Some(link) = self.link.as_mut() else {
                return;
            };
            match link.next_frame() {
                Ok(Some(range)) => {
                    let now = Instant::now();
                    let settled =
                        self.book
                            .settle(link.payload(range), now, shared.expected, cfg, cx.tally);
                    if self.book.told_shutting_down {
                        shared.told_shutting_down();
                    }
                    self.pacer.answered(settled.shutting_down, now);
                    if let Some(outcome) = settled.lose {
                        return self.abandon(outcome, cx, now);
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    return self.abandon(Outcome::Malformed(e.to_string()), cx, Instant::now())
                }
            }
            if !link.readable {
                return;
            }
            let lose = match link.fill() {
                Ok(Fill::Data) => continue,
                Ok(Fill::Blocked) => return,
                Ok(Fill::Eof) => match link.partial() {
                    None => Outcome::Io("the server closed the connection".to_string()),
                    Some((got, want)) => {
                        Outcome::Io(FrameError::Truncated { got, want }.to_string())
                    }
                },
                Err(e) => Outcome::Io(e.to_string()),
            };
            return self.abandon(lose, cx, Instant::now());
        }
    }

    /// Puts every request that is due (and fits in the pipeline) in the output buffer.
    fn queue_due(&mut self, cx: &mut Cx<'_>, now: Instant) {
        if self.out_pos > 0 {
            // Drop what is written; keep the offsets of the rest right.
            self.out.drain(..self.out_pos);
            for (end, _) in &mut self.unsent {
                *end -= self.out_pos;
            }
            self.out_pos = 0;
        }
        let timeout = cx.shared.config.timeout;
        while self.book.in_flight < self.book.pipeline {
            let Some((due, measured)) = self.pacer.take(now) else {
                break;
            };
            let (slot, wire_id) = self.book.put(due, measured, now, timeout, cx.tally);
            encode_request_with_id(&mut self.out, wire_id.as_bytes(), &cx.shared.command);
            self.unsent.push_back((self.out.len(), slot));
        }
    }

    /// Writes what the connection takes now; marks the requests wholly written as sent.
    fn flush(&mut self, cx: &mut Cx<'_>) -> io::Result<()> {
        let Some(link) = self.link.as_mut() else {
            return Ok(());
        };
        link.flush()?;
        while self.out_pos < self.out.len() {
            match link.write(&self.out[self.out_pos..])? {
                0 => break,
                n => self.out_pos += n,
            }
        }
        if self.unsent.is_empty() {
            return Ok(());
        }
        let now = Instant::now();
        while let Some(&(end, slot)) = self.unsent.front() {
            if end > self.out_pos {
                break;
            }
            self.unsent.pop_front();
            self.book.mark_sent(slot, now, cx.tally);
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        Ok(())
    }

    /// When this connection next needs a step without an event, and whether that time
    /// is a due send to keep precisely.
    fn wake(&self, now: Instant) -> Option<(Instant, bool)> {
        if self.done {
            return None;
        }
        let link = match &self.link {
            None => return Some((self.retry_at.unwrap_or(now), false)),
            Some(l) if l.state != State::Ready => return Some((l.deadline, false)),
            Some(l) => l,
        };
        let mut wake = self.book.check_at.map(|t| (t, false));
        let room = self.book.in_flight < self.book.pipeline;
        if room && !link.tls_pending() {
            if let Some((t, precise)) = self.pacer.next_send(now) {
                if wake.is_none_or(|(w, _)| t <= w) {
                    wake = Some((t, precise));
                }
            }
        }
        wake
    }
}

/// One event-loop thread and its connections.
struct EventLoop<'a> {
    shared: &'a Shared,
    poll: Poll,
    events: Events,
    conns: Vec<Conn>,
    /// Global connection index of each of `conns`.
    index: Vec<usize>,
    /// (time, connection): stale entries (not the connection's `armed`) are skipped.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    tally: Tally,
    active: usize,
    /// Scratch lists, kept to avoid allocating per loop.
    due: Vec<usize>,
    ready: Vec<(usize, bool, bool)>,
}

impl<'a> EventLoop<'a> {
    /// Thread `thread`'s whole run: connect its connections, wait at the gate, run.
    fn run_thread(shared: &Shared, thread: usize) -> anyhow::Result<Tally> {
        let built = EventLoop::new(shared, thread);
        let mut ev = match built {
            Ok(ev) => ev,
            Err(e) => {
                // Arrive all the same, so the other threads are not held at the gate.
                let _ = shared.gate.arrive();
                bail!("client thread {thread}: {e}");
            }
        };
        ev.connect_all();
        let Some(start) = shared.gate.arrive() else {
            return Ok(ev.tally);
        };
        ev.run(start)
            .map_err(|e| anyhow!("client thread {thread}: waiting for events: {e}"))?;
        Ok(ev.tally)
    }

    fn new(shared: &'a Shared, thread: usize) -> io::Result<EventLoop<'a>> {
        let cfg = &shared.config;
        let pipeline = match cfg.model {
            LoadModel::Closed => 1,
            LoadModel::Open { pipeline, .. } => pipeline,
        };
        let now = Instant::now();
        let index: Vec<usize> = (thread..cfg.concurrency).step_by(cfg.threads).collect();
        let conns = index
            .iter()
            .map(|&i| Conn {
                link: None,
                retry_at: None,
                out: Vec::new(),
                out_pos: 0,
                unsent: VecDeque::new(),
                book: Book::new(pipeline, now, shared.ids.clone(), i),
                pacer: Pacer::new(cfg, i, now),
                connects_failed: 0,
                gone: false,
                gone_idle: false,
                done: false,
                armed: None,
                armed_precise: false,
            })
            .collect::<Vec<_>>();
        Ok(EventLoop {
            shared,
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS),
            active: conns.len(),
            conns,
            index,
            timers: BinaryHeap::new(),
            tally: Tally {
                live: shared
                    .live
                    .as_ref()
                    .map(|_| super::live::LiveLocal::new(now)),
                ..Tally::new(matches!(cfg.model, LoadModel::Open { .. }))
            },
            due: Vec::new(),
            ready: Vec::new(),
        })
    }

    /// Connects every connection of the thread before the run starts; one that fails
    /// is retried, and counted, by the run.
    fn connect_all(&mut self) {
        let s = self.shared;
        let deadline = Instant::now() + s.config.timeout;
        for (token, c) in self.conns.iter_mut().enumerate() {
            c.link = Link::connect(
                s.addr,
                self.poll.registry(),
                Token(token),
                s.tls.as_ref(),
                deadline,
                MAX_RESPONSE_FRAME,
            )
            .ok();
        }
        let pending = |conns: &[Conn]| {
            conns
                .iter()
                .any(|c| c.link.as_ref().is_some_and(|l| l.state != State::Ready))
        };
        while pending(&self.conns) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = deadline.saturating_duration_since(now).min(MAX_WAIT);
            if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    break;
                }
            }
            for event in self.events.iter() {
                let c = &mut self.conns[event.token().0];
                let Some(link) = c.link.as_mut() else {
                    continue;
                };
                link.readable |= event.is_readable() || event.is_read_closed() || event.is_error();
                link.writable |= event.is_writable() || event.is_write_closed() || event.is_error();
                if link.progress().is_err() {
                    if let Some(link) = c.link.take() {
                        link.close(self.poll.registry());
                    }
                }
            }
        }
        for c in &mut self.conns {
            if c.link.as_ref().is_some_and(|l| l.state != State::Ready) {
                if let Some(link) = c.link.take() {
                    link.close(self.poll.registry());
                }
            }
        }
    }

    fn run(&mut self, start: Instant) -> io::Result<()> {
        set_fine_timer_slack();
        let shared = self.shared;
        let cfg = &shared.config;
        if cfg.intervals {
            self.tally.intervals = Some(IntervalRecorder::new(start + cfg.warmup, self.tally.open));
        }
        for (c, &i) in self.conns.iter_mut().zip(&self.index) {
            c.pacer = Pacer::new(cfg, i, start);
            c.book.room_at = start;
        }
        for token in 0..self.conns.len() {
            self.step(token, start);
        }
        while self.active > 0 {
            let now = Instant::now();
            self.due.clear();
            while let Some(&Reverse((t, token))) = self.timers.peek() {
                if t > now {
                    break;
                }
                self.timers.pop();
                let c = &mut self.conns[token];
                if c.armed == Some(t) {
                    c.armed = None;
                    self.due.push(token);
                }
            }
            for k in 0..self.due.len() {
                let token = self.due[k];
                self.step(token, now);
            }
            if self.active == 0 {
                break;
            }
            self.wait()?;
            self.ready.clear();
            for event in self.events.iter() {
                self.ready.push((
                    event.token().0,
                    event.is_readable() || event.is_read_closed() || event.is_error(),
                    event.is_writable() || event.is_write_closed() || event.is_error(),
                ));
            }
            for k in 0..self.ready.len() {
                let (token, readable, writable) = self.ready[k];
                if let Some(link) = self.conns[token].link.as_mut() {
                    link.readable |= readable;
                    link.writable |= writable;
                }
                self.step(token, now);
            }
            self.publish_live(now, false);
        }
        self.publish_live(Instant::now(), true);
        self.tally.wall = start.elapsed();
        Ok(())
    }

    /// On a terminal: hands the live line this thread's counts now and then.
    fn publish_live(&mut self, now: Instant, force: bool) {
        if let (Some(local), Some(live)) = (self.tally.live.as_mut(), self.shared.live.as_ref()) {
            local.publish(live, now, force);
        }
    }

    /// Steps connection `token` and re-arms its timer.
    fn step(&mut self, token: usize, now: Instant) {
        let c = &mut self.conns[token];
        let was_done = c.done;
        let mut cx = Cx {
            shared: self.shared,
            registry: self.poll.registry(),
            tally: &mut self.tally,
        };
        c.step(&mut cx, token);
        if c.done {
            if !was_done {
                self.active -= 1;
            }
            return;
        }
        let Some((t, precise)) = c.wake(now) else {
            return;
        };
        // An earlier timer already armed stays: it fires, the step finds nothing to
        // do and arms the later one. So the heap holds about one entry per connection.
        if c.armed.is_none_or(|a| t < a) {
            c.armed = Some(t);
            c.armed_precise = precise;
            self.timers.push(Reverse((t, token)));
        }
    }

    /// Waits for events or the earliest timer (precisely if it is a due send).
    fn wait(&mut self) -> io::Result<()> {
        let now = Instant::now();
        let next = loop {
            match self.timers.peek() {
                Some(&Reverse((t, token))) if self.conns[token].armed != Some(t) => {
                    self.timers.pop();
                }
                Some(&Reverse((t, token))) => break Some((t, self.conns[token].armed_precise)),
                None => break None,
            }
        };
        let until = next.map_or(now + MAX_WAIT, |(t, _)| t.min(now + MAX_WAIT));
        let precise = next.is_some_and(|(t, p)| p && t == until);
        let remaining = until.saturating_duration_since(now);
        let result = if remaining.is_zero() {
            self.poll.poll(&mut self.events, Some(Duration::ZERO))
        } else if precise && remaining <= SPIN {
            // At high rates the thread may never sleep: take what has come first.
            self.poll.poll(&mut self.events, Some(Duration::ZERO))?;
            if self.events.is_empty() {
                while Instant::now() < until {
                    thread::yield_now();
                }
            }
            Ok(())
        } else if precise {
            let sleep = remaining - SPIN;
            let mut pfd = libc::pollfd {
                fd: self.poll.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ts = libc::timespec {
                tv_sec: sleep.as_secs() as libc::time_t,
                tv_nsec: sleep.subsec_nanos() as libc::c_long,
            };
            // SAFETY: one pollfd we own (the epoll descriptor, readable when it has
            // events), a timespec we own, no signal mask.
            unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
            self.poll.poll(&mut self.events, Some(Duration::ZERO))
        } else {
            self.poll.poll(&mut self.events, Some(remaining))
        };
        self.tally.idle += now.elapsed();
        match result {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                self.events.clear();
                Ok(())
            }
            other => other,
        }
    }
}

/// Threads by default: one per core, never more than there are connections.
pub(super) fn default_threads(connections: usize) -> usize {
    connections.min(crate::machine::available_cores()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_threads_never_exceed_connections() {
        assert_eq!(default_threads(1), 1);
        assert!(default_threads(10_000) >= 1);
        assert!(default_threads(10_000) <= crate::machine::available_cores());
    }

    #[test]
    fn a_loop_with_too_many_files_is_refused_clearly() {
        let err = ensure_open_files(u64::MAX - SPARE_FILES).unwrap_err();
        assert!(err.to_string().contains("ulimit -Hn"), "{err}");
    }
}
