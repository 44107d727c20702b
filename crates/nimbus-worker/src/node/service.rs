//! The gRPC service gateways call (`nimbus.worker.v1.Worker`).
//!
//! Errors tell the gateway whether the invocation reached an execution environment:
//! every rejection raised before one was involved carries `x-nimbus-not-started: 1`, so
//! the gateway may safely retry it on another worker. Anything else may have run.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use nimbus_proto::worker as pb;
use nimbus_proto::worker::worker_server::Worker;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use crate::code_cache::{CodeCache, CodeError};
use crate::log_store::rpc::{self, LogQueryError};
use crate::{Engine, EngineError, FunctionSpec, Invocation, InvokeStatus};

/// The longest a provisioned-concurrency hold lasts without renewal (gateways renew every
/// few seconds).
const MAX_HOLD_MS: u64 = 10 * 60 * 1000;

/// Metadata key marking a rejection that happened before any environment was involved.
pub const NOT_STARTED: &str = "x-nimbus-not-started";
/// Metadata key carrying the Lambda error type the gateway should return.
pub const ERROR_TYPE: &str = "x-nimbus-error-type";

pub(crate) struct WorkerService {
    pub(crate) id: String,
    pub(crate) engine: Engine,
    pub(crate) code: Arc<CodeCache>,
    pub(crate) in_flight: Arc<AtomicUsize>,
}

/// Counts one invocation in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A rejection before any environment ran, with the Lambda error type to report.
fn not_started(code: tonic::Code, error_type: &str, message: String) -> Status {
    let mut s = Status::new(code, message);
    s.metadata_mut().insert(
        NOT_STARTED,
        tonic::metadata::MetadataValue::from_static("1"),
    );
    if let Ok(v) = error_type.parse() {
        s.metadata_mut().insert(ERROR_TYPE, v);
    }
    s
}

fn engine_status(e: EngineError) -> Status {
    let msg = e.to_string();
    match e {
        EngineError::NoCapacity { .. } => {
            not_started(tonic::Code::ResourceExhausted, "ServiceException", msg)
        }
        EngineError::ShuttingDown => not_started(tonic::Code::Unavailable, "ServiceException", msg),
        EngineError::InvalidFunction(_) => not_started(
            tonic::Code::InvalidArgument,
            "InvalidParameterValueException",
            msg,
        ),
        EngineError::PayloadTooLarge { .. } => not_started(
            tonic::Code::InvalidArgument,
            "RequestTooLargeException",
            msg,
        ),
        // Fail closed: the sandbox could not be set up, nothing ran; another worker may
        // be able to.
        EngineError::Sandbox(_) | EngineError::Config(_) => {
            not_started(tonic::Code::Internal, "ServiceException", msg)
        }
        EngineError::Io { .. } => Status::internal(msg),
    }
}

fn code_status(e: CodeError) -> Status {
    let msg = e.to_string();
    match e {
        CodeError::Fetch { .. } => not_started(tonic::Code::Unavailable, "ServiceException", msg),
        CodeError::Unzip(_) => {
            not_started(tonic::Code::InvalidArgument, "InvalidZipFileException", msg)
        }
    }
}

impl WorkerService {
    async fn spec(&self, f: Option<pb::FunctionSpec>) -> Result<FunctionSpec, Status> {
        let f = f.ok_or_else(|| {
            not_started(
                tonic::Code::InvalidArgument,
                "InvalidParameterValueException",
                "function is required".into(),
            )
        })?;
        let code_dir = self
            .code
            .get(&f.code_sha256, f.code_revision)
            .await
            .map_err(code_status)?;
        Ok(FunctionSpec {
            account_id: f.account_id,
            log_format: crate::LogFormat::parse(&f.log_format),
            function_name: f.function_name,
            version: f.version,
            arn: f.invoked_arn,
            code_dir,
            layers: vec![],
            runtime: f.runtime,
            handler: f.handler,
            memory_mb: f.memory_mb,
            timeout: Duration::from_millis(f.timeout_ms),
            ephemeral_mb: f.ephemeral_mb,
            env: f.environment.into_iter().collect::<BTreeMap<_, _>>(),
            revision: f.revision_id,
        })
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    pub(crate) fn load(&self) -> pb::WorkerLoad {
        let m = self.engine.metrics();
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
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn invoke(
        &self,
        request: Request<pb::InvokeRequest>,
    ) -> Result<Response<pb::InvokeResponse>, Status> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(self.in_flight.clone());
        // Continue the gateway's trace: the engine's Init and Invocation spans become
        // children of this one.
        let span = tracing::info_span!(
            "worker_invoke",
            otel.name = "Worker invoke",
            otel.kind = "server"
        );
        if let Some(parent) = request
            .metadata()
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| nimbus_telemetry::propagation::parse_traceparent(v, None))
        {
            nimbus_telemetry::propagation::set_remote_parent(&span, parent);
        }
        self.invoke_traced(request.into_inner())
            .instrument(span)
            .await
    }

    async fn prewarm(
        &self,
        request: Request<pb::PrewarmRequest>,
    ) -> Result<Response<pb::PrewarmResponse>, Status> {
        let req = request.into_inner();
        let spec = self.spec(req.function).await?;
        let started = self
            .engine
            .prewarm(&spec, req.count as usize)
            .await
            .map_err(engine_status)?;
        Ok(Response::new(pb::PrewarmResponse {
            started: started as u32,
        }))
    }

    async fn provision(
        &self,
        request: Request<pb::ProvisionRequest>,
    ) -> Result<Response<pb::ProvisionResponse>, Status> {
        let req = request.into_inner();
        if req.hold_ms == 0 && req.count > 0 {
            return Err(Status::invalid_argument("hold_ms must be positive"));
        }
        // A hold longer than this would outlive its gateway by too much.
        let hold = Duration::from_millis(req.hold_ms.min(MAX_HOLD_MS));
        let spec = self.spec(req.function).await?;
        let allocated = self
            .engine
            .provision(&spec, req.count as usize, hold)
            .await
            .map_err(engine_status)?;
        Ok(Response::new(pb::ProvisionResponse {
            allocated: allocated as u32,
            load: Some(self.load()),
        }))
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::WorkerLoad>, Status> {
        Ok(Response::new(self.load()))
    }

    async fn filter_log_events(
        &self,
        request: Request<pb::FilterLogEventsRequest>,
    ) -> Result<Response<pb::FilterLogEventsResponse>, Status> {
        let req = request.into_inner();
        self.query_logs(move |store| rpc::filter(store, &req)).await
    }

    async fn describe_log_streams(
        &self,
        request: Request<pb::DescribeLogStreamsRequest>,
    ) -> Result<Response<pb::DescribeLogStreamsResponse>, Status> {
        let req = request.into_inner();
        self.query_logs(move |store| rpc::streams(store, &req))
            .await
    }

    async fn describe_log_groups(
        &self,
        request: Request<pb::DescribeLogGroupsRequest>,
    ) -> Result<Response<pb::DescribeLogGroupsResponse>, Status> {
        let req = request.into_inner();
        self.query_logs(move |store| rpc::groups(store, &req)).await
    }
}

impl WorkerService {
    /// Runs a log query on a blocking thread (it reads files).
    async fn query_logs<T: Send + 'static>(
        &self,
        query: impl FnOnce(&crate::LogStore) -> Result<T, LogQueryError> + Send + 'static,
    ) -> Result<Response<T>, Status> {
        let store = self.engine.log_store().clone();
        match tokio::task::spawn_blocking(move || query(&store)).await {
            Ok(Ok(r)) => Ok(Response::new(r)),
            Ok(Err(LogQueryError::InvalidParameter(m))) => Err(Status::invalid_argument(m)),
            Ok(Err(e)) => Err(Status::internal(e.to_string())),
            Err(e) => Err(Status::internal(e.to_string())),
        }
    }
}

impl WorkerService {
    async fn invoke_traced(
        &self,
        req: pb::InvokeRequest,
    ) -> Result<Response<pb::InvokeResponse>, Status> {
        let started = std::time::Instant::now();
        let spec = self.spec(req.function).await?;
        if started.elapsed() > Duration::from_secs(1) {
            tracing::warn!(
                function = %spec.function_name,
                "code package took {:?} to fetch and unpack",
                started.elapsed()
            );
        }
        let inv = Invocation {
            request_id: req.request_id,
            payload: req.payload.into(),
            client_context: req.client_context,
            cognito_identity: None,
            trace_id: req.trace_id,
        };
        let out = self.engine.invoke(&spec, inv).await.map_err(|e| {
            tracing::warn!(function = %spec.function_name, "invocation not run: {e}");
            engine_status(e)
        })?;
        tracing::debug!(request_id = %out.request_id, function = %spec.function_name, "invoked");
        let function_error = match out.status {
            InvokeStatus::Ok => None,
            InvokeStatus::FunctionError { .. } => Some("Unhandled".to_string()),
        };
        Ok(Response::new(pb::InvokeResponse {
            function_error,
            payload: out.payload.to_vec(),
            log_tail: out.log_tail,
            executed_version: out.executed_version,
            cold_start: out.init_duration.is_some(),
            init_duration_us: out.init_duration.map_or(0, |d| d.as_micros() as u64),
            duration_us: out.duration.as_micros() as u64,
            load: Some(self.load()),
        }))
    }
}
