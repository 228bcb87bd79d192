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
pub(crate) fn tick_step(span: f64) -> f64 {
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

/// A log axis over [lo, hi] (both > 0), ticks at 1, 2, 5 × 10^k (decades only if many).
pub(super) fn log_dim(desc: String, lo: f64, hi: f64, label: fn(f64) -> String) -> Dim {
    let lo = lo.max(f64::MIN_POSITIVE) / 1.15;
    let hi = hi.max(lo * 1.0001) * 1.15;
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let mut ticks: Vec<f64> = Vec::new();
    for e in a..=b {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v >= lo && v <= hi {
                ticks.push(v);
            }
        }
    }
    if ticks.len() > 12 {
        ticks.retain(|v| (v.log10() - v.log10().round()).abs() < 1e-9);
    }
    Dim {
        desc,
        scale: Scale::Log,
        lo,
        hi,
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

pub(super) fn fmt_num(v: f64) -> String {
    if v.abs() >= 100.0 || v == 0.0 {
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
            vec![5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0]
        );
    }
}
