//! A connection's in-flight table (`Book`) and an event-loop thread's results (`Tally`):
//! what every answer is settled against, in both load models.
//!
//! The table has `pipeline` slots (1 in the closed loop); request ids are
//! `seq * pipeline + slot`, so an answer finds its slot by arithmetic, in any order.
//! The results are kept per thread, not per connection: a thread owns thousands of
//! connections, and three HDR histograms each would cost gigabytes.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::ids::Ids;
use super::intervals::IntervalRecorder;
use super::load::{classify_body, count_failure, duration_ns, record_ns, Outcome};
use super::report::{Failures, LATE_THRESHOLD};
use super::LoadConfig;
use crate::protocol::message::bounded;
use crate::protocol::parse_response;

/// One event-loop thread's results, merged once at the end of the run.
pub(super) struct Tally {
    /// Open loop: also keep the uncorrected latency and the lateness of every send.
    pub open: bool,
    pub ok: u64,
    pub failures: Failures,
    pub first_errors: BTreeMap<String, String>,
    /// From the intended send time, ns (closed loop: from when the request was queued,
    /// which is when it was due).
    pub corrected: Histogram<u64>,
    /// From the actual send time, ns (open loop only).
    pub uncorrected: Histogram<u64>,
    /// Actual send time minus intended send time, ns (open loop only).
    pub lateness: Histogram<u64>,
    pub sent: u64,
    pub late: u64,
    pub late_own: u64,
    pub last_done: Option<Instant>,
    pub last_send: Option<Instant>,
    pub first_due: Option<Instant>,
    pub intervals: Option<IntervalRecorder>,
    /// Time spent waiting (for events, a due time, or a back-off).
    pub idle: Duration,
    /// From the gate opening to the thread's end.
    pub wall: Duration,
    /// On a terminal: the counts the live line shows, published now and then.
    pub live: Option<super::live::LiveLocal>,
}

impl Tally {
    pub(super) fn new(open: bool) -> Tally {
        Tally {
            open,
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
            live: None,
        }
    }

    /// The share of the thread's time it was not waiting.
    pub(super) fn busy(&self) -> f64 {
        if self.wall.is_zero() {
            return 0.0;
        }
        (1.0 - self.idle.as_secs_f64() / self.wall.as_secs_f64()).clamp(0.0, 1.0)
    }

    pub(super) fn fail(&mut self, outcome: Outcome<'_>, at: Instant, cfg: &LoadConfig) {
        count_failure(&mut self.failures, &mut self.first_errors, outcome, cfg);
        self.last_done = self.last_done.max(Some(at));
        if let Some(l) = self.live.as_mut() {
            l.failed += 1;
        }
    }

    /// Counts `n` requests under failure `kind` (`connect` or `server_gone`): requests
    /// that could not be sent.
    pub(super) fn unsent(
        &mut self,
        kind: Unsent,
        n: u64,
        at: Instant,
        message: impl FnOnce() -> String,
    ) {
        if n == 0 {
            return;
        }
        let key = match kind {
            Unsent::Connect => {
                self.failures.connect += n;
                "connect"
            }
            Unsent::ServerGone => {
                self.failures.server_gone += n;
                "server_gone"
            }
        };
        super::load::note_first(&mut self.first_errors, key, message);
        self.last_done = self.last_done.max(Some(at));
        if let Some(l) = self.live.as_mut() {
            l.failed += n;
        }
    }
}

/// Why requests could not be sent.
#[derive(Debug, Clone, Copy)]
pub(super) enum Unsent {
    Connect,
    ServerGone,
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
    /// When its last byte was handed to the kernel (or to TLS).
    sent: Option<Instant>,
}

/// What settling one answer did.
pub(super) struct Settled {
    /// `Some` when the connection must be abandoned, with the outcome that the other
    /// requests in flight on it count under.
    pub lose: Option<Outcome<'static>>,
    /// The answer was SHUTTING_DOWN.
    pub shutting_down: bool,
}

/// One connection's in-flight table.
pub(super) struct Book {
    pub pipeline: usize,
    slots: Vec<Slot>,
    free: Vec<usize>,
    pub in_flight: usize,
    /// Requests queued so far; ids are `seq * pipeline + slot`.
    seq: u64,
    /// When to look for timed-out requests next (may be early, never late).
    pub check_at: Option<Instant>,
    /// When the connection last (re)gained room to send: connected, or a full pipeline
    /// freed a slot. Lateness before this is the server's doing, after it the client's.
    pub room_at: Instant,
    /// Connections lost or refused in a row.
    pub lost_in_row: u32,
    /// The run's ids, and this connection's index among them.
    ids: Ids,
    pub index: usize,
    /// The server answered SHUTTING_DOWN on the current connection.
    pub told_shutting_down: bool,
}

impl Book {
    /// An empty table of `pipeline` slots for connection `index`, given room at `now`.
    pub(super) fn new(pipeline: usize, now: Instant, ids: Ids, index: usize) -> Book {
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
            // Ids start at 1, as the seed's integer ids do.
            seq: 1,
            check_at: None,
            room_at: now,
            lost_in_row: 0,
            ids,
            index,
            told_shutting_down: false,
        }
    }

    /// Puts a request due at `due` in flight at `now`; returns its slot and its id's
    /// wire text. Its timeout counts from `now`.
    pub(super) fn put(
        &mut self,
        due: Instant,
        measured: bool,
        now: Instant,
        timeout: Duration,
        tally: &mut Tally,
    ) -> (usize, super::ids::IdJson) {
        self.in_flight += 1;
        let slot = self.free.pop().expect("a free slot: in_flight < pipeline");
        let id = self.seq * self.pipeline as u64 + slot as u64;
        self.seq += 1;
        self.slots[slot] = Slot {
            id,
            live: true,
            measured,
            due,
            queued: now,
            sent: None,
        };
        if tally.open
            && measured
            && now.saturating_duration_since(due.max(self.room_at)) >= LATE_THRESHOLD
        {
            tally.late_own += 1;
        }
        let deadline = now + timeout;
        self.check_at = Some(self.check_at.map_or(deadline, |c| c.min(deadline)));
        (slot, self.ids.json(self.index, id))
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

    /// Settles one answer that arrived at `now`.
    ///
    /// Longer than most (~90 lines): the hot path of every answer, a single match from
    /// the parsed response to its slot, its verification and the one counter it lands
    /// in, so that each outcome is counted exactly once in one place.
    pub(super) fn settle(
        &mut self,
        payload: &[u8],
        now: Instant,
        expected: Option<u64>,
        cfg: &LoadConfig,
        tally: &mut Tally,
    ) -> Settled {
        let lost = |o| Settled {
            lose: Some(o),
            shutting_down: false,
        };
        let response = match parse_response(payload) {
            Ok(r) => r,
            Err(e) => return lost(Outcome::Malformed(e.0)),
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
                    return lost(Outcome::ServerError {
                        code: code.into_owned().into(),
                        message: message.into_owned().into(),
                        reconnect: true,
                    });
                }
            }
            let message = if self.pipeline == 1 && self.in_flight == 1 {
                let sent = self.ids.json(self.index, self.slots[0].id);
                format!(
                    "response id {} does not match the request id {}",
                    bounded(response.id),
                    String::from_utf8_lossy(sent.as_bytes())
                )
            } else {
                format!(
                    "response id {} matches no request in flight on this connection",
                    bounded(response.id)
                )
            };
            return lost(Outcome::Malformed(message));
        };
        let s = self.slots[slot];
        self.release(slot, now);
        let outcome = classify_body(response.body, expected);
        let shutting_down = outcome.is_shutting_down();
        if shutting_down {
            self.told_shutting_down = true;
        }
        let lose = outcome
            .loses_connection()
            .then(|| outcome.clone().into_owned());
        if lose.is_none() {
            self.lost_in_row = 0;
        }
        if s.measured {
            match outcome {
                Outcome::Ok => {
                    let t = tally;
                    t.ok += 1;
                    let corrected = duration_ns(now.saturating_duration_since(s.due));
                    record_ns(&mut t.corrected, corrected);
                    let uncorrected = t.open.then(|| {
                        let ns =
                            duration_ns(now.saturating_duration_since(s.sent.unwrap_or(s.queued)));
                        record_ns(&mut t.uncorrected, ns);
                        ns
                    });
                    if let Some(iv) = t.intervals.as_mut() {
                        iv.record(now, corrected, uncorrected);
                    }
                    if let Some(l) = t.live.as_mut() {
                        l.ok += 1;
                        record_ns(&mut l.recent, corrected);
                    }
                    t.last_done = t.last_done.max(Some(now));
                }
                failure => tally.fail(failure, now, cfg),
            }
        }
        Settled {
            lose,
            shutting_down,
        }
    }

    /// Counts every request in flight as failed with `outcome` and empties the table.
    pub(super) fn abandon_all(
        &mut self,
        outcome: &Outcome<'_>,
        now: Instant,
        cfg: &LoadConfig,
        tally: &mut Tally,
    ) {
        for slot in 0..self.slots.len() {
            let s = self.slots[slot];
            if s.live {
                self.slots[slot].live = false;
                if s.measured {
                    tally.fail(outcome.clone(), now, cfg);
                }
            }
        }
        self.free = (0..self.pipeline).rev().collect();
        self.in_flight = 0;
        self.check_at = None;
        self.lost_in_row += 1;
    }

    /// A request has left: its lateness is known.
    pub(super) fn mark_sent(&mut self, slot: usize, now: Instant, tally: &mut Tally) {
        let s = &mut self.slots[slot];
        s.sent = Some(now);
        if let Some(l) = tally.live.as_mut().filter(|_| s.measured) {
            l.sent += 1;
        }
        if !s.measured || !tally.open {
            return;
        }
        let lateness = now.saturating_duration_since(s.due);
        let t = tally;
        t.sent += 1;
        record_ns(&mut t.lateness, duration_ns(lateness));
        if lateness >= LATE_THRESHOLD {
            t.late += 1;
        }
        t.last_send = t.last_send.max(Some(now));
        t.first_due = Some(t.first_due.map_or(s.due, |f| f.min(s.due)));
    }

    /// The earliest deadline of a request in flight (`None` when nothing is); true if
    /// one has passed at `now`.
    pub(super) fn timed_out(&mut self, now: Instant, timeout: Duration) -> bool {
        let mut earliest: Option<Instant> = None;
        for s in self.slots.iter().filter(|s| s.live) {
            let deadline = s.queued + timeout;
            if deadline <= now {
                return true;
            }
            earliest = Some(earliest.map_or(deadline, |e| e.min(deadline)));
        }
        self.check_at = earliest;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ids::IdStyle;
    use crate::client::{LoadModel, Mode};
    use crate::domain::ClientCmd;

    fn config() -> LoadConfig {
        LoadConfig {
            host: "127.0.0.1".into(),
            port: 1,
            cmd: ClientCmd::Ping,
            size: 0,
            concurrency: 1,
            threads: 1,
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
            ids: IdStyle::Uuid,
            wait_go: false,
        }
    }

    /// Puts a request in flight and marks it sent; returns its id.
    fn put(b: &mut Book, t: &mut Tally, due: Instant, sent: Instant) -> u64 {
        let (slot, _) = b.put(due, true, sent, Duration::from_secs(1), t);
        b.mark_sent(slot, sent, t);
        b.slots[slot].id
    }

    fn pong(id: u64) -> Vec<u8> {
        format!(r#"{{"id":{id},"ok":true,"pong":true}}"#).into_bytes()
    }

    #[test]
    fn answers_in_any_order_settle_their_own_request_timed_from_due_and_from_sent() {
        let cfg = config();
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut t = Tally::new(true);
        let mut b = Book::new(4, t0, Ids::with_nonce(IdStyle::Integer, 0), 0);
        // Due at 0, 10, 20 ms; the first two left 5 ms late.
        let a = put(&mut b, &mut t, t0, t0 + ms(5));
        let c = put(&mut b, &mut t, t0 + ms(10), t0 + ms(15));
        let d = put(&mut b, &mut t, t0 + ms(20), t0 + ms(20));
        assert_eq!(t.late, 2);
        // Answers come back in reverse order, all at 30 ms.
        let done = t0 + ms(30);
        for id in [d, c, a] {
            assert!(b.settle(&pong(id), done, None, &cfg, &mut t).lose.is_none());
        }
        assert_eq!((t.ok, b.in_flight), (3, 0));
        let near = |h: &Histogram<u64>, q: f64, want_ms: u64| {
            let got = h.value_at_quantile(q);
            assert!(
                got.abs_diff(want_ms * 1_000_000) < 100_000,
                "{got} vs {want_ms} ms"
            );
        };
        near(&t.corrected, 1.0, 30);
        near(&t.corrected, 0.0, 10);
        near(&t.uncorrected, 1.0, 25);
        near(&t.uncorrected, 0.0, 10);
        // A slot reused: the old id no longer matches, and abandons the connection.
        let e = put(&mut b, &mut t, done, done);
        assert_ne!(e, a);
        match b.settle(&pong(a), done, None, &cfg, &mut t).lose {
            Some(Outcome::Malformed(m)) => assert!(m.contains("matches no request"), "{m}"),
            other => panic!("{other:?}"),
        }
        b.abandon_all(&Outcome::Io("gone".into()), done, &cfg, &mut t);
        assert_eq!((t.failures.io, b.in_flight, b.free.len()), (1, 0, 4));
    }

    #[test]
    fn a_closed_loop_table_names_the_id_it_expected_and_keeps_no_open_loop_figures() {
        let cfg = config();
        let t0 = Instant::now();
        let mut t = Tally::new(false);
        let mut b = Book::new(1, t0, Ids::with_nonce(IdStyle::Integer, 0), 0);
        let a = put(&mut b, &mut t, t0, t0);
        assert_eq!(t.sent, 0, "lateness is an open-loop figure");
        let settled = b.settle(&pong(a + 1), t0, None, &cfg, &mut t);
        match settled.lose {
            Some(Outcome::Malformed(m)) => {
                assert!(m.contains("does not match the request id 1"), "{m}")
            }
            other => panic!("{other:?}"),
        }
        b.abandon_all(&Outcome::Io("lost".into()), t0, &cfg, &mut t);
        let a = put(&mut b, &mut t, t0, t0);
        let shutting =
            format!(r#"{{"id":{a},"error":{{"code":"SHUTTING_DOWN","message":"bye"}}}}"#);
        let settled = b.settle(shutting.as_bytes(), t0, None, &cfg, &mut t);
        assert!(settled.shutting_down && settled.lose.is_none());
        assert!(b.told_shutting_down);
        assert!(t.uncorrected.is_empty());
    }

    #[test]
    fn timeouts_are_found_and_the_next_check_is_the_earliest_deadline() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut t = Tally::new(true);
        let mut b = Book::new(2, t0, Ids::with_nonce(IdStyle::Integer, 0), 0);
        b.put(t0, true, t0, s(1), &mut t);
        b.put(t0, true, t0 + s(1), s(1), &mut t);
        assert_eq!(b.check_at, Some(t0 + s(1)));
        assert!(!b.timed_out(t0 + Duration::from_millis(500), s(1)));
        assert_eq!(b.check_at, Some(t0 + s(1)));
        assert!(b.timed_out(t0 + s(1), s(1)));
    }

    /// One request in flight on a closed-loop table; the answer `payload` settled.
    fn settle_one(ids: &Ids, index: usize, payload: &[u8], want: Option<u64>) -> (Tally, Settled) {
        let t0 = Instant::now();
        let mut t = Tally::new(false);
        let mut b = Book::new(1, t0, ids.clone(), index);
        b.put(t0, true, t0, Duration::from_secs(1), &mut t);
        let settled = b.settle(payload, t0, want, &config(), &mut t);
        (t, settled)
    }

    #[test]
    fn answers_are_classified_by_id_text_result_and_error_shape() {
        let want = Some(8360);
        let ints = Ids::with_nonce(IdStyle::Integer, 0);
        // Connection 0's first request has the id 1.
        let c = |payload: &[u8], want| settle_one(&ints, 0, payload, want);
        let ok = |(t, s): (Tally, Settled)| t.ok == 1 && s.lose.is_none();
        assert!(ok(c(br#"{"id":1,"result":8360}"#, want)));
        // The original server echoes every id as a string: matched by its text.
        assert!(ok(c(br#"{"id":"1","result":8360}"#, want)));
        let (t, s) = c(br#"{"id":1,"result":8361}"#, want);
        assert_eq!((t.failures.wrong_result, s.lose.is_none()), (1, true));
        for bad in [
            &br#"{"id":"01","result":8360}"#[..],
            br#"{"id":2,"result":8360}"#,
            br#"{"id":1,"ok":true}"#,
            b"nope",
        ] {
            let (_, s) = c(bad, want);
            assert!(
                matches!(s.lose, Some(Outcome::Malformed(_))),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let (t, s) = c(
            br#"{"id":1,"error":{"code":"OVERLOADED","message":"full"}}"#,
            want,
        );
        assert_eq!(t.failures.server_error["OVERLOADED"], 1);
        assert!(
            s.lose.is_none(),
            "an error with our id keeps the connection"
        );
        // A plain-string error is a server error with its text kept, not malformed.
        let (t, _) = c(br#"{"id":"1","error":"unknown command"}"#, want);
        assert_eq!(t.failures.server_error[super::super::load::NO_CODE], 1);
        assert_eq!(
            t.first_errors[&format!("server error {}", super::super::load::NO_CODE)],
            "unknown command"
        );
        // A connection-level refusal without our id: the connection is given up.
        let (_, s) = c(
            br#"{"id":null,"error":{"code":"OVERLOADED","message":"too many connections"}}"#,
            want,
        );
        assert!(matches!(
            s.lose,
            Some(Outcome::ServerError {
                reconnect: true,
                ..
            })
        ));
        // ping: our id and no error.
        assert!(ok(c(br#"{"id":1,"ok":true,"pong":true}"#, None)));
        assert!(ok(c(br#"{"id":"1"}"#, None)));

        // UUIDs: only the exact id sent matches, on the connection that sent it.
        let uuids = Ids::with_nonce(IdStyle::Uuid, 0xfeed);
        let sent = String::from_utf8(uuids.json(2, 1).as_bytes().to_vec()).unwrap();
        let answer = format!(r#"{{"id":{sent},"result":8360}}"#);
        assert!(ok(settle_one(&uuids, 2, answer.as_bytes(), want)));
        let (_, s) = settle_one(&uuids, 3, answer.as_bytes(), want);
        assert!(matches!(s.lose, Some(Outcome::Malformed(_))));
        let other = String::from_utf8(uuids.json(2, 2).as_bytes().to_vec()).unwrap();
        let answer = format!(r#"{{"id":{other},"result":8360}}"#);
        let (_, s) = settle_one(&uuids, 2, answer.as_bytes(), want);
        assert!(matches!(s.lose, Some(Outcome::Malformed(_))));

        assert!(matches!(
            Outcome::Io("closed".into()).after_shutting_down(),
            Outcome::ServerGone(m) if m.contains("closed")
        ));
        assert!(matches!(
            Outcome::Timeout.after_shutting_down(),
            Outcome::Timeout
        ));
    }
}
