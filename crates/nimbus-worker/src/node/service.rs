//! The gRPC service gateways call (`nimbus.worker.v1.Worker`): a thin adapter over
//! [`WorkerContract`]. A rejection travels as the details of the error status
//! ([`nimbus_proto::worker::Rejection::into_status`]); any other error status means the
//! invocation may have run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use nimbus_proto::worker as pb;
use nimbus_proto::worker::worker_server::Worker;
use nimbus_telemetry::decision::{TraceDecision, Traced};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use crate::contract::WorkerContract;

pub(crate) struct WorkerService {
    pub(crate) contract: WorkerContract,
    /// Invocations being served, so a stopping worker can wait for them.
    pub(crate) in_flight: Arc<AtomicUsize>,
}

/// Counts one invocation in flight for as long as it lives.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl WorkerService {
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// Runs `invoke`, one invocation, in the gateway's trace: inside its span, which the
/// engine's Init and Invocation spans become children of, when the gateway's sampled
/// flag (under a parent-based sampler) says the trace is sampled; with no span at all
/// when it is not.
fn traced<F: std::future::Future>(metadata: &MetadataMap, invoke: F) -> Traced<F> {
    let parent = metadata
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| nimbus_telemetry::propagation::parse_traceparent(v, None));
    let trace = TraceDecision::new(parent, "Worker invoke");
    let span = trace.root_span(|| {
        tracing::info_span!(
            "worker_invoke",
            otel.name = "Worker invoke",
            otel.kind = "server"
        )
    });
    trace.scope(invoke, span)
}

fn answer<T>(r: Result<T, pb::Rejection>) -> Result<Response<T>, Status> {
    r.map(Response::new).map_err(pb::Rejection::into_status)
}

#[tonic::async_trait]
impl Worker for WorkerService {
    async fn invoke(
        &self,
        request: Request<pb::InvokeRequest>,
    ) -> Result<Response<pb::InvokeResponse>, Status> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let _in_flight = InFlight(self.in_flight.clone());
        let (metadata, _, request) = request.into_parts();
        answer(traced(&metadata, self.contract.invoke(request)).await)
    }

    type InvokeStreamStream =
        std::pin::Pin<Box<dyn Stream<Item = Result<pb::InvokeEvent, Status>> + Send + 'static>>;

    async fn invoke_stream(
        &self,
        request: Request<pb::InvokeRequest>,
    ) -> Result<Response<Self::InvokeStreamStream>, Status> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let in_flight = InFlight(self.in_flight.clone());
        let (metadata, _, request) = request.into_parts();
        let events = traced(&metadata, self.contract.invoke_stream(request))
            .await
            .map_err(pb::Rejection::into_status)?;
        // Counted in flight until the last event is sent (or the gateway leaves).
        let events = ReceiverStream::new(events).map(move |e| {
            let _ = &in_flight;
            e.map_err(pb::Rejection::into_status)
        });
        Ok(Response::new(Box::pin(events)))
    }

    async fn provision(
        &self,
        request: Request<pb::ProvisionRequest>,
    ) -> Result<Response<pb::ProvisionResponse>, Status> {
        answer(self.contract.provision(request.into_inner()).await)
    }

    async fn prefetch(
        &self,
        request: Request<pb::PrefetchRequest>,
    ) -> Result<Response<pb::PrefetchResponse>, Status> {
        answer(self.contract.prefetch(request.into_inner()).await)
    }

    async fn status(
        &self,
        _request: Request<pb::StatusRequest>,
    ) -> Result<Response<pb::WorkerLoad>, Status> {
        Ok(Response::new(self.contract.load()))
    }

    async fn filter_log_events(
        &self,
        request: Request<pb::FilterLogEventsRequest>,
    ) -> Result<Response<pb::FilterLogEventsResponse>, Status> {
        answer(self.contract.filter_log_events(request.into_inner()).await)
    }

    async fn describe_log_streams(
        &self,
        request: Request<pb::DescribeLogStreamsRequest>,
    ) -> Result<Response<pb::DescribeLogStreamsResponse>, Status> {
        answer(
            self.contract
                .describe_log_streams(request.into_inner())
                .await,
        )
    }

    async fn describe_log_groups(
        &self,
        request: Request<pb::DescribeLogGroupsRequest>,
    ) -> Result<Response<pb::DescribeLogGroupsResponse>, Status> {
        answer(
            self.contract
                .describe_log_groups(request.into_inner())
                .await,
        )
    }
}
