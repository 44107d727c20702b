//! The cluster gateway's [`Invoker`]: runs invocations on worker nodes over gRPC.
//!
//! Workers are discovered from the metadata cache (their registration and heartbeats are
//! replicated records); a worker whose heartbeat is older than `stale_after` is taken as
//! dead. The gateway keeps one lazily connected, long-lived HTTP/2 channel per worker and
//! multiplexes every invocation to it over that channel.
//!
//! Retries follow Lambda's contract for synchronous calls: an attempt that never reached
//! an execution environment (worker unreachable, full, draining, or unable to set up its
//! sandbox) is retried on the next worker in placement order; one that may have run is
//! not, and the caller gets a `ServiceException`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use nimbus_proto::worker as pb;
use nimbus_proto::worker::worker_client::WorkerClient;
use nimbus_types::{keys, Entity, Worker};
use tonic::transport::{Channel, Endpoint};

use crate::cache::MetaCache;
use crate::error::ApiError;
use crate::invoker::{InvokeRequest, InvokeResult, InvokeTarget, Invoker};
use crate::placement::{self, Candidate};

/// Metadata keys set by workers on errors (see `nimbus_worker::node`).
const NOT_STARTED: &str = "x-nimbus-not-started";
const ERROR_TYPE: &str = "x-nimbus-error-type";
/// Largest gRPC message: a 6 MB payload plus its envelope.
const MAX_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Lambda's limit on Init, which a cold start may add to the function's timeout.
const INIT_LIMIT: Duration = Duration::from_secs(10);

/// How the remote invoker behaves.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The region whose workers serve this gateway.
    pub region: String,
    /// A worker whose last heartbeat is older than this is considered dead.
    pub stale_after: Duration,
    /// Workers tried per invocation, at most.
    pub max_attempts: usize,
    /// How long a worker that refused a connection is tried only after the others.
    pub suspect_for: Duration,
    /// How long an invocation that no worker has started may wait for one (workers
    /// restarting one after another, a worker's channel reconnecting) before it fails.
    /// It holds its concurrency slot meanwhile; it never waits once a worker took it.
    pub placement_wait: Duration,
}

impl RemoteConfig {
    pub fn new(region: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            stale_after: Duration::from_secs(10),
            max_attempts: 3,
            suspect_for: Duration::from_secs(3),
            placement_wait: Duration::from_secs(10),
        }
    }
}

/// What this gateway has learned about a worker beyond its heartbeat record.
#[derive(Default)]
struct Local {
    client: Option<(String, WorkerClient<Channel>)>,
    /// The load it reported with its last response, and when.
    load: Option<(Instant, pb::WorkerLoad)>,
    suspect_until: Option<Instant>,
    in_flight: Arc<AtomicUsize>,
}

/// Runs invocations on the region's worker nodes.
pub struct RemoteInvoker {
    config: RemoteConfig,
    cache: Arc<MetaCache>,
    workers: Mutex<HashMap<String, Local>>,
}

struct InFlight(Arc<AtomicUsize>);
impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RemoteInvoker {
    pub fn new(cache: Arc<MetaCache>, config: RemoteConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            cache,
            workers: Mutex::default(),
        })
    }

    /// Live workers of the region, per the metadata cache.
    pub fn live_workers(&self) -> Vec<Worker> {
        let now = now_ms();
        let stale = self.config.stale_after.as_millis() as u64;
        self.cache
            .list(&keys::worker(""), None, usize::MAX)
            .into_iter()
            .filter_map(|(_, e)| match e {
                Entity::Worker(w) => Some(w),
                _ => None,
            })
            .filter(|w| w.region == self.config.region)
            .filter(|w| now.saturating_sub(w.last_heartbeat_ms) <= stale)
            .collect()
    }

    /// Placement order for `revision_id`, with each worker's address.
    fn plan(&self, revision_id: &str) -> Vec<(Candidate, String)> {
        let live = self.live_workers();
        let mut locals = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let mut addrs = HashMap::new();
        let (mut candidates, mut suspects) = (Vec::new(), Vec::new());
        for w in live {
            let local = locals.entry(w.id.clone()).or_default();
            let suspect = local.suspect_until.is_some_and(|t| t > now);
            // The worker's own report on a recent response is fresher than its heartbeat.
            let (free_mb, warm) = match &local.load {
                Some((at, load)) if now.duration_since(*at) < self.config.stale_after => (
                    load.memory_total_mb.saturating_sub(load.memory_reserved_mb),
                    load.warm_revisions.iter().any(|r| r == revision_id),
                ),
                _ => (w.memory_total_mb.saturating_sub(w.memory_used_mb), false),
            };
            let c = Candidate {
                id: w.id.clone(),
                free_mb,
                warm,
                in_flight: local.in_flight.load(Ordering::SeqCst),
            };
            // A suspect (it refused or could not be reached a moment ago) is tried last,
            // not skipped: when every worker restarted recently it is the only choice.
            if suspect {
                suspects.push(c);
            } else {
                candidates.push(c);
            }
            addrs.insert(w.id.clone(), w.addr.clone());
        }
        placement::order(candidates)
            .into_iter()
            .chain(placement::order(suspects))
            .map(|c| {
                let addr = addrs.remove(&c.id).unwrap_or_default();
                (c, addr)
            })
            .collect()
    }

    /// The worker's channel (created lazily, reused for every later call) and a guard
    /// counting the call as in flight.
    fn client(&self, id: &str, addr: &str) -> Result<(WorkerClient<Channel>, InFlight), ApiError> {
        let mut locals = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let local = locals.entry(id.to_string()).or_default();
        let client = Self::channel(local, id, addr)?;
        local.in_flight.fetch_add(1, Ordering::SeqCst);
        Ok((client, InFlight(local.in_flight.clone())))
    }

    /// The worker's channel for calls that are not invocations (log queries): shared with
    /// invocations, but not counted as in flight.
    pub(crate) fn query_client(
        &self,
        id: &str,
        addr: &str,
    ) -> Result<WorkerClient<Channel>, ApiError> {
        let mut locals = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        Self::channel(locals.entry(id.to_string()).or_default(), id, addr)
    }

    fn channel(local: &mut Local, id: &str, addr: &str) -> Result<WorkerClient<Channel>, ApiError> {
        let client = match &local.client {
            Some((a, c)) if a == addr => c.clone(),
            _ => {
                let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                    .map_err(|e| ApiError::service(format!("worker {id} address {addr}: {e}")))?
                    .connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_while_idle(true);
                let c = WorkerClient::new(endpoint.connect_lazy())
                    .max_decoding_message_size(MAX_MESSAGE_BYTES)
                    .max_encoding_message_size(MAX_MESSAGE_BYTES);
                local.client = Some((addr.to_string(), c.clone()));
                c
            }
        };
        Ok(client)
    }

    fn record_load(&self, id: &str, load: Option<pb::WorkerLoad>) {
        if let Some(load) = load {
            let mut locals = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            locals.entry(id.to_string()).or_default().load = Some((Instant::now(), load));
        }
    }

    fn suspect(&self, id: &str) {
        let mut locals = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        let local = locals.entry(id.to_string()).or_default();
        local.suspect_until = Some(Instant::now() + self.config.suspect_for);
        local.load = None;
    }
}

fn spec(target: &InvokeTarget) -> pb::FunctionSpec {
    let c = &target.config;
    pb::FunctionSpec {
        account_id: target.key.account_id.clone(),
        function_name: target.key.name.clone(),
        version: target.version.clone(),
        invoked_arn: target.invoked_arn.clone(),
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
        revision_id: target.revision_id.clone(),
        code_sha256: target.code.sha256.clone(),
        code_revision: target.code_revision,
        log_format: c.log_format.clone(),
    }
}

/// How a failed attempt is handled.
enum Failure {
    /// Nothing ran: try the next worker (with this error if none is left).
    Retry(ApiError),
    /// Final: the caller gets this.
    Fail(ApiError),
}

/// Whether the error chain shows the connection was never established.
fn is_connect_failure(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | HostUnreachable | NetworkUnreachable | AddrNotAvailable
            ) {
                return true;
            }
        }
        let text = e.to_string();
        if text.contains("tcp connect error") || text.contains("error trying to connect") {
            return true;
        }
        source = e.source();
    }
    status.code() == tonic::Code::Unavailable && status.message().contains("tcp connect error")
}

fn classify(worker: &str, status: tonic::Status) -> Failure {
    let meta = status.metadata();
    if meta.get(NOT_STARTED).is_some() {
        let error_type = meta
            .get(ERROR_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("ServiceException")
            .to_string();
        let http = match error_type.as_str() {
            "InvalidParameterValueException" => 400,
            "RequestTooLargeException" => 413,
            "InvalidZipFileException" => 502,
            _ => 500,
        };
        let err = ApiError::new(http, &error_type, status.message().to_string());
        // Errors in the request itself would fail the same way anywhere.
        return if status.code() == tonic::Code::InvalidArgument {
            Failure::Fail(err)
        } else {
            Failure::Retry(err)
        };
    }
    if is_connect_failure(&status) {
        return Failure::Retry(ApiError::service(format!(
            "worker {worker} is unreachable: {}",
            status.message()
        )));
    }
    Failure::Fail(ApiError::service(format!(
        "the invocation was interrupted on worker {worker}: {}",
        status.message()
    )))
}

impl Invoker for RemoteInvoker {
    fn invoke<'a>(
        &'a self,
        target: &'a InvokeTarget,
        request: InvokeRequest,
    ) -> BoxFuture<'a, Result<InvokeResult, ApiError>> {
        Box::pin(async move {
            // Init and the function's timeout are enforced by the worker; this only
            // catches a worker that stopped answering, with room for a loaded machine.
            let deadline = Duration::from_secs(u64::from(target.config.timeout_s))
                + INIT_LIMIT
                + Duration::from_secs(30);
            let function = spec(target);
            let mut last = None;
            let wait_until = Instant::now() + self.config.placement_wait;
            let mut pause = Duration::from_millis(50);
            // Rounds of placement: each tries up to `max_attempts` workers; every failure
            // so far was "not started", so waiting and placing again is safe.
            loop {
                let plan = self.plan(&target.revision_id);
                if plan.is_empty() {
                    last = Some(ApiError::service(format!(
                        "no worker is available in region {}",
                        self.config.region
                    )));
                }
                for (candidate, addr) in plan.into_iter().take(self.config.max_attempts) {
                    let (mut client, _in_flight) = self.client(&candidate.id, &addr)?;
                    let mut req = tonic::Request::new(pb::InvokeRequest {
                        function: Some(function.clone()),
                        request_id: request.request_id.clone(),
                        payload: request.payload.to_vec(),
                        client_context: request.client_context.clone(),
                        trace_id: request.trace_id.clone(),
                    });
                    req.set_timeout(deadline);
                    // The worker's spans join this trace (W3C trace context over gRPC).
                    if let Some(sc) =
                        nimbus_telemetry::propagation::span_context(&tracing::Span::current())
                    {
                        if let Ok(v) = nimbus_telemetry::propagation::traceparent(&sc).parse() {
                            req.metadata_mut().insert("traceparent", v);
                        }
                    }
                    match client.invoke(req).await {
                        Ok(resp) => {
                            let resp = resp.into_inner();
                            self.record_load(&candidate.id, resp.load);
                            return Ok(InvokeResult {
                                function_error: resp.function_error,
                                payload: resp.payload.into(),
                                log_tail: resp.log_tail,
                            });
                        }
                        Err(status) => {
                            tracing::debug!(worker = %candidate.id, "invoke failed: {status}");
                            match classify(&candidate.id, status) {
                                Failure::Retry(e) => {
                                    self.suspect(&candidate.id);
                                    last = Some(e);
                                }
                                Failure::Fail(e) => return Err(e),
                            }
                        }
                    }
                }
                if Instant::now() + pause > wait_until {
                    break;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_millis(500));
            }
            Err(last.unwrap_or_else(|| ApiError::service("no worker accepted the invocation")))
        })
    }

    fn provision<'a>(
        &'a self,
        target: &'a InvokeTarget,
        count: u32,
        hold: Duration,
    ) -> BoxFuture<'a, Result<u32, ApiError>> {
        Box::pin(async move {
            let mut live = self.live_workers();
            if live.is_empty() {
                return Err(ApiError::service(format!(
                    "no worker is available in region {}",
                    self.config.region
                )));
            }
            live.sort_by(|a, b| a.id.cmp(&b.id));
            let shares = provision_shares(&target.revision_id, live.len(), count);
            let function = spec(target);
            // Every live worker hears its share, 0 included: a worker that held some of
            // these environments before the worker set changed lets them go at once.
            let calls = live.iter().zip(shares).map(|(w, share)| {
                let function = function.clone();
                async move {
                    let mut client = self.query_client(&w.id, &w.addr)?;
                    let mut req = tonic::Request::new(pb::ProvisionRequest {
                        function: Some(function),
                        count: share,
                        hold_ms: hold.as_millis() as u64,
                    });
                    // Environments start one after another, each within Init's limit.
                    req.set_timeout(INIT_LIMIT * share.max(1) + Duration::from_secs(10));
                    match client.provision(req).await {
                        Ok(resp) => {
                            let resp = resp.into_inner();
                            self.record_load(&w.id, resp.load);
                            Ok(resp.allocated)
                        }
                        Err(status) => Err(ApiError::service(format!(
                            "provisioning on worker {}: {}",
                            w.id,
                            status.message()
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
        })
    }
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
