//! HDR histogram helpers shared by the client and the runner: latency histograms, the
//! `.hgrm` percentile-distribution text, and the base64 V2+deflate encoding.
//!
//! The `.hgrm` writer reproduces what Java HdrHistogram's
//! `AbstractHistogram.outputPercentileDistribution(out, 5, scaling)` prints, so the files
//! open in HdrHistogram's plotter and other tools that read that text:
//!
//! ```text
//!        Value     Percentile TotalCount 1/(1-Percentile)
//!
//!        0.921 0.000000000000          1           1.00
//!        ...
//!       86.067 1.000000000000        100
//! #[Mean    =       80.964, StdDeviation   =        0.746]
//! #[Max     =       86.067, Total count    =          100]
//! #[Buckets =           26, SubBuckets     =         2048]
//! ```
//!
//! Java formats `%f` by rounding the shortest decimal form of the double half-up
//! (java.util.Formatter); [`java_fixed`] does the same so the digits agree.

use std::io::{self, Write};

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Significant decimal digits kept by every latency histogram in threadcenter.
pub const SIGNIFICANT_DIGITS: u8 = 3;

/// Reporting points per half-distance to 100%, as Java's default `outputPercentileDistribution`.
pub const TICKS_PER_HALF_DISTANCE: u32 = 5;

/// A new latency histogram: values in nanoseconds, 3 significant digits, growing on demand
/// (it starts tiny, so thousands of per-thread histograms stay cheap).
pub fn new_latency_histogram() -> Histogram<u64> {
    Histogram::new(SIGNIFICANT_DIGITS).expect("3 significant digits is a valid configuration")
}

/// Why a base64 histogram could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("histogram data is not valid base64: {0}")]
    Base64(#[from] base64::DecodeError),
    #[error("histogram data is not an HdrHistogram V2 encoding: {0:?}")]
    Histogram(hdrhistogram::serialization::DeserializeError),
}

/// The whole histogram in HdrHistogram's V2 compressed (deflate) encoding, base64 (standard
/// alphabet, padded): the form Java's `HistogramLogWriter` and every HdrHistogram port read.
pub fn encode_base64_v2(hist: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(hist, &mut bytes)
        // Only counts above i64::MAX can fail to encode, and writing to a Vec cannot fail.
        .expect("a histogram always serializes to memory");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes what [`encode_base64_v2`] (or any HdrHistogram library) wrote.
pub fn decode_base64_v2(text: &str) -> Result<Histogram<u64>, DecodeError> {
    let bytes = base64::engine::general_purpose::STANDARD.decode(text.trim())?;
    Deserializer::new()
        .deserialize(&mut &bytes[..])
        .map_err(DecodeError::Histogram)
}

/// Writes HdrHistogram's percentile-distribution text (`.hgrm`) for `hist`, dividing values by
/// `scaling` (1000.0 turns nanoseconds into microseconds).
///
/// An empty histogram gives the header and the footer with no rows, as Java does.
pub fn write_hgrm<W: Write>(hist: &Histogram<u64>, scaling: f64, w: &mut W) -> io::Result<()> {
    let digits = usize::from(hist.sigfig());
    writeln!(
        w,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    for row in percentile_rows(hist, TICKS_PER_HALF_DISTANCE) {
        let value = java_fixed(row.value as f64 / scaling, digits, 12);
        let quantile = row.percentile / 100.0;
        let q = java_fixed(quantile, 12, 2);
        if row.percentile != 100.0 {
            let inverse = java_fixed(1.0 / (1.0 - quantile), 2, 14);
            writeln!(w, "{value} {q} {:>10} {inverse}", row.total_count)?;
        } else {
            writeln!(w, "{value} {q} {:>10}", row.total_count)?;
        }
    }
    let (mean, stdev) = mean_and_stdev(hist);
    writeln!(
        w,
        "#[Mean    = {}, StdDeviation   = {}]",
        java_fixed(mean / scaling, digits, 12),
        java_fixed(stdev / scaling, digits, 12)
    )?;
    let max = if hist.is_empty() { 0 } else { hist.max() };
    writeln!(
        w,
        "#[Max     = {}, Total count    = {:>12}]",
        java_fixed(max as f64 / scaling, digits, 12),
        hist.len()
    )?;
    writeln!(
        w,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        hist.buckets(),
        sub_bucket_count(hist)
    )
}

/// One line of the percentile distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentileRow {
    /// The highest value equivalent to the bucket reached, in recorded units.
    pub value: u64,
    /// The reporting level (0..=100) this row was emitted for.
    pub percentile: f64,
    /// Values recorded at or below `value`.
    pub total_count: u64,
}

/// The rows of Java's `PercentileIterator`: levels start at 0% and step towards 100% with
/// `ticks_per_half_distance` equal steps in each half of the remaining distance; a bucket
/// emits one row for every level its cumulative percentile reaches, and a last row at 100%.
pub fn percentile_rows(hist: &Histogram<u64>, ticks_per_half_distance: u32) -> Vec<PercentileRow> {
    let total = hist.len();
    let mut rows = Vec::new();
    if total == 0 {
        return rows;
    }
    let mut level = 0.0_f64;
    let mut cumulative = 0u64;
    let mut last = None;
    'buckets: for bucket in hist.iter_recorded() {
        let count = bucket.count_at_value();
        let value = bucket.value_iterated_to();
        cumulative += count;
        last = Some(value);
        loop {
            let reached = (100.0 * cumulative as f64) / total as f64;
            if reached < level {
                break;
            }
            rows.push(PercentileRow {
                value,
                percentile: level,
                total_count: cumulative,
            });
            level = next_level(level, ticks_per_half_distance);
            if cumulative >= total {
                // Java's iterator stops here and adds its one extra step to 100%.
                break 'buckets;
            }
        }
    }
    if let Some(value) = last {
        rows.push(PercentileRow {
            value,
            percentile: 100.0,
            total_count: cumulative,
        });
    }
    rows
}

/// The next reporting level after `level`, with Java's arithmetic step for step.
fn next_level(level: f64, ticks_per_half_distance: u32) -> f64 {
    let halvings = ((100.0 / (100.0 - level)).ln() / 2f64.ln()) as i64;
    let reporting_ticks =
        i64::from(ticks_per_half_distance).wrapping_mul(2f64.powf((halvings + 1) as f64) as i64);
    level + 100.0 / reporting_ticks as f64
}

/// Mean and standard deviation as Java computes them: each bucket counts at its median
/// equivalent value, summed in bucket order.
pub fn mean_and_stdev(hist: &Histogram<u64>) -> (f64, f64) {
    let total = hist.len();
    if total == 0 {
        return (0.0, 0.0);
    }
    let mut sum = 0.0_f64;
    for v in hist.iter_recorded() {
        sum += hist.median_equivalent(v.value_iterated_to()) as f64 * v.count_at_value() as f64;
    }
    let mean = sum / total as f64;
    let mut deviations = 0.0_f64;
    for v in hist.iter_recorded() {
        let d = hist.median_equivalent(v.value_iterated_to()) as f64 - mean;
        deviations += (d * d) * v.count_at_value() as f64;
    }
    (mean, (deviations / total as f64).sqrt())
}

/// Sub-buckets per bucket: the counts array holds `(buckets + 1) * sub_buckets / 2` entries.
pub fn sub_bucket_count(hist: &Histogram<u64>) -> usize {
    2 * hist.distinct_values() / (usize::from(hist.buckets()) + 1)
}

/// Formats `x` as Java's `%{width}.{precision}f` does under `Locale.US`: the shortest decimal
/// form of the double, rounded half-up to `precision` decimals, right-aligned in `width`.
pub fn java_fixed(x: f64, precision: usize, width: usize) -> String {
    let text = if x.is_nan() {
        "NaN".to_string()
    } else if x.is_infinite() {
        if x > 0.0 { "Infinity" } else { "-Infinity" }.to_string()
    } else {
        fixed_half_up(x, precision)
    };
    format!("{text:>width$}")
}

fn fixed_half_up(x: f64, precision: usize) -> String {
    // `{:e}` gives the shortest digits that round-trip, e.g. "-1.2345e-3".
    let sci = format!("{:e}", x.abs());
    let (mantissa, exp) = sci
        .split_once('e')
        .expect("LowerExp always has an exponent");
    let exp: i64 = exp.parse().expect("LowerExp exponent is an integer");
    let digits: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    // digits[i] has weight 10^(exp - i). Keep weights from max(exp, 0) down to -precision.
    let top = exp.max(0);
    let bottom = -(precision as i64);
    let digit_at = |weight: i64| -> u8 {
        let i = exp - weight;
        if i >= 0 && (i as usize) < digits.len() {
            digits[i as usize]
        } else {
            0
        }
    };
    let mut kept: Vec<u8> = (bottom..=top).rev().map(digit_at).collect();
    if digit_at(bottom - 1) >= 5 {
        // Round half up: carry from the last kept digit.
        let mut i = kept.len();
        loop {
            if i == 0 {
                kept.insert(0, 1);
                break;
            }
            i -= 1;
            if kept[i] == 9 {
                kept[i] = 0;
            } else {
                kept[i] += 1;
                break;
            }
        }
    }
    let int_len = kept.len() - precision;
    let mut out = String::with_capacity(kept.len() + 2);
    // Java keeps the sign of a negative value that rounds to zero ("-0.00").
    if x.is_sign_negative() {
        out.push('-');
    }
    for (i, d) in kept.iter().enumerate() {
        if i == int_len {
            out.push('.');
        }
        out.push(char::from(b'0' + d));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hist_of(values: &[(u64, u64)]) -> Histogram<u64> {
        let mut h = new_latency_histogram();
        for &(v, n) in values {
            h.record_n(v, n).unwrap();
        }
        h
    }

    fn hgrm(h: &Histogram<u64>, scaling: f64) -> String {
        let mut out = Vec::new();
        write_hgrm(h, scaling, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    /// A parsed data row: value, quantile, total count, and 1/(1-q) unless it is the last row.
    type Row = (f64, f64, u64, Option<f64>);

    /// Parses a .hgrm text the way HdrHistogram's plotter does, checking its shape as it goes.
    fn parse_hgrm(text: &str) -> (Vec<Row>, Vec<String>) {
        let mut lines = text.lines();
        assert_eq!(
            lines.next().unwrap(),
            "       Value     Percentile TotalCount 1/(1-Percentile)"
        );
        assert_eq!(lines.next().unwrap(), "");
        let mut rows = Vec::new();
        let mut footer = Vec::new();
        for line in lines {
            if line.starts_with("#[") {
                footer.push(line.to_string());
                continue;
            }
            assert!(footer.is_empty(), "data row after the footer: {line:?}");
            let cols: Vec<&str> = line.split_whitespace().collect();
            assert!(cols.len() == 3 || cols.len() == 4, "{line:?}");
            assert_eq!(
                &line[..12].trim_start(),
                &cols[0],
                "value column is 12 wide"
            );
            rows.push((
                cols[0].parse().unwrap(),
                cols[1].parse().unwrap(),
                cols[2].parse().unwrap(),
                cols.get(3).map(|c| c.parse().unwrap()),
            ));
        }
        (rows, footer)
    }

    #[test]
    fn java_fixed_rounds_half_up_on_the_shortest_form() {
        assert_eq!(java_fixed(2.5, 2, 14), "          2.50");
        assert_eq!(java_fixed(0.0, 12, 2), "0.000000000000");
        assert_eq!(java_fixed(1234.567, 3, 12), "    1234.567");
        // 0.15 is stored as 0.1499999999999999944...: Java rounds its shortest form "0.15"
        // half up to 0.2, where C's printf would print 0.1.
        assert_eq!(java_fixed(0.15, 1, 0), "0.2");
        assert_eq!(java_fixed(0.125, 2, 0), "0.13");
        assert_eq!(java_fixed(9.9996, 3, 0), "10.000");
        assert_eq!(java_fixed(999.9995, 3, 0), "1000.000");
        assert_eq!(java_fixed(1e-7, 3, 0), "0.000");
        assert_eq!(java_fixed(123456789012.0, 3, 0), "123456789012.000");
        assert_eq!(java_fixed(1.5e21, 0, 0), "1500000000000000000000");
        assert_eq!(java_fixed(-1.25, 1, 6), "  -1.3");
        assert_eq!(java_fixed(-0.0001, 2, 0), "-0.00");
        assert_eq!(java_fixed(f64::INFINITY, 2, 14), "      Infinity");
    }

    /// Four values 1, 2, 3, 4, worked through Java's PercentileIterator by hand.
    #[test]
    fn hgrm_matches_java_for_a_hand_worked_histogram() {
        let h = hist_of(&[(1, 1), (2, 1), (3, 1), (4, 1)]);
        let want = format!(
            "       Value     Percentile TotalCount 1/(1-Percentile)

       1.000 0.000000000000          1           1.00
       1.000 0.100000000000          1           1.11
       1.000 0.200000000000          1           1.25
       2.000 0.300000000000          2           1.43
       2.000 0.400000000000          2           1.67
       2.000 0.500000000000          2           2.00
       3.000 0.550000000000          3           2.22
       3.000 0.600000000000          3           2.50
       3.000 0.650000000000          3           2.86
       3.000 0.700000000000          3           3.33
       3.000 0.750000000000          3           4.00
       4.000 0.775000000000          4           4.44
       4.000 1.000000000000          4
#[Mean    =        2.500, StdDeviation   =        1.118]
#[Max     =        4.000, Total count    =            4]
#[Buckets = {:>12}, SubBuckets     =         2048]
",
            h.buckets()
        );
        assert_eq!(hgrm(&h, 1.0), want);
    }

    #[test]
    fn single_value_and_empty_histograms() {
        let h = hist_of(&[(1000, 1)]);
        let text = hgrm(&h, 1000.0);
        let (rows, footer) = parse_hgrm(&text);
        assert_eq!(rows, vec![(1.0, 0.0, 1, Some(1.0)), (1.0, 1.0, 1, None)]);
        assert_eq!(
            footer[0],
            "#[Mean    =        1.000, StdDeviation   =        0.000]"
        );

        let empty = new_latency_histogram();
        let (rows, footer) = parse_hgrm(&hgrm(&empty, 1000.0));
        assert!(rows.is_empty());
        assert_eq!(footer.len(), 3);
        assert!(footer[1].ends_with("Total count    =            0]"));
    }

    /// A latency-like spread in nanoseconds, printed in microseconds, parses back consistently.
    #[test]
    fn hgrm_parses_back_monotonic_with_the_right_footer() {
        let mut h = new_latency_histogram();
        let mut x: u64 = 88172645463325252;
        for _ in 0..50_000 {
            // xorshift: a deterministic long-tailed spread from ~20 µs to ~40 ms.
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let v = 20_000 + (x % 1000) * (x % 1000) * (1 + x % 40);
            h.record(v).unwrap();
        }
        let text = hgrm(&h, 1000.0);
        let (rows, footer) = parse_hgrm(&text);
        assert!(rows.len() > 50, "{} rows", rows.len());
        for pair in rows.windows(2) {
            let ((v0, q0, c0, _), (v1, q1, c1, _)) = (pair[0], pair[1]);
            assert!(
                v1 >= v0 && q1 > q0 && c1 >= c0,
                "{:?} then {:?}",
                pair[0],
                pair[1]
            );
        }
        for &(_, q, _, inverse) in &rows[..rows.len() - 1] {
            let want = 1.0 / (1.0 - q);
            let got = inverse.expect("every row but the last has 1/(1-q)");
            assert!((got - want).abs() <= 0.005 + want * 1e-9, "{got} vs {want}");
        }
        let &(last_value, last_q, last_count, last_inverse) = rows.last().unwrap();
        assert_eq!((last_q, last_count, last_inverse), (1.0, 50_000, None));
        assert_eq!(last_value, h.max() as f64 / 1000.0);
        assert_eq!(rows[0].0, h.highest_equivalent(h.min()) as f64 / 1000.0);
        // The median row's value agrees with the histogram's own quantile.
        let median = rows.iter().find(|r| r.1 >= 0.5).unwrap();
        assert_eq!(median.0, h.value_at_quantile(0.5) as f64 / 1000.0);

        let nums = |line: &str| -> Vec<f64> {
            line.split(['=', ',', ']'])
                .filter_map(|s| s.trim().parse().ok())
                .collect()
        };
        let mean_sd = nums(&footer[0]);
        assert!(
            (mean_sd[0] - h.mean() / 1000.0).abs() < 0.002,
            "{mean_sd:?}"
        );
        assert!(
            (mean_sd[1] - h.stdev() / 1000.0).abs() < 0.002,
            "{mean_sd:?}"
        );
        assert_eq!(nums(&footer[1]), vec![h.max() as f64 / 1000.0, 50_000.0]);
        assert_eq!(nums(&footer[2]), vec![f64::from(h.buckets()), 2048.0]);
    }

    #[test]
    fn ticks_halve_with_each_half_distance() {
        let levels: Vec<f64> = std::iter::successors(Some(0.0), |&l| Some(next_level(l, 5)))
            .take(16)
            .collect();
        assert_eq!(
            levels,
            vec![
                0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0, 60.0, 65.0, 70.0, 75.0, 77.5, 80.0, 82.5,
                85.0, 87.5
            ]
        );
    }

    #[test]
    fn base64_v2_round_trip() {
        let h = hist_of(&[(1, 3), (999, 1), (123_456, 7), (3_600_000_000_000, 2)]);
        let text = encode_base64_v2(&h);
        // Java's compressed V2 cookie 0x1c849304 reads as "HISTF" in base64.
        assert!(text.starts_with("HISTF"), "{text}");
        let back = decode_base64_v2(&text).unwrap();
        assert_eq!(back.len(), h.len());
        assert_eq!(back.max(), h.max());
        assert_eq!(back.min_nz(), h.min_nz());
        assert_eq!(back, h);
        assert_eq!(hgrm(&back, 1000.0), hgrm(&h, 1000.0));

        let empty = decode_base64_v2(&encode_base64_v2(&new_latency_histogram())).unwrap();
        assert!(empty.is_empty());
        assert!(matches!(
            decode_base64_v2("not base64!"),
            Err(DecodeError::Base64(_))
        ));
        assert!(matches!(
            decode_base64_v2("AAAAAAAAAAA="),
            Err(DecodeError::Histogram(_))
        ));
    }
}
