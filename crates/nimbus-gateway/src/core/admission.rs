//! Concurrency admission: the account's per-region limit and each function's reserved
//! concurrency, with the unreserved pool never pushed below its minimum.
//!
//! A function with reserved concurrency R may run at most R at once (0 throttles
//! everything) and those R are not available to others. Other functions share the
//! unreserved pool: limit − Σ reserved. A single gateway (`nimbus dev`) counts exactly
//! on its own; cluster gateways admit against slices of each limit leased from the
//! metadata leader (`nimbus_meta::leases`, docs/design/0005-admission.md), so the limit
//! holds across any number of gateways and a crashed gateway's slots return when its
//! lease runs out.
//!
//! An edge location's gateway also holds a share of the location's budget
//! (`nimbus_types::EdgeBudget`): calls of functions deployed there are admitted against it
//! first, counted here alone, so they go on being admitted while the metadata cluster is
//! unreachable. The leader leases only what budgets leave, so the limit still holds in
//! total; past the share, such calls lease from the region's pool like any other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nimbus_meta::MetaClient;
use nimbus_proto::meta::LeaseRequest;
use nimbus_types::vocabulary::ConcurrencyPool;

use super::error::ApiError;

/// How long a gateway waits for the leader's answer before throttling.
const LEASE_CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// How often held leases are renewed (well inside their 5 s validity).
const RENEW_EVERY: Duration = Duration::from_millis(1000);

/// Who is counted where (Lambda's own vocabulary, from `nimbus_types`).
type Pool = ConcurrencyPool;

/// A lease request for `pool` on behalf of `gateway` (`None`: an edge budget's share,
/// which is this gateway's own and never leased).
fn lease_request(
    pool: &Pool,
    gateway: &str,
    want: u32,
    in_use: u32,
    held: u32,
) -> Option<LeaseRequest> {
    let (account, region, function) = match pool {
        Pool::Unreserved { account, region } => (account, region, String::new()),
        Pool::Reserved {
            account,
            region,
            function,
        } => (account, region, function.clone()),
        Pool::EdgeBudget { .. } => return None,
    };
    Some(LeaseRequest {
        gateway_id: gateway.to_string(),
        account_id: account.clone(),
        region: region.clone(),
        function_name: function,
        want,
        in_use,
        held,
        release: false,
    })
}

#[derive(Debug, Default, Clone, Copy)]
struct PoolState {
    running: u32,
    /// Slots leased from the metadata leader, and until when (cluster mode only).
    granted: u32,
    expires: Option<Instant>,
}

impl PoolState {
    fn held(&self, now: Instant) -> u32 {
        match self.expires {
            Some(t) if t > now => self.granted,
            _ => 0,
        }
    }
}

/// Spare slots asked for beyond those in use, so bursts admit without a round trip.
fn headroom(running: u32) -> u32 {
    (running / 4).max(2)
}

/// Where the capacity comes from.
enum Source {
    /// One gateway owns the whole limit (`nimbus dev`): exact by counting alone.
    Local,
    /// Slices of the limit leased from the metadata leader: exact across gateways.
    Leased {
        meta: MetaClient,
        gateway_id: String,
    },
}

/// Counts running invocations; a [`Slot`] gives its place back when dropped.
#[derive(Clone)]
pub struct Admission {
    pools: Arc<Mutex<HashMap<Pool, PoolState>>>,
    source: Arc<Source>,
}

impl Default for Admission {
    fn default() -> Self {
        Self::local()
    }
}

/// An admitted invocation. Dropping it frees the slot, whatever way the call ends.
pub struct Slot {
    admission: Admission,
    pool: Pool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut pools = self
            .admission
            .pools
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(p) = pools.get_mut(&self.pool) {
            p.running = p.running.saturating_sub(1);
        }
    }
}

/// What admission needs to know about one invocation.
pub struct Limits<'a> {
    pub account: &'a str,
    pub region: &'a str,
    /// The function's name (its reserved pool is keyed by it).
    pub function_name: &'a str,
    /// The function's reserved concurrency, if any.
    pub reserved: Option<u32>,
    /// The account's unreserved pool in the region
    /// ([`AccountConcurrency::unreserved`](super::catalog::AccountConcurrency::unreserved)).
    pub unreserved: u32,
    /// This gateway's share of its edge location's budget, for a call that runs there.
    pub edge_share: Option<EdgeShare<'a>>,
}

/// A gateway's share of its edge location's budget for one account.
#[derive(Debug, Clone, Copy)]
pub struct EdgeShare<'a> {
    pub location: &'a str,
    pub share: u32,
}

impl Admission {
    /// Exact within this process only: for a single gateway.
    pub fn local() -> Self {
        Self {
            pools: Arc::default(),
            source: Arc::new(Source::Local),
        }
    }

    /// Leases slices of each limit from the metadata leader, and renews them in the
    /// background while they are in use.
    pub fn leased(meta: MetaClient) -> Self {
        let a = Self {
            pools: Arc::default(),
            source: Arc::new(Source::Leased {
                meta,
                gateway_id: format!("gw-{}", uuid::Uuid::new_v4().simple()),
            }),
        };
        let weak = Arc::downgrade(&a.pools);
        let source = a.source.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RENEW_EVERY);
            loop {
                tick.tick().await;
                let Some(pools) = weak.upgrade() else { break };
                let snapshot: Vec<(Pool, PoolState)> = pools
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .iter()
                    .map(|(k, v)| (k.clone(), *v))
                    .collect();
                for (pool, st) in snapshot {
                    let now = Instant::now();
                    // An edge budget's share is this gateway's own: nothing to renew.
                    let own = matches!(pool, Pool::EdgeBudget { .. });
                    if st.running == 0 && (own || st.held(now) == 0) {
                        let mut guard = pools.lock().unwrap_or_else(PoisonError::into_inner);
                        if guard.get(&pool).is_some_and(|s| s.running == 0) {
                            guard.remove(&pool);
                        }
                        continue;
                    }
                    if own {
                        continue;
                    }
                    let want = if st.running == 0 {
                        0
                    } else {
                        st.running + headroom(st.running)
                    };
                    refresh(&source, &pools, &pool, want).await;
                }
            }
        });
        a
    }

    /// Gives every leased slice back to the leader at once, for a clean shutdown: call
    /// only once nothing can be admitted any more and nothing runs. Without it the slices
    /// stay counted for a whole lease, and the other gateways, taking this one's
    /// clients, throttle meanwhile.
    pub async fn release(&self) {
        let Source::Leased { meta, gateway_id } = &*self.source else {
            return;
        };
        let pools: Vec<Pool> = {
            let mut guard = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
            // No slot is free any more, so nothing is admitted after this point.
            for st in guard.values_mut() {
                st.granted = 0;
                st.expires = None;
            }
            guard.keys().cloned().collect()
        };
        for pool in pools {
            let Some(mut req) = lease_request(&pool, gateway_id, 0, 0, 0) else {
                continue;
            };
            req.release = true;
            if let Err(e) = tokio::time::timeout(LEASE_CALL_TIMEOUT, meta.acquire_lease(req))
                .await
                .unwrap_or_else(|_| Err(nimbus_meta::ClientError::Unavailable("timeout".into())))
            {
                tracing::warn!("releasing concurrency lease for {pool:?}: {e}");
            }
        }
    }

    /// Takes a slot if one is free under the known capacity.
    fn try_take(&self, pool: &Pool, local_cap: u32) -> bool {
        let mut pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        let st = pools.entry(pool.clone()).or_default();
        let cap = match (&*self.source, pool) {
            (Source::Local, _) | (_, Pool::EdgeBudget { .. }) => local_cap,
            (Source::Leased { .. }, _) => st.held(Instant::now()),
        };
        if st.running < cap {
            st.running += 1;
            true
        } else {
            false
        }
    }

    /// Admits the invocation or answers 429 with Lambda's `Reason`.
    pub async fn admit(&self, l: &Limits<'_>) -> Result<Slot, ApiError> {
        if let (Some(edge), None) = (&l.edge_share, l.reserved) {
            let pool = Pool::EdgeBudget {
                account: l.account.into(),
                region: l.region.into(),
                location: edge.location.into(),
            };
            if self.try_take(&pool, edge.share) {
                return Ok(Slot {
                    admission: self.clone(),
                    pool,
                });
            }
        }
        let pool = Pool::of(l.account, l.region, l.function_name, l.reserved);
        let local_cap = l.reserved.unwrap_or(l.unreserved);
        let slot = || Slot {
            admission: self.clone(),
            pool: pool.clone(),
        };
        if self.try_take(&pool, local_cap) {
            return Ok(slot());
        }
        if matches!(*self.source, Source::Leased { .. }) {
            // Out of leased slots: ask the leader for more, then try once more.
            let running = self
                .pools
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(&pool)
                .map_or(0, |s| s.running);
            refresh(
                &self.source,
                &self.pools,
                &pool,
                running + 1 + headroom(running),
            )
            .await;
            if self.try_take(&pool, local_cap) {
                return Ok(slot());
            }
        }
        Err(ApiError::throttled(
            pool.throttle_reason(),
            "Rate Exceeded.",
        ))
    }

    /// Invocations running in the account's unreserved pool (for metrics and tests).
    pub fn unreserved_running(&self, account: &str, region: &str) -> u32 {
        let pools = self.pools.lock().unwrap_or_else(PoisonError::into_inner);
        pools
            .get(&Pool::Unreserved {
                account: account.into(),
                region: region.into(),
            })
            .map_or(0, |s| s.running)
    }
}

/// Asks the leader for `want` slots of `pool` and records the answer. On failure the
/// current lease simply runs out: the gateway throttles rather than risk the limit.
async fn refresh(source: &Source, pools: &Mutex<HashMap<Pool, PoolState>>, pool: &Pool, want: u32) {
    let Source::Leased { meta, gateway_id } = source else {
        return;
    };
    let sent = Instant::now();
    let (in_use, held) = {
        let guard = pools.lock().unwrap_or_else(PoisonError::into_inner);
        guard
            .get(pool)
            .map_or((0, 0), |s| (s.running, s.held(sent)))
    };
    let Some(req) = lease_request(pool, gateway_id, want.max(in_use), in_use, held) else {
        return;
    };
    match tokio::time::timeout(LEASE_CALL_TIMEOUT, meta.acquire_lease(req)).await {
        Ok(Ok(resp)) => {
            let mut guard = pools.lock().unwrap_or_else(PoisonError::into_inner);
            let st = guard.entry(pool.clone()).or_default();
            st.granted = resp.granted;
            // Counted from before the request left, so it ends no later than the
            // leader's record of it.
            st.expires = Some(sent + Duration::from_millis(resp.lease_ms));
        }
        Ok(Err(e)) => tracing::warn!("concurrency lease for {pool:?}: {e}"),
        Err(_) => tracing::warn!("concurrency lease for {pool:?}: no answer in time"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(reserved: Option<u32>) -> Limits<'static> {
        Limits {
            account: "000000000000",
            region: "us-east-1",
            function_name: "f",
            reserved,
            // limit 3, 1 reserved elsewhere.
            unreserved: 2,
            edge_share: None,
        }
    }

    #[tokio::test]
    async fn an_edge_share_admits_first_and_the_region_pool_after_it() {
        let a = Admission::default();
        let edge = Limits {
            edge_share: Some(EdgeShare {
                location: "fra1",
                share: 2,
            }),
            ..limits(None)
        };
        let held: Vec<Slot> = vec![a.admit(&edge).await.unwrap(), a.admit(&edge).await.unwrap()];
        assert!(held
            .iter()
            .all(|s| matches!(s.pool, Pool::EdgeBudget { .. })));
        assert_eq!(
            a.unreserved_running("000000000000", "us-east-1"),
            0,
            "the share is not the region's pool"
        );
        // Past the share, the region's unreserved pool (2 here), then a throttle.
        let r1 = a.admit(&edge).await.unwrap();
        let r2 = a.admit(&edge).await.unwrap();
        assert!(matches!(r1.pool, Pool::Unreserved { .. }));
        let err = a.admit(&edge).await.err().unwrap();
        assert_eq!(
            err.reason.as_deref(),
            Some("ConcurrentInvocationLimitExceeded")
        );
        drop((r1, r2));
        drop(held);
        assert!(a.admit(&edge).await.is_ok(), "slots come back");
        // A function with reserved concurrency stays in its reservation.
        let reserved = Limits {
            reserved: Some(1),
            ..edge
        };
        let only = a.admit(&reserved).await.unwrap();
        assert!(matches!(only.pool, Pool::Reserved { .. }));
        assert!(a.admit(&reserved).await.is_err());
    }

    #[tokio::test]
    async fn reserved_is_a_cap_and_zero_throttles() {
        let a = Admission::default();
        let s1 = a.admit(&limits(Some(1))).await.unwrap();
        let err = a.admit(&limits(Some(1))).await.err().unwrap();
        assert_eq!(
            err.reason.as_deref(),
            Some("ReservedFunctionConcurrentInvocationLimitExceeded")
        );
        drop(s1);
        assert!(
            a.admit(&limits(Some(1))).await.is_ok(),
            "a dropped slot is given back"
        );
        assert!(a.admit(&limits(Some(0))).await.is_err());
    }

    #[tokio::test]
    async fn unreserved_pool_excludes_reserved_capacity() {
        let a = Admission::default();
        // limit 3, 1 reserved elsewhere: 2 unreserved slots.
        let _s1 = a.admit(&limits(None)).await.unwrap();
        let _s2 = a.admit(&limits(None)).await.unwrap();
        let err = a.admit(&limits(None)).await.err().unwrap();
        assert_eq!(err.status, 429);
        assert_eq!(
            err.reason.as_deref(),
            Some("ConcurrentInvocationLimitExceeded")
        );
        assert_eq!(a.unreserved_running("000000000000", "us-east-1"), 2);
    }
}
