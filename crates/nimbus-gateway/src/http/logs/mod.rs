//! Function logs for tools: a subset of the CloudWatch Logs API (JSON 1.1 protocol,
//! `POST /` with `X-Amz-Target: Logs_20140328.<Operation>`, Signature V4 for service
//! `logs`), so `boto3.client("logs", endpoint_url=gateway)` and `aws logs …` work.
//!
//! The logs themselves stay on the workers that ran the functions (see
//! `nimbus_worker::log_store`). The core asks every worker of the region
//! ([`Gateway::query_logs`](crate::core::Gateway::query_logs)); [`api`] merges the
//! answers by event cursor, pages, and maps the result and every error to CloudWatch
//! Logs' wire format.
//!
//! * [`api`]    — the operations: FilterLogEvents, GetLogEvents, DescribeLogStreams,
//!   DescribeLogGroups.
//! * [`error`]  — [`LogsError`] in CloudWatch Logs' JSON error format.

pub mod api;
pub mod error;

pub use error::LogsError;
