//! `nimbus dev`'s workers: a set of one, the in-process worker, answering through the
//! same `nimbus_worker::contract` as a worker node does over gRPC. The gateway core
//! cannot tell the two apart: placement, retries and the mapping of rejections to Lambda
//! errors are the same code for both.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use nimbus_gateway::core::workers::{InvokeEvents, WorkerError, WorkerResult, WorkerView, Workers};
use nimbus_meta::MetaClient;
use nimbus_proto::worker::{self as pb, rejection::Reason, Rejection};
use nimbus_worker::code_cache::CodeCache;
use nimbus_worker::contract::WorkerContract;
use nimbus_worker::Engine;

/// The in-process worker's id.
pub const LOCAL_WORKER: &str = "local";

/// Runs invocations on this process's execution environments.
pub struct LocalWorkers {
    contract: WorkerContract,
    /// The runtimes the engine runs exactly (asked once).
    runtimes: Vec<String>,
}

impl LocalWorkers {
    pub fn new(engine: Engine, meta: MetaClient, code_root: PathBuf) -> std::io::Result<Arc<Self>> {
        let code = Arc::new(CodeCache::new(code_root, meta)?);
        let runtimes = nimbus_worker::runtimes::available(engine.config());
        Ok(Arc::new(Self {
            contract: WorkerContract::new(LOCAL_WORKER, engine, code),
            runtimes,
        }))
    }

    pub fn engine(&self) -> &Engine {
        self.contract.engine()
    }

    /// Removes code packages no environment can still use (see `CodeCache`).
    pub fn evict_unused_code(&self) -> usize {
        self.contract
            .code()
            .evict_unused(self.engine().config().idle_timeout)
    }

    /// Runs `call` on the contract, as the only worker there is.
    fn call<T, F, Fut>(&self, worker: &str, call: F) -> BoxFuture<'static, WorkerResult<T>>
    where
        T: Send + 'static,
        F: FnOnce(WorkerContract) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, Rejection>> + Send + 'static,
    {
        let contract = self.contract.clone();
        let known = worker == LOCAL_WORKER;
        Box::pin(async move {
            if !known {
                return Err(WorkerError::Rejected(Rejection::new(
                    Reason::InvalidRequest,
                    "no such worker",
                )));
            }
            call(contract).await.map_err(WorkerError::Rejected)
        })
    }
}

impl Workers for LocalWorkers {
    fn live(&self) -> Vec<WorkerView> {
        // Placement asks on every invocation: the pool's counts, not the shells'.
        let m = self.engine().pool_metrics();
        vec![WorkerView {
            id: LOCAL_WORKER.into(),
            free_mb: m.capacity_mb.saturating_sub(m.reserved_mb),
            runtimes: self.runtimes.clone(),
            zone: None,
            edge_location: None,
        }]
    }

    fn invoke(
        &self,
        worker: &str,
        request: pb::InvokeRequest,
        _deadline: Duration,
    ) -> BoxFuture<'static, WorkerResult<pb::InvokeResponse>> {
        // The engine enforces Init's and the function's timeouts itself; there is no
        // connection here that could stop answering.
        self.call(worker, move |c| async move { c.invoke(request).await })
    }

    fn invoke_stream(
        &self,
        worker: &str,
        request: pb::InvokeRequest,
        _deadline: Duration,
    ) -> BoxFuture<'static, WorkerResult<InvokeEvents>> {
        self.call(worker, move |c| async move {
            let mut events = c.invoke_stream(request).await?;
            let events = futures::stream::poll_fn(move |cx| events.poll_recv(cx));
            Ok(futures::StreamExt::boxed(futures::StreamExt::map(
                events,
                |e| e.map_err(WorkerError::Rejected),
            )))
        })
    }

    fn prefetch(
        &self,
        worker: &str,
        request: pb::PrefetchRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::PrefetchResponse>> {
        self.call(worker, move |c| async move { c.prefetch(request).await })
    }

    fn provision(
        &self,
        worker: &str,
        request: pb::ProvisionRequest,
        _deadline: Duration,
    ) -> BoxFuture<'static, WorkerResult<pb::ProvisionResponse>> {
        self.call(worker, move |c| async move { c.provision(request).await })
    }

    fn filter_log_events(
        &self,
        worker: &str,
        request: pb::FilterLogEventsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::FilterLogEventsResponse>> {
        self.call(worker, move |c| async move {
            c.filter_log_events(request).await
        })
    }

    fn describe_log_streams(
        &self,
        worker: &str,
        request: pb::DescribeLogStreamsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::DescribeLogStreamsResponse>> {
        self.call(worker, move |c| async move {
            c.describe_log_streams(request).await
        })
    }

    fn describe_log_groups(
        &self,
        worker: &str,
        request: pb::DescribeLogGroupsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::DescribeLogGroupsResponse>> {
        self.call(worker, move |c| async move {
            c.describe_log_groups(request).await
        })
    }
}
