//! HdrHistogram interval logs (`hdr/*.hlog`): the one-interval log of a run's measured
//! window, written by the runner, and the readers of both it and the client's per-second
//! `--interval-log`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use anyhow::{bail, Context as _};

/// Writes an HdrHistogram interval log (Java's HistogramLogWriter format, version 1.3)
/// holding one interval: the measured window. `max` is in milliseconds, the histogram's
/// values in nanoseconds, as Java's writer does by default.
pub fn write_hlog(
    path: &Path,
    comment: &str,
    start_epoch_s: f64,
    length_s: f64,
    max_ns: f64,
    base64_v2: &str,
) -> io::Result<()> {
    let mut out = io::BufWriter::new(File::create(path)?);
    writeln!(out, "#[{comment}]")?;
    writeln!(out, "#[Histogram log format version 1.3]")?;
    writeln!(
        out,
        "#[StartTime: {start_epoch_s:.3} (seconds since epoch)]"
    )?;
    writeln!(
        out,
        "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
    )?;
    writeln!(
        out,
        "0.000,{length_s:.3},{:.3},{}",
        max_ns / 1e6,
        base64_v2.trim()
    )?;
    out.flush()
}

/// `hdr/<run>.intervals.hlog`: the client's `--interval-log`, one histogram a second.
pub fn intervals_file(run: &str) -> String {
    format!("{run}.intervals.hlog")
}

/// One interval of an interval log: when (seconds after the log's base time), how long,
/// and its histogram (ns).
#[derive(Debug, Clone)]
pub struct Interval {
    pub start_s: f64,
    pub length_s: f64,
    pub hist: hdrhistogram::Histogram<u64>,
}

/// Reads the untagged intervals of an HdrHistogram interval log (format 1.3) with the
/// hdrhistogram crate's reader, in file order.
pub fn read_interval_log(path: &Path) -> anyhow::Result<Vec<Interval>> {
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    let bytes = fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for entry in IntervalLogIterator::new(&bytes) {
        let entry =
            entry.map_err(|e| anyhow::anyhow!("{}: not an interval log: {e:?}", path.display()))?;
        let LogEntry::Interval(ilh) = entry else {
            continue;
        };
        if ilh.tag().is_some() {
            continue;
        }
        let hist = crate::hdr::decode_base64_v2(ilh.encoded_histogram()).with_context(|| {
            format!(
                "{}: corrupt histogram at {:?}",
                path.display(),
                ilh.start_timestamp()
            )
        })?;
        out.push(Interval {
            start_s: ilh.start_timestamp().as_secs_f64(),
            length_s: ilh.duration().as_secs_f64(),
            hist,
        });
    }
    Ok(out)
}

/// The base64 histograms of an interval log's lines (tags and comments skipped).
pub fn read_hlog(path: &Path) -> anyhow::Result<Vec<String>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('"') {
            continue;
        }
        let fields: Vec<&str> = line.split(',').collect();
        let data = match fields.as_slice() {
            [tag, _, _, _, data] if tag.starts_with("Tag=") => data,
            [_, _, _, data] => data,
            _ => bail!(
                "{} line {}: not an interval line (corrupt?)",
                path.display(),
                i + 1
            ),
        };
        out.push(data.to_string());
    }
    if out.is_empty() {
        bail!("{} holds no interval (corrupt?)", path.display());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_logs_read_back_untagged_intervals_in_order() {
        use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
        use hdrhistogram::serialization::V2DeflateSerializer;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.intervals.hlog");
        let mut bytes = Vec::new();
        let mut ser = V2DeflateSerializer::new();
        {
            let mut log = IntervalLogWriterBuilder::new()
                .with_max_value_divisor(1e6)
                .begin_log_with(&mut bytes, &mut ser)
                .unwrap();
            for k in 0..3u64 {
                let mut h = crate::hdr::new_latency_histogram();
                for v in 0..(10 * (k + 1)) {
                    h.record(1000 + v).unwrap();
                }
                let at = std::time::Duration::from_secs(k);
                log.write_histogram(&h, at, std::time::Duration::from_secs(1), None)
                    .unwrap();
                log.write_histogram(
                    &h,
                    at,
                    std::time::Duration::from_secs(1),
                    Tag::new("uncorrected"),
                )
                .unwrap();
            }
        }
        fs::write(&path, &bytes).unwrap();
        let got = read_interval_log(&path).unwrap();
        assert_eq!(got.len(), 3);
        let counts: Vec<u64> = got.iter().map(|i| i.hist.len()).collect();
        assert_eq!(counts, [10, 20, 30]);
        assert_eq!(got[2].start_s, 2.0);
        assert_eq!(got[0].length_s, 1.0);
        fs::write(&path, "0.000,1.000,1.0,!!!\n").unwrap();
        assert!(read_interval_log(&path).is_err());
    }
}
