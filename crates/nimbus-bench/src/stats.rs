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

/// Nearest-rank percentile of an ascending slice; `p` in (0, 100].
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
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
        assert_eq!(percentile(&[], 50.0), Duration::ZERO);
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
