//! The open-loop engine (`--rate`): every connection sends on a fixed schedule whatever
//! the server does, and each answer is timed from when its request was due (corrected
//! for coordinated omission) as well as from when it actually left.
//!
//! The schedule: request j of the run (j = 0, 1, 2, ...) is due at start + j / rate, and
//! connection i of c sends j = i, i + c, i + 2c, ... so the whole run is one evenly spaced
//! stream. One thread per connection drives a non-blocking socket:
//!
//! - it writes every request that is due, as long as fewer than `--pipeline` are in
//!   flight (several in one `write` when it is behind); a request that could not leave on
//!   time leaves as soon as it can and is still timed from when it was due;
//! - it reads whatever answers have arrived and matches them by id (the id encodes the
//!   slot of the in-flight table, so answers may come in any order);
//! - it waits for the next due time in ppoll(2), with the thread's timer slack at 1 ns,
//!   and spins (yielding) through the last [`SPIN`], so sends leave within microseconds
//!   of their due time with no millisecond tick anywhere.
//!
//! When a connection is abandoned (a timeout, a broken or confused connection) every
//! request in flight on it counts under the failure that ended it, and the thread
//! reconnects with the closed loop's backoff; what falls due meanwhile is sent late.
//! Once the server has answered SHUTTING_DOWN, a connection that ends means the server
//! is going away: the thread stops, and the rest of its schedule counts as
//! `server_gone`.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use hdrhistogram::Histogram;

use super::ids::Ids;
use super::intervals::{self, IntervalRecorder};
use super::load::{
    backoff, classify_body, count_failure, duration_ns, note_first, record_ns, run_threads,
    Outcome, Shared, MAX_CONNECT_ATTEMPTS, MAX_RESPONSE_FRAME,
};
use super::report::{ClientCpu, Failures, OpenReport, Report, LATE_THRESHOLD};
use super::{LoadConfig, Mode};
use crate::protocol::frame::FrameError;
use crate::protocol::message::{bounded, encode_request_with_id};
use crate::protocol::{parse_response, FrameReader};

/// The last stretch before a due time is spun through rather than slept.
pub const SPIN: Duration = Duration::from_micros(50);
/// Longest single sleep, so a thread looks at its state now and then.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// A connection thread busier than this (not waiting) draws a warning.
const BUSY_WARNING: f64 = 0.9;
/// Sends late by the client's own doing, as a share of all sends, that draw a warning
/// (and at least [`OWN_LATE_MIN`] of them, so a few hiccups in a short run do not).
const OWN_LATE_WARNING: f64 = 0.01;
const OWN_LATE_MIN: u64 = 10;

/// Runs the open-loop load: `rate` requests per second over `shared.config.concurrency`
/// connections, up to `pipeline` in flight on each.
pub(super) fn run(shared: Arc<Shared>, rate: f64, pipeline: usize) -> anyhow::Result<Report> {
    let config = shared.config.clone();
    let cpu_before = ClientCpu::now();
    let run = run_threads(&shared, move |index, s| {
        Connection::new(&s, index, rate, pipeline).run(&s)
    })?;

    let mut total = Tally::new();
    let mut thread_intervals = Vec::new();
    let mut busy = Vec::new();
    for t in run.threads {
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
    let cpu = cpu_before.until_now();
    let elapsed = total.last_done.map_or(Duration::ZERO, |t| {
        t.saturating_duration_since(run.measure_from)
    });
    let intervals = if config.intervals {
        Some(intervals::merge(thread_intervals, elapsed, true)?)
    } else {
        None
    };
    let send_window = match (total.first_due, total.last_send) {
        (Some(first), Some(last)) => {
            last.saturating_duration_since(first) + Duration::from_secs_f64(1.0 / rate)
        }
        _ => Duration::ZERO,
    };
    let busy_max = busy.iter().copied().fold(0.0, f64::max);
    let busy_mean = if busy.is_empty() {
        0.0
    } else {
        busy.iter().sum::<f64>() / busy.len() as f64
    };
    let open = OpenReport {
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
    };
    let warnings = warnings(&open, &cpu);
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
        open: Some(open),
        cpu,
        warnings,
    })
}

/// Says when the client, not the server, may have set the figures.
fn warnings(open: &OpenReport, cpu: &ClientCpu) -> Vec<String> {
    let mut out = Vec::new();
    if open.busy_max >= BUSY_WARNING {
        out.push(format!(
            "the client could not keep up: a connection thread was busy {:.0}% of the run (not waiting for its schedule or for the server; the client used {:.2} cores of {}); spread the load over more --concurrency, or run the client on another machine",
            open.busy_max * 100.0,
            cpu.cores_used(),
            crate::server::available_cores()
        ));
    }
    if open.late_own >= OWN_LATE_MIN && open.late_own as f64 >= OWN_LATE_WARNING * open.sent as f64
    {
        out.push(format!(
            "the client fell behind its schedule: {} of {} sends ({:.1}%) left at least {} late while their connection was up and had room in its pipeline, so the server was not holding them back",
            open.late_own,
            open.sent,
            open.late_own as f64 * 100.0 / open.sent as f64,
            humantime::format_duration(LATE_THRESHOLD)
        ));
    }
    out
}

/// One thread's results.
struct Tally {
    ok: u64,
    failures: Failures,
    first_errors: BTreeMap<String, String>,
    /// From the intended send time, ns.
    corrected: Histogram<u64>,
    /// From the actual send time, ns.
    uncorrected: Histogram<u64>,
    /// Actual send time minus intended send time, ns.
    lateness: Histogram<u64>,
    sent: u64,
    late: u64,
    late_own: u64,
    last_done: Option<Instant>,
    last_send: Option<Instant>,
    first_due: Option<Instant>,
    intervals: Option<IntervalRecorder>,
    /// Time spent waiting (in ppoll, spinning to a due time, or backing off).
    idle: Duration,
    /// From the gate opening to the thread's end.
    wall: Duration,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            ok: 0,
            failures: Failures::default(),
            first_errors: BTreeMap::new(),
            corrected: crate::hdr::new_latency_histogram(),
            uncorrected: crate::hdr::new_latency_histogram(),
            lateness: crate::hdr::new_latency_histogram(),
            sent: 0,
            late: 0,
            late_own: 0,
            last_done: None,
            last_send: None,
            first_due: None,
            intervals: None,
            idle: Duration::ZERO,
            wall: Duration::ZERO,
        }
    }

    fn busy(&self) -> f64 {
        if self.wall.is_zero() {
            return 0.0;
        }
        (1.0 - self.idle.as_secs_f64() / self.wall.as_secs_f64()).clamp(0.0, 1.0)
    }

    fn fail(&mut self, outcome: Outcome<'_>, at: Instant, cfg: &LoadConfig) {
        count_failure(&mut self.failures, &mut self.first_errors, outcome, cfg);
        self.last_done = self.last_done.max(Some(at));
    }
}

/// A request in flight.
#[derive(Clone, Copy)]
struct Slot {
    id: u64,
    live: bool,
    measured: bool,
    due: Instant,
    /// When it was put in the output buffer (its timeout counts from here).
    queued: Instant,
    /// When its last byte was handed to the kernel.
    sent: Option<Instant>,
}

/// The in-flight table and the results: what answers are settled against.
struct Book {
    pipeline: usize,
    slots: Vec<Slot>,
    free: Vec<usize>,
    in_flight: usize,
    /// Requests queued so far; ids are `seq * pipeline + slot`.
    seq: u64,
    /// When to look for timed-out requests next.
    check_at: Option<Instant>,
    /// When the connection last (re)gained room to send: connected, or a full pipeline
    /// freed a slot. Lateness before this is the server's doing, after it the client's.
    room_at: Instant,
    /// Connections lost or refused in a row.
    lost_in_row: u32,
    /// The run's ids, and this connection's index among them.
    ids: Ids,
    index: usize,
    /// The server answered SHUTTING_DOWN on the current connection.
    told_shutting_down: bool,
    tally: Tally,
}

impl Book {
    /// An empty table of `pipeline` slots for connection `index`, given room at `now`.
    fn new(pipeline: usize, now: Instant, ids: Ids, index: usize) -> Book {
        let empty = Slot {
            id: u64::MAX,
            live: false,
            measured: false,
            due: now,
            queued: now,
            sent: None,
        };
        Book {
            pipeline,
            slots: vec![empty; pipeline],
            free: (0..pipeline).rev().collect(),
            in_flight: 0,
            seq: 0,
            check_at: None,
            room_at: now,
            lost_in_row: 0,
            ids,
            index,
            told_shutting_down: false,
            tally: Tally::new(),
        }
    }

    fn take_slot(&mut self) -> usize {
        self.in_flight += 1;
        self.free.pop().expect("a free slot: in_flight < pipeline")
    }

    fn release(&mut self, slot: usize, now: Instant) {
        if self.in_flight == self.pipeline {
            self.room_at = now;
        }
        self.slots[slot].live = false;
        self.free.push(slot);
        self.in_flight -= 1;
    }

    fn slot_of(&self, id: u64) -> Option<usize> {
        let slot = (id % self.pipeline as u64) as usize;
        let s = &self.slots[slot];
        (s.live && s.id == id).then_some(slot)
    }

    /// Settles one answer; `Some` when the connection must be abandoned, with the
    /// outcome that the other requests in flight on it count under.
    fn settle(
        &mut self,
        payload: &[u8],
        now: Instant,
        expected: Option<u64>,
        cfg: &LoadConfig,
    ) -> Option<Outcome<'static>> {
        let response = match parse_response(payload) {
            Ok(r) => r,
            Err(e) => return Some(Outcome::Malformed(e.0)),
        };
        // Matched by the id's text, whichever JSON type the server echoed it in.
        let slot = response
            .id_text()
            .and_then(|text| self.ids.parse(&text))
            .and_then(|(index, counter)| (index == self.index).then_some(counter))
            .and_then(|counter| self.slot_of(counter));
        let Some(slot) = slot else {
            if response.is_connection_error() {
                // A connection-level refusal: it concerns every request on the connection.
                if let Outcome::ServerError { code, message, .. } =
                    classify_body(response.body, None)
                {
                    return Some(Outcome::ServerError {
                        code: code.into_owned().into(),
                        message: message.into_owned().into(),
                        reconnect: true,
                    });
                }
            }
            return Some(Outcome::Malformed(format!(
                "response id {} matches no request in flight on this connection",
                bounded(response.id)
            )));
        };
        let s = self.slots[slot];
        self.release(slot, now);
        let outcome = classify_body(response.body, expected);
        if outcome.is_shutting_down() {
            self.told_shutting_down = true;
        }
        let lose = outcome
            .loses_connection()
            .then(|| outcome.clone().into_owned());
        if matches!(outcome, Outcome::Ok) {
            self.lost_in_row = 0;
        }
        if s.measured {
            match outcome {
                Outcome::Ok => {
                    let t = &mut self.tally;
                    t.ok += 1;
                    let corrected = duration_ns(now.saturating_duration_since(s.due));
                    let uncorrected =
                        duration_ns(now.saturating_duration_since(s.sent.unwrap_or(s.queued)));
                    record_ns(&mut t.corrected, corrected);
                    record_ns(&mut t.uncorrected, uncorrected);
                    if let Some(iv) = t.intervals.as_mut() {
                        iv.record(now, corrected, Some(uncorrected));
                    }
                    t.last_done = t.last_done.max(Some(now));
                }
                failure => self.tally.fail(failure, now, cfg),
            }
        }
        lose
    }

    /// Counts every request in flight as failed with `outcome` and empties the table.
    fn abandon_all(&mut self, outcome: &Outcome<'_>, now: Instant, cfg: &LoadConfig) {
        for slot in 0..self.slots.len() {
            let s = self.slots[slot];
            if s.live {
                self.slots[slot].live = false;
                if s.measured {
                    self.tally.fail(outcome.clone(), now, cfg);
                }
            }
        }
        self.free = (0..self.pipeline).rev().collect();
        self.in_flight = 0;
        self.check_at = None;
        self.lost_in_row += 1;
    }

    /// A request has left: its lateness is known.
    fn mark_sent(&mut self, slot: usize, now: Instant) {
        let s = &mut self.slots[slot];
        s.sent = Some(now);
        if !s.measured {
            return;
        }
        let lateness = now.saturating_duration_since(s.due);
        let t = &mut self.tally;
        t.sent += 1;
        record_ns(&mut t.lateness, duration_ns(lateness));
        if lateness >= LATE_THRESHOLD {
            t.late += 1;
        }
        t.last_send = t.last_send.max(Some(now));
        t.first_due = Some(t.first_due.map_or(s.due, |f| f.min(s.due)));
    }
}

/// One connection's thread.
struct Connection {
    /// Where this connection's requests sit in the run's schedule.
    index: u64,
    conns: u64,
    ns_per_request: f64,
    start: Instant,
    /// The next request of this connection's schedule, the first measured one, the end.
    next: u64,
    first_measured: u64,
    total: u64,
    link: Option<FrameReader<TcpStream>>,
    /// Encoded requests; bytes before `out_pos` are written.
    out: Vec<u8>,
    out_pos: usize,
    /// (end offset in `out`, slot) of the requests not wholly written yet.
    unsent: VecDeque<(usize, usize)>,
    book: Book,
    connects_failed: u32,
    /// The server went away (SHUTTING_DOWN, then the connection ended): no reconnect.
    gone: bool,
}

/// Nanoseconds from the start of the run to when request `j` of the run is due.
fn due_ns(j: u64, ns_per_request: f64) -> u64 {
    (j as f64 * ns_per_request) as u64
}

/// How many of connection `index`'s requests are due before `t` into the run.
fn due_before(t: Duration, ns_per_request: f64, index: u64, conns: u64) -> u64 {
    let t = duration_ns(t);
    // Requests of the whole run due before t, exactly as `due_ns` rounds.
    let mut all = (t as f64 / ns_per_request).ceil() as u64;
    while all > 0 && due_ns(all - 1, ns_per_request) >= t {
        all -= 1;
    }
    while due_ns(all, ns_per_request) < t {
        all += 1;
    }
    if all > index {
        (all - index).div_ceil(conns)
    } else {
        0
    }
}

impl Connection {
    fn new(shared: &Shared, index: usize, rate: f64, pipeline: usize) -> Connection {
        let cfg = &shared.config;
        let (index, conns) = (index as u64, cfg.concurrency as u64);
        let ns_per_request = 1e9 / rate;
        let warm = due_before(cfg.warmup, ns_per_request, index, conns);
        let total = match cfg.mode {
            Mode::Requests(n) => warm + n,
            Mode::Duration(d) => due_before(cfg.warmup + d, ns_per_request, index, conns),
        };
        let now = Instant::now();
        Connection {
            index,
            conns,
            ns_per_request,
            start: now,
            next: 0,
            first_measured: warm,
            total,
            link: None,
            out: Vec::with_capacity(256),
            out_pos: 0,
            unsent: VecDeque::new(),
            book: Book::new(pipeline, now, shared.ids.clone(), index as usize),
            connects_failed: 0,
            gone: false,
        }
    }

    /// When request `k` of this connection is due.
    fn due(&self, k: u64) -> Instant {
        let j = k * self.conns + self.index;
        self.start + Duration::from_nanos(due_ns(j, self.ns_per_request))
    }

    fn run(mut self, shared: &Shared) -> Tally {
        let cfg = &shared.config;
        // A failed first connect is retried, and counted, by the loop.
        self.link = connect(shared.addr, cfg.timeout).ok();
        let Some(start) = shared.gate.arrive() else {
            return self.book.tally;
        };
        set_fine_timer_slack();
        self.start = start;
        self.book.room_at = start;
        if cfg.intervals {
            self.book.tally.intervals = Some(IntervalRecorder::new(start + cfg.warmup, true));
        }
        loop {
            let now = Instant::now();
            if self.book.check_at.is_some_and(|t| now >= t) {
                self.check_timeouts(now, shared);
            }
            if self.link.is_none() {
                if self.next >= self.total || !self.reconnect(shared) {
                    break;
                }
                continue;
            }
            self.queue_due(shared, now);
            if self.out_pos < self.out.len() {
                if let Err(e) = self.flush() {
                    self.abandon(Outcome::Io(format!("sending: {e}")), shared);
                    continue;
                }
            }
            self.read_answers(shared);
            if self.next >= self.total && self.book.in_flight == 0 {
                break;
            }
            self.wait(shared);
        }
        let t = &mut self.book.tally;
        t.wall = start.elapsed();
        self.book.tally
    }

    /// Puts every request that is due (and fits in the pipeline) in the output buffer.
    fn queue_due(&mut self, shared: &Shared, now: Instant) {
        if self.out_pos > 0 {
            // Drop what is written; keep the offsets of the rest right.
            self.out.drain(..self.out_pos);
            for (end, _) in &mut self.unsent {
                *end -= self.out_pos;
            }
            self.out_pos = 0;
        }
        let timeout = shared.config.timeout;
        while self.next < self.total && self.book.in_flight < self.book.pipeline {
            let due = self.due(self.next);
            if due > now {
                break;
            }
            let measured = self.next >= self.first_measured;
            self.next += 1;
            let b = &mut self.book;
            let slot = b.take_slot();
            let id = b.seq * b.pipeline as u64 + slot as u64;
            b.seq += 1;
            let wire_id = b.ids.json(b.index, id);
            encode_request_with_id(&mut self.out, wire_id.as_bytes(), &shared.command);
            self.unsent.push_back((self.out.len(), slot));
            b.slots[slot] = Slot {
                id,
                live: true,
                measured,
                due,
                queued: now,
                sent: None,
            };
            if measured && now.saturating_duration_since(due.max(b.room_at)) >= LATE_THRESHOLD {
                b.tally.late_own += 1;
            }
            let deadline = now + timeout;
            b.check_at = Some(b.check_at.map_or(deadline, |c| c.min(deadline)));
        }
    }

    /// Writes what the socket takes now; marks the requests wholly written as sent.
    fn flush(&mut self) -> io::Result<()> {
        let Some(reader) = self.link.as_ref() else {
            return Ok(());
        };
        let mut stream = reader.get_ref();
        while self.out_pos < self.out.len() {
            match stream.write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let now = Instant::now();
        while let Some(&(end, slot)) = self.unsent.front() {
            if end > self.out_pos {
                break;
            }
            self.unsent.pop_front();
            self.book.mark_sent(slot, now);
        }
        if self.out_pos == self.out.len() {
            self.out.clear();
            self.out_pos = 0;
        }
        Ok(())
    }

    /// Reads and settles every answer that has arrived.
    fn read_answers(&mut self, shared: &Shared) {
        let cfg = &shared.config;
        loop {
            let Some(reader) = self.link.as_mut() else {
                return;
            };
            let lose = match reader.next_frame() {
                Ok(Some(payload)) => {
                    let now = Instant::now();
                    let settled = self.book.settle(payload, now, shared.expected, cfg);
                    if self.book.told_shutting_down {
                        shared.told_shutting_down();
                    }
                    match settled {
                        None => continue,
                        Some(outcome) => outcome,
                    }
                }
                Ok(None) => Outcome::Io("the server closed the connection".to_string()),
                Err(e) if e.is_timeout() => return,
                Err(e @ FrameError::TooLarge { .. }) => Outcome::Malformed(e.to_string()),
                Err(e) => Outcome::Io(e.to_string()),
            };
            self.abandon(lose, shared);
            return;
        }
    }

    /// Gives the connection up: what is in flight on it fails with `outcome`, or as
    /// `server_gone` if it ended after the server said SHUTTING_DOWN.
    fn abandon(&mut self, outcome: Outcome<'_>, shared: &Shared) {
        let outcome = if self.book.told_shutting_down || shared.going_away() {
            outcome.after_shutting_down()
        } else {
            outcome
        };
        self.gone |= matches!(outcome, Outcome::ServerGone(_));
        self.book.told_shutting_down = false;
        self.book
            .abandon_all(&outcome, Instant::now(), &shared.config);
        self.link = None;
        self.out.clear();
        self.out_pos = 0;
        self.unsent.clear();
    }

    fn check_timeouts(&mut self, now: Instant, shared: &Shared) {
        let mut earliest: Option<Instant> = None;
        for s in self.book.slots.iter().filter(|s| s.live) {
            let deadline = s.queued + shared.config.timeout;
            if deadline <= now {
                self.abandon(Outcome::Timeout, shared);
                return;
            }
            earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
        }
        self.book.check_at = earliest;
    }

    /// Connects again after a loss, with the closed loop's backoff. False once the
    /// server is given up on: the rest of the schedule then counts as connect failures,
    /// or as `server_gone` once the server has said SHUTTING_DOWN.
    fn reconnect(&mut self, shared: &Shared) -> bool {
        let cfg = &shared.config;
        if self.gone {
            self.give_up_gone(Instant::now(), || {
                "the server went away; these requests were never sent".to_string()
            });
            return false;
        }
        if self.book.lost_in_row >= 2 {
            let pause = backoff(self.book.lost_in_row);
            thread::sleep(pause);
            self.book.tally.idle += pause;
        }
        match connect(shared.addr, cfg.timeout) {
            Ok(c) => {
                self.link = Some(c);
                self.connects_failed = 0;
                self.book.room_at = Instant::now();
                true
            }
            Err(e) if shared.going_away() => {
                self.give_up_gone(Instant::now(), || {
                    format!(
                        "the server answered SHUTTING_DOWN, then refused a new connection ({}: {e})",
                        shared.addr
                    )
                });
                false
            }
            Err(e) => {
                self.book.lost_in_row += 1;
                self.connects_failed += 1;
                let now = Instant::now();
                let message = || format!("{}: {e}", shared.addr);
                // The request due now cannot be sent.
                if self.next < self.total && self.due(self.next) <= now {
                    if self.next >= self.first_measured {
                        self.count_connect_failures(1, now, message);
                    }
                    self.next += 1;
                }
                if self.connects_failed >= MAX_CONNECT_ATTEMPTS {
                    let left = self.total - self.next.max(self.first_measured).min(self.total);
                    if left > 0 {
                        self.count_connect_failures(left, now, message);
                    }
                    self.next = self.total;
                    return false;
                }
                true
            }
        }
    }

    /// The server has gone: the rest of the measured schedule counts as `server_gone`.
    fn give_up_gone(&mut self, now: Instant, message: impl FnOnce() -> String) {
        let left = self.total - self.next.max(self.first_measured).min(self.total);
        self.next = self.total;
        if left > 0 {
            let t = &mut self.book.tally;
            t.failures.server_gone += left;
            note_first(&mut t.first_errors, "server_gone", message);
            t.last_done = t.last_done.max(Some(now));
        }
    }

    fn count_connect_failures(&mut self, n: u64, now: Instant, message: impl FnOnce() -> String) {
        let t = &mut self.book.tally;
        t.failures.connect += n;
        note_first(&mut t.first_errors, "connect", message);
        t.last_done = t.last_done.max(Some(now));
    }

    /// Waits for the next due time (precisely), an answer, room to write, or a timeout check.
    fn wait(&mut self, shared: &Shared) {
        let Some(fd) = self.link.as_ref().map(|r| r.get_ref().as_raw_fd()) else {
            return;
        };
        let now = Instant::now();
        let next_due = (self.next < self.total && self.book.in_flight < self.book.pipeline)
            .then(|| self.due(self.next));
        let mut until = now + MAX_WAIT;
        if let Some(d) = next_due {
            until = until.min(d);
        }
        if let Some(c) = self.book.check_at {
            until = until.min(c);
        }
        let remaining = until.saturating_duration_since(now);
        if remaining.is_zero() {
            return;
        }
        let precise = next_due == Some(until);
        if precise && remaining <= SPIN {
            // At high rates the thread may never sleep in ppoll: read what has come first.
            self.read_answers(shared);
            let spin_from = Instant::now();
            while Instant::now() < until {
                thread::yield_now();
            }
            self.book.tally.idle += spin_from.elapsed();
            return;
        }
        let sleep = if precise { remaining - SPIN } else { remaining };
        let mut events = libc::POLLIN;
        if self.out_pos < self.out.len() {
            events |= libc::POLLOUT;
        }
        let mut pfd = libc::pollfd {
            fd,
            events,
            revents: 0,
        };
        let ts = libc::timespec {
            tv_sec: sleep.as_secs() as libc::time_t,
            tv_nsec: sleep.subsec_nanos() as libc::c_long,
        };
        // SAFETY: one pollfd we own, a timespec we own, no signal mask.
        unsafe { libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        self.book.tally.idle += now.elapsed();
    }
}

/// Asks the kernel to wake this thread's timed sleeps within 1 ns of their deadline
/// rather than the default 50 µs of slack.
fn set_fine_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one integer and affects only the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
}

fn connect(addr: SocketAddr, timeout: Duration) -> io::Result<FrameReader<TcpStream>> {
    let stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_nodelay(true)?;
    stream.set_nonblocking(true)?;
    Ok(FrameReader::new(stream, MAX_RESPONSE_FRAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ids::IdStyle;
    use crate::client::LoadModel;
    use crate::domain::ClientCmd;

    fn config() -> LoadConfig {
        LoadConfig {
            host: "127.0.0.1".into(),
            port: 1,
            cmd: ClientCmd::Ping,
            size: 0,
            concurrency: 1,
            mode: Mode::Requests(4),
            warmup: Duration::ZERO,
            timeout: Duration::from_secs(1),
            model: LoadModel::Open {
                rate: 10.0,
                pipeline: 4,
            },
            intervals: false,
            tls: false,
            ca: None,
            ids: crate::client::ids::IdStyle::Uuid,
        }
    }

    /// Puts a request in flight as `Connection::queue_due` does; returns its id.
    fn put(b: &mut Book, due: Instant, sent: Instant) -> u64 {
        let slot = b.take_slot();
        let id = b.seq * b.pipeline as u64 + slot as u64;
        b.seq += 1;
        b.slots[slot] = Slot {
            id,
            live: true,
            measured: true,
            due,
            queued: sent,
            sent: None,
        };
        b.mark_sent(slot, sent);
        id
    }

    fn pong(id: u64) -> Vec<u8> {
        format!(r#"{{"id":{id},"ok":true,"pong":true}}"#).into_bytes()
    }

    #[test]
    fn answers_in_any_order_settle_their_own_request_timed_from_due_and_from_sent() {
        let cfg = config();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut b = Book::new(4, t0, Ids::with_nonce(IdStyle::Integer, 0), 0);
        // Due at 0, 10, 20 ms; the first two left 5 ms late.
        let a = put(&mut b, t0, t0 + ms(5));
        let c = put(&mut b, t0 + ms(10), t0 + ms(15));
        let d = put(&mut b, t0 + ms(20), t0 + ms(20));
        assert_eq!(b.tally.late, 2);
        // Answers come back in reverse order, all at 30 ms.
        let done = t0 + ms(30);
        for id in [d, c, a] {
            assert!(b.settle(&pong(id), done, None, &cfg).is_none());
        }
        assert_eq!((b.tally.ok, b.in_flight), (3, 0));
        let near = |h: &Histogram<u64>, q: f64, want_ms: u64| {
            let got = h.value_at_quantile(q);
            assert!(
                got.abs_diff(want_ms * 1_000_000) < 100_000,
                "{got} vs {want_ms} ms"
            );
        };
        near(&b.tally.corrected, 1.0, 30);
        near(&b.tally.corrected, 0.0, 10);
        near(&b.tally.uncorrected, 1.0, 25);
        near(&b.tally.uncorrected, 0.0, 10);
        // A slot reused: the old id no longer matches, and abandons the connection.
        let e = put(&mut b, done, done);
        assert_ne!(e, a);
        match b.settle(&pong(a), done, None, &cfg) {
            Some(Outcome::Malformed(m)) => assert!(m.contains("matches no request"), "{m}"),
            other => panic!("{other:?}"),
        }
        b.abandon_all(&Outcome::Io("gone".into()), done, &cfg);
        assert_eq!((b.tally.failures.io, b.in_flight, b.free.len()), (1, 0, 4));
    }

    #[test]
    fn the_schedule_is_split_evenly_over_connections() {
        let ms = Duration::from_millis;
        let per = 1e9 / 10.0;
        // 10/s over 3 connections for 1 s: j = 0..9, connection i gets j = i, i+3, ...
        let counts: Vec<u64> = (0..3).map(|i| due_before(ms(1000), per, i, 3)).collect();
        assert_eq!(counts, [4, 3, 3]);
        assert_eq!(due_before(ms(0), per, 0, 3), 0);
        // Due strictly before t.
        assert_eq!(due_before(ms(300), per, 0, 1), 3);
        assert_eq!(due_before(ms(301), per, 0, 1), 4);
        // A rate whose interval is not a whole number of ns.
        let per = 1e9 / 3.0;
        assert_eq!(due_before(ms(1000), per, 0, 1), 3);
        assert_eq!(due_before(ms(1001), per, 0, 1), 4);
        let total: u64 = (0..7)
            .map(|i| due_before(ms(10_000), 1e9 / 333.0, i, 7))
            .sum();
        assert_eq!(total, 3330);
    }
}
