//! The cluster's [`Workers`]: worker nodes reached over gRPC.
//!
//! Workers are discovered from the catalog (their registrations are replicated records,
//! written when they change and refreshed every few minutes). Whether one is alive, and
//! its load, this gateway learns from the worker itself: a worker is live while a direct
//! answer to this gateway (any call, or the status probe [`RemoteWorkers::probe_loop`]
//! sends every second) or its registration is younger than `stale_after`. So liveness
//! costs the metadata cluster no Raft entry per heartbeat (issue 18), and an edge
//! location cut off from the core still sees its own workers (issue 16). The gateway
//! keeps one lazily connected, long-lived HTTP/2 channel per worker and multiplexes every
//! call to it over that channel. This module is transport only: which worker to try,
//! and whether to try another, is the core's ([`Gateway::run`](crate::core::Gateway::run)).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::BoxFuture;
use nimbus_proto::worker as pb;
use nimbus_proto::worker::worker_client::WorkerClient;
use nimbus_tls::{Role, Transport};
use nimbus_types::{keys, Entity, Worker};
use tonic::transport::Channel;

use crate::core::catalog::Catalog;
use crate::core::workers::{InvokeEvents, WorkerError, WorkerResult, WorkerView, Workers};

/// How long a status probe may take before the worker counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_millis(2500);

/// Largest gRPC message: a 6 MB payload plus its envelope.
const MAX_MESSAGE_BYTES: usize = nimbus_types::limits::NODE_MESSAGE_MAX_BYTES;

/// How the remote workers are found.
#[derive(Debug, Clone)]
pub struct RemoteConfig {
    /// The region whose workers serve this gateway.
    pub region: String,
    /// A worker that has answered this gateway no more recently than this (and did not
    /// register more recently either) is considered dead.
    pub stale_after: Duration,
    /// A registration not refreshed for this long is dropped (the worker died without
    /// deregistering).
    pub registration_ttl: Duration,
    /// How workers are dialled: with TLS, only a server holding a worker's certificate
    /// is sent an invocation.
    pub transport: Transport,
}

impl RemoteConfig {
    pub fn new(region: impl Into<String>, transport: Transport) -> Self {
        Self {
            region: region.into(),
            stale_after: Duration::from_secs(5),
            registration_ttl: Duration::from_secs(900),
            transport,
        }
    }
}

/// The region's worker nodes, over gRPC.
pub struct RemoteWorkers {
    config: RemoteConfig,
    catalog: Arc<Catalog>,
    /// worker id → (address, channel): created lazily, reused for every later call.
    channels: Mutex<HashMap<String, (String, WorkerClient<Channel>)>>,
    /// worker id → when it last answered this gateway directly.
    answered: Arc<Mutex<HashMap<String, std::time::Instant>>>,
    /// worker id → the load it reported to the last status probe.
    loads: Mutex<HashMap<String, pb::WorkerLoad>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl RemoteWorkers {
    pub fn new(catalog: Arc<Catalog>, config: RemoteConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            catalog,
            channels: Mutex::default(),
            answered: Arc::default(),
            loads: Mutex::default(),
        })
    }

    /// Asks every registered worker of the region for its status every `every`: a worker
    /// is live while it answers. Every gateway asks every worker of its region, edge
    /// locations' included: it places work on its site's, and asks any for logs. Runs
    /// until the workers are dropped.
    pub fn probe_loop(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let Some(this) = weak.upgrade() else { break };
                let probes: Vec<_> = this
                    .registered()
                    .into_iter()
                    .map(|w| {
                        let call = this.call(&w.id, |mut c| async move {
                            let mut req = tonic::Request::new(pb::StatusRequest {});
                            req.set_timeout(PROBE_TIMEOUT);
                            c.status(req).await
                        });
                        async move { (w.id, tokio::time::timeout(PROBE_TIMEOUT, call).await) }
                    })
                    .collect();
                drop(this);
                // When it answered is recorded by `call`; a failure just lets the worker
                // go stale.
                let answers = futures::future::join_all(probes).await;
                let Some(this) = weak.upgrade() else { break };
                let mut loads = this.loads.lock().unwrap_or_else(PoisonError::into_inner);
                for (id, answer) in answers {
                    if let Ok(Ok(load)) = answer {
                        loads.insert(id, load);
                    }
                }
            }
        });
    }

    /// Every registered worker of the region (its registration not expired), live or not.
    fn registered(&self) -> Vec<Worker> {
        let now = now_ms();
        let ttl = self.config.registration_ttl.as_millis() as u64;
        // Every invocation places through this: only the region's current
        // registrations are copied, not every worker record of the catalog.
        let mut out = Vec::new();
        self.catalog.for_each(&keys::worker(""), |_, e| {
            if let Entity::Worker(w) = e {
                if w.region == self.config.region && now.saturating_sub(w.last_heartbeat_ms) <= ttl
                {
                    out.push(w.clone());
                }
            }
        });
        out
    }

    /// Live workers of the region: registered, and a fresh direct answer to this
    /// gateway or a fresh registration (one not probed yet).
    pub fn live_records(&self) -> Vec<Worker> {
        let now = now_ms();
        let stale = self.config.stale_after.as_millis() as u64;
        let answered = self.answered.lock().unwrap_or_else(PoisonError::into_inner);
        let recently = |id: &str| {
            answered
                .get(id)
                .is_some_and(|t| t.elapsed() <= self.config.stale_after)
        };
        self.registered()
            .into_iter()
            .filter(|w| now.saturating_sub(w.last_heartbeat_ms) <= stale || recently(&w.id))
            .collect()
    }

    /// The worker's channel, created on first use.
    fn client(&self, id: &str) -> WorkerResult<WorkerClient<Channel>> {
        let addr = self.catalog.with(&keys::worker(id), |e| match e {
            Some(Entity::Worker(w)) => Ok(w.addr.clone()),
            _ => Err(WorkerError::Unreachable(format!(
                "worker {id} is not registered"
            ))),
        })?;
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((a, c)) = channels.get(id) {
            if *a == addr {
                return Ok(c.clone());
            }
        }
        let channel = self
            .config
            .transport
            .channel(&addr, Role::Worker, |e| {
                e.connect_timeout(Duration::from_secs(1))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(10))
                    .keep_alive_while_idle(true)
            })
            .map_err(|e| WorkerError::Unreachable(e.to_string()))?;
        let c = WorkerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        channels.insert(id.to_string(), (addr, c.clone()));
        Ok(c)
    }

    /// Runs one call on `worker`'s channel, classifying its failure.
    fn call<T, F, Fut>(&self, worker: &str, call: F) -> BoxFuture<'static, WorkerResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(WorkerClient<Channel>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>> + Send + 'static,
    {
        let client = self.client(worker);
        let answered = self.answered.clone();
        let worker = worker.to_string();
        Box::pin(async move {
            let client = client?;
            let result = call(client).await;
            // Any answer, even a refusal, shows the worker is up and reachable.
            if result.as_ref().err().is_none_or(|s| !unanswered(s)) {
                answered
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(worker, std::time::Instant::now());
            }
            result.map(tonic::Response::into_inner).map_err(classify)
        })
    }
}

/// An invocation's gRPC request: bounded by `deadline`, in the caller's trace (W3C
/// trace context, so the worker's spans join it).
fn invoke_request(
    request: pb::InvokeRequest,
    deadline: Duration,
) -> tonic::Request<pb::InvokeRequest> {
    let mut req = tonic::Request::new(request);
    req.set_timeout(deadline);
    if let Some(sc) = nimbus_telemetry::propagation::span_context(&tracing::Span::current()) {
        if let Ok(v) = nimbus_telemetry::propagation::traceparent(&sc).parse() {
            req.metadata_mut().insert("traceparent", v);
        }
    }
    req
}

/// Whether a call's failure means the worker did not answer at all.
fn unanswered(status: &tonic::Status) -> bool {
    is_connect_failure(status)
        || matches!(
            status.code(),
            tonic::Code::Unavailable | tonic::Code::DeadlineExceeded
        )
}

/// Whether the error chain shows the connection was never established.
fn is_connect_failure(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            // Raised by the connector alone: a call on an established connection fails
            // with HTTP/2 errors instead. TimedOut is the connect timeout.
            if matches!(
                io.kind(),
                ConnectionRefused
                    | HostUnreachable
                    | NetworkUnreachable
                    | AddrNotAvailable
                    | TimedOut
            ) {
                return true;
            }
        }
        source = e.source();
    }
    false
}

/// The one reading of a worker's error status: a typed rejection, a connection that was
/// never made, or a call that may have run.
fn classify(status: tonic::Status) -> WorkerError {
    if let Some(r) = pb::Rejection::from_status(&status) {
        return WorkerError::Rejected(r);
    }
    if is_connect_failure(&status) {
        return WorkerError::Unreachable(status.message().to_string());
    }
    WorkerError::Interrupted(status.message().to_string())
}

impl Workers for RemoteWorkers {
    fn live(&self) -> Vec<WorkerView> {
        let records = self.live_records();
        let loads = self.loads.lock().unwrap_or_else(PoisonError::into_inner);
        records
            .into_iter()
            .map(|w| {
                let (zone, edge_location) = match w.placement {
                    nimbus_types::Placement::Zone(z) => (Some(z), None),
                    nimbus_types::Placement::EdgeLocation(l) => (None, Some(l)),
                };
                // The load it answered the last probe with, else its registration's.
                let free_mb = loads
                    .get(&w.id)
                    .map_or(w.memory_total_mb.saturating_sub(w.memory_used_mb), |l| {
                        l.memory_total_mb.saturating_sub(l.memory_reserved_mb)
                    });
                WorkerView {
                    free_mb,
                    id: w.id,
                    runtimes: w.runtimes,
                    zone,
                    edge_location,
                }
            })
            .collect()
    }

    fn invoke(
        &self,
        worker: &str,
        request: pb::InvokeRequest,
        deadline: Duration,
    ) -> BoxFuture<'static, WorkerResult<pb::InvokeResponse>> {
        let req = invoke_request(request, deadline);
        self.call(worker, move |mut c| async move { c.invoke(req).await })
    }

    fn invoke_stream(
        &self,
        worker: &str,
        request: pb::InvokeRequest,
        deadline: Duration,
    ) -> BoxFuture<'static, WorkerResult<InvokeEvents>> {
        use futures::StreamExt;
        let req = invoke_request(request, deadline);
        let call = self.call(
            worker,
            move |mut c| async move { c.invoke_stream(req).await },
        );
        Box::pin(async move {
            let events = call.await?;
            // Once events flow, the invocation ran: any failure is an interruption.
            Ok(events
                .map(|e| e.map_err(|s| WorkerError::Interrupted(s.message().to_string())))
                .boxed())
        })
    }

    fn prefetch(
        &self,
        worker: &str,
        request: pb::PrefetchRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::PrefetchResponse>> {
        self.call(
            worker,
            move |mut c| async move { c.prefetch(request).await },
        )
    }

    fn provision(
        &self,
        worker: &str,
        request: pb::ProvisionRequest,
        deadline: Duration,
    ) -> BoxFuture<'static, WorkerResult<pb::ProvisionResponse>> {
        let mut req = tonic::Request::new(request);
        req.set_timeout(deadline);
        self.call(worker, move |mut c| async move { c.provision(req).await })
    }

    fn filter_log_events(
        &self,
        worker: &str,
        request: pb::FilterLogEventsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::FilterLogEventsResponse>> {
        self.call(worker, move |mut c| async move {
            c.filter_log_events(request).await
        })
    }

    fn describe_log_streams(
        &self,
        worker: &str,
        request: pb::DescribeLogStreamsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::DescribeLogStreamsResponse>> {
        self.call(worker, move |mut c| async move {
            c.describe_log_streams(request).await
        })
    }

    fn describe_log_groups(
        &self,
        worker: &str,
        request: pb::DescribeLogGroupsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::DescribeLogGroupsResponse>> {
        self.call(worker, move |mut c| async move {
            c.describe_log_groups(request).await
        })
    }
}
