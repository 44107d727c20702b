//! Percentiles of one run, and medians across rounds.

use std::time::Duration;

use crate::workload::RunStats;

/// The figures reported for one run (or the median of several).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub writes_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Nearest-rank percentile of an ascending slice; `p` in (0, 100]. An empty slice gives
/// the default (zero).
pub fn percentile<T: Copy + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The middle of `values` once sorted (the upper one of an even count); 0 when empty.
/// What the harnesses report across rounds.
pub fn middle(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut v: Vec<f64> = values.into_iter().collect();
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

impl Summary {
    pub fn of(run: &RunStats) -> Self {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        Self {
            writes_per_sec: run.latencies.len() as f64 / run.elapsed.as_secs_f64().max(1e-9),
            p50_ms: ms(percentile(&run.latencies, 50.0)),
            p99_ms: ms(percentile(&run.latencies, 99.0)),
        }
    }

    /// The median of each figure on its own across rounds.
    pub fn median(rounds: &[Summary]) -> Self {
        let med = |f: fn(&Summary) -> f64| {
            let mut v: Vec<f64> = rounds.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            match v.len() {
                0 => 0.0,
                n if n % 2 == 1 => v[n / 2],
                n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
            }
        };
        Self {
            writes_per_sec: med(|s| s.writes_per_sec),
            p50_ms: med(|s| s.p50_ms),
            p99_ms: med(|s| s.p99_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&v, 50.0), Duration::from_millis(50));
        assert_eq!(percentile(&v, 99.0), Duration::from_millis(99));
        assert_eq!(percentile(&v[..1], 99.0), Duration::from_millis(1));
        assert_eq!(percentile::<Duration>(&[], 50.0), Duration::ZERO);
        assert_eq!(percentile(&[1.0, 2.0, 3.0, 4.0], 50.0), 2.0);
    }

    #[test]
    fn middle_of_values() {
        assert_eq!(middle([3.0, 1.0, 2.0]), 2.0);
        assert_eq!(middle([1.0, 2.0]), 2.0, "the upper of an even count");
        assert_eq!(middle([]), 0.0);
    }

    #[test]
    fn median_of_rounds() {
        let s = |w| Summary {
            writes_per_sec: w,
            p50_ms: w,
            p99_ms: w,
        };
        assert_eq!(Summary::median(&[s(3.0), s(1.0), s(2.0)]), s(2.0));
        assert_eq!(Summary::median(&[s(1.0), s(2.0)]), s(1.5));
    }
}
