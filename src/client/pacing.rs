//! When a connection sends: the two load models as two pacing policies of one engine.
//!
//! - Closed loop (the seed's): the next request goes as soon as the previous answer is
//!   in; measured from the end of the warm-up, for `--requests` each or `--duration`.
//!   After a SHUTTING_DOWN answer the connection backs off before it sends again.
//! - Open loop (`--rate`): request j of the run (j = 0, 1, 2, ...) is due at
//!   start + j / rate, and connection i of c sends j = i, i + c, i + 2c, ... so the
//!   whole run is one evenly spaced stream whatever the server does.
//!
//! Both say how many requests a connection that cannot send (its server refuses it, or
//! has gone) leaves unsent, so every planned request is counted once.

use std::time::{Duration, Instant};

use super::load::{backoff, duration_ns};
use super::{LoadConfig, LoadModel, Mode};

/// One connection's pacing.
pub(super) enum Pacer {
    Closed(Closed),
    Open(Schedule),
}

/// The closed loop's state.
pub(super) struct Closed {
    measure_from: Instant,
    end: Option<Instant>,
    /// Measured requests still to send (`--requests`); `None` with `--duration`.
    remaining: Option<u64>,
    /// Given up: nothing more is sent.
    stopped: bool,
    /// SHUTTING_DOWN answers in a row, and no send before this.
    shutting_in_row: u32,
    not_before: Option<Instant>,
}

/// The open loop's schedule for one connection.
pub(super) struct Schedule {
    index: u64,
    conns: u64,
    ns_per_request: f64,
    start: Instant,
    /// The next request of this connection's schedule, the first measured one, the end.
    next: u64,
    first_measured: u64,
    total: u64,
}

/// Nanoseconds from the start of the run to when request `j` of the run is due.
fn due_ns(j: u64, ns_per_request: f64) -> u64 {
    (j as f64 * ns_per_request) as u64
}

/// How many of connection `index`'s requests are due before `t` into the run.
pub(super) fn due_before(t: Duration, ns_per_request: f64, index: u64, conns: u64) -> u64 {
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

impl Pacer {
    /// Connection `index`'s pacing for a run whose gate opened at `start`.
    pub(super) fn new(cfg: &LoadConfig, index: usize, start: Instant) -> Pacer {
        match cfg.model {
            LoadModel::Closed => {
                let measure_from = start + cfg.warmup;
                let (end, remaining) = match cfg.mode {
                    Mode::Duration(d) => (Some(measure_from + d), None),
                    Mode::Requests(n) => (None, Some(n)),
                };
                Pacer::Closed(Closed {
                    measure_from,
                    end,
                    remaining,
                    stopped: false,
                    shutting_in_row: 0,
                    not_before: None,
                })
            }
            LoadModel::Open { rate, .. } => {
                let (index, conns) = (index as u64, cfg.concurrency as u64);
                let ns_per_request = 1e9 / rate;
                let warm = due_before(cfg.warmup, ns_per_request, index, conns);
                let total = match cfg.mode {
                    Mode::Requests(n) => warm + n,
                    Mode::Duration(d) => due_before(cfg.warmup + d, ns_per_request, index, conns),
                };
                Pacer::Open(Schedule {
                    index,
                    conns,
                    ns_per_request,
                    start,
                    next: 0,
                    first_measured: warm,
                    total,
                })
            }
        }
    }

    /// The next request to send at `now`, if one is due: (when it was due, measured).
    pub(super) fn take(&mut self, now: Instant) -> Option<(Instant, bool)> {
        match self {
            Pacer::Closed(c) => {
                if c.not_before.is_some_and(|t| now < t) || c.finished(now) {
                    return None;
                }
                let measured = now >= c.measure_from;
                if measured {
                    if let Some(r) = c.remaining.as_mut() {
                        *r -= 1;
                    }
                }
                Some((now, measured))
            }
            Pacer::Open(s) => {
                if s.next >= s.total {
                    return None;
                }
                let due = s.due(s.next);
                if due > now {
                    return None;
                }
                let measured = s.next >= s.first_measured;
                s.next += 1;
                Some((due, measured))
            }
        }
    }

    /// When a connection with room in its pipeline may send next, and whether that time
    /// must be kept precisely (an open-loop due time); `None` if it will not send again.
    pub(super) fn next_send(&self, now: Instant) -> Option<(Instant, bool)> {
        match self {
            Pacer::Closed(c) => {
                if c.finished(now) {
                    return None;
                }
                let at = c.not_before.map_or(now, |t| c.end.map_or(t, |e| t.min(e)));
                Some((at, false))
            }
            Pacer::Open(s) => (s.next < s.total).then(|| (s.due(s.next), true)),
        }
    }

    /// True once nothing more will be sent (what is in flight may still be answered).
    pub(super) fn exhausted(&self, now: Instant) -> bool {
        match self {
            Pacer::Closed(c) => c.finished(now),
            Pacer::Open(s) => s.next >= s.total,
        }
    }

    /// An answer came (or the connection was lost, `shutting_down` false).
    pub(super) fn answered(&mut self, shutting_down: bool, now: Instant) {
        if let Pacer::Closed(c) = self {
            if shutting_down {
                // The server refuses new work: no tight loop while it closes.
                c.shutting_in_row += 1;
                c.not_before = Some(now + backoff(c.shutting_in_row + 1));
            } else {
                c.shutting_in_row = 0;
                c.not_before = None;
            }
        }
    }

    /// A connect failed at `now`: the request that would have gone cannot. True if it
    /// was a measured request (it counts as a failure).
    pub(super) fn skip_one(&mut self, now: Instant) -> bool {
        match self {
            Pacer::Closed(c) => {
                let measured = now >= c.measure_from && !c.finished(now);
                if measured {
                    if let Some(r) = c.remaining.as_mut() {
                        *r -= 1;
                    }
                }
                measured
            }
            Pacer::Open(s) => {
                if s.next < s.total && s.due(s.next) <= now {
                    let measured = s.next >= s.first_measured;
                    s.next += 1;
                    measured
                } else {
                    false
                }
            }
        }
    }

    /// Stops sending; returns how many measured requests of the plan are left unsent.
    /// `this_one`: the closed loop was about to send (with `--duration` that one
    /// request counts; with `--requests` every one still planned does).
    pub(super) fn give_up(&mut self, now: Instant, this_one: bool) -> u64 {
        match self {
            Pacer::Closed(c) => {
                let measured = now >= c.measure_from;
                c.stopped = true;
                match c.remaining.take() {
                    Some(r) => r,
                    None => u64::from(this_one && measured),
                }
            }
            Pacer::Open(s) => {
                let left = s.total - s.next.max(s.first_measured).min(s.total);
                s.next = s.total;
                left
            }
        }
    }
}

impl Closed {
    fn finished(&self, now: Instant) -> bool {
        self.stopped
            || (now >= self.measure_from
                && (self.remaining == Some(0) || self.end.is_some_and(|e| now >= e)))
    }
}

impl Schedule {
    /// When request `k` of this connection is due.
    fn due(&self, k: u64) -> Instant {
        let j = k * self.conns + self.index;
        self.start + Duration::from_nanos(due_ns(j, self.ns_per_request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::ids::IdStyle;
    use crate::domain::ClientCmd;

    fn config(model: LoadModel, mode: Mode, warmup: Duration) -> LoadConfig {
        LoadConfig {
            host: "127.0.0.1".into(),
            port: 1,
            cmd: ClientCmd::Ping,
            size: 0,
            concurrency: 2,
            threads: 1,
            mode,
            warmup,
            timeout: Duration::from_secs(1),
            model,
            intervals: false,
            tls: false,
            ca: None,
            ids: IdStyle::Uuid,
            wait_go: false,
        }
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

    #[test]
    fn the_open_loop_sends_what_is_due_and_counts_what_it_could_not() {
        let ms = Duration::from_millis;
        let open = LoadModel::Open {
            rate: 10.0,
            pipeline: 1,
        };
        let cfg = config(open, Mode::Requests(3), ms(200));
        let t0 = Instant::now();
        // Connection 1 of 2 at 10/s: due at 100, 300, 500, 700 ms; 200 ms of warm-up
        // holds one (100 ms), then three measured.
        let mut p = Pacer::new(&cfg, 1, t0);
        assert_eq!(p.take(t0), None);
        assert_eq!(p.next_send(t0), Some((t0 + ms(100), true)));
        assert_eq!(p.take(t0 + ms(100)), Some((t0 + ms(100), false)));
        assert_eq!(p.take(t0 + ms(350)), Some((t0 + ms(300), true)));
        assert!(p.skip_one(t0 + ms(500)), "a measured request is skipped");
        assert!(!p.skip_one(t0 + ms(600)), "nothing due");
        assert_eq!(p.give_up(t0 + ms(600), false), 1);
        assert!(p.exhausted(t0));
        assert_eq!(p.take(t0 + ms(10_000)), None);
    }

    #[test]
    fn the_closed_loop_sends_n_measured_after_the_warmup_and_backs_off_on_shutting_down() {
        let ms = Duration::from_millis;
        let cfg = config(LoadModel::Closed, Mode::Requests(2), ms(100));
        let t0 = Instant::now();
        let mut p = Pacer::new(&cfg, 0, t0);
        // Warm-up requests are not measured and do not count.
        assert_eq!(p.take(t0), Some((t0, false)));
        assert_eq!(p.take(t0 + ms(50)), Some((t0 + ms(50), false)));
        assert_eq!(p.take(t0 + ms(100)), Some((t0 + ms(100), true)));
        p.answered(true, t0 + ms(100));
        assert_eq!(p.take(t0 + ms(101)), None, "backing off");
        let (at, precise) = p.next_send(t0 + ms(101)).unwrap();
        assert!(at > t0 + ms(101) && !precise);
        p.answered(false, at);
        assert_eq!(p.take(at), Some((at, true)));
        assert!(p.exhausted(at));
        assert_eq!(p.next_send(at), None);

        // --requests: giving up counts every request still planned.
        let mut p = Pacer::new(&cfg, 0, t0);
        assert!(p.skip_one(t0 + ms(100)));
        assert_eq!(p.give_up(t0 + ms(100), true), 1);
        assert!(p.exhausted(t0 + ms(100)));
        // --duration: only the request about to go, and only if measured.
        let cfg = config(LoadModel::Closed, Mode::Duration(ms(500)), ms(100));
        let mut p = Pacer::new(&cfg, 0, t0);
        assert_eq!(p.give_up(t0 + ms(50), true), 0);
        let mut p = Pacer::new(&cfg, 0, t0);
        assert_eq!(p.give_up(t0 + ms(150), true), 1);
        let mut p = Pacer::new(&cfg, 0, t0);
        assert_eq!(p.give_up(t0 + ms(150), false), 0);
        assert!(Pacer::new(&cfg, 0, t0).exhausted(t0 + ms(600)));
    }
}
