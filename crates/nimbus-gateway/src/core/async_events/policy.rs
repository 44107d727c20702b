//! Lambda's rules for async events, as pure functions of the event, its configuration
//! and the time: when an event is due, when it is too old, how long to back off, and
//! what the outcome of one try leads to.

use std::time::Duration;

use nimbus_types::limits::{ASYNC_EVENT_AGE_DEFAULT_S, ASYNC_RETRIES_DEFAULT};
use nimbus_types::{AsyncEvent, EventInvokeConfig};

use super::DispatchConfig;

/// Why an event reached its end, in the words of Lambda's invocation record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Condition {
    Success,
    RetriesExhausted,
    EventAgeExceeded,
}

impl Condition {
    pub fn as_str(self) -> &'static str {
        match self {
            Condition::Success => "Success",
            Condition::RetriesExhausted => "RetriesExhausted",
            Condition::EventAgeExceeded => "EventAgeExceeded",
        }
    }
}

/// How one try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The function returned a result.
    Success,
    /// The function failed (error, timeout, crash): this uses up an attempt.
    FunctionError,
    /// It never ran: throttled, or no worker could take it. Does not use an attempt.
    Deferred,
}

/// What to do with the event next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Put it back, to be claimed again at `not_before_ms`.
    Retry {
        function_error: bool,
        not_before_ms: u64,
    },
    /// Remove it; send the record to the matching destination, if one is configured.
    Finish(Condition),
}

/// The configuration Lambda applies when none was put for the qualifier.
pub fn default_config() -> EventInvokeConfig {
    EventInvokeConfig {
        maximum_retry_attempts: ASYNC_RETRIES_DEFAULT,
        maximum_event_age_s: ASYNC_EVENT_AGE_DEFAULT_S,
        ..Default::default()
    }
}

/// `Ok` if `owner` may claim the event at `now_ms`; otherwise the time to look again.
pub fn due(e: &AsyncEvent, owner: &str, now_ms: u64) -> Result<(), u64> {
    match &e.lease {
        Some(l) if l.owner != owner && l.until_ms > now_ms => Err(l.until_ms),
        _ if e.not_before_ms > now_ms => Err(e.not_before_ms),
        _ => Ok(()),
    }
}

/// Older than `MaximumEventAgeInSeconds`: dropped without another try.
pub fn expired(e: &AsyncEvent, cfg: &EventInvokeConfig, now_ms: u64) -> bool {
    now_ms.saturating_sub(e.enqueued_ms) > u64::from(cfg.maximum_event_age_s) * 1000
}

/// How many times the function has been run once this try is counted.
pub fn invoke_count(e: &AsyncEvent) -> u32 {
    e.attempts + 1
}

/// What the outcome of one try leads to.
pub fn next(
    e: &AsyncEvent,
    cfg: &EventInvokeConfig,
    outcome: Outcome,
    timing: &DispatchConfig,
    now_ms: u64,
) -> Next {
    match outcome {
        Outcome::Success => Next::Finish(Condition::Success),
        Outcome::FunctionError if e.attempts >= cfg.maximum_retry_attempts => {
            Next::Finish(Condition::RetriesExhausted)
        }
        Outcome::FunctionError => Next::Retry {
            function_error: true,
            // The n-th retry waits n times the delay (Lambda: about 1, then 2 minutes).
            not_before_ms: now_ms + millis(timing.retry_delay) * u64::from(e.attempts + 1),
        },
        Outcome::Deferred => Next::Retry {
            function_error: false,
            not_before_ms: now_ms + millis(defer_backoff(e.deferrals, timing)),
        },
    }
}

/// Exponential backoff for events that could not run: base, 2×base, … up to the cap.
pub fn defer_backoff(deferrals: u32, timing: &DispatchConfig) -> Duration {
    let factor = 1u32.checked_shl(deferrals.min(20)).unwrap_or(u32::MAX);
    timing
        .defer_base
        .saturating_mul(factor)
        .min(timing.defer_max)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_types::{EventLease, FunctionKey};
    use proptest::prelude::*;

    fn event(attempts: u32, deferrals: u32) -> AsyncEvent {
        AsyncEvent {
            id: "e".into(),
            key: FunctionKey::new("000000000000", "us-east-1", "f"),
            qualifier: None,
            client_context: None,
            trace_id: None,
            enqueued_ms: 1_000,
            attempts,
            deferrals,
            not_before_ms: 0,
            lease: None,
        }
    }

    fn cfg(retries: u32) -> EventInvokeConfig {
        EventInvokeConfig {
            maximum_retry_attempts: retries,
            maximum_event_age_s: 60,
            ..Default::default()
        }
    }

    #[test]
    fn function_errors_use_up_exactly_the_configured_retries() {
        let t = DispatchConfig::default();
        for retries in 0..=2 {
            let mut tries = 0;
            let mut e = event(0, 0);
            loop {
                tries += 1;
                match next(&e, &cfg(retries), Outcome::FunctionError, &t, 0) {
                    Next::Retry {
                        function_error: true,
                        not_before_ms,
                    } => {
                        assert_eq!(not_before_ms, 60_000 * u64::from(e.attempts + 1));
                        e.attempts += 1;
                    }
                    Next::Finish(c) => {
                        assert_eq!(c, Condition::RetriesExhausted);
                        break;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            assert_eq!(tries, retries + 1, "MaximumRetryAttempts={retries}");
            assert_eq!(invoke_count(&e), retries + 1);
        }
    }

    #[test]
    fn deferrals_back_off_to_the_cap_without_using_attempts() {
        let t = DispatchConfig::default();
        let e = event(0, 3);
        assert_eq!(
            next(&e, &cfg(0), Outcome::Deferred, &t, 10),
            Next::Retry {
                function_error: false,
                not_before_ms: 10 + 8_000
            }
        );
        assert_eq!(defer_backoff(0, &t), Duration::from_secs(1));
        assert_eq!(defer_backoff(40, &t), Duration::from_secs(300));
    }

    #[test]
    fn leases_of_others_block_until_they_expire() {
        let mut e = event(0, 0);
        e.lease = Some(EventLease {
            owner: "a".into(),
            until_ms: 5_000,
        });
        assert_eq!(due(&e, "b", 4_999), Err(5_000));
        assert_eq!(due(&e, "b", 5_000), Ok(()));
        assert_eq!(
            due(&e, "a", 0),
            Ok(()),
            "a restarted owner takes its lease back"
        );
        e.lease = None;
        e.not_before_ms = 7_000;
        assert_eq!(due(&e, "a", 6_000), Err(7_000));
    }

    proptest! {
        #[test]
        fn age_limit_is_exact(age_s in 60u32..=21_600, delta in -5_000i64..5_000) {
            let e = event(0, 0);
            let limit = e.enqueued_ms + u64::from(age_s) * 1000;
            let now = (limit as i64 + delta) as u64;
            let c = EventInvokeConfig { maximum_event_age_s: age_s, ..cfg(2) };
            prop_assert_eq!(expired(&e, &c, now), delta > 0);
        }

        #[test]
        fn backoff_never_exceeds_the_cap(n in 0u32..1_000) {
            let t = DispatchConfig::default();
            prop_assert!(defer_backoff(n, &t) <= t.defer_max);
            prop_assert!(defer_backoff(n, &t) >= t.defer_base);
        }
    }
}
