//! Where an invocation runs: the policy, kept free of I/O so it can be tested alone.
//!
//! 1. A worker with an idle warm environment of that exact code and configuration (no
//!    cold start), the least busy of them first.
//! 2. Otherwise the worker with the most free memory (a cold start where it hurts least).
//!
//! The result is an order, not one choice: when an attempt never reached an environment
//! (the worker was unreachable or full) the gateway tries the next one.

/// What the gateway knows about one live worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// Memory not reserved by any environment, in MB.
    pub free_mb: u64,
    /// Whether it reported an idle environment of the wanted revision.
    pub warm: bool,
    /// Invocations this gateway has in flight on it.
    pub in_flight: usize,
}

/// Candidates in the order to try them.
pub fn order(mut candidates: Vec<Candidate>) -> Vec<Candidate> {
    candidates.sort_by(|a, b| {
        b.warm
            .cmp(&a.warm)
            .then_with(|| {
                if a.warm && b.warm {
                    a.in_flight.cmp(&b.in_flight)
                } else {
                    std::cmp::Ordering::Equal
                }
            })
            .then_with(|| b.free_mb.cmp(&a.free_mb))
            .then_with(|| a.in_flight.cmp(&b.in_flight))
            .then_with(|| a.id.cmp(&b.id))
    });
    candidates
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(id: &str, free_mb: u64, warm: bool, in_flight: usize) -> Candidate {
        Candidate {
            id: id.into(),
            free_mb,
            warm,
            in_flight,
        }
    }

    fn ids(v: Vec<Candidate>) -> Vec<String> {
        v.into_iter().map(|c| c.id).collect()
    }

    #[test]
    fn warm_environment_beats_free_memory() {
        let got = order(vec![
            c("big", 8000, false, 0),
            c("warm", 100, true, 0),
            c("mid", 4000, false, 0),
        ]);
        assert_eq!(ids(got), ["warm", "big", "mid"]);
    }

    #[test]
    fn among_warm_the_least_busy_first() {
        let got = order(vec![c("a", 9000, true, 3), c("b", 100, true, 1)]);
        assert_eq!(ids(got), ["b", "a"]);
    }

    #[test]
    fn cold_placement_prefers_most_free_memory() {
        let got = order(vec![
            c("small", 512, false, 0),
            c("large", 4096, false, 5),
            c("medium", 2048, false, 0),
        ]);
        assert_eq!(ids(got), ["large", "medium", "small"]);
    }

    #[test]
    fn ties_are_deterministic() {
        let got = order(vec![c("b", 1, false, 0), c("a", 1, false, 0)]);
        assert_eq!(ids(got), ["a", "b"]);
    }
}
