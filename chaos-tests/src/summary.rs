//! The one-line summary of a scenario, in the `key=value` form tools read.

use std::fmt;

#[derive(Debug, Clone)]
pub struct Summary {
    pub scenario: String,
    pub seed: u64,
    pub ops: u64,
    pub faults: u32,
    pub acked_writes_lost: usize,
    pub events_lost: usize,
    /// (highest concurrency counted inside the functions, the limit).
    pub max_concurrency: (u32, u32),
    pub longest_unavailable_ms: u64,
    pub linearizable: bool,
    /// Every fault healed and the cluster served again within the bound.
    pub recovered: bool,
    /// Why a check failed, for the log (not part of the summary line).
    pub notes: String,
}

impl Summary {
    /// Did every check pass?
    pub fn passed(&self) -> bool {
        self.linearizable
            && self.recovered
            && self.acked_writes_lost == 0
            && self.events_lost == 0
            && self.max_concurrency.0 <= self.max_concurrency.1
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "scenario={} seed={} ops={} faults={} acked_writes_lost={} events_lost={} \
             max_concurrency={}/{} longest_unavailable_ms={} linearizable={}",
            self.scenario,
            self.seed,
            self.ops,
            self.faults,
            self.acked_writes_lost,
            self.events_lost,
            self.max_concurrency.0,
            self.max_concurrency.1,
            self.longest_unavailable_ms,
            self.linearizable
        )
    }
}

/// The longest stretch in [begin, end] (ns) without a successful operation, in ms.
pub fn longest_gap_ms(successes: &[u64], begin: u64, end: u64) -> u64 {
    let mut times: Vec<u64> = successes
        .iter()
        .copied()
        .filter(|t| (begin..=end).contains(t))
        .collect();
    times.sort_unstable();
    let mut prev = begin;
    let mut longest = 0;
    for t in times.into_iter().chain(std::iter::once(end)) {
        longest = longest.max(t - prev);
        prev = t;
    }
    longest / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_line_has_every_field_in_order() {
        let s = Summary {
            scenario: "x".into(),
            seed: 7,
            ops: 10,
            faults: 2,
            acked_writes_lost: 0,
            events_lost: 0,
            max_concurrency: (3, 5),
            longest_unavailable_ms: 1200,
            linearizable: true,
            recovered: true,
            notes: String::new(),
        };
        assert_eq!(
            s.to_string(),
            "scenario=x seed=7 ops=10 faults=2 acked_writes_lost=0 events_lost=0 \
             max_concurrency=3/5 longest_unavailable_ms=1200 linearizable=true"
        );
        assert!(s.passed());
        assert!(!Summary {
            acked_writes_lost: 1,
            ..s.clone()
        }
        .passed());
        assert!(!Summary {
            linearizable: false,
            ..s.clone()
        }
        .passed());
        assert!(!Summary {
            recovered: false,
            ..s.clone()
        }
        .passed());
        assert!(!Summary {
            max_concurrency: (6, 5),
            ..s
        }
        .passed());
    }

    #[test]
    fn longest_gap_counts_the_edges() {
        let ms = 1_000_000;
        assert_eq!(longest_gap_ms(&[], 0, 500 * ms), 500);
        assert_eq!(longest_gap_ms(&[100 * ms, 400 * ms], 0, 450 * ms), 300);
        assert_eq!(longest_gap_ms(&[10 * ms], 0, 20 * ms), 10);
    }
}
