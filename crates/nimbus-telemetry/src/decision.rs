//! A request's sampling decision, made before its root span exists.
//!
//! [`crate::sampling::HeadSampled`] keeps the spans of an unsampled trace away from
//! OpenTelemetry, but `tracing` still built them: a slot in the registry, the log layer's
//! formatted fields, an enter and an exit on every poll of an instrumented future. At 10%
//! sampling that was what tracing still cost (docs/benchmarks.md, "Where tracing's CPU
//! goes"). So a request's entry point decides first ([`TraceDecision::new`]), and an
//! unsampled request builds no span at all: its root is [`Span::none`], and the trace's
//! context (its id, a span id of its own, "not sampled") rides in a task-local instead
//! ([`TraceDecision::scope`]). Spans further down ask [`child_span`], which builds
//! nothing inside an unsampled trace, and [`crate::propagation::span_context`] reads the
//! context there, so `traceparent` and `_X_AMZN_TRACE_ID` still carry the trace with
//! `Sampled=0`. With traces not exported, or for a sampled trace, spans are built as
//! before: without an exporter they give Nimbus's log lines their context.
//!
//! The task-local costs a swap of one value per poll, against the registry's lookups and
//! every layer's hooks per enter and exit; nothing at all when the trace is sampled or
//! traces are off.

use std::future::Future;

use futures::future::Either;
use opentelemetry::trace::SpanContext;
use tokio::task::futures::TaskLocalFuture;
use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

use crate::propagation;
use crate::sampling::{self, HeadSampler};

tokio::task_local! {
    /// The context of the unsampled trace the current task works for.
    static UNSAMPLED: SpanContext;
}

/// A future run for a request: inside its span, or in its unsampled trace's scope.
pub type Traced<F> = Either<TaskLocalFuture<SpanContext, F>, Instrumented<F>>;

/// A future about to be spawned, with the unsampled trace it works for, if any.
pub type Carried<F> = Either<TaskLocalFuture<SpanContext, F>, F>;

/// How one request is traced, decided from its caller's context before any span exists.
#[derive(Clone, Debug)]
pub struct TraceDecision(Decided);

#[derive(Clone, Debug)]
enum Decided {
    /// Traces are not exported: spans are built for the logs, as before.
    Off,
    /// Sampled: spans are built and exported, the root's parent being the caller's span.
    Sampled(Option<SpanContext>),
    /// Not sampled: no spans; the context the trace propagates.
    Unsampled(SpanContext),
}

impl TraceDecision {
    /// Decides for a request whose root span is named `root`, continuing the caller's
    /// trace `parent` (from `traceparent` or `X-Amzn-Trace-Id`), with the sampler of the
    /// installed subscriber.
    pub fn new(parent: Option<SpanContext>, root: &str) -> Self {
        let decided =
            HeadSampler::current(|sampler| sampler.map(|s| s.decide(parent.as_ref(), root)));
        TraceDecision(match decided {
            None => Decided::Off,
            Some(Ok(())) => Decided::Sampled(parent),
            Some(Err(unsampled)) => Decided::Unsampled(unsampled),
        })
    }

    /// Whether the request's spans are exported.
    pub fn is_sampled(&self) -> bool {
        matches!(self.0, Decided::Sampled(_))
    }

    /// The request's root span, made by `make` unless the trace is not sampled.
    pub fn root_span(&self, make: impl FnOnce() -> Span) -> Span {
        match &self.0 {
            Decided::Off => make(),
            Decided::Sampled(parent) => {
                let span = sampling::sampled_root(make);
                if let Some(parent) = parent {
                    propagation::set_remote_parent(&span, parent.clone());
                }
                span
            }
            Decided::Unsampled(_) => Span::none(),
        }
    }

    /// Runs `fut` as the request: inside `span` (its [`Self::root_span`]), or, for an
    /// unsampled trace, with the trace's context in scope and no span.
    pub fn scope<F: Future>(&self, fut: F, span: Span) -> Traced<F> {
        match &self.0 {
            Decided::Unsampled(context) => Either::Left(UNSAMPLED.scope(context.clone(), fut)),
            Decided::Off | Decided::Sampled(_) => Either::Right(fut.instrument(span)),
        }
    }
}

/// A span below a request's root, made by `make` unless the current task works for an
/// unsampled trace: then nothing is built (a span made anyway would start a trace of its
/// own, having no parent).
pub fn child_span(make: impl FnOnce() -> Span) -> Span {
    if UNSAMPLED.try_with(|_| ()).is_ok() {
        return Span::none();
    }
    make()
}

/// `fut`, about to be spawned, with the current task's unsampled trace, if it works for
/// one; a spawned task inherits no task-local. (Spans go along as they always did, by
/// `Instrument`.)
pub fn carried<F: Future>(fut: F) -> Carried<F> {
    match unsampled_context() {
        Some(context) => Either::Left(UNSAMPLED.scope(context, fut)),
        None => Either::Right(fut),
    }
}

/// The context of the unsampled trace the current task works for.
pub(crate) fn unsampled_context() -> Option<SpanContext> {
    UNSAMPLED.try_with(Clone::clone).ok()
}

#[cfg(test)]
mod tests;
