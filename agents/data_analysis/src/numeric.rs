//! Numerically careful building blocks: compensated sums, two-pass central
//! moments, Hyndman-Fan type 7 quantiles and average ranks.

use std::cmp::Ordering;

/// Sum with Neumaier's compensation (error independent of the count for
/// well-conditioned sums).
pub(super) fn sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut total = 0.0_f64;
    let mut compensation = 0.0_f64;
    for x in values {
        let t = total + x;
        if total.abs() >= x.abs() {
            compensation += (total - t) + x;
        } else {
            compensation += (x - t) + total;
        }
        total = t;
    }
    total + compensation
}

/// Mean by a corrected two-pass: the naive mean plus the mean of the
/// residuals against it (removes the rounding of the first pass).
pub(super) fn mean(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let n = values.len() as f64;
    let first = sum(values.iter().copied()) / n;
    Some(first + sum(values.iter().map(|x| x - first)) / n)
}

/// Central moments of a sample: sums of powers of the deviations from the
/// mean (not divided by n).
#[derive(Debug, Clone, Copy)]
pub(super) struct Moments {
    pub(super) n: usize,
    pub(super) mean: f64,
    pub(super) m2: f64,
    pub(super) m3: f64,
    pub(super) m4: f64,
    pub(super) min: f64,
    pub(super) max: f64,
}

impl Moments {
    /// `None` for an empty sample.
    pub(super) fn of(values: &[f64]) -> Option<Self> {
        let mean = mean(values)?;
        let n = values.len() as f64;
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        for &x in values {
            min = min.min(x);
            max = max.max(x);
        }
        if min == max {
            return Some(Self {
                n: values.len(),
                mean: min,
                m2: 0.0,
                m3: 0.0,
                m4: 0.0,
                min,
                max,
            });
        }
        let d1 = sum(values.iter().map(|x| x - mean));
        let d2 = sum(values.iter().map(|x| (x - mean).powi(2)));
        let m3 = sum(values.iter().map(|x| (x - mean).powi(3)));
        let m4 = sum(values.iter().map(|x| (x - mean).powi(4)));
        // Corrected two-pass (the d1 term cancels the mean's rounding error).
        let m2 = (d2 - d1 * d1 / n).max(0.0);
        Some(Self {
            n: values.len(),
            mean,
            m2,
            m3,
            m4,
            min,
            max,
        })
    }

    /// Sample variance (divisor n - 1).
    pub(super) fn variance(&self) -> Option<f64> {
        (self.n > 1).then(|| self.m2 / (self.n - 1) as f64)
    }

    /// Sample standard deviation (divisor n - 1).
    pub(super) fn std(&self) -> Option<f64> {
        self.variance().map(f64::sqrt)
    }

    /// Adjusted Fisher-Pearson skewness G1 = g1 * sqrt(n(n-1)) / (n-2), with
    /// g1 = m3/n / (m2/n)^1.5 (what pandas `skew` and Excel `SKEW` report).
    pub(super) fn skewness(&self) -> Option<f64> {
        if self.n < 3 || self.m2 <= 0.0 {
            return None;
        }
        let n = self.n as f64;
        let g1 = n.sqrt() * self.m3 / self.m2.powf(1.5);
        Some(g1 * (n * (n - 1.0)).sqrt() / (n - 2.0))
    }

    /// Bias-corrected excess kurtosis G2 = ((n+1) g2 + 6)(n-1) / ((n-2)(n-3)),
    /// with g2 = n m4 / m2^2 - 3 (what pandas `kurt` and Excel `KURT` report).
    pub(super) fn kurtosis(&self) -> Option<f64> {
        if self.n < 4 || self.m2 <= 0.0 {
            return None;
        }
        let n = self.n as f64;
        let g2 = n * self.m4 / (self.m2 * self.m2) - 3.0;
        Some(((n + 1.0) * g2 + 6.0) * (n - 1.0) / ((n - 2.0) * (n - 3.0)))
    }
}

/// Sorts a copy ascending (values are finite).
pub(super) fn sorted(values: &[f64]) -> Vec<f64> {
    let mut copy = values.to_vec();
    copy.sort_by(f64::total_cmp);
    copy
}

/// Quantile of sorted data by linear interpolation between order statistics
/// (Hyndman-Fan type 7, the default of R `quantile` and NumPy `percentile`):
/// h = (n - 1) p, Q = x[floor h] + (h - floor h)(x[floor h + 1] - x[floor h]).
pub(super) fn quantile_sorted(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let h = last as f64 * p.clamp(0.0, 1.0);
    let lo = h.floor();
    // lo is within 0..=last by construction.
    let i = lo as usize;
    let below = sorted[i];
    Some(match sorted.get(i + 1) {
        Some(&above) if h > lo => below + (h - lo) * (above - below),
        _ => below,
    })
}

/// Ranks 1..=n with ties given the average of the ranks they span.
pub(super) fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]).then(a.cmp(&b)));
    let mut ranks = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len()
            && values[order[j + 1]].total_cmp(&values[order[i]]) == Ordering::Equal
        {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

/// Pearson correlation of paired samples (two-pass, centred sums);
/// `None` when fewer than two pairs or a sample is constant.
pub(super) fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    if x.len() < 2 || x.len() != y.len() {
        return None;
    }
    let mx = mean(x)?;
    let my = mean(y)?;
    let sxy = sum(x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)));
    let sxx = sum(x.iter().map(|a| (a - mx).powi(2)));
    let syy = sum(y.iter().map(|b| (b - my).powi(2)));
    if sxx <= 0.0 || syy <= 0.0 {
        return None;
    }
    Some((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Spearman rank correlation: Pearson on average ranks.
pub(super) fn spearman(x: &[f64], y: &[f64]) -> Option<f64> {
    pearson(&average_ranks(x), &average_ranks(y))
}
