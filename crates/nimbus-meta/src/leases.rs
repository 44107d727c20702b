//! Concurrency leases: the metadata leader's ledger of how many invocation slots each
//! gateway may use per pool (an account's unreserved pool in a region, or one function's
//! reserved concurrency), in the manner of Google's Doorman. Design and safety argument:
//! docs/design/0005-admission.md.
//!
//! The ledger is in the leader's memory only: a lease lives for seconds, so replicating
//! it would put Raft on a per-second path for nothing. What keeps it safe is that every
//! slot a gateway may still believe it holds stays counted until that belief has expired:
//!
//! * A grant reduced at renewal keeps its previous size as a *shadow* until the previous
//!   lease's expiry, because the gateway may never receive the smaller grant.
//! * A gateway clocks its lease from before it sent the request, so it always expires
//!   its lease no later than the leader does.
//! * A new leader starts with an empty ledger. Until one lease period has passed it only
//!   renews what gateways report they hold (each of those was granted within capacity by
//!   an earlier leader, shadows included) and grants nothing new.
//! * A grant is never cut below what the gateway reports in use under a valid lease, so
//!   a lowered limit takes effect as running invocations finish.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// One gateway's request for a pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRequest {
    pub gateway: String,
    pub pool: String,
    /// Slots the pool has in total (from the leader's own state machine).
    pub capacity: u32,
    /// Slots the gateway would like to hold.
    pub want: u32,
    /// Slots the gateway is using right now.
    pub in_use: u32,
    /// Slots the gateway holds under a lease it still considers valid.
    pub held: u32,
    /// The gateway stopped admitting into this pool before it sent this (a clean
    /// shutdown): nothing of its grant can be in use any more, so no shadow is kept.
    pub release: bool,
}

#[derive(Debug, Clone, Copy)]
struct Grant {
    slots: u32,
    expires: Instant,
    /// An earlier, larger grant the gateway may still act on until it expires.
    shadow: Option<(u32, Instant)>,
}

impl Grant {
    /// Slots this gateway may be using at `now`.
    fn committed(&self, now: Instant) -> u32 {
        let current = if self.expires > now { self.slots } else { 0 };
        let shadow = match self.shadow {
            Some((s, t)) if t > now => s,
            _ => 0,
        };
        current.max(shadow)
    }
}

/// The leader's ledger for one term.
#[derive(Debug)]
pub struct Ledger {
    lease: Duration,
    term: u64,
    /// Until then, only renew what gateways report holding (see module docs).
    warm_until: Instant,
    pools: HashMap<String, HashMap<String, Grant>>,
}

impl Ledger {
    pub fn new(lease: Duration) -> Self {
        Self {
            lease,
            term: 0,
            warm_until: Instant::now(),
            pools: HashMap::new(),
        }
    }

    pub fn lease(&self) -> Duration {
        self.lease
    }

    /// Starts over when this node leads a new term, `since` being when it became leader.
    /// In term 1 no earlier leader existed, so no lease can be outstanding.
    pub fn observe_term(&mut self, term: u64, since: Instant) {
        if term != self.term {
            self.term = term;
            self.pools.clear();
            self.warm_until = if term <= 1 { since } else { since + self.lease };
        }
    }

    /// Grants slots for `req`; returns the grant (valid for [`Ledger::lease`]).
    pub fn grant(&mut self, now: Instant, req: &LeaseRequest) -> u32 {
        let warming = now < self.warm_until;
        let lease = self.lease;
        let pool = self.pools.entry(req.pool.clone()).or_default();
        pool.retain(|_, g| g.committed(now) > 0);
        if req.release {
            pool.remove(&req.gateway);
            return 0;
        }
        let mine = pool.get(&req.gateway).copied();
        let prev = mine.map_or(0, |g| g.committed(now));
        let others: u32 = pool
            .iter()
            .filter(|(gw, _)| **gw != req.gateway)
            .map(|(_, g)| g.committed(now))
            .sum();
        let granted = if warming {
            // Renew only what an earlier leader granted; nothing new yet.
            prev.max(req.held)
                .min(req.want.max(req.in_use.min(req.held)))
        } else {
            let free = req.capacity.saturating_sub(others);
            let floor = req.in_use.min(prev.max(req.held));
            req.want.min(free).max(floor)
        };
        let shadow = match mine {
            Some(g) if granted < g.committed(now) => Some((g.committed(now), g.expires)),
            Some(g) => g.shadow.filter(|(_, t)| *t > now),
            None => None,
        };
        if granted == 0 && shadow.is_none() {
            pool.remove(&req.gateway);
        } else {
            pool.insert(
                req.gateway.clone(),
                Grant {
                    slots: granted,
                    expires: now + lease,
                    shadow,
                },
            );
        }
        granted
    }

    /// Slots committed in `pool` at `now` (for tests and metrics).
    pub fn committed(&self, pool: &str, now: Instant) -> u32 {
        self.pools
            .get(pool)
            .map_or(0, |p| p.values().map(|g| g.committed(now)).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(3);

    fn req(gw: &str, capacity: u32, want: u32, in_use: u32, held: u32) -> LeaseRequest {
        LeaseRequest {
            gateway: gw.into(),
            pool: "p".into(),
            capacity,
            want,
            in_use,
            held,
            release: false,
        }
    }

    fn warm_ledger(now: Instant) -> Ledger {
        let mut l = Ledger::new(T);
        l.observe_term(2, now - T * 2);
        l
    }

    #[test]
    fn grants_never_exceed_capacity() {
        let now = Instant::now();
        let mut l = warm_ledger(now);
        assert_eq!(l.grant(now, &req("a", 5, 4, 0, 0)), 4);
        assert_eq!(l.grant(now, &req("b", 5, 4, 0, 0)), 1);
        assert_eq!(l.grant(now, &req("c", 5, 4, 0, 0)), 0);
        assert_eq!(l.committed("p", now), 5);
    }

    #[test]
    fn expired_leases_come_back() {
        let now = Instant::now();
        let mut l = warm_ledger(now);
        assert_eq!(l.grant(now, &req("a", 5, 5, 0, 0)), 5);
        assert_eq!(l.grant(now, &req("b", 5, 5, 0, 0)), 0);
        let later = now + T + Duration::from_millis(1);
        assert_eq!(l.grant(later, &req("b", 5, 5, 0, 0)), 5, "a crashed");
    }

    #[test]
    fn a_released_grant_comes_back_at_once_without_a_shadow() {
        let now = Instant::now();
        let mut l = warm_ledger(now);
        assert_eq!(l.grant(now, &req("a", 5, 5, 0, 0)), 5);
        assert_eq!(l.grant(now, &req("b", 5, 5, 0, 0)), 0);
        let t1 = now + Duration::from_millis(100);
        let mut release = req("a", 5, 0, 0, 0);
        release.release = true;
        assert_eq!(l.grant(t1, &release), 0);
        assert_eq!(l.committed("p", t1), 0);
        assert_eq!(
            l.grant(t1, &req("b", 5, 5, 0, 0)),
            5,
            "long before a's lease ends"
        );
    }

    #[test]
    fn a_reduced_grant_stays_counted_until_the_old_lease_expires() {
        let now = Instant::now();
        let mut l = warm_ledger(now);
        assert_eq!(l.grant(now, &req("a", 5, 5, 0, 0)), 5);
        // a shrinks to 1, but may never hear of it: its 5 stay committed for T.
        let t1 = now + Duration::from_secs(1);
        assert_eq!(l.grant(t1, &req("a", 5, 1, 1, 5)), 1);
        assert_eq!(l.grant(t1, &req("b", 5, 4, 0, 0)), 0);
        let t2 = now + T + Duration::from_millis(1);
        assert_eq!(l.grant(t2, &req("b", 5, 4, 0, 0)), 4);
    }

    #[test]
    fn slots_in_use_are_never_taken_back() {
        let now = Instant::now();
        let mut l = warm_ledger(now);
        assert_eq!(l.grant(now, &req("a", 10, 8, 0, 0)), 8);
        // The limit drops to 2 while 6 run: a keeps 6 until they finish.
        assert_eq!(l.grant(now, &req("a", 2, 7, 6, 8)), 6);
        assert_eq!(l.grant(now, &req("b", 2, 1, 0, 0)), 0);
    }

    #[test]
    fn a_new_leader_renews_but_grants_nothing_new_for_one_lease() {
        let now = Instant::now();
        let mut l = Ledger::new(T);
        l.observe_term(7, now);
        // a reports holding 3 from the previous leader: renewed, not grown.
        assert_eq!(l.grant(now, &req("a", 10, 6, 3, 3)), 3);
        assert_eq!(l.grant(now, &req("b", 10, 2, 0, 0)), 0);
        let later = now + T + Duration::from_millis(1);
        assert_eq!(l.grant(later, &req("b", 10, 2, 0, 0)), 2);
        assert_eq!(l.grant(later, &req("a", 10, 6, 3, 3)), 6);
    }

    #[test]
    fn the_first_term_needs_no_warm_up() {
        let now = Instant::now();
        let mut l = Ledger::new(T);
        l.observe_term(1, now);
        assert_eq!(l.grant(now, &req("a", 10, 4, 0, 0)), 4);
    }

    #[test]
    fn idle_gateways_give_slots_back() {
        let now = Instant::now();
        let mut l = warm_ledger(now);
        assert_eq!(l.grant(now, &req("a", 3, 3, 0, 0)), 3);
        let t1 = now + T + Duration::from_millis(1);
        assert_eq!(l.grant(t1, &req("a", 3, 0, 0, 3)), 0);
        assert_eq!(l.grant(t1, &req("b", 3, 3, 0, 0)), 3);
    }

    proptest::proptest! {
        /// Whatever gateways ask, and whatever responses they miss, the slots any gateway
        /// may believe it holds never sum above capacity.
        #[test]
        fn believed_slots_never_exceed_capacity(
            steps in proptest::collection::vec((0usize..3, 0u32..8, 0u64..2000, proptest::bool::ANY), 1..200),
            capacity in 0u32..8,
        ) {
            let start = Instant::now();
            let mut l = warm_ledger(start);
            let mut now = start;
            // What each gateway believes: (slots, expiry by its own clock).
            let mut belief: Vec<(u32, Instant)> = vec![(0, start); 3];
            let mut in_use = [0u32; 3];
            for (gw, want, advance_ms, delivered) in steps {
                now += Duration::from_millis(advance_ms);
                let held = if belief[gw].1 > now { belief[gw].0 } else { 0 };
                in_use[gw] = in_use[gw].min(held);
                let sent = now;
                let g = l.grant(now, &LeaseRequest {
                    gateway: gw.to_string(), pool: "p".into(), capacity, want,
                    in_use: in_use[gw], held, release: false,
                });
                if delivered {
                    belief[gw] = (g, sent + T);
                    in_use[gw] = in_use[gw].max(g.min(want));
                }
                let believed: u32 = belief.iter().filter(|(_, t)| *t > now).map(|(s, _)| *s).sum();
                proptest::prop_assert!(believed <= capacity, "believed {believed} > capacity {capacity}");
            }
        }
    }
}
