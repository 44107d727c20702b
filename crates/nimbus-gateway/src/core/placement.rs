//! Where an invocation runs: the policy, kept free of I/O so it can be tested alone.
//!
//! 1. A worker with an idle warm environment of that exact code and configuration (no
//!    cold start), the least busy of them first, then one in the gateway's own zone.
//! 2. Otherwise a cold start: first in a zone where the function has no warm
//!    environment yet (a function's environments spread over its region's zones, so
//!    losing a zone leaves warm capacity elsewhere), then in the gateway's zone, then on
//!    the worker with the most free memory (where it hurts least).
//!
//! The result is an order, not one choice: when an attempt never reached an environment
//! (the worker was unreachable or full) the gateway tries the next one.

/// What the gateway knows about one live worker.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    /// Memory not reserved by any environment, in MB.
    pub free_mb: u64,
    /// Whether it reported an idle environment of the wanted revision.
    pub warm: bool,
    /// Invocations this gateway has in flight on it.
    pub in_flight: usize,
    /// Its availability zone, if it has one.
    pub zone: Option<String>,
    /// Workers of its zone that hold environments of the wanted revision (idle ones
    /// they reported, or ones running this gateway's invocations).
    pub zone_warm: usize,
}

/// Candidates in the order to try them; `home_zone` is the gateway's own.
pub fn order(mut candidates: Vec<Candidate>, home_zone: Option<&str>) -> Vec<Candidate> {
    let home = |c: &Candidate| home_zone.is_some() && c.zone.as_deref() == home_zone;
    candidates.sort_by(|a, b| {
        b.warm
            .cmp(&a.warm)
            .then_with(|| {
                if a.warm && b.warm {
                    a.in_flight
                        .cmp(&b.in_flight)
                        .then_with(|| home(b).cmp(&home(a)))
                } else {
                    a.zone_warm
                        .cmp(&b.zone_warm)
                        .then_with(|| home(b).cmp(&home(a)))
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
            ..Default::default()
        }
    }

    fn z(id: &str, zone: &str, warm: bool, zone_warm: usize) -> Candidate {
        Candidate {
            id: id.into(),
            free_mb: 1000,
            warm,
            zone: Some(zone.into()),
            zone_warm,
            ..Default::default()
        }
    }

    #[test]
    fn warm_capacity_being_equal_the_gateways_zone_wins() {
        let got = order(
            vec![z("b1", "b", true, 1), z("a1", "a", true, 1)],
            Some("b"),
        );
        assert_eq!(ids(got), ["b1", "a1"]);
        let got = order(
            vec![z("b1", "b", true, 1), z("a1", "a", true, 1)],
            Some("a"),
        );
        assert_eq!(ids(got), ["a1", "b1"]);
    }

    #[test]
    fn cold_starts_spread_over_zones_before_preferring_home() {
        // Zone a already has a warm environment of the function: b gets the next one,
        // even though the gateway is in a.
        let got = order(
            vec![z("a2", "a", false, 1), z("b1", "b", false, 0)],
            Some("a"),
        );
        assert_eq!(ids(got), ["b1", "a2"]);
        let got = order(
            vec![z("b1", "b", false, 0), z("a1", "a", false, 0)],
            Some("a"),
        );
        assert_eq!(ids(got), ["a1", "b1"]);
    }

    fn ids(v: Vec<Candidate>) -> Vec<String> {
        v.into_iter().map(|c| c.id).collect()
    }

    #[test]
    fn warm_environment_beats_free_memory() {
        let got = order(
            vec![
                c("big", 8000, false, 0),
                c("warm", 100, true, 0),
                c("mid", 4000, false, 0),
            ],
            None,
        );
        assert_eq!(ids(got), ["warm", "big", "mid"]);
    }

    #[test]
    fn among_warm_the_least_busy_first() {
        let got = order(vec![c("a", 9000, true, 3), c("b", 100, true, 1)], None);
        assert_eq!(ids(got), ["b", "a"]);
    }

    #[test]
    fn cold_placement_prefers_most_free_memory() {
        let got = order(
            vec![
                c("small", 512, false, 0),
                c("large", 4096, false, 5),
                c("medium", 2048, false, 0),
            ],
            None,
        );
        assert_eq!(ids(got), ["large", "medium", "small"]);
    }

    #[test]
    fn ties_are_deterministic() {
        let got = order(vec![c("b", 1, false, 0), c("a", 1, false, 0)], None);
        assert_eq!(ids(got), ["a", "b"]);
    }
}
