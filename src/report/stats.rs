//! Statistics for comparing two sets of repetitions: medians; for independent samples the
//! two-sided Mann–Whitney U test and a bootstrap interval of the ratio of medians; for
//! paired samples (two targets measured back to back) the Wilcoxon signed-rank test and a
//! bootstrap interval of the median of the pair ratios. The tests are exact, ties
//! included, for small samples (normal approximation beyond), and each says how many
//! repetitions it needs before it can ever reach significance.
//!
//! Everything here is deterministic: the bootstrap draws from SplitMix64 seeded by the
//! caller, so the same samples always give the same interval on any build.

/// The median of `values` (the mean of the two middle values for an even count); NaN
/// when empty.
pub(crate) fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    median_of_sorted(&v)
}

/// The median of `sorted` (ascending, not empty).
pub(crate) fn median_of_sorted(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// SplitMix64: small, fast, and the same sequence on every platform and crate version.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(u64);

impl SplitMix64 {
    pub(crate) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0), without modulo bias.
    pub(crate) fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return (x % n) as usize;
            }
        }
    }
}

/// FNV-1a of a string: a stable seed for the bootstrap of one (cell, metric).
pub(crate) fn seed_of(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01B3);
    }
    h
}

/// Samples up to this total size get the exact permutation distribution of U.
const EXACT_MAX_N: usize = 60;

/// Two-sided p-value of the Mann–Whitney U (Wilcoxon rank-sum) test that `a` and `b`
/// come from the same distribution. Ties get mid-ranks. Exact (by counting every split of
/// the pooled ranks) up to [`EXACT_MAX_N`] values in all, then the normal approximation
/// with tie and continuity corrections. 1.0 when either side is empty.
pub(crate) fn mann_whitney_p(a: &[f64], b: &[f64]) -> f64 {
    let (m, n) = (a.len(), b.len());
    if m == 0 || n == 0 {
        return 1.0;
    }
    // Doubled mid-ranks: integers even with ties.
    let mut pooled: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, true))
        .chain(b.iter().map(|&x| (x, false)))
        .collect();
    pooled.sort_by(|x, y| x.0.total_cmp(&y.0));
    let total = m + n;
    let (rank2, ties) = doubled_mid_ranks(&pooled);
    let w_obs: u64 = pooled
        .iter()
        .zip(&rank2)
        .filter(|(p, _)| p.1)
        .map(|(_, r)| *r)
        .sum();
    // E[W] doubled: m (N + 1).
    let expected = (m * (total + 1)) as f64;
    let dev_obs = (w_obs as f64 - expected).abs();

    if total <= EXACT_MAX_N {
        // counts[k][s]: subsets of size k of the ranks seen so far with doubled sum s.
        let max_sum: usize = rank2.iter().map(|&r| r as usize).sum();
        let mut counts = vec![vec![0f64; max_sum + 1]; m + 1];
        counts[0][0] = 1.0;
        for &r in &rank2 {
            let r = r as usize;
            for k in (1..=m).rev() {
                let (lower, upper) = counts.split_at_mut(k);
                let (prev, cur) = (&lower[k - 1], &mut upper[0]);
                for s in (r..=max_sum).rev() {
                    if prev[s - r] != 0.0 {
                        cur[s] += prev[s - r];
                    }
                }
            }
        }
        return exact_two_sided(&counts[m], expected, dev_obs);
    }

    // Normal approximation on U = W - m(m+1)/2 (undoubled), tie-corrected variance.
    let (mf, nf, nn) = (m as f64, n as f64, total as f64);
    let var = mf * nf / 12.0 * ((nn + 1.0) - tie_term(&ties) / (nn * (nn - 1.0)));
    normal_two_sided(dev_obs, var)
}

/// Doubled mid-ranks of `sorted` (ascending by its first element): integers even with
/// ties. Also the size of each group of tied values, in order.
fn doubled_mid_ranks(sorted: &[(f64, bool)]) -> (Vec<u64>, Vec<usize>) {
    let total = sorted.len();
    let mut rank2 = vec![0u64; total];
    let mut ties: Vec<usize> = Vec::new();
    let mut i = 0;
    while i < total {
        let mut j = i;
        while j + 1 < total && sorted[j + 1].0 == sorted[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean; doubled: (i+1 + j+1).
        let r2 = (i + 1 + j + 1) as u64;
        for r in rank2.iter_mut().take(j + 1).skip(i) {
            *r = r2;
        }
        ties.push(j - i + 1);
        i = j + 1;
    }
    (rank2, ties)
}

/// Σ (t³ − t) over the groups of ties: the variance correction for ties.
fn tie_term(ties: &[usize]) -> f64 {
    ties.iter()
        .map(|&t| {
            let t = t as f64;
            t * t * t - t
        })
        .sum()
}

/// The exact two-sided p-value: the share of the distribution `counts` (counts[s]: how
/// many outcomes give the doubled statistic s) at least as far from `expected` as the
/// observed `dev_obs`.
fn exact_two_sided(counts: &[f64], expected: f64, dev_obs: f64) -> f64 {
    let all: f64 = counts.iter().sum();
    let extreme: f64 = counts
        .iter()
        .enumerate()
        .filter(|(s, _)| (*s as f64 - expected).abs() >= dev_obs - 1e-9)
        .map(|(_, c)| *c)
        .sum();
    (extreme / all).min(1.0)
}

/// The normal approximation's two-sided p-value for a doubled deviation `dev_obs` of a
/// statistic with variance `var` (undoubled), with continuity correction; 1.0 when the
/// variance is not positive.
fn normal_two_sided(dev_obs: f64, var: f64) -> f64 {
    if var <= 0.0 {
        return 1.0;
    }
    let dev = (dev_obs / 2.0 - 0.5).max(0.0);
    (2.0 * normal_upper_tail(dev / var.sqrt())).min(1.0)
}

/// P(Z > z) for a standard normal Z (Abramowitz–Stegun 7.1.26 through erfc; |error| < 1.5e-7).
fn normal_upper_tail(z: f64) -> f64 {
    let x = z / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erfc = poly * (-x * x).exp();
    let erfc = if x >= 0.0 { erfc } else { 2.0 - erfc };
    erfc / 2.0
}

/// The smallest two-sided p-value a Mann–Whitney test of `m` against `n` values can give
/// (complete separation): 2 / C(m + n, m).
pub(crate) fn min_p_value(m: usize, n: usize) -> f64 {
    if m == 0 || n == 0 {
        return 1.0;
    }
    let mut c = 1f64;
    for i in 0..m.min(n) {
        c = c * (m + n - i) as f64 / (i + 1) as f64;
    }
    (2.0 / c).min(1.0)
}

/// The fewest repetitions per side (equal sides) with which the test can reach `alpha`.
pub(crate) fn min_reps(alpha: f64) -> usize {
    (1..1000)
        .find(|&k| min_p_value(k, k) <= alpha)
        .unwrap_or(1000)
}

/// Two-sided p-value of the Wilcoxon signed-rank test that the paired differences `d`
/// are centred on 0. Zero differences are dropped (Wilcoxon's rule); ties get mid-ranks.
/// Exact (every assignment of signs counted) up to [`EXACT_MAX_N`] differences, then the
/// normal approximation with tie and continuity corrections. 1.0 when nothing is left.
pub(crate) fn signed_rank_p(d: &[f64]) -> f64 {
    let mut abs: Vec<(f64, bool)> = d
        .iter()
        .filter(|x| **x != 0.0 && x.is_finite())
        .map(|&x| (x.abs(), x > 0.0))
        .collect();
    let n = abs.len();
    if n == 0 {
        return 1.0;
    }
    abs.sort_by(|x, y| x.0.total_cmp(&y.0));
    let (rank2, ties) = doubled_mid_ranks(&abs);
    let total: u64 = rank2.iter().sum();
    let w_obs: u64 = abs
        .iter()
        .zip(&rank2)
        .filter(|(a, _)| a.1)
        .map(|(_, r)| *r)
        .sum();
    let expected = total as f64 / 2.0;
    let dev_obs = (w_obs as f64 - expected).abs();
    if n <= EXACT_MAX_N {
        // counts[s]: sign assignments whose positive doubled ranks sum to s.
        let mut counts = vec![0f64; total as usize + 1];
        counts[0] = 1.0;
        for &r in &rank2 {
            let r = r as usize;
            for s in (r..counts.len()).rev() {
                counts[s] += counts[s - r];
            }
        }
        return exact_two_sided(&counts, expected, dev_obs);
    }
    let nf = n as f64;
    let var = nf * (nf + 1.0) * (2.0 * nf + 1.0) / 24.0 - tie_term(&ties) / 48.0;
    normal_two_sided(dev_obs, var)
}

/// The smallest two-sided p-value a signed-rank test of `n` pairs can give: 2 / 2^n.
/// The fewest values whose range covers their median with at least `confidence`: the
/// sample range covers it with probability 1 − 2^(1−n), so 6 for 95%. Fewer values
/// cannot support a distribution-free interval of that confidence.
pub(crate) fn min_n_for_median_interval(confidence: f64) -> usize {
    (1..64)
        .find(|&n| 1.0 - 0.5f64.powi(n as i32 - 1) >= confidence)
        .unwrap_or(64)
}

pub(crate) fn min_p_value_paired(n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    (2.0 / 2f64.powi(n as i32)).min(1.0)
}

/// The fewest pairs with which the signed-rank test can reach `alpha`.
pub(crate) fn min_pairs(alpha: f64) -> usize {
    (1..1000)
        .find(|&n| min_p_value_paired(n) <= alpha)
        .unwrap_or(1000)
}

/// The `confidence` percentile-bootstrap interval of the median of `values`.
pub(crate) fn bootstrap_median_ci(
    values: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    if values.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut r = vec![0.0; values.len()];
    let mut medians = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for x in r.iter_mut() {
            *x = values[rng.below(values.len())];
        }
        medians.push(median(&r));
    }
    medians.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Some((quantile(&medians, tail), quantile(&medians, 1.0 - tail)))
}

/// The `confidence` (e.g. 0.95) percentile-bootstrap interval of median(b) / median(a):
/// `resamples` times, each side is resampled with replacement and the ratio of the two
/// medians taken; the interval is the central `confidence` share of those ratios.
/// `None` when a side is empty or a baseline median is 0.
pub(crate) fn bootstrap_ratio_ci(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let mut ra = vec![0.0; a.len()];
    let mut rb = vec![0.0; b.len()];
    let mut ratios = Vec::with_capacity(resamples);
    for _ in 0..resamples {
        for x in ra.iter_mut() {
            *x = a[rng.below(a.len())];
        }
        for x in rb.iter_mut() {
            *x = b[rng.below(b.len())];
        }
        let (ma, mb) = (median(&ra), median(&rb));
        if ma == 0.0 || !ma.is_finite() || !mb.is_finite() {
            return None;
        }
        ratios.push(mb / ma);
    }
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - confidence) / 2.0;
    Some((quantile(&ratios, tail), quantile(&ratios, 1.0 - tail)))
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Relative spread of a sample: (max − min) / median, in percent; 0 for one value.
pub(crate) fn spread_pct(values: &[f64]) -> f64 {
    let m = median(values);
    if values.len() < 2 || m == 0.0 || !m.is_finite() {
        return 0.0;
    }
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    (max - min) / m.abs() * 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_p_values_match_the_tables() {
        // Complete separation, 4 against 4: 2 of C(8,4) = 70 splits are as extreme.
        let p = mann_whitney_p(&[1.0, 2.0, 3.0, 4.0], &[5.0, 6.0, 7.0, 8.0]);
        assert!((p - 2.0 / 70.0).abs() < 1e-12, "{p}");
        assert!((min_p_value(4, 4) - 2.0 / 70.0).abs() < 1e-12);
        // 3 against 3 can never go below 0.1.
        assert!((min_p_value(3, 3) - 0.1).abs() < 1e-12);
        assert_eq!(min_reps(0.05), 4);
        assert_eq!(min_reps(0.01), 5);
        // Identical samples: nothing to see.
        assert_eq!(mann_whitney_p(&[1.0, 1.0, 1.0], &[1.0, 1.0, 1.0]), 1.0);
        // Interleaved values: far from significant.
        let p = mann_whitney_p(&[1.0, 3.0, 5.0, 7.0, 9.0], &[2.0, 4.0, 6.0, 8.0, 10.0]);
        assert!(p > 0.5, "{p}");
        // Symmetric in its arguments.
        let (a, b) = ([1.0, 2.5, 3.0, 7.0], [2.0, 2.5, 8.0, 9.0, 9.5]);
        assert!((mann_whitney_p(&a, &b) - mann_whitney_p(&b, &a)).abs() < 1e-12);
    }

    #[test]
    fn exact_and_normal_agree_roughly_for_larger_samples() {
        let a: Vec<f64> = (0..30).map(f64::from).collect();
        let b: Vec<f64> = (0..30).map(|i| f64::from(i) + 8.0).collect();
        let exact = mann_whitney_p(&a, &b);
        let mut a2 = a.clone();
        a2.extend((100..120).map(f64::from));
        let mut b2 = b.clone();
        b2.extend((108..128).map(f64::from));
        let approx = mann_whitney_p(&a2, &b2);
        assert!(exact < 0.05 && approx < 0.05, "{exact} {approx}");
        // The approximation against a known value: z = 1.96 → p = 0.05.
        assert!((2.0 * normal_upper_tail(1.959_964) - 0.05).abs() < 1e-5);
    }

    #[test]
    fn bootstrap_intervals_are_seeded_and_cover_the_ratio() {
        let a = [100.0, 102.0, 98.0, 101.0, 99.0];
        let b = [120.0, 123.0, 118.0, 121.0, 119.0];
        let ci = bootstrap_ratio_ci(&a, &b, 2000, 0.95, 7).unwrap();
        assert_eq!(ci, bootstrap_ratio_ci(&a, &b, 2000, 0.95, 7).unwrap());
        let r = median(&b) / median(&a);
        assert!(ci.0 <= r && r <= ci.1, "{ci:?} {r}");
        assert!(ci.0 > 1.1 && ci.1 < 1.3, "{ci:?}");
        assert!(bootstrap_ratio_ci(&[0.0], &[1.0], 10, 0.95, 1).is_none());
    }

    #[test]
    fn signed_rank_p_values_match_the_tables() {
        // Six pairs, all the same sign: 2 of 2^6 sign assignments are as extreme.
        let p = signed_rank_p(&[0.1, 0.2, 0.3, 0.4, 0.5, 0.6]);
        assert!((p - 2.0 / 64.0).abs() < 1e-12, "{p}");
        assert_eq!(min_pairs(0.05), 6);
        assert!((min_p_value_paired(5) - 0.0625).abs() < 1e-12);
        // Balanced signs: nothing to see; zeros are dropped.
        assert!(signed_rank_p(&[0.1, -0.1, 0.2, -0.2, 0.3, -0.3]) > 0.9);
        assert_eq!(signed_rank_p(&[0.0, 0.0]), 1.0);
        // n = 8, rank 3 alone negative: W- = 3. Sign assignments with W- ≤ 3 are {},
        // {1}, {2}, {3}, {1,2}: 5 of 256, so two-sided p = 10/256.
        let p = signed_rank_p(&[1.0, 2.0, -3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        assert!((p - 10.0 / 256.0).abs() < 1e-12, "{p}");
        // Normal approximation beyond EXACT_MAX_N.
        let d: Vec<f64> = (1..=80)
            .map(|i| {
                if i % 4 == 0 {
                    -f64::from(i)
                } else {
                    f64::from(i)
                }
            })
            .collect();
        assert!(signed_rank_p(&d) < 0.01);
    }

    #[test]
    fn bootstrap_median_intervals_cover_the_median() {
        let v = [1.01, 0.99, 1.02, 0.98, 1.0, 1.03];
        let (lo, hi) = bootstrap_median_ci(&v, 2000, 0.95, 3).unwrap();
        assert!(lo <= median(&v) && median(&v) <= hi && lo >= 0.98 && hi <= 1.03);
    }

    #[test]
    fn spreads_and_medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!((spread_pct(&[90.0, 100.0, 110.0]) - 20.0).abs() < 1e-12);
        assert_eq!(spread_pct(&[5.0]), 0.0);
        let mut r = SplitMix64::new(1);
        assert!((0..1000).all(|_| r.below(7) < 7));
    }
}
