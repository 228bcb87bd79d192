//! What a load run measured: counts by outcome, the merged latency histogram, the window.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

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
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.ok as f64 / secs
        } else {
            0.0
        }
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
    fn latency_summary_of_an_empty_histogram_is_zero() {
        let h = crate::hdr::new_latency_histogram();
        assert_eq!(LatencyUs::from_histogram(&h), LatencyUs::default());
    }
}
