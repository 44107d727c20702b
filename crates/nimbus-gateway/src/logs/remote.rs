//! The cluster's [`LogSource`]: every live worker of the region is asked in parallel over
//! the channel the gateway already holds to it. A worker that does not answer within
//! [`QUERY_TIMEOUT`] is left out of the answer (and logged): its logs are missing from
//! that answer, but the others' still arrive. If no worker answers, the query fails.

use std::future::Future;
use std::time::Duration;

use futures::future::{join_all, BoxFuture};
use nimbus_proto::worker as pb;
use nimbus_proto::worker::worker_client::WorkerClient;
use tonic::transport::Channel;

use super::{LogSource, LogsError};
use crate::remote::RemoteInvoker;

/// How long one worker may take to answer a log query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

impl RemoteInvoker {
    /// Sends `call` to every live worker; returns the answers of those that answered.
    async fn fan_out<T, F, Fut>(&self, what: &str, call: F) -> Result<Vec<T>, LogsError>
    where
        F: Fn(WorkerClient<Channel>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let workers = self.live_workers();
        if workers.is_empty() {
            return Ok(vec![]);
        }
        let calls = workers.iter().map(|w| {
            let client = self.query_client(&w.id, &w.addr);
            let call = &call;
            async move {
                let client = client.map_err(|e| tonic::Status::internal(e.message))?;
                match tokio::time::timeout(QUERY_TIMEOUT, call(client)).await {
                    Ok(r) => r.map(tonic::Response::into_inner),
                    Err(_) => Err(tonic::Status::deadline_exceeded("no answer in time")),
                }
            }
        });
        let results = join_all(calls).await;
        let mut answers = Vec::new();
        let mut last = None;
        for (w, r) in workers.iter().zip(results) {
            match r {
                Ok(a) => answers.push(a),
                // The request itself is wrong: every worker says so; tell the caller.
                Err(s) if s.code() == tonic::Code::InvalidArgument => {
                    return Err(LogsError::invalid(s.message()))
                }
                Err(s) => {
                    tracing::warn!(worker = %w.id, "{what} on worker failed: {s}");
                    last = Some(s);
                }
            }
        }
        match (answers.is_empty(), last) {
            (true, Some(s)) => Err(LogsError::unavailable(format!(
                "no worker answered the log query: {}",
                s.message()
            ))),
            _ => Ok(answers),
        }
    }
}

impl LogSource for RemoteInvoker {
    fn filter_log_events(
        &self,
        request: pb::FilterLogEventsRequest,
    ) -> BoxFuture<'_, Result<Vec<pb::FilterLogEventsResponse>, LogsError>> {
        Box::pin(async move {
            self.fan_out("FilterLogEvents", |mut c| {
                let r = request.clone();
                async move { c.filter_log_events(r).await }
            })
            .await
        })
    }

    fn describe_log_streams(
        &self,
        request: pb::DescribeLogStreamsRequest,
    ) -> BoxFuture<'_, Result<Vec<pb::DescribeLogStreamsResponse>, LogsError>> {
        Box::pin(async move {
            self.fan_out("DescribeLogStreams", |mut c| {
                let r = request.clone();
                async move { c.describe_log_streams(r).await }
            })
            .await
        })
    }

    fn describe_log_groups(
        &self,
        request: pb::DescribeLogGroupsRequest,
    ) -> BoxFuture<'_, Result<Vec<pb::DescribeLogGroupsResponse>, LogsError>> {
        Box::pin(async move {
            self.fan_out("DescribeLogGroups", |mut c| {
                let r = request.clone();
                async move { c.describe_log_groups(r).await }
            })
            .await
        })
    }
}
