use std::sync::atomic::Ordering;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::Layer as _;

use super::*;
use crate::sampling::HeadSampled;
use crate::testing::{remote, Counting};

/// Every span `tracing` builds (`all`), and those exported (`exported`, behind the
/// OpenTelemetry layer, as `setup` installs it).
struct Seen {
    all: Counting,
    exported: Counting,
    _guard: DefaultGuard,
}

/// Installs, for this thread, a subscriber exporting with `sampler`, or exporting
/// nothing (no OpenTelemetry layer at all) when `None`.
fn install(sampler: Option<Sampler>) -> Seen {
    let (all, exported) = (Counting::default(), Counting::default());
    let otel = sampler.map(|sampler| {
        let provider = SdkTracerProvider::builder().build();
        let otel = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_context_activation(false)
            .and_then(exported.clone());
        HeadSampled::new(otel, Box::new(sampler))
    });
    let subscriber = tracing_subscriber::registry().with(all.clone()).with(otel);
    Seen {
        all,
        exported,
        _guard: tracing::subscriber::set_default(subscriber),
    }
}

/// What one request did: the context its innermost span propagates, and the one a task
/// it spawned propagates.
type Propagated = (Option<SpanContext>, Option<SpanContext>);

/// One request as the gateway runs it: a root, a child instrumenting the inner work, a
/// spawned task with a span of its own, a log line in each.
async fn request(trace: TraceDecision) -> Propagated {
    let root = trace.root_span(|| tracing::info_span!("root"));
    let work = async {
        tracing::info!("in the root");
        let child = child_span(|| tracing::info_span!("child"));
        let inner = async {
            tracing::info!("in the child");
            propagation::span_context(&Span::current())
        }
        .instrument(child)
        .await;
        let spawned = tokio::spawn(carried(
            async {
                tracing::info!("in the spawned task");
                propagation::span_context(&Span::current())
            }
            .instrument(child_span(|| tracing::info_span!("spawned"))),
        ));
        (inner, spawned.await.unwrap())
    };
    trace.scope(work, root).await
}

#[tokio::test]
async fn an_unsampled_request_builds_no_span_and_still_propagates_its_trace() {
    let seen = install(Some(Sampler::TraceIdRatioBased(0.0)));
    let trace = TraceDecision::new(None, "root");
    assert!(!trace.is_sampled());
    let (inner, spawned) = request(trace).await;
    assert_eq!(seen.all.counts(), (0, 0, 0), "no span built at all");
    assert_eq!(
        seen.all.events.load(Ordering::SeqCst),
        3,
        "log lines still logged"
    );
    let inner = inner.expect("the trace's context");
    assert!(inner.is_valid() && !inner.is_sampled());
    assert_eq!(spawned, Some(inner), "the same trace in the spawned task");
    // Outside the request, nothing is left in scope.
    assert!(propagation::span_context(&Span::current()).is_none());
    assert!(!child_span(|| tracing::info_span!("after")).is_disabled());
}

#[tokio::test]
async fn an_unsampled_caller_is_followed_with_a_span_id_of_our_own() {
    let seen = install(Some(Sampler::ParentBased(Box::new(Sampler::AlwaysOn))));
    let trace = TraceDecision::new(Some(remote(false)), "root");
    assert!(!trace.is_sampled());
    let (inner, _) = request(trace).await;
    assert_eq!(seen.all.counts().0, 0);
    let inner = inner.unwrap();
    assert_eq!(
        inner.trace_id(),
        remote(false).trace_id(),
        "the caller's trace"
    );
    assert_ne!(inner.span_id(), remote(false).span_id());
    assert!(!inner.is_sampled());
}

#[tokio::test]
async fn a_sampled_request_exports_its_spans_under_the_callers_span() {
    // Ratio 0 for new traces: only the caller's decision can sample this one.
    let seen = install(Some(Sampler::ParentBased(Box::new(
        Sampler::TraceIdRatioBased(0.0),
    ))));
    let trace = TraceDecision::new(Some(remote(true)), "root");
    assert!(trace.is_sampled());
    let (inner, spawned) = request(trace).await;
    let mut spans = seen.exported.spans();
    spans.sort();
    assert_eq!(
        spans,
        [
            ("child", Some("root")),
            ("root", None),
            ("spawned", Some("root"))
        ],
        "each span exported once, under its parent"
    );
    assert_eq!(seen.exported.counts().2, 3, "all closed");
    for sc in [inner.unwrap(), spawned.unwrap()] {
        assert!(sc.is_sampled());
        assert_eq!(sc.trace_id(), remote(true).trace_id(), "the caller's trace");
        assert_ne!(sc.span_id(), remote(true).span_id(), "a span of ours");
    }
}

#[tokio::test]
async fn without_exported_traces_spans_are_built_for_the_logs() {
    let seen = install(None);
    let trace = TraceDecision::new(Some(remote(true)), "root");
    assert!(!trace.is_sampled());
    let (inner, spawned) = request(trace).await;
    assert_eq!(seen.all.counts().0, 3, "root, child, spawned");
    assert_eq!((inner, spawned), (None, None), "nothing to propagate");
}
