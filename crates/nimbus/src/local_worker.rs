//! An in-process worker for `nimbus dev`: the gateway's [`Invoker`] backed directly by a
//! `nimbus_worker::Engine`, with code packages from the worker's `CodeCache`, and its
//! [`LogSource`]: the engine's log store, queried the same way a worker's gRPC service does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use nimbus_gateway::logs::{LogSource, LogsError};
use nimbus_gateway::{ApiError, InvokeRequest, InvokeResult, InvokeTarget, Invoker};
use nimbus_meta::MetaClient;
use nimbus_proto::worker as pb;
use nimbus_worker::code_cache::{CodeCache, CodeError};
use nimbus_worker::log_store::rpc::{self, LogQueryError};
use nimbus_worker::{Engine, FunctionSpec, Invocation, InvokeStatus};

/// Runs invocations on this process's execution environments.
pub struct LocalInvoker {
    pub engine: Engine,
    code: CodeCache,
}

impl LocalInvoker {
    pub fn new(engine: Engine, meta: MetaClient, code_root: PathBuf) -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(Self {
            engine,
            code: CodeCache::new(code_root, meta)?,
        }))
    }

    /// Removes code packages no environment can still use (see `CodeCache`).
    pub fn evict_unused_code(&self) -> usize {
        self.code.evict_unused(self.engine.config().idle_timeout)
    }
}

impl LocalInvoker {
    /// The engine's view of `target`, with its code package unpacked locally.
    async fn spec(&self, target: &InvokeTarget) -> Result<FunctionSpec, ApiError> {
        let code_dir = self
            .code
            .get(&target.code.sha256, target.code_revision)
            .await
            .map_err(|e| match e {
                CodeError::Unzip(_) => ApiError::new(502, "InvalidZipFileException", e.to_string()),
                CodeError::Fetch { .. } => ApiError::service(e.to_string()),
            })?;
        let c = &target.config;
        Ok(FunctionSpec {
            account_id: target.key.account_id.clone(),
            log_format: nimbus_worker::LogFormat::parse(&c.log_format),
            function_name: target.key.name.clone(),
            version: target.version.clone(),
            arn: target.invoked_arn.clone(),
            code_dir,
            layers: vec![],
            runtime: c.runtime.clone(),
            handler: c.handler.clone(),
            memory_mb: u64::from(c.memory_mb),
            timeout: Duration::from_secs(u64::from(c.timeout_s)),
            ephemeral_mb: u64::from(c.ephemeral_storage_mb),
            env: c.environment.clone(),
            revision: target.revision_id.clone(),
        })
    }
}

impl Invoker for LocalInvoker {
    fn invoke<'a>(
        &'a self,
        target: &'a InvokeTarget,
        request: InvokeRequest,
    ) -> BoxFuture<'a, Result<InvokeResult, ApiError>> {
        Box::pin(async move {
            let spec = self.spec(target).await?;
            let inv = Invocation {
                request_id: request.request_id,
                payload: request.payload,
                client_context: request.client_context,
                cognito_identity: None,
                trace_id: request.trace_id,
            };
            let out = self
                .engine
                .invoke(&spec, inv)
                .await
                .map_err(|e| ApiError::service(format!("invocation failed: {e}")))?;
            let function_error = match out.status {
                InvokeStatus::Ok => None,
                InvokeStatus::FunctionError { error_type } => Some(error_type),
            };
            Ok(InvokeResult {
                function_error,
                payload: out.payload,
                log_tail: out.log_tail,
            })
        })
    }

    fn provision<'a>(
        &'a self,
        target: &'a InvokeTarget,
        count: u32,
        hold: Duration,
    ) -> BoxFuture<'a, Result<u32, ApiError>> {
        Box::pin(async move {
            let spec = self.spec(target).await?;
            let allocated = self
                .engine
                .provision(&spec, count as usize, hold)
                .await
                .map_err(|e| ApiError::service(format!("provisioning failed: {e}")))?;
            Ok(allocated as u32)
        })
    }
}

impl LocalInvoker {
    /// Runs a log query on a blocking thread (it reads files); one answer, this worker's.
    async fn query<T: Send + 'static>(
        &self,
        query: impl FnOnce(&nimbus_worker::LogStore) -> Result<T, LogQueryError> + Send + 'static,
    ) -> Result<Vec<T>, LogsError> {
        let store = self.engine.log_store().clone();
        match tokio::task::spawn_blocking(move || query(&store)).await {
            Ok(Ok(r)) => Ok(vec![r]),
            Ok(Err(LogQueryError::InvalidParameter(m))) => Err(LogsError::invalid(m)),
            Ok(Err(e)) => Err(LogsError::unavailable(e.to_string())),
            Err(e) => Err(LogsError::unavailable(e.to_string())),
        }
    }
}

impl LogSource for LocalInvoker {
    fn filter_log_events(
        &self,
        request: pb::FilterLogEventsRequest,
    ) -> BoxFuture<'_, Result<Vec<pb::FilterLogEventsResponse>, LogsError>> {
        Box::pin(self.query(move |s| rpc::filter(s, &request)))
    }

    fn describe_log_streams(
        &self,
        request: pb::DescribeLogStreamsRequest,
    ) -> BoxFuture<'_, Result<Vec<pb::DescribeLogStreamsResponse>, LogsError>> {
        Box::pin(self.query(move |s| rpc::streams(s, &request)))
    }

    fn describe_log_groups(
        &self,
        request: pb::DescribeLogGroupsRequest,
    ) -> BoxFuture<'_, Result<Vec<pb::DescribeLogGroupsResponse>, LogsError>> {
        Box::pin(self.query(move |s| rpc::groups(s, &request)))
    }
}
