//! Function logs stay on the workers that ran the functions (`nimbus_worker::log_store`).
//! A log query asks every live worker of the region in parallel and returns each
//! worker's answer; a worker that does not answer within [`QUERY_TIMEOUT`] is left out
//! (and logged): its logs are missing from that answer, but the others' still arrive.
//! If no worker answers, the query fails. Merging and paging are the front door's.

use std::future::Future;
use std::time::Duration;

use futures::future::join_all;
use nimbus_proto::worker::rejection::Reason;

use super::workers::{WorkerError, WorkerResult};
use super::Gateway;

/// How long one worker may take to answer a log query.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a log query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogQueryError {
    /// The request itself is wrong (a bad pattern or token): every worker says so.
    #[error("{0}")]
    Invalid(String),
    /// No worker could answer.
    #[error("{0}")]
    Unavailable(String),
}

impl Gateway {
    /// Sends `call` to every live worker; returns the answers of those that answered.
    pub async fn query_logs<T, F, Fut>(&self, what: &str, call: F) -> Result<Vec<T>, LogQueryError>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = WorkerResult<T>>,
    {
        let workers = self.workers.live();
        if workers.is_empty() {
            return Ok(vec![]);
        }
        let calls = workers.iter().map(|w| {
            let call = call(w.id.clone());
            async move {
                match tokio::time::timeout(QUERY_TIMEOUT, call).await {
                    Ok(r) => r,
                    Err(_) => Err(WorkerError::Interrupted("no answer in time".into())),
                }
            }
        });
        let results = join_all(calls).await;
        let mut answers = Vec::new();
        let mut last = None;
        for (w, r) in workers.iter().zip(results) {
            match r {
                Ok(a) => answers.push(a),
                Err(WorkerError::Rejected(r)) if r.reason() == Reason::InvalidRequest => {
                    return Err(LogQueryError::Invalid(r.message));
                }
                Err(e) => {
                    tracing::warn!(worker = %w.id, "{what} on worker failed: {e}");
                    last = Some(e);
                }
            }
        }
        match (answers.is_empty(), last) {
            (true, Some(e)) => Err(LogQueryError::Unavailable(format!(
                "no worker answered the log query: {e}"
            ))),
            _ => Ok(answers),
        }
    }
}
