//! Statistics of repeated measurements: median and spread of runs, and the median of per-pair
//! ratios of interleaved A/B runs with its spread.

use std::time::Duration;

/// The median and spread (min, max) of repeated measurements.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(mut v: Vec<f64>) -> Stat {
        v.retain(|x| x.is_finite());
        if v.is_empty() {
            return Stat { median: f64::NAN, min: f64::NAN, max: f64::NAN, n: 0 };
        }
        v.sort_by(|a, b| a.total_cmp(b));
        let mid = v.len() / 2;
        let median = if v.len().is_multiple_of(2) { (v[mid - 1] + v[mid]) / 2.0 } else { v[mid] };
        Stat { median, min: v[0], max: v[v.len() - 1], n: v.len() }
    }

    /// The largest distance of a measurement from the median, in percent of the median
    /// (the "±" of the report); NaN without measurements.
    pub fn spread_pct(&self) -> f64 {
        if self.n == 0 || self.median == 0.0 {
            return f64::NAN;
        }
        (self.max - self.median).max(self.median - self.min) / self.median.abs() * 100.0
    }
}

/// Per-pair ratios `a[i] / b[i]` of interleaved runs (pair i = round i); pairs where either
/// side is missing are skipped.
pub fn pair_ratios(a: &[Option<f64>], b: &[Option<f64>]) -> Vec<f64> {
    a.iter()
        .zip(b)
        .filter_map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if *y > 0.0 => Some(x / y),
            _ => None,
        })
        .collect()
}

/// The q-quantile of sorted samples.
pub fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_spread() {
        let s = Stat::of(vec![1.0, 1.2, 0.9]);
        assert_eq!(s.median, 1.0);
        assert!((s.spread_pct() - 20.0).abs() < 1e-9);
        let even = Stat::of(vec![1.0, 2.0, 3.0, 4.0]);
        assert_eq!(even.median, 2.5);
        assert_eq!(Stat::of(vec![]).n, 0);
        assert!(Stat::of(vec![f64::NAN]).median.is_nan());
    }

    #[test]
    fn ratios_pair_by_round_and_skip_missing_sides() {
        let a = [Some(2.0), None, Some(3.0), Some(1.0)];
        let b = [Some(4.0), Some(1.0), None, Some(2.0)];
        assert_eq!(pair_ratios(&a, &b), vec![0.5, 0.5]);
    }

    #[test]
    fn quantiles() {
        let v: Vec<Duration> = (1..=1000).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Duration::from_millis(500));
        assert_eq!(quantile(&v, 0.99), Duration::from_millis(990));
        assert_eq!(quantile(&v, 0.999), Duration::from_millis(999));
    }
}
