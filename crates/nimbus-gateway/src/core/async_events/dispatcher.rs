//! Every gateway's dispatcher: watches the queue through the catalog, claims ready
//! events under a lease, and runs each in its own task through the core's admission
//! ([`Gateway::admit`]) and placement ([`Gateway::run`]), like a synchronous call.
//!
//! Gateways race for the same events; the state machine gives each lease to one of them
//! and the others get a conflict and move on. Ready events are shuffled first so that
//! gateways tend to start on different ones.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use nimbus_meta::ClientError;
use nimbus_types::{
    keys, AsyncEvent, Command, CommandOutput, Entity, ErrorKind, EventInvokeConfig, FunctionKey,
    Qualifier, Query, QueryOutput, QueuedEvent,
};
use rand::seq::SliceRandom;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::destination::{self, Record, Response};
use super::policy::{self, Condition, Next, Outcome};
use super::{now_ms, DispatchConfig};
use crate::core::resolve::{self, Named};
use crate::core::{ApiError, Gateway, InvokeRequest, InvokeResult};

/// Starts the gateway's dispatcher; it stops claiming when `shutdown` resolves, gives
/// running events a few seconds, and leaves the rest leased (this gateway takes them
/// back when it restarts under the same id; any gateway may once the lease expires).
pub fn spawn(
    gw: Arc<Gateway>,
    config: DispatchConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> JoinHandle<()> {
    let permits = Arc::new(Semaphore::new(config.max_in_flight.max(1)));
    let d = Arc::new(Dispatcher {
        gw,
        config,
        running: Mutex::default(),
        permits,
    });
    tokio::spawn(d.run(shutdown))
}

struct Dispatcher {
    gw: Arc<Gateway>,
    config: DispatchConfig,
    /// Events this gateway is working on. The cache can still show them as ready (our
    /// own claim has not come back through the watch yet), so they are skipped by id.
    running: Mutex<HashSet<String>>,
    /// Bounds the events run at once by this gateway.
    permits: Arc<Semaphore>,
}

/// Leases and backoffs end without any metadata change, so look at least this often.
const POLL: Duration = Duration::from_secs(1);

impl Dispatcher {
    async fn run(self: Arc<Self>, shutdown: impl Future<Output = ()> + Send + 'static) {
        let mut revision = self.gw.catalog().subscribe();
        let mut tasks = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            let wait = self.start_ready(&mut tasks);
            tokio::select! {
                _ = &mut shutdown => break,
                _ = revision.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        let drained = async { while tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(Duration::from_secs(5), drained).await;
        tasks.abort_all();
    }

    /// Starts a task for every due event while permits last; returns how long to wait
    /// before looking again if nothing changes.
    fn start_ready(self: &Arc<Self>, tasks: &mut JoinSet<()>) -> Duration {
        let now = now_ms();
        let mut wake = now + POLL.as_millis() as u64;
        let mut ready = Vec::new();
        {
            let running = self.running.lock().unwrap_or_else(PoisonError::into_inner);
            for (_, entity) in self.gw.catalog().list(keys::EVENT, None, usize::MAX) {
                let Entity::AsyncEvent(e) = entity else {
                    continue;
                };
                // A region's events run on its own workers only, whichever gateway
                // shares the metadata cluster.
                if e.key.region != self.gw.region() || running.contains(&e.id) {
                    continue;
                }
                match policy::due(&e, &self.config.owner, now) {
                    Ok(()) => ready.push(e),
                    Err(at) => wake = wake.min(at),
                }
            }
        }
        ready.shuffle(&mut rand::thread_rng());
        for e in ready {
            let Ok(permit) = self.permits.clone().try_acquire_owned() else {
                break;
            };
            self.running
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(e.id.clone());
            let this = self.clone();
            tasks.spawn(async move {
                let id = e.id.clone();
                if let Err(err) = this.run_event(e).await {
                    tracing::warn!(event = id, "async event: {err}; it will be tried again");
                    // Not straight back: whatever failed (metadata, say) gets a moment.
                    tokio::time::sleep(POLL).await;
                }
                drop(permit);
                this.running
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
            });
        }
        Duration::from_millis(wake.saturating_sub(now).max(10))
    }

    fn lease_until(&self, now: u64) -> u64 {
        now + self.config.lease.as_millis() as u64
    }

    /// Claims one event, runs it once, and records what follows.
    async fn run_event(&self, queued: AsyncEvent) -> Result<(), ApiError> {
        let now = now_ms();
        let claim = Command::ClaimEvent {
            id: queued.id.clone(),
            owner: self.config.owner.clone(),
            now_ms: now,
            lease_until_ms: self.lease_until(now),
        };
        let event = match self.gw.meta().write(claim).await {
            Ok((_, CommandOutput::Event(e))) => *e,
            Ok(_) => return Err(ApiError::service("claiming an event returned no event")),
            // Another gateway has it, it is not due after all, or it is done.
            Err(ClientError::Meta(m))
                if matches!(
                    m.kind,
                    ErrorKind::ResourceConflict | ErrorKind::ResourceNotFound
                ) =>
            {
                return Ok(())
            }
            Err(e) => return Err(e.into()),
        };
        let payload = match self
            .gw
            .meta
            .read(
                &Query::EventPayload {
                    id: event.id.clone(),
                },
                true,
            )
            .await?
            .1
        {
            QueryOutput::EventPayload(Some(p)) => Bytes::from(p),
            // Completed by another gateway since our claim (its lease had expired).
            QueryOutput::EventPayload(None) => return Ok(()),
            _ => return Err(ApiError::service("unexpected answer to an event read")),
        };

        let named = Named {
            key: event.key.clone(),
            qualifier: event.qualifier.clone(),
        };
        let labels = self.gw.labels(&named);
        let Ok(function) = resolve::function(&self.gw, &event.key) else {
            tracing::info!(
                event = event.id,
                "function deleted; dropping its async event"
            );
            self.gw.metrics().async_event_dropped(&labels);
            return self.complete(&event.id, None).await;
        };
        let cfg = function
            .event_invoke_configs
            .get(named.qualifier_or_latest())
            .cloned()
            .unwrap_or_else(policy::default_config);
        if policy::expired(&event, &cfg, now) {
            return self
                .finish(&event, &cfg, Condition::EventAgeExceeded, &payload, None)
                .await;
        }
        // The version is resolved now: an alias moved since the 202 is followed.
        let (function, target) = match resolve::target(&self.gw, &named) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => {
                tracing::info!(event = event.id, "{e}; dropping the async event");
                self.gw.metrics().async_event_dropped(&labels);
                return self.complete(&event.id, None).await;
            }
            Err(e) => return Err(e),
        };

        // Observability (issue 5): the event's age, Lambda's counts, and a span that
        // continues the trace of the request that queued the event.
        let parent = event
            .trace_id
            .as_deref()
            .and_then(nimbus_telemetry::propagation::parse_amzn_trace_id);
        let trace = nimbus_telemetry::decision::TraceDecision::new(parent, "Async invoke");
        let span = trace.root_span(|| {
            tracing::info_span!(
                "async_invoke",
                otel.name = "Async invoke",
                faas.trigger = "pubsub",
                faas.invocation_id = %event.id,
                faas.name = %event.key.name,
            )
        });
        // Admitted inside the trace: a span made outside it would start a trace of its own.
        let slot = trace
            .scope(self.gw.admit(&function, &labels, None), span.clone())
            .await;
        let result = match slot {
            Ok(slot) => {
                self.gw.metrics().async_event_age(
                    &labels,
                    Duration::from_millis(now_ms().saturating_sub(event.enqueued_ms)),
                );
                let request = InvokeRequest {
                    request_id: event.id.clone(),
                    payload: payload.clone(),
                    client_context: event.client_context.clone(),
                    trace_id: event.trace_id.clone(),
                };
                let started = std::time::Instant::now();
                let r = self
                    .renewing_lease(&event.id, trace.scope(self.gw.run(&target, request), span))
                    .await;
                if let Ok(out) = &r {
                    self.gw.metrics().invoked(
                        &labels,
                        started.elapsed(),
                        out.function_error.is_some(),
                    );
                }
                drop(slot);
                r
            }
            Err(throttled) => Err(throttled),
        };
        let outcome = match &result {
            Ok(r) if r.function_error.is_none() => Outcome::Success,
            Ok(_) => Outcome::FunctionError,
            Err(e) => {
                tracing::debug!(event = event.id, "async event deferred: {e}");
                Outcome::Deferred
            }
        };
        match policy::next(&event, &cfg, outcome, &self.config, now_ms()) {
            Next::Retry {
                function_error,
                not_before_ms,
            } => {
                let retry = Command::RetryEvent {
                    id: event.id.clone(),
                    owner: self.config.owner.clone(),
                    function_error,
                    not_before_ms,
                };
                match self.gw.meta().write(retry).await {
                    Ok((rev, _)) => self.gw.observe(rev).await,
                    // We lost the lease meanwhile; whoever holds it decides.
                    Err(ClientError::Meta(m)) if m.kind == ErrorKind::ResourceConflict => {}
                    Err(ClientError::Meta(m)) if m.kind == ErrorKind::ResourceNotFound => {}
                    Err(e) => return Err(e.into()),
                }
                Ok(())
            }
            Next::Finish(condition) => {
                let version = target.version.to_string();
                let response = result.as_ref().ok().map(|r| (version.as_str(), r));
                self.finish(&event, &cfg, condition, &payload, response)
                    .await
            }
        }
    }

    /// Runs `fut` while renewing this gateway's lease on the event every third of it.
    async fn renewing_lease<T>(&self, id: &str, fut: impl Future<Output = T>) -> T {
        tokio::pin!(fut);
        let mut tick = tokio::time::interval(self.config.lease / 3);
        tick.tick().await;
        loop {
            tokio::select! {
                out = &mut fut => return out,
                _ = tick.tick() => {
                    let now = now_ms();
                    let renew = Command::ClaimEvent {
                        id: id.to_string(),
                        owner: self.config.owner.clone(),
                        now_ms: now,
                        lease_until_ms: self.lease_until(now),
                    };
                    if let Err(e) = self.gw.meta().write(renew).await {
                        tracing::warn!(event = id, "renewing the lease failed: {e}");
                    }
                }
            }
        }
    }

    /// Removes the event, queueing the invocation record for the configured destination.
    async fn finish(
        &self,
        event: &AsyncEvent,
        cfg: &EventInvokeConfig,
        condition: Condition,
        payload: &[u8],
        response: Option<(&str, &InvokeResult)>,
    ) -> Result<(), ApiError> {
        let labels = self.gw.labels(&Named {
            key: event.key.clone(),
            qualifier: event.qualifier.clone(),
        });
        if condition != Condition::Success {
            // AsyncEventsDropped counts every event that ends without a successful run,
            // whether or not an on-failure destination then receives its record.
            self.gw.metrics().async_event_dropped(&labels);
        }
        let destination = match condition {
            Condition::Success => &cfg.on_success,
            _ => &cfg.on_failure,
        };
        let Some(arn) = destination else {
            return self.complete(&event.id, None).await;
        };
        let dest = match destination::parse(arn, &event.key.account_id, &event.key.region) {
            Ok(d) => d,
            Err(e) => {
                // Checked when configured; only a config written by an older version
                // can get here.
                tracing::warn!(event = event.id, "destination {arn} unusable: {e}");
                self.gw.metrics().destination_delivery_failed(&labels);
                return self.complete(&event.id, None).await;
            }
        };
        if resolve::function(&self.gw, &dest.key).is_err() {
            // Deleted since the destination was configured: the record has nowhere to go.
            tracing::warn!(
                event = event.id,
                "destination {arn} no longer exists; its record is dropped"
            );
            self.gw.metrics().destination_delivery_failed(&labels);
            return self.complete(&event.id, None).await;
        }
        let function_arn = format!(
            "{}:{}",
            event.key.arn(),
            event.qualifier.as_deref().unwrap_or(Qualifier::LATEST)
        );
        let now = now_ms();
        let record = Record {
            request_id: &event.id,
            function_arn: &function_arn,
            condition,
            approximate_invoke_count: match response {
                Some(_) => policy::invoke_count(event),
                None => event.attempts,
            },
            timestamp_ms: now,
            request_payload: payload,
            response: response.map(|(version, r)| Response {
                executed_version: version,
                function_error: r.function_error.as_ref().map(|_| "Unhandled"),
                payload: &r.payload,
            }),
        };
        let queued = QueuedEvent {
            event: destination_event(dest.key, dest.qualifier, event, now),
            payload: record.to_json(),
        };
        self.complete(&event.id, Some(queued)).await
    }

    async fn complete(&self, id: &str, destination: Option<QueuedEvent>) -> Result<(), ApiError> {
        let cmd = Command::CompleteEvent {
            id: id.to_string(),
            destination: destination.map(Box::new),
        };
        let (rev, _) = self.gw.meta().write(cmd).await?;
        self.gw.observe(rev).await;
        Ok(())
    }
}

/// The destination's own async event: it carries the source's trace id onwards.
fn destination_event(
    key: FunctionKey,
    qualifier: Option<String>,
    source: &AsyncEvent,
    now: u64,
) -> AsyncEvent {
    AsyncEvent {
        id: uuid::Uuid::new_v4().to_string(),
        key,
        qualifier,
        client_context: None,
        trace_id: source.trace_id.clone(),
        enqueued_ms: now,
        attempts: 0,
        deferrals: 0,
        not_before_ms: 0,
        lease: None,
    }
}
