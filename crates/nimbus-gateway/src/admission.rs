//! Concurrency admission: the account's per-region limit and each function's reserved
//! concurrency, with the unreserved pool never pushed below its minimum.
//!
//! A function with reserved concurrency R may run at most R at once (0 throttles
//! everything) and those R are not available to others. Other functions share the
//! unreserved pool: limit − Σ reserved. Counting is exact within this gateway; across
//! gateways the limit is split by leases from the metadata leader (see
//! docs/design/0005-admission.md), which is the next step.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::ApiError;

/// Who is counted where.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Pool {
    Unreserved { account: String, region: String },
    Reserved { function_arn: String },
}

/// Counts running invocations; a [`Slot`] gives its place back when dropped.
#[derive(Default, Clone)]
pub struct Admission {
    running: Arc<Mutex<HashMap<Pool, u32>>>,
}

/// An admitted invocation. Dropping it frees the slot, whatever way the call ends.
pub struct Slot {
    admission: Admission,
    pool: Pool,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut running = self.admission.running.lock().expect("lock not poisoned");
        if let Some(n) = running.get_mut(&self.pool) {
            *n = n.saturating_sub(1);
        }
    }
}

/// What admission needs to know about one invocation.
pub struct Limits<'a> {
    pub account: &'a str,
    pub region: &'a str,
    pub function_arn: &'a str,
    /// The function's reserved concurrency, if any.
    pub reserved: Option<u32>,
    /// Account limit for the region.
    pub account_limit: u32,
    /// Sum of all reserved concurrency in the account and region.
    pub reserved_total: u32,
}

impl Admission {
    /// Admits the invocation or answers 429 with Lambda's `Reason`.
    pub fn admit(&self, l: &Limits<'_>) -> Result<Slot, ApiError> {
        let (pool, cap, reason) = match l.reserved {
            Some(r) => (
                Pool::Reserved {
                    function_arn: l.function_arn.into(),
                },
                r,
                "ReservedFunctionConcurrentInvocationLimitExceeded",
            ),
            None => (
                Pool::Unreserved {
                    account: l.account.into(),
                    region: l.region.into(),
                },
                l.account_limit.saturating_sub(l.reserved_total),
                "ConcurrentInvocationLimitExceeded",
            ),
        };
        let mut running = self.running.lock().expect("lock not poisoned");
        let n = running.entry(pool.clone()).or_insert(0);
        if *n >= cap {
            return Err(ApiError::throttled(reason, "Rate Exceeded."));
        }
        *n += 1;
        Ok(Slot {
            admission: self.clone(),
            pool,
        })
    }

    /// Invocations running in the account's unreserved pool (for metrics and tests).
    pub fn unreserved_running(&self, account: &str, region: &str) -> u32 {
        let running = self.running.lock().expect("lock not poisoned");
        running
            .get(&Pool::Unreserved {
                account: account.into(),
                region: region.into(),
            })
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(reserved: Option<u32>) -> Limits<'static> {
        Limits {
            account: "000000000000",
            region: "us-east-1",
            function_arn: "arn:f",
            reserved,
            account_limit: 3,
            reserved_total: 1,
        }
    }

    #[test]
    fn reserved_is_a_cap_and_zero_throttles() {
        let a = Admission::default();
        let s1 = a.admit(&limits(Some(1))).unwrap();
        let err = a.admit(&limits(Some(1))).err().unwrap();
        assert_eq!(
            err.reason.as_deref(),
            Some("ReservedFunctionConcurrentInvocationLimitExceeded")
        );
        drop(s1);
        assert!(
            a.admit(&limits(Some(1))).is_ok(),
            "a dropped slot is given back"
        );
        assert!(a.admit(&limits(Some(0))).is_err());
    }

    #[test]
    fn unreserved_pool_excludes_reserved_capacity() {
        let a = Admission::default();
        // limit 3, 1 reserved elsewhere: 2 unreserved slots.
        let _s1 = a.admit(&limits(None)).unwrap();
        let _s2 = a.admit(&limits(None)).unwrap();
        let err = a.admit(&limits(None)).err().unwrap();
        assert_eq!(err.status, 429);
        assert_eq!(
            err.reason.as_deref(),
            Some("ConcurrentInvocationLimitExceeded")
        );
        assert_eq!(a.unreserved_running("000000000000", "us-east-1"), 2);
    }
}
