//! Numbers for people: the one format of durations, latencies and counted nouns in every
//! human-readable text (progress lines, `--dry-run`, the client's summary and live line,
//! report.md). Machine-readable files (CSV, JSON) stay numeric and never go through here.

use std::time::Duration;

/// A setting's duration: `0 s`, `250 ms`, `1.5 s`, `32.5 s`, `2 min 30 s`, `1 h 5 min`.
/// Sub-second values keep their milliseconds (or microseconds); longer ones round to what
/// a person reads (hundredths of a second under 10 s, tenths under a minute, whole
/// seconds under an hour, minutes under a day, hours beyond).
pub(crate) fn duration(d: Duration) -> String {
    let ns = d.as_nanos();
    const US: u128 = 1_000;
    const MS: u128 = 1_000_000;
    const S: u128 = 1_000_000_000;
    if ns == 0 {
        "0 s".into()
    } else if ns < MS {
        format!("{} µs", trim(ns as f64 / US as f64, 1))
    } else if ns < S {
        format!("{} ms", trim(ns as f64 / MS as f64, 1))
    } else if ns < 10 * S {
        format!("{} s", trim(d.as_secs_f64(), 2))
    } else if ns < 60 * S {
        format!("{} s", trim(d.as_secs_f64(), 1))
    } else if ns < 3600 * S {
        let secs = d.as_secs_f64().round() as u64;
        match (secs / 60, secs % 60) {
            (m, 0) => format!("{m} min"),
            (m, s) => format!("{m} min {s} s"),
        }
    } else if ns < 86_400 * S {
        let mins = (d.as_secs_f64() / 60.0).round() as u64;
        match (mins / 60, mins % 60) {
            (h, 0) => format!("{h} h"),
            (h, m) => format!("{h} h {m} min"),
        }
    } else {
        let hours = (d.as_secs_f64() / 3600.0).round() as u64;
        match (hours / 24, hours % 24) {
            (days, 0) => format!("{days} d"),
            (days, h) => format!("{days} d {h} h"),
        }
    }
}

/// A latency given in microseconds: `0.9 µs`, `850 µs`, `2.53 ms`, `2.50 s`; `–` when
/// there is none (not finite). The same text in the client's summary and live line, the
/// runner's progress lines and report.md.
pub(crate) fn latency_us(us: f64) -> String {
    if !us.is_finite() {
        "–".into()
    } else if us < 10.0 {
        format!("{us:.1} µs")
    } else if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// `1 cell`, `3 cells`: `n` and the noun in the number it takes.
pub(crate) fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `v` with at most `decimals` decimals, trailing zeros (and a bare point) dropped.
fn trim(v: f64, decimals: usize) -> String {
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_one_format() {
        let cases = [
            (Duration::ZERO, "0 s"),
            (Duration::from_micros(10), "10 µs"),
            (Duration::from_millis(250), "250 ms"),
            (Duration::from_micros(1500), "1.5 ms"),
            (Duration::from_millis(1500), "1.5 s"),
            (Duration::from_millis(32_500), "32.5 s"),
            (Duration::from_secs(5), "5 s"),
            (Duration::from_millis(2250), "2.25 s"),
            (Duration::from_millis(31_750), "31.8 s"),
            (Duration::from_secs(120), "2 min"),
            (Duration::from_secs(150), "2 min 30 s"),
            (Duration::from_secs(3900), "1 h 5 min"),
            (Duration::from_secs(86_400 * 365), "365 d"),
        ];
        for (d, want) in cases {
            assert_eq!(duration(d), want, "{d:?}");
        }
    }

    #[test]
    fn latencies_read_as_the_report_writes_them() {
        assert_eq!(latency_us(0.86), "0.9 µs");
        assert_eq!(latency_us(12.345), "12 µs");
        assert_eq!(latency_us(850.4), "850 µs");
        assert_eq!(latency_us(2525.0), "2.52 ms");
        assert_eq!(latency_us(12_340.0), "12.34 ms");
        assert_eq!(latency_us(2_501_000.0), "2.50 s");
        assert_eq!(latency_us(f64::NAN), "–");
    }

    #[test]
    fn counts_take_their_plural() {
        assert_eq!(count(1, "cell", "cells"), "1 cell");
        assert_eq!(count(0, "cell", "cells"), "0 cells");
        assert_eq!(count(3, "repetition", "repetitions"), "3 repetitions");
    }
}
