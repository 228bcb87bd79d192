//! Per-second latency histograms (`--interval-log`) and HdrHistogram's interval-log format.
//!
//! Each client thread records into the histogram of the current second (by completion
//! time, counted from the start of the measured phase). When a second is over its
//! histogram is serialized (HdrHistogram V2, a few hundred bytes) and a fresh one starts,
//! so a long run with many threads holds kilobytes, not one full histogram per thread
//! and second. The run merges the threads' seconds at the end.
//!
//! The file is what Java HdrHistogram's `HistogramLogWriter` writes (log format 1.3):
//!
//! ```text
//! #[Histogram log format version 1.3]
//! #[StartTime: 1700000000.123 (seconds since epoch), 2023-11-14T22:13:20.123Z]
//! #[BaseTime: 1700000000.123 (seconds since epoch)]
//! "StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"
//! 0.000,1.000,2.131,HISTFAAAA...
//! Tag=uncorrected,0.000,1.000,1.015,HISTFAAAA...
//! ```
//!
//! Values are nanoseconds; `Interval_Max` is in milliseconds (Java's default
//! `maxValueUnitRatio` of 10^6), timestamps are seconds since `BaseTime`.

use std::io::{self, Write};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;

use super::load::record_ns;

/// The length of one interval.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);
/// The first line of every interval log.
pub(crate) const LOG_FORMAT_HEADER: &str = "#[Histogram log format version 1.3]";
/// The tag of the uncorrected (from actual send time) histograms of an open-loop run.
pub(crate) const UNCORRECTED_TAG: &str = "uncorrected";
/// `Interval_Max` is the histogram's max divided by this (ns to ms, as Java's default).
pub(crate) const MAX_VALUE_DIVISOR: f64 = 1_000_000.0;

/// One thread's finished second, serialized.
#[derive(Debug, Clone)]
pub(crate) struct EncodedInterval {
    index: u64,
    main: Vec<u8>,
    uncorrected: Option<Vec<u8>>,
}

/// Records one thread's latencies into per-second histograms.
pub(crate) struct IntervalRecorder {
    base: Instant,
    index: u64,
    main: Histogram<u64>,
    uncorrected: Option<Histogram<u64>>,
    done: Vec<EncodedInterval>,
}

impl IntervalRecorder {
    /// Seconds count from `base`; `uncorrected` keeps a second histogram per interval.
    pub(crate) fn new(base: Instant, uncorrected: bool) -> IntervalRecorder {
        IntervalRecorder {
            base,
            index: 0,
            main: crate::hdr::new_latency_histogram(),
            uncorrected: uncorrected.then(crate::hdr::new_latency_histogram),
            done: Vec::new(),
        }
    }

    /// Records a latency (ns) that ended at `at`, and its uncorrected twin if kept.
    pub(crate) fn record(&mut self, at: Instant, ns: u64, uncorrected_ns: Option<u64>) {
        let index = interval_index(at.saturating_duration_since(self.base));
        if index != self.index {
            self.close();
            self.index = index;
        }
        record_ns(&mut self.main, ns);
        if let (Some(h), Some(v)) = (self.uncorrected.as_mut(), uncorrected_ns) {
            record_ns(h, v);
        }
    }

    fn close(&mut self) {
        if self.main.is_empty() && self.uncorrected.as_ref().is_none_or(|h| h.is_empty()) {
            return;
        }
        let encode = |h: &mut Histogram<u64>| {
            let mut bytes = Vec::new();
            V2Serializer::new()
                .serialize(h, &mut bytes)
                .expect("a histogram always serializes to memory");
            h.reset();
            bytes
        };
        let main = encode(&mut self.main);
        let uncorrected = self.uncorrected.as_mut().map(encode);
        self.done.push(EncodedInterval {
            index: self.index,
            main,
            uncorrected,
        });
    }

    /// Every second this thread recorded something in.
    pub(crate) fn finish(mut self) -> Vec<EncodedInterval> {
        self.close();
        self.done
    }
}

fn interval_index(since_base: Duration) -> u64 {
    (since_base.as_nanos() / INTERVAL.as_nanos()) as u64
}

/// The histograms of one second of the measured phase, every thread merged.
#[derive(Debug, Clone)]
pub struct Interval {
    /// Start, from the beginning of the measured phase.
    pub start: Duration,
    pub length: Duration,
    /// Latency (closed loop) or corrected latency (open loop), ns.
    pub main: Histogram<u64>,
    /// Open loop only: latency from the actual send time, ns.
    pub uncorrected: Option<Histogram<u64>>,
}

/// A last interval shorter than this is folded into the one before it, so no interval
/// is a sliver whose rate would mean nothing.
pub(crate) const MIN_LAST_INTERVAL: Duration = Duration::from_millis(50);

/// Merges the threads' seconds into one interval per second of `elapsed` (empty seconds
/// included, so a stall shows as a gap in throughput). The last one is shorter when the
/// run ended mid-second, or up to [`MIN_LAST_INTERVAL`] longer when it ended just after.
pub(crate) fn merge(
    threads: Vec<Vec<EncodedInterval>>,
    elapsed: Duration,
    uncorrected: bool,
) -> anyhow::Result<Vec<Interval>> {
    let mut count = elapsed.as_nanos().div_ceil(INTERVAL.as_nanos()) as u64;
    if threads.iter().any(|t| !t.is_empty()) {
        count = count.max(1);
    }
    let fold_last =
        count > 1 && elapsed.saturating_sub(INTERVAL * ((count - 1) as u32)) < MIN_LAST_INTERVAL;
    if fold_last {
        count -= 1;
    }
    let mut out: Vec<Interval> = (0..count)
        .map(|i| {
            let start = INTERVAL * i as u32;
            let length = if i + 1 == count && elapsed > start {
                (elapsed - start).min(INTERVAL + MIN_LAST_INTERVAL)
            } else {
                INTERVAL
            };
            Interval {
                start,
                length,
                main: crate::hdr::new_latency_histogram(),
                uncorrected: uncorrected.then(crate::hdr::new_latency_histogram),
            }
        })
        .collect();
    let mut de = Deserializer::new();
    let mut decode = |bytes: &[u8]| -> anyhow::Result<Histogram<u64>> {
        de.deserialize(&mut &bytes[..])
            .map_err(|e| anyhow::anyhow!("cannot decode an interval histogram: {e:?}"))
    };
    for e in threads.into_iter().flatten() {
        let last = out.len() - 1;
        let slot = &mut out[(e.index as usize).min(last)];
        slot.main
            .add(decode(&e.main)?)
            .map_err(|e| anyhow::anyhow!("cannot merge interval histograms: {e:?}"))?;
        if let (Some(h), Some(bytes)) = (slot.uncorrected.as_mut(), e.uncorrected) {
            h.add(decode(&bytes)?)
                .map_err(|e| anyhow::anyhow!("cannot merge interval histograms: {e:?}"))?;
        }
    }
    Ok(out)
}

/// Writes `intervals` as an HdrHistogram interval log whose StartTime and BaseTime are
/// `start` (the wall-clock start of the measured phase).
pub(crate) fn write_log<W: Write>(
    intervals: &[Interval],
    start: SystemTime,
    w: &mut W,
) -> io::Result<()> {
    let epoch = start
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    writeln!(w, "{LOG_FORMAT_HEADER}")?;
    writeln!(
        w,
        "#[StartTime: {epoch:.3} (seconds since epoch), {}]",
        humantime::format_rfc3339_millis(start)
    )?;
    writeln!(w, "#[BaseTime: {epoch:.3} (seconds since epoch)]")?;
    writeln!(
        w,
        "#[threadcenter client: values in nanoseconds, Interval_Max in milliseconds; untagged = latency{}]",
        if intervals.iter().any(|i| i.uncorrected.is_some()) {
            " from the intended send time, Tag=uncorrected = from the actual send time"
        } else {
            ""
        }
    )?;
    writeln!(
        w,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    for i in intervals {
        write_line(w, None, i, &i.main)?;
        if let Some(h) = &i.uncorrected {
            write_line(w, Some(UNCORRECTED_TAG), i, h)?;
        }
    }
    Ok(())
}

fn write_line<W: Write>(
    w: &mut W,
    tag: Option<&str>,
    i: &Interval,
    h: &Histogram<u64>,
) -> io::Result<()> {
    if let Some(tag) = tag {
        write!(w, "Tag={tag},")?;
    }
    let max = if h.is_empty() { 0 } else { h.max() };
    writeln!(
        w,
        "{:.3},{:.3},{:.3},{}",
        i.start.as_secs_f64(),
        i.length.as_secs_f64(),
        max as f64 / MAX_VALUE_DIVISOR,
        crate::hdr::encode_base64_v2(h)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    #[test]
    fn seconds_are_split_merged_and_read_back_by_the_crate() {
        let base = Instant::now();
        let at = |ms: u64| base + Duration::from_millis(ms);
        let mut a = IntervalRecorder::new(base, true);
        let mut b = IntervalRecorder::new(base, true);
        a.record(at(10), 1_000, Some(500));
        a.record(at(999), 2_000, Some(600));
        a.record(at(2_500), 3_000_000, Some(700));
        b.record(at(1_200), 4_000, Some(800));
        let merged = merge(
            vec![a.finish(), b.finish()],
            Duration::from_millis(2_600),
            true,
        )
        .unwrap();
        let counts: Vec<u64> = merged.iter().map(|i| i.main.len()).collect();
        assert_eq!(counts, [2, 1, 1]);
        assert_eq!(merged[2].length, Duration::from_millis(600));
        // A run that ends just past a second folds that sliver into the last second.
        let mut c = IntervalRecorder::new(base, false);
        c.record(at(500), 1, None);
        c.record(at(1_010), 2, None);
        let folded = merge(vec![c.finish()], Duration::from_millis(1_010), false).unwrap();
        assert_eq!(folded.len(), 1);
        assert_eq!(folded[0].main.len(), 2);
        assert_eq!(folded[0].length, Duration::from_millis(1_010));
        assert_eq!(merged[1].uncorrected.as_ref().unwrap().max(), 800);

        let mut text = Vec::new();
        let start = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        write_log(&merged, start, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with(LOG_FORMAT_HEADER), "{text}");
        let mut total = 0;
        let mut tagged = 0;
        let mut start_time = None;
        for entry in IntervalLogIterator::new(text.as_bytes()) {
            match entry.unwrap() {
                LogEntry::StartTime(t) => start_time = Some(t),
                LogEntry::BaseTime(_) => {}
                LogEntry::Interval(h) => {
                    let hist = crate::hdr::decode_base64_v2(h.encoded_histogram()).unwrap();
                    match h.tag() {
                        None => total += hist.len(),
                        Some(t) => {
                            assert_eq!(t.as_str(), UNCORRECTED_TAG);
                            tagged += hist.len();
                        }
                    }
                }
            }
        }
        assert_eq!((total, tagged), (4, 4));
        assert_eq!(start_time, Some(Duration::from_millis(1_700_000_000_123)));
        assert!(text.contains("\n2.000,0.600,3.000,"), "{text}");
    }
}
