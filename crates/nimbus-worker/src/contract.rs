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

use nimbus_proto::worker::{self as pb, rejection::Reason, Rejection};

use crate::code_cache::{CodeCache, CodeError};
use crate::log_store::rpc::{self, LogQueryError};
use crate::{Engine, EngineError, FunctionSpec, Invocation, InvokeStatus};

/// The longest a provisioned-concurrency hold lasts without renewal (gateways renew every
/// few seconds).
const MAX_HOLD_MS: u64 = 10 * 60 * 1000;

/// One worker's engine and code packages, answering the worker contract.
#[derive(Clone)]
pub struct WorkerContract {
    id: String,
    engine: Engine,
    code: Arc<CodeCache>,
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

    /// Runs one invocation to its end. A function error is an answer, not a rejection.
    pub async fn invoke(&self, req: pb::InvokeRequest) -> Result<pb::InvokeResponse, Rejection> {
        let spec = self.spec(req.function).await?;
        let inv = Invocation {
            request_id: req.request_id,
            payload: req.payload.into(),
            client_context: req.client_context,
            cognito_identity: None,
            trace_id: req.trace_id,
        };
        let out = self.engine.invoke(&spec, inv).await.map_err(|e| {
            tracing::warn!(function = %spec.function_name, "invocation not run: {e}");
            engine_rejection(&e)
        })?;
        tracing::debug!(request_id = %out.request_id, function = %spec.function_name, "invoked");
        // Lambda's X-Amz-Function-Error is "Unhandled" for every function error; the
        // error's own type is in the payload.
        let function_error = match out.status {
            InvokeStatus::Ok => None,
            InvokeStatus::FunctionError { .. } => Some("Unhandled".to_string()),
        };
        Ok(pb::InvokeResponse {
            function_error,
            payload: out.payload.to_vec(),
            log_tail: out.log_tail,
            executed_version: out.executed_version,
            cold_start: out.init_duration.is_some(),
            init_duration_us: out.init_duration.map_or(0, |d| d.as_micros() as u64),
            duration_us: out.duration.as_micros() as u64,
            load: Some(self.load()),
        })
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
