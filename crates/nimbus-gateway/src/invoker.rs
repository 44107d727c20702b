//! The boundary between the gateway and the workers that run functions.
//!
//! `nimbus dev` plugs in a worker engine in the same process; a cluster gateway plugs in
//! a client of worker nodes. Either way the gateway hands over a fully resolved,
//! immutable target and gets back the outcome.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use nimbus_types::{CodeRef, FunctionConfig, FunctionKey};

use crate::error::ApiError;

/// One function version, resolved and ready to run.
#[derive(Debug, Clone)]
pub struct InvokeTarget {
    pub key: FunctionKey,
    /// `$LATEST` or a version number.
    pub version: String,
    pub config: FunctionConfig,
    pub code: CodeRef,
    /// The ARN as invoked (with the qualifier, if any).
    pub invoked_arn: String,
    /// A metadata revision at which the code package is known to exist.
    pub code_revision: u64,
    /// Identity of the configuration (`RevisionId`): environments are reused only for
    /// the same code and configuration, so an update never runs on stale code.
    pub revision_id: String,
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
#[derive(Debug, Clone)]
pub struct InvokeResult {
    /// The function's `errorType` when it failed (`X-Amz-Function-Error: Unhandled`).
    pub function_error: Option<String>,
    pub payload: Bytes,
    /// The last 4 KB of the invocation's log.
    pub log_tail: String,
}

/// Runs invocations on execution environments.
pub trait Invoker: Send + Sync + 'static {
    fn invoke<'a>(
        &'a self,
        target: &'a InvokeTarget,
        request: InvokeRequest,
    ) -> BoxFuture<'a, Result<InvokeResult, ApiError>>;

    /// Provisioned concurrency: keeps `count` initialised environments of `target` for
    /// `hold` (the caller renews it well before it ends); `count` 0 releases them.
    /// Returns how many exist now.
    fn provision<'a>(
        &'a self,
        target: &'a InvokeTarget,
        count: u32,
        hold: Duration,
    ) -> BoxFuture<'a, Result<u32, ApiError>>;
}
