//! Asynchronous (`Event`) invocations: durable before the 202, then run at least once.
//!
//! An accepted event is written through Raft (replicated) before the caller hears 202.
//! Every gateway runs a [`dispatcher`] that sees the queue through its watch-fed cache,
//! claims ready events under a lease, runs them through the same [`crate::Invoker`] and
//! admission limits as synchronous calls, and applies Lambda's retry rules and
//! destinations. A gateway that dies mid-run leaves a lease that expires (or that it takes
//! back itself when it restarts under the same id), so the event runs again elsewhere.
//! See docs/design/0006-async-events.md.
//!
//! Layout:
//! - this file: the 202 path ([`accept`]) and the dispatcher's settings.
//! - [`dispatcher`]: the loop that claims and runs events, one task per event.
//! - [`policy`]: what happens after each try (retry, backoff, age limit): pure functions.
//! - [`destination`]: destination ARNs (checked at `PutFunctionEventInvokeConfig`) and
//!   Lambda's invocation record sent to them.

pub mod destination;
pub mod dispatcher;
pub mod policy;

use std::time::Duration;

use nimbus_types::{AsyncEvent, Command};

use crate::core::ApiError;
use crate::core::Gateway;

pub use dispatcher::spawn;

/// How a gateway's dispatcher runs events.
#[derive(Debug, Clone)]
pub struct DispatchConfig {
    /// This gateway's stable id, written into its leases. A gateway restarted under the
    /// same id takes its own leases back at once; two live gateways must not share one.
    pub owner: String,
    /// Wait before the first retry after a function error; the second waits twice as
    /// long (Lambda: about one and two minutes).
    pub retry_delay: Duration,
    /// First backoff of an event put back without running (throttled, no worker), doubled
    /// each time up to `defer_max` (Lambda: 1 s up to 5 min).
    pub defer_base: Duration,
    pub defer_max: Duration,
    /// How long a claim holds; renewed every third of it while the function runs, so a
    /// crashed gateway's events are free again within this time.
    pub lease: Duration,
    /// Events this gateway runs at once (admission limits apply on top).
    pub max_in_flight: usize,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        Self {
            owner: "gateway".into(),
            retry_delay: Duration::from_secs(60),
            defer_base: Duration::from_secs(1),
            defer_max: Duration::from_secs(300),
            lease: Duration::from_secs(30),
            max_in_flight: 64,
        }
    }
}

/// Queues an accepted event through the metadata cluster; returns once it is committed
/// on a quorum (the front door then answers 202). The write's request id derives from
/// the event id, so a retry of the write inside the client cannot queue it twice.
pub async fn accept(gw: &Gateway, event: AsyncEvent, payload: Vec<u8>) -> Result<(), ApiError> {
    let request_id = format!("event-{}", event.id);
    gw.meta()
        .write_with_id(&request_id, &Command::EnqueueEvent { event, payload })
        .await?;
    Ok(())
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
