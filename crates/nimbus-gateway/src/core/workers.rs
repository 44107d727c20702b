//! The one boundary between the gateway core and the workers that run functions.
//!
//! [`Workers`] is "the workers of this gateway's region": `nimbus dev` implements it with
//! its in-process worker (a set of one), a cluster gateway with gRPC channels to worker
//! nodes ([`crate::remote::RemoteWorkers`]). Either way a worker answers in
//! `nimbus.worker.v1` messages produced by the same `nimbus_worker::contract`, and a
//! refusal is a typed [`Rejection`]; this module maps rejections to Lambda errors, once,
//! through [`ErrorKind`]. Placement, retries and admission live above it, in the core.

use std::time::Duration;

use futures::future::BoxFuture;
use nimbus_proto::worker::{self as pb, rejection::Reason, Rejection};
use nimbus_types::{ErrorKind, MetaError};

use super::error::ApiError;

/// A worker that can take work now, as its transport last heard of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerView {
    pub id: String,
    /// Memory not reserved by environments, per its last heartbeat.
    pub free_mb: u64,
    /// The runtime identifiers it runs; it is never chosen for another.
    pub runtimes: Vec<String>,
    /// Its availability zone (`None`: an edge location's worker, or one without a zone).
    pub zone: Option<String>,
    /// The edge location it serves (`None`: the region's own zones). Edge workers run
    /// only what is deployed to their location, and only for that location's gateways.
    pub edge_location: Option<String>,
}

/// Why a call to one worker failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WorkerError {
    /// The worker refused before any function code ran.
    #[error("{}", .0.message)]
    Rejected(Rejection),
    /// The worker could not be reached at all: nothing ran.
    #[error("worker is unreachable: {0}")]
    Unreachable(String),
    /// The call broke after it reached the worker: an invocation may have run.
    #[error("the call was interrupted: {0}")]
    Interrupted(String),
}

impl WorkerError {
    /// Whether another worker may succeed where this one failed without running anything.
    pub fn retry_elsewhere(&self) -> bool {
        match self {
            WorkerError::Unreachable(_) => true,
            WorkerError::Interrupted(_) => false,
            WorkerError::Rejected(r) => !matches!(
                r.reason(),
                Reason::PayloadTooLarge
                    | Reason::InvalidFunction
                    | Reason::InvalidZip
                    | Reason::InvalidRequest
            ),
        }
    }

    /// The worker had no memory for another environment.
    pub fn is_busy(&self) -> bool {
        matches!(self, WorkerError::Rejected(r) if r.reason() == Reason::Busy)
    }

    /// The Lambda error kind of a failure (the one mapping of rejections).
    pub fn kind(&self) -> ErrorKind {
        match self {
            WorkerError::Unreachable(_) | WorkerError::Interrupted(_) => ErrorKind::Service,
            WorkerError::Rejected(r) => match r.reason() {
                Reason::PayloadTooLarge => ErrorKind::RequestTooLarge,
                Reason::InvalidFunction | Reason::InvalidRequest => {
                    ErrorKind::InvalidParameterValue
                }
                Reason::InvalidZip => ErrorKind::InvalidZipFile,
                Reason::Busy
                | Reason::Draining
                | Reason::SandboxFailed
                | Reason::CodeUnavailable
                | Reason::StorageFailed
                | Reason::Unspecified => ErrorKind::Service,
            },
        }
    }

    /// The error a caller gets when `worker` failed this way.
    pub fn to_api(&self, worker: &str) -> ApiError {
        let message = match self {
            WorkerError::Rejected(r) => r.message.clone(),
            WorkerError::Unreachable(m) => format!("worker {worker} is unreachable: {m}"),
            WorkerError::Interrupted(m) => {
                format!("the invocation was interrupted on worker {worker}: {m}")
            }
        };
        MetaError::new(self.kind(), message).into()
    }
}

/// Result of a call to one worker.
pub type WorkerResult<T> = Result<T, WorkerError>;

/// A streamed invocation's events from a worker: chunks, then the outcome.
pub type InvokeEvents = futures::stream::BoxStream<'static, WorkerResult<pb::InvokeEvent>>;

/// The workers of this gateway's region.
pub trait Workers: Send + Sync + 'static {
    /// Workers alive now (their heartbeat is fresh), in no particular order.
    fn live(&self) -> Vec<WorkerView>;

    /// Runs one invocation on `worker`; `deadline` bounds a worker that stopped answering.
    fn invoke(
        &self,
        worker: &str,
        request: pb::InvokeRequest,
        deadline: Duration,
    ) -> BoxFuture<'static, WorkerResult<pb::InvokeResponse>>;

    /// Runs one invocation whose response the function may stream on `worker`: answers
    /// once the first event exists (a rejection is still this call's error), then the
    /// response's chunks and the outcome. A transport without streaming answers in one
    /// piece.
    fn invoke_stream(
        &self,
        worker: &str,
        request: pb::InvokeRequest,
        deadline: Duration,
    ) -> BoxFuture<'static, WorkerResult<InvokeEvents>> {
        let call = self.invoke(worker, request, deadline);
        Box::pin(async move {
            let response = call.await?;
            let complete = pb::InvokeEvent {
                event: Some(pb::invoke_event::Event::Complete(response)),
            };
            Ok(futures::StreamExt::boxed(futures::stream::iter([Ok(
                complete,
            )])))
        })
    }

    /// Has `worker` fetch code packages ahead of their first invocation.
    fn prefetch(
        &self,
        worker: &str,
        request: pb::PrefetchRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::PrefetchResponse>>;

    /// Sets `worker`'s provisioned-concurrency hold for one function version.
    fn provision(
        &self,
        worker: &str,
        request: pb::ProvisionRequest,
        deadline: Duration,
    ) -> BoxFuture<'static, WorkerResult<pb::ProvisionResponse>>;

    fn filter_log_events(
        &self,
        worker: &str,
        request: pb::FilterLogEventsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::FilterLogEventsResponse>>;

    fn describe_log_streams(
        &self,
        worker: &str,
        request: pb::DescribeLogStreamsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::DescribeLogStreamsResponse>>;

    fn describe_log_groups(
        &self,
        worker: &str,
        request: pb::DescribeLogGroupsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::DescribeLogGroupsResponse>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejections_map_to_lambda_errors_once() {
        let cases = [
            (Reason::Busy, 500, "ServiceException", true),
            (Reason::Draining, 500, "ServiceException", true),
            (Reason::SandboxFailed, 500, "ServiceException", true),
            (Reason::CodeUnavailable, 500, "ServiceException", true),
            (
                Reason::PayloadTooLarge,
                413,
                "RequestTooLargeException",
                false,
            ),
            (
                Reason::InvalidFunction,
                400,
                "InvalidParameterValueException",
                false,
            ),
            (Reason::InvalidZip, 502, "InvalidZipFileException", false),
        ];
        for (reason, status, name, retry) in cases {
            let e = WorkerError::Rejected(Rejection::new(reason, "m"));
            let api = e.to_api("w1");
            assert_eq!(
                (api.status, api.error_type.as_str()),
                (status, name),
                "{reason:?}"
            );
            assert_eq!(api.message, "m");
            assert_eq!(e.retry_elsewhere(), retry, "{reason:?}");
        }
        let lost = WorkerError::Interrupted("reset".into());
        assert!(!lost.retry_elsewhere());
        assert_eq!(lost.to_api("w1").status, 500);
        assert!(WorkerError::Unreachable("refused".into()).retry_elsewhere());
    }
}
