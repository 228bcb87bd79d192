//! What a load run measured: counts by outcome, the merged latency histogram, the window.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use super::intervals::Interval;
use super::LoadConfig;

/// Failed requests by kind. Every request that was planned or sent in the measured phase
/// ends up either `ok` or in exactly one of these counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    /// No connection could be (re)established, so the request was never sent.
    pub connect: u64,
    /// The connection broke while sending or receiving (reset, closed, cut mid-frame).
    pub io: u64,
    /// No whole response within `--timeout`.
    pub timeout: u64,
    /// An unparseable response, or one whose id is not the id just sent.
    pub malformed: u64,
    /// A compute result that differs from compute(n).
    pub wrong_result: u64,
    /// The server is going away: it answered SHUTTING_DOWN, then closed the connection
    /// (or refused the next one). Counts the request that met the closed connection
    /// and, with --requests, those never sent because the thread then stopped.
    #[serde(default)]
    pub server_gone: u64,
    /// Error responses by code, codes kept as the server sent them.
    pub server_error: BTreeMap<String, u64>,
}

impl Failures {
    pub fn total(&self) -> u64 {
        self.connect
            + self.io
            + self.timeout
            + self.malformed
            + self.wrong_result
            + self.server_gone
            + self.server_error.values().sum::<u64>()
    }

    /// Counts one error response; allocates only the first time a code is seen.
    pub fn add_server_error(&mut self, code: &str, count: u64) {
        match self.server_error.get_mut(code) {
            Some(n) => *n += count,
            None => {
                self.server_error.insert(code.to_string(), count);
            }
        }
    }

    pub fn merge(&mut self, other: &Failures) {
        self.connect += other.connect;
        self.io += other.io;
        self.timeout += other.timeout;
        self.malformed += other.malformed;
        self.wrong_result += other.wrong_result;
        self.server_gone += other.server_gone;
        for (code, n) in &other.server_error {
            self.add_server_error(code, *n);
        }
    }

    /// Non-zero counters as (label, count), in a fixed order: the kinds, then server codes.
    pub fn nonzero(&self) -> Vec<(String, u64)> {
        let kinds = [
            ("connect", self.connect),
            ("io", self.io),
            ("timeout", self.timeout),
            ("malformed", self.malformed),
            ("wrong_result", self.wrong_result),
            ("server_gone", self.server_gone),
        ];
        kinds
            .into_iter()
            .map(|(k, n)| (k.to_string(), n))
            .chain(
                self.server_error
                    .iter()
                    .map(|(code, n)| (format!("server error {code}"), *n)),
            )
            .filter(|(_, n)| *n > 0)
            .collect()
    }
}

/// Latency percentiles in microseconds, over the successful requests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencyUs {
    pub mean: f64,
    pub stdev: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p99_9: f64,
    pub max: f64,
}

impl LatencyUs {
    /// Summarises a nanosecond histogram; all zeros when it is empty.
    pub fn from_histogram(h: &Histogram<u64>) -> LatencyUs {
        if h.is_empty() {
            return LatencyUs::default();
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        let (mean, stdev) = crate::hdr::mean_and_stdev(h);
        LatencyUs {
            mean: mean / 1000.0,
            stdev: stdev / 1000.0,
            min: us(h.min()),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }
}

/// The result of [`super::run_load`].
#[derive(Debug, Clone)]
pub struct Report {
    pub config: LoadConfig,
    /// The address every connection went to.
    pub addr: SocketAddr,
    /// Requests answered correctly in the measured phase.
    pub ok: u64,
    pub failures: Failures,
    /// The measured window: from the end of the warm-up to the last response.
    pub elapsed: Duration,
    /// Latency of every successful measured request, in nanoseconds.
    pub histogram: Histogram<u64>,
    /// The first message seen for each failure kind (or server error code), to show why.
    pub first_errors: BTreeMap<String, String>,
    /// Wall-clock time at the start of the measured phase (the interval log's StartTime).
    pub measure_start: SystemTime,
    /// One histogram per second of the measured phase, with `--interval-log` only.
    pub intervals: Option<Vec<Interval>>,
    /// What only an open-loop run measures; `None` in closed loop.
    pub open: Option<OpenReport>,
    /// The client process's own CPU use over the whole run (warm-up included).
    pub cpu: ClientCpu,
    /// Reasons to distrust the figures (the client could not keep up), also on stderr.
    pub warnings: Vec<String>,
}

/// What only an open-loop run measures. In open loop [`Report::histogram`] holds the
/// latency from each request's intended send time (corrected for coordinated omission).
#[derive(Debug, Clone)]
pub struct OpenReport {
    /// Requests per second over all connections (--rate): the offered load.
    pub rate: f64,
    /// Requests in flight allowed per connection (--pipeline).
    pub pipeline: usize,
    /// Measured requests written to a socket; the others of the schedule failed before
    /// they could be sent (no connection).
    pub sent: u64,
    /// From the earliest intended send time of a measured request to its latest actual
    /// send, plus one schedule interval: the window [`OpenReport::achieved_rps`] divides by.
    pub send_window: Duration,
    /// Latency from the actual send time of every successful request, in ns.
    pub uncorrected: Histogram<u64>,
    /// How late each measured send was against its schedule, in ns.
    pub lateness: Histogram<u64>,
    /// Sends at least [`LATE_THRESHOLD`] behind schedule.
    pub late: u64,
    /// Of those, the sends that were late although the connection was up and had room in
    /// its pipeline: the client's own slowness, not the server's.
    pub late_own: u64,
    /// The share of time the busiest connection thread was not waiting (for the
    /// schedule or the server): near 1 means the client itself was the bottleneck.
    pub busy_max: f64,
    /// The same, averaged over the connection threads.
    pub busy_mean: f64,
}

/// A send this far behind its schedule counts as late.
pub(crate) const LATE_THRESHOLD: Duration = Duration::from_millis(1);

impl OpenReport {
    /// Measured requests sent per second: equals the offered rate when the client kept
    /// its schedule, and falls short when sends slipped.
    pub fn achieved_rps(&self) -> f64 {
        per_second(self.sent as f64, self.send_window.as_secs_f64())
    }

    /// Lateness percentiles, in microseconds.
    pub fn lateness_us(&self) -> LatencyUs {
        LatencyUs::from_histogram(&self.lateness)
    }
}

/// CPU time the client process used (user + system), from getrusage(2).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ClientCpu {
    pub cpu_s: f64,
    pub wall_s: f64,
}

/// A starting point for [`ClientCpu`].
pub struct CpuMark {
    cpu_s: f64,
    at: Instant,
}

impl ClientCpu {
    /// Marks now; [`CpuMark::until_now`] gives the use since.
    pub fn now() -> CpuMark {
        CpuMark {
            cpu_s: process_cpu_s(),
            at: Instant::now(),
        }
    }

    /// CPU seconds per wall-clock second: 1.0 is one core fully busy.
    pub fn cores_used(&self) -> f64 {
        per_second(self.cpu_s, self.wall_s)
    }
}

impl CpuMark {
    pub fn until_now(&self) -> ClientCpu {
        ClientCpu {
            cpu_s: (process_cpu_s() - self.cpu_s).max(0.0),
            wall_s: self.at.elapsed().as_secs_f64(),
        }
    }
}

/// `amount / secs`, or 0 for an empty window: a report never shows NaN or infinity.
fn per_second(amount: f64, secs: f64) -> f64 {
    if secs > 0.0 {
        amount / secs
    } else {
        0.0
    }
}

/// User + system CPU seconds of this process so far.
pub(crate) fn process_cpu_s() -> f64 {
    // SAFETY: getrusage fills a struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0.0;
    }
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

impl Report {
    pub fn failed(&self) -> u64 {
        self.failures.total()
    }

    /// `ok + failed`: every request planned or sent in the measured phase.
    pub fn sent(&self) -> u64 {
        self.ok + self.failed()
    }

    /// Successful requests per second of the measured window (0 for an empty window).
    pub fn throughput_rps(&self) -> f64 {
        per_second(self.ok as f64, self.elapsed.as_secs_f64())
    }

    pub fn latency_us(&self) -> LatencyUs {
        LatencyUs::from_histogram(&self.histogram)
    }

    /// True when at least one request was measured and every one succeeded.
    pub fn all_succeeded(&self) -> bool {
        self.ok > 0 && self.failed() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_total_and_merge() {
        let mut a = Failures {
            io: 2,
            ..Default::default()
        };
        a.add_server_error("OVERLOADED", 1);
        let mut b = Failures {
            timeout: 3,
            wrong_result: 1,
            ..Default::default()
        };
        b.add_server_error("OVERLOADED", 2);
        b.add_server_error("TEAPOT", 1);
        a.merge(&b);
        assert_eq!(a.total(), 2 + 3 + 1 + 3 + 1);
        assert_eq!(a.server_error["OVERLOADED"], 3);
        assert_eq!(
            a.nonzero(),
            vec![
                ("io".to_string(), 2),
                ("timeout".to_string(), 3),
                ("wrong_result".to_string(), 1),
                ("server error OVERLOADED".to_string(), 3),
                ("server error TEAPOT".to_string(), 1),
            ]
        );
    }

    #[test]
    fn rates_over_an_empty_window_are_zero_not_nan() {
        let busy = |cpu_s, wall_s| ClientCpu { cpu_s, wall_s }.cores_used();
        assert_eq!(busy(1.5, 3.0), 0.5);
        assert_eq!(busy(1.5, 0.0), 0.0);
        assert_eq!(busy(0.0, 0.0), 0.0);
        assert_eq!(per_second(10.0, 0.5), 20.0);
        assert_eq!(per_second(10.0, -1.0), 0.0);
    }

    #[test]
    fn latency_summary_of_an_empty_histogram_is_zero() {
        let h = crate::hdr::new_latency_histogram();
        assert_eq!(LatencyUs::from_histogram(&h), LatencyUs::default());
    }
}
