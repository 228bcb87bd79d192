//! Chart axes: linear and log scales with tick positions chosen here (plotters' own f64
//! ranges pick theirs), and the number formats of their labels. Log-scaled axes hold
//! log10 of the value in a linear coordinate space, so the output depends only on the
//! data and a re-render gives the same bytes.

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Scale {
    Linear,
    Log,
}

/// One chart axis: its label, scale, data range and tick labels.
pub(super) struct Dim {
    pub(super) desc: String,
    pub(super) scale: Scale,
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) ticks: Vec<f64>,
    pub(super) label: fn(f64) -> String,
}

impl Dim {
    pub(super) fn tr(&self, v: f64) -> f64 {
        match self.scale {
            Scale::Linear => v,
            Scale::Log => v.max(f64::MIN_POSITIVE).log10(),
        }
    }
}

/// A linear coordinate with exactly the given ticks (plotters' own f64 ranges pick theirs).
pub(super) struct Ticked {
    pub(super) lo: f64,
    pub(super) hi: f64,
    pub(super) ticks: Vec<f64>,
}

impl Ranged for Ticked {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, v: &f64, limit: (i32, i32)) -> i32 {
        let span = self.hi - self.lo;
        if span <= 0.0 {
            return (limit.0 + limit.1) / 2;
        }
        let at = ((v - self.lo) / span).clamp(-1.0, 2.0);
        limit.0 + (f64::from(limit.1 - limit.0) * at + 1e-3).floor() as i32
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            return Vec::new();
        }
        self.ticks
            .iter()
            .copied()
            .filter(|t| *t >= self.lo - 1e-9 && *t <= self.hi + 1e-9)
            .collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.lo..self.hi
    }
}

/// A linear axis from 0 (or `lo`) to just above `hi`, with round ticks.
pub(super) fn linear_dim(desc: String, lo: f64, hi: f64, label: fn(f64) -> String) -> Dim {
    let hi = if hi > lo { hi } else { lo + 1.0 };
    let ticks = nice_ticks(lo, hi * 1.05);
    let top = ticks.last().copied().unwrap_or(hi).max(hi * 1.05);
    Dim {
        desc,
        scale: Scale::Linear,
        lo,
        hi: top,
        ticks,
        label,
    }
}

/// A round distance between ticks (1, 2 or 5 × 10^k) giving about 6 over `span`.
pub(super) fn tick_step(span: f64) -> f64 {
    let mag = 10f64.powf((span / 6.0).log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 7.0)
        .unwrap_or(10.0 * mag)
}

/// Round ticks ([`tick_step`] apart) covering [lo, hi].
pub(super) fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let step = tick_step(hi - lo);
    let start = (lo / step).ceil() as i64;
    let end = (hi / step).ceil() as i64;
    (start..=end).map(|k| k as f64 * step).collect()
}

/// Mantissas of log-axis ticks, densest first: the densest that gives at most
/// `MAX_LOG_TICKS` ticks over the data is used.
const LOG_MANTISSAS: [&[f64]; 4] = [
    &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0],
    &[1.0, 2.0, 5.0],
    &[1.0, 3.0],
    &[1.0],
];
const MAX_LOG_TICKS: usize = 12;

/// The ticks `m × 10^k` (m in `mantissas`, every `every`th decade) from the largest at
/// or below `lo` to the smallest at or above `hi`, so they bracket the data.
fn log_ticks(lo: f64, hi: f64, mantissas: &[f64], every: i32) -> Vec<f64> {
    let (a, b) = (lo.log10().floor() as i32 - 1, hi.log10().ceil() as i32 + 1);
    let all: Vec<f64> = (a..=b)
        .filter(|e| e.rem_euclid(every) == 0)
        .flat_map(|e| mantissas.iter().map(move |m| m * 10f64.powi(e)))
        .collect();
    let first = all
        .iter()
        .rposition(|&v| v <= lo * (1.0 + 1e-9))
        .unwrap_or(0);
    let last = all
        .iter()
        .position(|&v| v >= hi * (1.0 - 1e-9))
        .unwrap_or(all.len() - 1);
    all[first..=last].to_vec()
}

/// A log axis over [lo, hi] (both > 0) whose ticks (1, 2, 5 × 10^k or as dense as
/// reads well) bracket the data: one at or below `lo`, one at or above `hi`.
pub(super) fn log_dim(desc: String, lo: f64, hi: f64, label: fn(f64) -> String) -> Dim {
    let lo = lo.max(f64::MIN_POSITIVE);
    let hi = hi.max(lo * 1.0001);
    let ticks = LOG_MANTISSAS
        .iter()
        .map(|m| log_ticks(lo, hi, m, 1))
        .find(|t| t.len() <= MAX_LOG_TICKS)
        .unwrap_or_else(|| {
            let decades = (hi.log10().ceil() - lo.log10().floor()) as i32;
            log_ticks(lo, hi, &[1.0], (decades / MAX_LOG_TICKS as i32 + 1).max(1))
        });
    let first = ticks.first().copied().unwrap_or(lo);
    let last = ticks.last().copied().unwrap_or(hi);
    Dim {
        desc,
        scale: Scale::Log,
        // A little room, so a point on the first or last tick is not on the frame.
        lo: first.min(lo / 1.1),
        hi: last.max(hi * 1.1),
        ticks,
        label,
    }
}

pub(super) fn fmt_int(v: f64) -> String {
    let r = v.round();
    if (v - r).abs() < 1e-6 * v.abs().max(1.0) {
        format!("{r:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// A tick label: `45k` and `1.2M` from a thousand on (so 45000 and 450000 are not read
/// one for the other), whole numbers from 100, else up to three decimals.
pub(super) fn fmt_num(v: f64) -> String {
    let short = |x: f64, unit: &str| {
        let s = format!("{x:.2}");
        format!("{}{unit}", s.trim_end_matches('0').trim_end_matches('.'))
    };
    if v.abs() >= 1e6 {
        short(v / 1e6, "M")
    } else if v.abs() >= 1e3 {
        short(v / 1e3, "k")
    } else if v.abs() >= 100.0 || v == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 1.0 {
        let s = format!("{v:.1}");
        s.strip_suffix(".0").map(str::to_string).unwrap_or(s)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').to_string()
    }
}

/// `1/(1-p)` → the percentile it stands for: 1 → 0%, 10 → 90%, 1000 → 99.9%.
pub(super) fn fmt_percentile(x: f64) -> String {
    if x <= 1.0 + 1e-9 {
        return "0%".into();
    }
    let p = (1.0 - 1.0 / x) * 100.0;
    let digits = ((x.log10().round() as i64) - 2).max(0) as usize;
    format!("{p:.digits$}%")
}

/// The x axis for concurrency: log-scaled when the values span 8× or more; ticks at the
/// tested values.
pub(super) fn concurrency_dim(values: &[f64]) -> Dim {
    let mut ticks: Vec<f64> = values.to_vec();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let (lo, hi) = (
        ticks.first().copied().unwrap_or(1.0),
        ticks.last().copied().unwrap_or(1.0),
    );
    let desc = "client concurrency (threads, one connection each)".to_string();
    if lo > 0.0 && hi / lo >= 8.0 {
        Dim {
            desc: format!("{desc}, log scale"),
            scale: Scale::Log,
            lo: lo / 1.25,
            hi: hi * 1.25,
            ticks,
            label: fmt_int,
        }
    } else {
        let pad = ((hi - lo) * 0.05).max(0.5);
        Dim {
            desc,
            scale: Scale::Linear,
            lo: (lo - pad).max(0.0),
            hi: hi + pad,
            ticks,
            label: fmt_int,
        }
    }
}

/// Latency values in µs: the unit to show them in, and the divisor.
pub(super) fn latency_unit(max_us: f64) -> (&'static str, f64) {
    if max_us >= 10_000.0 {
        ("ms", 1000.0)
    } else {
        ("µs", 1.0)
    }
}

/// An axis for `values` shown divided by `div`, described as `what (unit)`: log-scaled
/// when the positive values span more than 10× (so small ones are not flattened against
/// the axis), else linear from 0.
pub(super) fn spanning_dim(what: &str, unit: &str, values: &[f64], div: f64) -> Dim {
    let max = values.iter().copied().fold(0.0, f64::max);
    let min = values
        .iter()
        .copied()
        .filter(|v| *v > 0.0)
        .fold(f64::INFINITY, f64::min);
    if min.is_finite() && max / min > 10.0 {
        log_dim(
            format!("{what} ({unit}, log scale)"),
            min / div,
            max / div,
            fmt_num,
        )
    } else {
        linear_dim(format!("{what} ({unit})"), 0.0, max / div, fmt_num)
    }
}

/// A latency axis (values in µs) in µs or ms: log-scaled when the values span more
/// than 10×. Also the divisor that puts values in its unit.
pub(super) fn latency_dim(what: &str, values: &[f64]) -> (Dim, f64) {
    let max = values.iter().copied().fold(0.0, f64::max);
    let (unit, div) = latency_unit(max);
    (spanning_dim(what, unit, values, div), div)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_read_as_percentiles() {
        assert_eq!(fmt_percentile(1.0), "0%");
        assert_eq!(fmt_percentile(10.0), "90%");
        assert_eq!(fmt_percentile(100.0), "99%");
        assert_eq!(fmt_percentile(1000.0), "99.9%");
        assert_eq!(fmt_percentile(100000.0), "99.999%");
    }

    #[test]
    fn ticks_are_round() {
        assert_eq!(
            nice_ticks(0.0, 1000.0),
            vec![0.0, 200.0, 400.0, 600.0, 800.0, 1000.0]
        );
        let d = log_dim("x".into(), 3.0, 4000.0, fmt_num);
        assert_eq!(
            d.ticks,
            vec![2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0]
        );
    }

    #[test]
    fn large_tick_labels_are_short() {
        assert_eq!(fmt_num(20_000.0), "20k");
        assert_eq!(fmt_num(45_000.0), "45k");
        assert_eq!(fmt_num(12_500.0), "12.5k");
        assert_eq!(fmt_num(2_000_000.0), "2M");
        assert_eq!(fmt_num(5000.0), "5k");
        assert_eq!(fmt_num(1250.0), "1.25k");
        assert_eq!(fmt_num(500.0), "500");
        assert_eq!(fmt_num(0.25), "0.25");
    }

    /// The saturation chart's bug: light requests at 30–45k/s and heavy ones near 500/s
    /// had no tick above 20,000. Every axis's ticks must bracket its data.
    #[test]
    fn log_ticks_bracket_the_data() {
        for (lo, hi) in [
            (480.0, 45_000.0),
            (30_000.0, 45_000.0),
            (3.0, 4000.0),
            (0.9, 1.1),
            (1.0, 1e9),
            (812.0, 812.5),
            (0.02, 7.0),
        ] {
            let d = log_dim("x".into(), lo, hi, fmt_num);
            let (first, last) = (d.ticks[0], *d.ticks.last().unwrap());
            assert!(first <= lo && last >= hi, "{lo}..{hi}: {:?}", d.ticks);
            assert!(
                d.ticks.len() >= 2 && d.ticks.len() <= MAX_LOG_TICKS,
                "{lo}..{hi}: {:?}",
                d.ticks
            );
            assert!(
                d.lo <= first && d.hi >= last,
                "{lo}..{hi}: axis {}..{}",
                d.lo,
                d.hi
            );
        }
    }

    #[test]
    fn linear_ticks_bracket_the_data() {
        for hi in [0.3, 7.0, 99.0, 100.0, 101.0, 45_123.0] {
            let d = linear_dim("x".into(), 0.0, hi, fmt_num);
            assert!(
                d.ticks[0] <= 0.0 && *d.ticks.last().unwrap() >= hi,
                "{hi}: {:?}",
                d.ticks
            );
        }
    }
}
