//! Function logs for tools: a subset of the CloudWatch Logs API (JSON 1.1 protocol,
//! `POST /` with `X-Amz-Target: Logs_20140328.<Operation>`, Signature V4 for service
//! `logs`), so `boto3.client("logs", endpoint_url=gateway)` and `aws logs …` work.
//!
//! The logs themselves stay on the workers that ran the functions (see
//! `nimbus_worker::log_store`). A [`LogSource`] asks every worker of the region and
//! returns each worker's answer; [`api`] merges them by event cursor, pages, and maps the
//! result and every error to CloudWatch Logs' wire format.
//!
//! * [`api`]    — the operations: FilterLogEvents, GetLogEvents, DescribeLogStreams,
//!   DescribeLogGroups.
//! * [`error`]  — [`LogsError`] in CloudWatch Logs' JSON error format.
//! * [`remote`] — the cluster's [`LogSource`]: fan-out over the workers' gRPC channels.

pub mod api;
pub mod error;
pub mod remote;

use futures::future::BoxFuture;
use nimbus_proto::worker as pb;

pub use error::LogsError;

/// Where a gateway reads function logs from: every worker of its region (a cluster) or
/// the in-process worker (`nimbus dev`). Each method returns one answer per worker.
pub trait LogSource: Send + Sync + 'static {
    fn filter_log_events(
        &self,
        request: pb::FilterLogEventsRequest,
    ) -> BoxFuture<'_, Result<Vec<pb::FilterLogEventsResponse>, LogsError>>;

    fn describe_log_streams(
        &self,
        request: pb::DescribeLogStreamsRequest,
    ) -> BoxFuture<'_, Result<Vec<pb::DescribeLogStreamsResponse>, LogsError>>;

    fn describe_log_groups(
        &self,
        request: pb::DescribeLogGroupsRequest,
    ) -> BoxFuture<'_, Result<Vec<pb::DescribeLogGroupsResponse>, LogsError>>;
}
