//! The worker contract: what a worker answers to an invocation, a provisioning request
//! or a log query, in `nimbus.worker.v1` messages.
//!
//! A cluster's workers serve it over gRPC ([`crate::node`]); `nimbus dev` calls it in
//! process. Both go through this one type, so a gateway gets the same answer, and the
//! same [`Rejection`] for the same fault, whichever way it reached the worker. Every
//! engine or code-cache error is turned into a rejection here and nowhere else.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use nimbus_proto::worker::{self as pb, invoke_event::Event, rejection::Reason, Rejection};
use nimbus_telemetry::decision::carried;
use tokio::sync::{mpsc, oneshot};
use tracing::Instrument;

use crate::code_cache::{CodeCache, CodeError};
use crate::log_store::rpc::{self, LogQueryError};
use crate::{Engine, EngineError, FunctionSpec, Invocation, InvokeOutcome, InvokeStatus};

/// The longest a provisioned-concurrency hold lasts without renewal (gateways renew every
/// few seconds).
const MAX_HOLD_MS: u64 = 10 * 60 * 1000;

/// Packages one prefetch may name, at most.
const MAX_PREFETCH: usize = 10_000;

/// Pieces of a streamed response queued between the function and its reader, at most
/// (each ≤ 256 KiB): a slow reader holds the function back beyond this.
const STREAM_BUFFER: usize = 8;

/// One worker's engine and code packages, answering the worker contract.
#[derive(Clone)]
pub struct WorkerContract {
    id: String,
    engine: Engine,
    code: Arc<CodeCache>,
}

/// A streamed invocation's way out: the events, and the signal that it started.
struct StreamOut {
    events: mpsc::Sender<Result<pb::InvokeEvent, Rejection>>,
    started: Option<oneshot::Sender<Result<(), Rejection>>>,
    /// The reader is still there (a reader that left is not waited for).
    reading: bool,
}

impl StreamOut {
    fn start(&mut self) {
        if let Some(s) = self.started.take() {
            let _ = s.send(Ok(()));
        }
    }

    async fn chunk(&mut self, chunk: Bytes) {
        self.start();
        if self.reading {
            let event = pb::InvokeEvent {
                event: Some(Event::Chunk(chunk)),
            };
            self.reading = self.events.send(Ok(event)).await.is_ok();
        }
    }

    async fn finish(mut self, last: Result<pb::InvokeEvent, Rejection>) {
        match (self.started.take(), last) {
            // Nothing ran: the caller hears the rejection itself.
            (Some(s), Err(rejection)) => {
                let _ = s.send(Err(rejection));
            }
            (started, last) => {
                if let Some(s) = started {
                    let _ = s.send(Ok(()));
                }
                let _ = self.events.send(last).await;
            }
        }
    }
}

/// Why an engine error means the invocation never ran, in the contract's terms.
pub fn engine_rejection(e: &EngineError) -> Rejection {
    let reason = match e {
        EngineError::NoCapacity { .. } | EngineError::OverShare { .. } => Reason::Busy,
        EngineError::ShuttingDown => Reason::Draining,
        EngineError::InvalidFunction(_) => Reason::InvalidFunction,
        EngineError::PayloadTooLarge { .. } => Reason::PayloadTooLarge,
        // Fail closed: the sandbox could not be set up, nothing ran; another worker may
        // be able to. Host I/O failures happen while setting an environment up, too.
        EngineError::Sandbox(_) | EngineError::Config(_) | EngineError::Io { .. } => {
            Reason::SandboxFailed
        }
    };
    Rejection::new(reason, e.to_string())
}

fn code_rejection(e: &CodeError) -> Rejection {
    let reason = match e {
        CodeError::Fetch { .. } => Reason::CodeUnavailable,
        CodeError::Unzip(_) => Reason::InvalidZip,
    };
    Rejection::new(reason, e.to_string())
}

fn log_rejection(e: LogQueryError) -> Rejection {
    match e {
        LogQueryError::InvalidParameter(m) => Rejection::new(Reason::InvalidRequest, m),
        e => Rejection::new(Reason::StorageFailed, e.to_string()),
    }
}

impl WorkerContract {
    pub fn new(id: impl Into<String>, engine: Engine, code: Arc<CodeCache>) -> Self {
        Self {
            id: id.into(),
            engine,
            code,
        }
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn code(&self) -> &Arc<CodeCache> {
        &self.code
    }

    /// The engine's view of a function version, with its code package unpacked here.
    async fn spec(&self, f: Option<pb::FunctionSpec>) -> Result<FunctionSpec, Rejection> {
        let f = f.ok_or_else(|| Rejection::new(Reason::InvalidRequest, "function is required"))?;
        let started = std::time::Instant::now();
        let code_dir = self
            .code
            .get(&f.code_sha256, f.code_revision)
            .await
            .map_err(|e| code_rejection(&e))?;
        let mut layers = Vec::with_capacity(f.layer_sha256.len());
        for sha in &f.layer_sha256 {
            layers.push(
                self.code
                    .get(sha, f.code_revision)
                    .await
                    .map_err(|e| code_rejection(&e))?,
            );
        }
        if started.elapsed() > Duration::from_secs(1) {
            tracing::warn!(
                function = %f.function_name,
                "code package took {:?} to fetch and unpack",
                started.elapsed()
            );
        }
        Ok(FunctionSpec {
            account_id: f.account_id,
            log_format: crate::LogFormat::parse(&f.log_format),
            application_log_level: Some(f.application_log_level).filter(|l| !l.is_empty()),
            system_log_level: Some(f.system_log_level).filter(|l| !l.is_empty()),
            credentials: f.credentials.map(|c| crate::function::RoleCredentials {
                access_key_id: c.access_key_id,
                secret_access_key: c.secret_access_key,
                session_token: c.session_token,
                expires_ms: c.expires_ms,
            }),
            function_name: f.function_name,
            version: f.version,
            arn: f.invoked_arn,
            code_dir,
            layers,
            runtime: f.runtime,
            handler: f.handler,
            memory_mb: f.memory_mb,
            timeout: Duration::from_millis(f.timeout_ms),
            ephemeral_mb: f.ephemeral_mb,
            env: f.environment.into_iter().collect::<BTreeMap<_, _>>(),
            revision: f.revision_id,
        })
    }

    /// This worker's load, reported with every answer for placement between heartbeats.
    pub fn load(&self) -> pb::WorkerLoad {
        let m = self.engine.pool_metrics();
        pb::WorkerLoad {
            worker_id: self.id.clone(),
            memory_total_mb: m.capacity_mb,
            memory_reserved_mb: m.reserved_mb,
            environments_warm: m.warm as u32,
            environments_busy: m.busy as u32,
            environments_starting: m.starting as u32,
            warm_revisions: self.engine.warm_revisions(),
        }
    }

    /// Runs one invocation to its end. A function error is an answer, not a rejection.
    pub async fn invoke(&self, req: pb::InvokeRequest) -> Result<pb::InvokeResponse, Rejection> {
        let (spec, inv) = self.invocation(req).await?;
        let out = self.run(&spec, inv).await?;
        Ok(self.response(out))
    }

    /// Runs one invocation whose response the function may stream: the events are its
    /// bytes as it writes them, then [`pb::invoke_event::Event::Complete`]. Answers when
    /// the first event exists, so a rejection (nothing ran) is still an error here and
    /// never an event. The invocation runs in its own task: its deadline holds however
    /// slowly the events are read, and a reader that goes away does not stop it.
    pub async fn invoke_stream(
        &self,
        req: pb::InvokeRequest,
    ) -> Result<mpsc::Receiver<Result<pb::InvokeEvent, Rejection>>, Rejection> {
        let (spec, mut inv) = self.invocation(req).await?;
        let (sink, mut chunks) = mpsc::channel::<Bytes>(STREAM_BUFFER);
        inv.stream = Some(sink);
        let (events, events_rx) = mpsc::channel(STREAM_BUFFER);
        let (started, started_rx) = oneshot::channel();
        let this = self.clone();
        let run = tokio::spawn(carried(
            async move { this.run(&spec, inv).await.map(|out| this.response(out)) }
                .in_current_span(),
        ));
        tokio::spawn(carried(
            async move {
                let mut out = StreamOut {
                    events,
                    started: Some(started),
                    reading: true,
                };
                let mut run = run;
                let outcome = loop {
                    tokio::select! {
                        biased;
                        Some(chunk) = chunks.recv() => out.chunk(chunk).await,
                        outcome = &mut run => break outcome,
                    }
                };
                // Every chunk was queued before the runtime's final answer.
                while let Ok(chunk) = chunks.try_recv() {
                    out.chunk(chunk).await;
                }
                out.finish(match outcome {
                    Ok(Ok(response)) => Ok(pb::InvokeEvent {
                        event: Some(Event::Complete(response)),
                    }),
                    Ok(Err(rejection)) => Err(rejection),
                    Err(e) => Err(Rejection::new(
                        Reason::SandboxFailed,
                        format!("invocation task failed: {e}"),
                    )),
                })
                .await;
            }
            .in_current_span(),
        ));
        match started_rx.await {
            Ok(Ok(())) => Ok(events_rx),
            Ok(Err(rejection)) => Err(rejection),
            Err(_) => Err(Rejection::new(
                Reason::SandboxFailed,
                "the invocation ended without an answer",
            )),
        }
    }

    /// The engine's view of a request.
    async fn invocation(
        &self,
        req: pb::InvokeRequest,
    ) -> Result<(FunctionSpec, Invocation), Rejection> {
        let spec = self.spec(req.function).await?;
        let inv = Invocation {
            request_id: req.request_id,
            payload: req.payload,
            client_context: req.client_context,
            cognito_identity: None,
            trace_id: req.trace_id,
            stream: None,
        };
        Ok((spec, inv))
    }

    async fn run(&self, spec: &FunctionSpec, inv: Invocation) -> Result<InvokeOutcome, Rejection> {
        let out = self.engine.invoke(spec, inv).await.map_err(|e| {
            tracing::warn!(function = %spec.function_name, "invocation not run: {e}");
            engine_rejection(&e)
        })?;
        tracing::debug!(request_id = %out.request_id, function = %spec.function_name, "invoked");
        Ok(out)
    }

    fn response(&self, out: InvokeOutcome) -> pb::InvokeResponse {
        // Lambda's X-Amz-Function-Error is "Unhandled" for every function error; the
        // error's own type is in the payload.
        let function_error = match out.status {
            InvokeStatus::Ok => None,
            InvokeStatus::FunctionError { .. } => Some("Unhandled".to_string()),
        };
        pb::InvokeResponse {
            function_error,
            payload: out.payload,
            log_tail: out.log_tail,
            executed_version: out.executed_version,
            cold_start: out.init_duration.is_some(),
            init_duration_us: out.init_duration.map_or(0, |d| d.as_micros() as u64),
            duration_us: out.duration.as_micros() as u64,
            load: Some(self.load()),
        }
    }

    /// Fetches and unpacks packages ahead of their first invocation (an edge location's
    /// deployed code); answers how many are held. One that cannot be fetched now is
    /// logged and tried again at the next push.
    pub async fn prefetch(
        &self,
        req: pb::PrefetchRequest,
    ) -> Result<pb::PrefetchResponse, Rejection> {
        if req.code_sha256.len() > MAX_PREFETCH {
            return Err(Rejection::new(
                Reason::InvalidRequest,
                format!("at most {MAX_PREFETCH} packages per prefetch"),
            ));
        }
        let mut held = 0;
        for sha in &req.code_sha256 {
            match self.code.get(sha, req.code_revision).await {
                Ok(_) => held += 1,
                Err(e) => tracing::warn!(package = %sha, "prefetching code: {e}"),
            }
        }
        Ok(pb::PrefetchResponse { held })
    }

    /// Provisioned concurrency: holds `count` environments for `hold_ms`.
    pub async fn provision(
        &self,
        req: pb::ProvisionRequest,
    ) -> Result<pb::ProvisionResponse, Rejection> {
        if req.hold_ms == 0 && req.count > 0 {
            return Err(Rejection::new(
                Reason::InvalidRequest,
                "hold_ms must be positive",
            ));
        }
        // A hold longer than this would outlive its gateway by too much.
        let hold = Duration::from_millis(req.hold_ms.min(MAX_HOLD_MS));
        let spec = self.spec(req.function).await?;
        let allocated = self
            .engine
            .provision(&spec, req.count as usize, hold)
            .await
            .map_err(|e| engine_rejection(&e))?;
        Ok(pb::ProvisionResponse {
            allocated: allocated as u32,
            load: Some(self.load()),
        })
    }

    pub async fn filter_log_events(
        &self,
        req: pb::FilterLogEventsRequest,
    ) -> Result<pb::FilterLogEventsResponse, Rejection> {
        self.query_logs(move |store| rpc::filter(store, &req)).await
    }

    pub async fn describe_log_streams(
        &self,
        req: pb::DescribeLogStreamsRequest,
    ) -> Result<pb::DescribeLogStreamsResponse, Rejection> {
        self.query_logs(move |store| rpc::streams(store, &req))
            .await
    }

    pub async fn describe_log_groups(
        &self,
        req: pb::DescribeLogGroupsRequest,
    ) -> Result<pb::DescribeLogGroupsResponse, Rejection> {
        self.query_logs(move |store| rpc::groups(store, &req)).await
    }

    /// Runs a log query on a blocking thread (it reads files).
    async fn query_logs<T: Send + 'static>(
        &self,
        query: impl FnOnce(&crate::LogStore) -> Result<T, LogQueryError> + Send + 'static,
    ) -> Result<T, Rejection> {
        let store = self.engine.log_store().clone();
        match tokio::task::spawn_blocking(move || query(&store)).await {
            Ok(r) => r.map_err(log_rejection),
            Err(e) => Err(Rejection::new(Reason::StorageFailed, e.to_string())),
        }
    }
}
