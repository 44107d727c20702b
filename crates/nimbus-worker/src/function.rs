//! The engine's vocabulary: what to run ([`FunctionSpec`]), one request
//! ([`Invocation`]) and what came of it ([`InvokeOutcome`]).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;

/// A resolved, immutable function version as the worker runs it. The
/// metadata service validates the user's request; this is the locked form.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    /// The owning account: its log groups are kept apart from every other account's.
    pub account_id: String,
    /// `FunctionName` (plain name).
    pub function_name: String,
    /// `$LATEST` or a published version number.
    pub version: String,
    /// The function's ARN (unqualified or qualified, as invoked).
    pub arn: String,
    /// Unpacked deployment package (world-readable), mounted at `/var/task`.
    pub code_dir: PathBuf,
    /// Unpacked layers, in order; merged at `/opt` (last wins).
    pub layers: Vec<PathBuf>,
    /// `provided.al2023`, `provided.al2`, `python3.x`, `nodejs20.x`, ...
    pub runtime: String,
    /// `Handler` (`module.function`, `file.export`; informational for `provided`).
    pub handler: String,
    /// `MemorySize` in MB (128–10,240).
    pub memory_mb: u64,
    /// `Timeout`.
    pub timeout: Duration,
    /// `EphemeralStorage.Size` in MB (512–10,240).
    pub ephemeral_mb: u64,
    /// The function's own environment variables.
    pub env: BTreeMap<String, String>,
    /// Identity of this exact code and configuration (Lambda's `RevisionId`). Part of
    /// the pool key: after `$LATEST` is updated, new invocations never land on an
    /// environment that still runs the old code.
    pub revision: String,
    /// `LoggingConfig.LogFormat`: platform lines as text or JSON records.
    pub log_format: crate::logs::LogFormat,
    /// `LoggingConfig.ApplicationLogLevel` (JSON only): the runtime's `AWS_LAMBDA_LOG_LEVEL`.
    pub application_log_level: Option<String>,
    /// `LoggingConfig.SystemLogLevel` (JSON only): `WARN` hides the platform's own
    /// records (they are all INFO).
    pub system_log_level: Option<String>,
    /// The execution role's temporary credentials, given to environments this spec
    /// starts (not part of [`Self::key`]).
    pub credentials: Option<RoleCredentials>,
}

/// Temporary credentials for a function's execution role.
#[derive(Clone, PartialEq, Eq)]
pub struct RoleCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub session_token: String,
    /// Unix milliseconds.
    pub expires_ms: u64,
}

impl std::fmt::Debug for RoleCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret or the token.
        f.debug_struct("RoleCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("expires_ms", &self.expires_ms)
            .finish_non_exhaustive()
    }
}

impl FunctionSpec {
    /// The pool key: environments are reused only by the same function version.
    pub fn key(&self) -> FunctionKey {
        FunctionKey {
            account_id: self.account_id.clone(),
            function_name: self.function_name.clone(),
            version: self.version.clone(),
            revision: self.revision.clone(),
        }
    }
}

/// Identifies a function version (the unit of warm reuse).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FunctionKey {
    /// The account the function belongs to (warm environments never cross accounts,
    /// and memory is shared fairly between them).
    pub account_id: String,
    /// Function name.
    pub function_name: String,
    /// Version.
    pub version: String,
    /// Code and configuration identity (see [`FunctionSpec::revision`]).
    pub revision: String,
}

/// One synchronous invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// `x-amzn-RequestId`, a UUID.
    pub request_id: String,
    /// The event (≤ 6 MB).
    pub payload: Bytes,
    /// Decoded `X-Amz-Client-Context` JSON, passed through as-is.
    pub client_context: Option<String>,
    /// Cognito identity JSON, passed through as-is.
    pub cognito_identity: Option<String>,
    /// `X-Amzn-Trace-Id`; generated when absent.
    pub trace_id: Option<String>,
    /// Where a streamed response goes as the function writes it; its outcome's payload
    /// is then empty (or the error). `None`: collected into the payload (≤ 6 MB).
    pub stream: Option<tokio::sync::mpsc::Sender<Bytes>>,
}

impl Invocation {
    /// A new invocation with a fresh request id.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Invocation {
            request_id: uuid::Uuid::new_v4().to_string(),
            payload: payload.into(),
            client_context: None,
            cognito_identity: None,
            trace_id: None,
            stream: None,
        }
    }
}

/// Whether the function succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvokeStatus {
    /// The runtime posted a response.
    Ok,
    /// The function failed: `X-Amz-Function-Error: Unhandled`; the payload is
    /// `{"errorMessage", "errorType", "stackTrace"?}`.
    FunctionError {
        /// The `errorType` (e.g. `ValueError`, `Runtime.ExitError`, `Sandbox.Timedout`).
        error_type: String,
    },
}

/// The result of one invocation, with everything the gateway needs.
#[derive(Debug, Clone)]
pub struct InvokeOutcome {
    /// The request id.
    pub request_id: String,
    /// Success or function error.
    pub status: InvokeStatus,
    /// Response payload or error JSON.
    pub payload: Bytes,
    /// The invocation's log, START to REPORT.
    pub log: String,
    /// Last 4 KB of `log`, for `X-Amz-Log-Result`.
    pub log_tail: String,
    /// The lines of `log` with their timestamps, as written to the log store.
    pub log_lines: Vec<crate::logs::LogLine>,
    /// The execution environment's log stream (`YYYY/MM/DD/[VERSION]<32 hex>`).
    pub log_stream: String,
    /// `X-Amz-Executed-Version`.
    pub executed_version: String,
    /// Set on a cold start: how long Init took.
    pub init_duration: Option<Duration>,
    /// Invoke phase duration.
    pub duration: Duration,
    /// Duration rounded up to the millisecond.
    pub billed_duration_ms: u64,
    /// Configured memory.
    pub memory_mb: u64,
    /// The environment's memory high-water mark.
    pub max_memory_mb: u64,
}

impl InvokeOutcome {
    /// `"Unhandled"` for function errors, as in `X-Amz-Function-Error`.
    pub fn function_error_header(&self) -> Option<&'static str> {
        match self.status {
            InvokeStatus::Ok => None,
            InvokeStatus::FunctionError { .. } => Some("Unhandled"),
        }
    }
}
