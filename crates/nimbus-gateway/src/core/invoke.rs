//! Invocations in the core: resolve, admit, place, run, with typed results.
//!
//! [`Gateway::invoke`] is the whole synchronous path; the async dispatcher and
//! provisioned concurrency share its pieces ([`Gateway::admit`], [`Gateway::run`],
//! [`Gateway::provision`]). Placement tries workers in [`Fleet`](super::fleet::Fleet)
//! order and follows Lambda's contract for synchronous calls: an attempt that never
//! reached an execution environment (worker unreachable, full, draining, or unable to
//! set up its sandbox) is retried on the next worker; one that may have run is not, and
//! the caller gets a `ServiceException`.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_proto::worker as pb;
use nimbus_telemetry::decision::{carried, child_span};
use nimbus_telemetry::FunctionLabels;
use nimbus_types::{CodeRef, Function, FunctionConfig, FunctionKey, Qualifier};
use tracing::Instrument;

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::admission::{EdgeShare, Limits, Slot};
use super::error::ApiError;
use super::resolve::{self, Named};
use super::workers::{InvokeEvents, WorkerResult};
use super::Gateway;

/// `Reason` of the throttle answered when every worker of the region is full.
pub const WORKER_CAPACITY_REASON: &str = "InsufficientWorkerCapacity";

/// Lambda's limit on Init, which a cold start may add to the function's timeout.
const INIT_LIMIT: Duration = Duration::from_secs(10);

/// One function version, resolved and ready to run.
#[derive(Debug, Clone)]
pub struct InvokeTarget {
    pub key: FunctionKey,
    /// `$LATEST` or a version number.
    pub version: Qualifier,
    pub config: FunctionConfig,
    pub code: CodeRef,
    /// The ARN as invoked (with the qualifier, if any).
    pub invoked_arn: String,
    /// A metadata revision at which the code package is known to exist.
    pub code_revision: u64,
    /// Identity of the configuration (`RevisionId`): environments are reused only for
    /// the same code and configuration, so an update never runs on stale code.
    pub revision_id: String,
    /// Where it runs: on the workers of this edge location (the invoked qualifier is
    /// deployed there and this gateway serves it), or (`None`) on the region's own.
    pub edge_location: Option<String>,
}

impl InvokeTarget {
    /// The function version as workers receive it.
    pub fn spec(&self) -> pb::FunctionSpec {
        let c = &self.config;
        pb::FunctionSpec {
            account_id: self.key.account_id.clone(),
            function_name: self.key.name.clone(),
            version: self.version.to_string(),
            invoked_arn: self.invoked_arn.clone(),
            runtime: c.runtime.clone(),
            handler: c.handler.clone(),
            memory_mb: u64::from(c.memory_mb),
            timeout_ms: u64::from(c.timeout_s) * 1000,
            ephemeral_mb: u64::from(c.ephemeral_storage_mb),
            environment: c
                .environment
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            revision_id: self.revision_id.clone(),
            code_sha256: self.code.sha256.clone(),
            code_revision: self.code_revision,
            log_format: c.log_format.clone(),
            layer_sha256: c.layers.iter().map(|l| l.code.sha256.clone()).collect(),
            application_log_level: c.application_log_level.clone(),
            system_log_level: c.system_log_level.clone(),
            credentials: None,
        }
    }

    /// The same function version with the same code and configuration.
    pub fn same_revision(&self, other: &InvokeTarget) -> bool {
        self.key == other.key
            && self.version == other.version
            && self.revision_id == other.revision_id
    }
}

/// One invocation's request.
#[derive(Debug, Clone)]
pub struct InvokeRequest {
    pub request_id: String,
    pub payload: Bytes,
    /// Decoded `X-Amz-Client-Context` JSON.
    pub client_context: Option<String>,
    pub trace_id: Option<String>,
}

/// One invocation's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvokeResult {
    /// Set when the function failed (`X-Amz-Function-Error: Unhandled`).
    pub function_error: Option<String>,
    pub payload: Bytes,
    /// The last 4 KB of the invocation's log.
    pub log_tail: String,
}

/// A synchronous invocation's outcome with the version that ran it.
#[derive(Debug, Clone)]
pub struct Invoked {
    pub executed_version: Qualifier,
    pub result: InvokeResult,
}

/// A synchronous invocation admitted: what it runs, and what it holds until it ends.
struct Admitted {
    target: InvokeTarget,
    labels: FunctionLabels,
    /// Its place in the concurrency limit.
    slot: Slot,
    /// Its count in the concurrency metrics.
    running: nimbus_telemetry::lambda::Running,
}

/// What a streamed invocation sends after it started.
#[derive(Debug)]
pub enum StreamEvent {
    /// Bytes of the response, in order, as the function wrote them.
    Chunk(Bytes),
    /// The end: the function's outcome (its payload is what was not streamed: a
    /// buffered response or the error), or a failure after it started.
    Done(Result<InvokeResult, ApiError>),
}

/// A synchronous invocation whose response is streamed.
#[derive(Debug)]
pub struct StreamedInvoke {
    pub executed_version: Qualifier,
    /// Chunks, then exactly one [`StreamEvent::Done`]. A reader that drops it stops
    /// receiving; the invocation still runs to its end.
    pub events: mpsc::Receiver<StreamEvent>,
}

/// Events queued for a streamed invocation's reader, at most: a slow reader holds the
/// worker's stream (and through HTTP/2 flow control, the function) back beyond this.
const STREAM_EVENTS_BUFFER: usize = 4;

/// Passes a worker's events on to the reader, within `deadline` overall. Reads to the end
/// even when the reader left, so the invocation keeps its slot until the function ends.
/// Returns whether the invocation failed.
async fn relay(
    gw: &Gateway,
    worker: &str,
    mut stream: InvokeEvents,
    events: mpsc::Sender<StreamEvent>,
    deadline: Duration,
) -> bool {
    use futures::StreamExt;
    use pb::invoke_event::Event;
    let until = tokio::time::Instant::now() + deadline;
    let mut reading = true;
    let done = loop {
        let next = match tokio::time::timeout_at(until, stream.next()).await {
            Ok(next) => next,
            Err(_) => {
                break Err(ApiError::service(format!(
                    "worker {worker} stopped answering the invocation"
                )))
            }
        };
        match next {
            Some(Ok(pb::InvokeEvent {
                event: Some(Event::Chunk(chunk)),
            })) => {
                if reading {
                    reading = events.send(StreamEvent::Chunk(chunk)).await.is_ok();
                }
            }
            Some(Ok(pb::InvokeEvent {
                event: Some(Event::Complete(resp)),
            })) => {
                gw.fleet.record_load(worker, resp.load);
                break Ok(InvokeResult {
                    function_error: resp.function_error,
                    payload: resp.payload,
                    log_tail: resp.log_tail,
                });
            }
            Some(Ok(pb::InvokeEvent { event: None })) => {}
            Some(Err(e)) => break Err(e.to_api(worker)),
            None => {
                break Err(ApiError::service(format!(
                    "the invocation's stream from worker {worker} ended early"
                )))
            }
        }
    };
    let failed = !matches!(&done, Ok(r) if r.function_error.is_none());
    let _ = events.send(StreamEvent::Done(done)).await;
    failed
}

/// How invocations are placed on workers.
#[derive(Debug, Clone)]
pub struct PlacementConfig {
    /// Workers tried per placement round, at most.
    pub max_attempts: usize,
    /// How long a worker that refused or could not be reached is tried only after the
    /// others.
    pub suspect_for: Duration,
    /// How long an invocation that no worker has started may wait for one (workers
    /// restarting one after another, a worker's channel reconnecting) before it fails.
    /// It holds its concurrency slot meanwhile; it never waits once a worker took it.
    pub placement_wait: Duration,
    /// How long the load a worker reported with an answer beats its heartbeat.
    pub load_fresh_for: Duration,
    /// The gateway's own availability zone: with warm capacity equal, work stays in it.
    pub home_zone: Option<String>,
    /// The edge location this gateway serves: what is deployed there runs on that
    /// location's workers; everything else on the home region's.
    pub edge_location: Option<String>,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            suspect_for: Duration::from_secs(3),
            placement_wait: Duration::from_secs(10),
            load_fresh_for: Duration::from_secs(10),
            home_zone: None,
            edge_location: None,
        }
    }
}

impl Gateway {
    /// The metric labels of `named` (Lambda's dimensions).
    pub fn labels(&self, named: &Named) -> FunctionLabels {
        FunctionLabels::new(
            &named.key.account_id,
            &named.key.region,
            &named.key.name,
            named.qualifier.as_deref(),
        )
    }

    /// Admits one invocation of `function` against its account's limits in its region,
    /// counting a throttle in Lambda's metrics. `edge` is the edge location the call runs
    /// at, if any: there this gateway's share of the location's budget comes first.
    pub async fn admit(
        &self,
        function: &Function,
        labels: &FunctionLabels,
        edge: Option<&str>,
    ) -> Result<Slot, ApiError> {
        let key = &function.key;
        let account = self
            .catalog()
            .account_concurrency(&key.account_id, &key.region);
        let edge_share = edge.and_then(|location| {
            Some(EdgeShare {
                location,
                share: self.edge_share(&key.account_id, location)?,
            })
        });
        self.admission()
            .admit(&Limits {
                account: &key.account_id,
                region: &key.region,
                function_name: &key.name,
                reserved: function.reserved_concurrency,
                unreserved: account.unreserved(),
                edge_share,
            })
            .instrument(child_span(|| {
                tracing::info_span!("admission", otel.name = "Admission")
            }))
            .await
            .inspect_err(|e| {
                if e.is_throttle() {
                    self.metrics().throttled(labels);
                }
            })
    }

    /// Resolves `named` (and where it runs) and admits it: the first steps of every
    /// synchronous invocation.
    async fn admitted(&self, named: &Named) -> Result<Admitted, ApiError> {
        let (function, mut target) = resolve::target(self, named)?;
        target.edge_location = self.edge_site(&function, named);
        if target.edge_location.is_some() {
            target = super::edge::ready(self, named, target);
        }
        let span = tracing::Span::current();
        span.record("faas.name", named.key.name.as_str());
        span.record("faas.version", target.version.to_string().as_str());
        let labels = self.labels(named);
        let slot = self
            .admit(&function, &labels, target.edge_location.as_deref())
            .await?;
        let running = self
            .metrics()
            .running(&labels, function.reserved_concurrency.is_none());
        Ok(Admitted {
            target,
            labels,
            slot,
            running,
        })
    }

    /// A synchronous invocation: resolve `named`, admit, place and run it to its end.
    /// The invocation runs to its end even if the caller goes away (as on Lambda), and
    /// keeps its concurrency slot until then.
    pub async fn invoke(
        self: &Arc<Self>,
        named: &Named,
        request: InvokeRequest,
    ) -> Result<Invoked, ApiError> {
        let Admitted {
            target,
            labels,
            slot,
            running,
        } = self.admitted(named).await?;
        let started = std::time::Instant::now();
        let gw = self.clone();
        let span = place_span();
        let executed_version = target.version.clone();
        let result = tokio::spawn(carried(async move {
            let result = gw.run(&target, request).instrument(span).await;
            drop(slot);
            drop(running);
            result
        }))
        .await
        .map_err(|e| ApiError::service(format!("invocation task failed: {e}")))?
        .inspect_err(|e| {
            // No worker had room: counted like any other throttle.
            if e.is_throttle() {
                self.metrics().throttled(&labels);
            }
        })?;
        self.metrics()
            .invoked(&labels, started.elapsed(), result.function_error.is_some());
        Ok(Invoked {
            executed_version,
            result,
        })
    }

    /// This gateway's share of `account`'s budget at its edge `location` (its region),
    /// when the budget names this gateway (`--id`).
    pub fn edge_share(&self, account: &str, location: &str) -> Option<u32> {
        let id = self.id.as_deref()?;
        let key = nimbus_types::keys::edge_budget(account, &self.region, location);
        self.catalog().with(&key, |e| match e {
            Some(nimbus_types::Entity::EdgeBudget(b)) => b.share_of(id),
            _ => None,
        })
    }

    /// The edge location an invocation of `named` runs at: this gateway's, when the
    /// invoked qualifier (a version, or an alias of one) is deployed there. Anything else
    /// runs in the home region, answered as if called there.
    pub fn edge_site(&self, function: &Function, named: &Named) -> Option<String> {
        let here = self.placement.edge_location.as_ref()?;
        let deployed = function.edge_deployments.get(named.qualifier.as_deref()?)?;
        deployed.contains(here).then(|| here.clone())
    }

    /// The function version as a worker receives it, with its execution role's
    /// credentials.
    async fn worker_spec(&self, target: &InvokeTarget) -> Result<pb::FunctionSpec, ApiError> {
        let mut spec = target.spec();
        spec.credentials = self
            .role_credentials(&target.key, &target.config.role)
            .await?
            .map(|c| pb::RoleCredentials {
                access_key_id: c.access_key_id,
                secret_access_key: c.secret_access_key,
                session_token: c.session_token,
                expires_ms: c.expires_ms,
            });
        Ok(spec)
    }

    /// Places and runs one admitted invocation on a worker.
    pub async fn run(
        &self,
        target: &InvokeTarget,
        request: InvokeRequest,
    ) -> Result<InvokeResult, ApiError> {
        let (worker, resp) = self
            .place(target, request, |worker, message, deadline| {
                self.workers.invoke(worker, message, deadline)
            })
            .await?;
        self.fleet.record_load(&worker, resp.load);
        Ok(InvokeResult {
            function_error: resp.function_error,
            payload: resp.payload,
            log_tail: resp.log_tail,
        })
    }

    /// Init and the function's timeout are enforced by the worker; this only catches a
    /// worker that stopped answering, with room for a loaded machine.
    fn worker_deadline(target: &InvokeTarget) -> Duration {
        Duration::from_secs(u64::from(target.config.timeout_s))
            + INIT_LIMIT
            + Duration::from_secs(30)
    }

    /// Places one admitted invocation: `call` asks one worker at a time, in fleet order,
    /// until one takes it. Returns that worker and its answer.
    async fn place<T>(
        &self,
        target: &InvokeTarget,
        request: InvokeRequest,
        call: impl Fn(&str, pb::InvokeRequest, Duration) -> BoxFuture<'static, WorkerResult<T>>,
    ) -> Result<(String, T), ApiError> {
        let deadline = Self::worker_deadline(target);
        let message = pb::InvokeRequest {
            function: Some(self.worker_spec(target).await?),
            request_id: request.request_id,
            payload: request.payload,
            client_context: request.client_context,
            trace_id: request.trace_id,
        };
        let placement = &self.placement;
        let wait_until = tokio::time::Instant::now() + placement.placement_wait;
        let mut pause = Duration::from_millis(50);
        let mut last = None;
        // Whether every refusal so far was a full worker: then the region is out of
        // capacity, which the caller hears as a throttle (retryable), not a fault.
        let mut only_busy = true;
        // Rounds of placement: each tries up to `max_attempts` workers; every failure so
        // far was "not started", so waiting and placing again is safe.
        loop {
            let site = target.edge_location.as_deref();
            let live: Vec<_> = self
                .workers
                .live()
                .into_iter()
                .filter(|w| w.edge_location.as_deref() == site)
                .collect();
            let any_live = !live.is_empty();
            let runtime = &target.config.runtime;
            let offering: Vec<_> = live
                .into_iter()
                .filter(|w| w.runtimes.iter().any(|r| r == runtime))
                .collect();
            let plan = self.fleet.plan_from(
                offering,
                &target.revision_id,
                placement.load_fresh_for,
                placement.home_zone.as_deref(),
            );
            let place = match site {
                Some(l) => format!("edge location {l} of region {}", self.region()),
                None => format!("region {}", self.region()),
            };
            if plan.is_empty() && any_live {
                // Not a matter of capacity: waiting will not make a worker run it, and no
                // worker is ever asked to run it on another version.
                return Err(ApiError::invalid(format!(
                    "No worker in {place} offers runtime {runtime}."
                )));
            }
            if plan.is_empty() {
                last = Some(ApiError::service(format!(
                    "no worker is available in {place}"
                )));
            }
            for worker in plan.into_iter().take(placement.max_attempts) {
                let _in_flight = self.fleet.start_revision(&worker, &target.revision_id);
                match call(&worker, message.clone(), deadline).await {
                    Ok(answer) => return Ok((worker, answer)),
                    Err(e) => {
                        tracing::debug!(%worker, "invoke failed: {e}");
                        if !e.retry_elsewhere() {
                            return Err(e.to_api(&worker));
                        }
                        only_busy &= e.is_busy();
                        self.fleet.suspect(&worker, placement.suspect_for);
                        last = Some(e.to_api(&worker));
                    }
                }
            }
            if tokio::time::Instant::now() + pause > wait_until {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(500));
        }
        match last {
            Some(_) if only_busy => Err(ApiError::throttled(
                WORKER_CAPACITY_REASON,
                format!(
                    "No worker in region {} has memory for another environment now; retry later.",
                    self.region()
                ),
            )),
            Some(e) => Err(e),
            None => Err(ApiError::service("no worker accepted the invocation")),
        }
    }

    /// A synchronous invocation whose response the function may stream: resolve, admit
    /// and place as [`Gateway::invoke`] does, and answer once the function first wrote
    /// or ended, with its bytes to come as [`StreamEvent`]s. Errors before that (not
    /// found, throttled, no worker) are this call's error. The invocation keeps its
    /// concurrency slot until the function ends, whether or not anyone still reads.
    pub async fn invoke_stream(
        self: &Arc<Self>,
        named: &Named,
        request: InvokeRequest,
    ) -> Result<StreamedInvoke, ApiError> {
        let Admitted {
            target,
            labels,
            slot,
            running,
        } = self.admitted(named).await?;
        let (events, events_rx) = mpsc::channel(STREAM_EVENTS_BUFFER);
        let (started, started_rx) = oneshot::channel();
        let gw = self.clone();
        let executed_version = target.version.clone();
        let span = place_span();
        tokio::spawn(carried(
            async move {
                let began = std::time::Instant::now();
                let placed = gw
                    .place(&target, request, |worker, message, deadline| {
                        gw.workers.invoke_stream(worker, message, deadline)
                    })
                    .await;
                let (worker, stream) = match placed {
                    Ok(placed) => placed,
                    Err(e) => {
                        if e.is_throttle() {
                            gw.metrics().throttled(&labels);
                        }
                        let _ = started.send(Err(e));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                let failed =
                    relay(&gw, &worker, stream, events, Self::worker_deadline(&target)).await;
                gw.metrics().invoked(&labels, began.elapsed(), failed);
                drop(slot);
                drop(running);
            }
            .instrument(span),
        ));
        match started_rx.await {
            Ok(Ok(())) => Ok(StreamedInvoke {
                executed_version,
                events: events_rx,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ApiError::service("invocation task failed")),
        }
    }

    /// Provisioned concurrency: keeps `count` initialised environments of `target`
    /// spread over the live workers for `hold` (the caller renews it well before it
    /// ends); `count` 0 releases them. Returns how many exist now.
    pub async fn provision(
        &self,
        target: &InvokeTarget,
        count: u32,
        hold: Duration,
    ) -> Result<u32, ApiError> {
        // Provisioned concurrency lives in the region's own zones.
        let mut live = self.workers.live();
        live.retain(|w| w.edge_location.is_none());
        if live.is_empty() {
            return Err(ApiError::service(format!(
                "no worker is available in region {}",
                self.region()
            )));
        }
        // Only workers that run the function's runtime hold its environments.
        live.retain(|w| w.runtimes.contains(&target.config.runtime));
        if live.is_empty() {
            return Err(ApiError::invalid(format!(
                "No worker in region {} offers runtime {}.",
                self.region(),
                target.config.runtime
            )));
        }
        live.sort_by(|a, b| a.id.cmp(&b.id));
        let shares = provision_shares(&target.revision_id, live.len(), count);
        let function = self.worker_spec(target).await?;
        // Every live worker hears its share, 0 included: a worker that held some of
        // these environments before the worker set changed lets them go at once.
        let calls = live.iter().zip(shares).map(|(w, share)| {
            let request = pb::ProvisionRequest {
                function: Some(function.clone()),
                count: share,
                hold_ms: hold.as_millis() as u64,
            };
            // Environments start one after another, each within Init's limit.
            let deadline = INIT_LIMIT * share.max(1) + Duration::from_secs(10);
            let call = self.workers.provision(&w.id, request, deadline);
            async move {
                match call.await {
                    Ok(resp) => {
                        self.fleet.record_load(&w.id, resp.load);
                        Ok(resp.allocated)
                    }
                    Err(e) => Err(ApiError::service(format!(
                        "provisioning on worker {}: {e}",
                        w.id
                    ))),
                }
            }
        });
        let mut allocated = 0;
        let mut first_error = None;
        for r in futures::future::join_all(calls).await {
            match r {
                Ok(n) => allocated += n,
                Err(e) => {
                    tracing::warn!("{}", e.message);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) if allocated == 0 && count > 0 => Err(e),
            _ => Ok(allocated),
        }
    }
}

/// The span of placing an invocation and running it on a worker (none inside an
/// unsampled trace).
fn place_span() -> tracing::Span {
    child_span(|| {
        tracing::info_span!(
            "place_and_invoke",
            otel.name = "Place and invoke",
            otel.kind = "client",
        )
    })
}

/// How `count` provisioned environments of a revision are spread over `workers` live
/// workers (sorted by id): evenly, the remainder going to the workers after a starting
/// point derived from the revision, so that every gateway computes the same shares and
/// different functions do not all pile onto the first worker.
pub fn provision_shares(revision_id: &str, workers: usize, count: u32) -> Vec<u32> {
    if workers == 0 {
        return Vec::new();
    }
    // FNV-1a: stable across processes and builds, unlike std's hasher.
    let hash = revision_id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let start = (hash % workers as u64) as usize;
    let n = workers as u32;
    (0..workers)
        .map(|i| {
            let rank = ((i + workers - start) % workers) as u32;
            count / n + u32::from(rank < count % n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::provision_shares;

    #[test]
    fn provisioned_environments_are_spread_evenly_and_deterministically() {
        assert_eq!(provision_shares("r", 0, 5), Vec::<u32>::new());
        assert_eq!(provision_shares("r", 1, 5), vec![5]);
        for (workers, count) in [(2, 5), (3, 7), (3, 1), (4, 0)] {
            let s = provision_shares("rev-a", workers, count);
            assert_eq!(s.len(), workers);
            assert_eq!(s.iter().sum::<u32>(), count);
            assert!(
                s.iter().max().unwrap() - s.iter().min().unwrap() <= 1,
                "{s:?}"
            );
            assert_eq!(s, provision_shares("rev-a", workers, count), "stable");
        }
        // A single environment lands on different workers for different revisions.
        let spots: std::collections::HashSet<usize> = (0..20)
            .map(|i| {
                provision_shares(&format!("rev-{i}"), 3, 1)
                    .iter()
                    .position(|n| *n == 1)
                    .unwrap()
            })
            .collect();
        assert!(spots.len() > 1, "{spots:?}");
    }
}
