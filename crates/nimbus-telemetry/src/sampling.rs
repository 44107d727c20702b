//! Head sampling before spans are built.
//!
//! `tracing-opentelemetry` builds every span it sees (name, attributes, timestamps, a
//! `SpanBuilder`) and only then asks the SDK's sampler whether to keep it, so at 10%
//! sampling most of the in-process cost was still paid for the 90% of traces that are
//! dropped. [`HeadSampled`] wraps that layer and decides first, once per trace, at its
//! root: spans of a sampled trace reach the inner layer as before; spans of any other
//! trace never do. They only carry the trace's context ([`Unrecorded`]), so the trace id
//! and the "not sampled" flag still travel to the worker and into the function
//! (`_X_AMZN_TRACE_ID` with `Sampled=0`), as they do on Lambda.
//!
//! The decision is the SDK's own sampler, read from `OTEL_TRACES_SAMPLER(_ARG)` exactly as
//! the SDK reads it ([`HeadSampler`]). The roots of requests are decided earlier still, by
//! [`crate::decision::TraceDecision`], before the root span exists: an unsampled request
//! then builds no `tracing` span at all, and a sampled one tells this layer so
//! ([`sampled_root`]) instead of being decided twice. A root made any other way is decided
//! here, as a new trace. The SDK's provider then samples everything it is given
//! (`AlwaysOn`), so no trace is sampled twice.

use std::any::TypeId;
use std::cell::Cell;

use opentelemetry::trace::{SpanContext, SpanKind, TraceContextExt, TraceFlags};
use opentelemetry::Context as OtelContext;
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator, SamplingDecision, ShouldSample};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Dispatch, Event, Metadata, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Registry;

thread_local! {
    /// Set while [`sampled_root`] creates the root of a trace already decided sampled.
    static DECIDED_SAMPLED: Cell<bool> = const { Cell::new(false) };
}

/// Marks a span of a sampled trace: the inner layer sees it.
struct Recorded;

/// A span of a trace that is not sampled, and the context it propagates: the trace's id,
/// the root's span id, flags "not sampled".
#[derive(Clone)]
struct Unrecorded(SpanContext);

/// Creates, with `make`, the root span of a trace [`HeadSampler::decide`] has sampled.
pub(crate) fn sampled_root(make: impl FnOnce() -> tracing::Span) -> tracing::Span {
    DECIDED_SAMPLED.with(|d| d.set(true));
    let span = make();
    // Cleared whether or not a layer consumed it, so no later root inherits it.
    DECIDED_SAMPLED.with(|d| d.set(false));
    span
}

/// The context `span` propagates when its trace is not sampled (`None` when it is, or
/// when traces are not exported at all).
pub(crate) fn unrecorded_context(span: &tracing::Span) -> Option<SpanContext> {
    span.with_subscriber(|(id, dispatch)| {
        let registry = dispatch.downcast_ref::<Registry>()?;
        let data = registry.span(id)?;
        let extensions = data.extensions();
        extensions.get::<Unrecorded>().map(|u| u.0.clone())
    })
    .flatten()
}

/// The process's sampler (`OTEL_TRACES_SAMPLER(_ARG)`) and the ids of the traces it
/// starts. It lives in the [`HeadSampled`] layer, where [`HeadSampler::current`] finds it,
/// so the decision follows whichever subscriber is installed.
pub(crate) struct HeadSampler {
    sampler: Box<dyn ShouldSample>,
    ids: RandomIdGenerator,
}

impl HeadSampler {
    /// Runs `f` with the sampler of the current subscriber, `None` when it exports no
    /// traces.
    pub(crate) fn current<T>(mut f: impl FnMut(Option<&HeadSampler>) -> T) -> T {
        tracing::dispatcher::get_default(|d| f(d.downcast_ref::<HeadSampler>()))
    }

    /// The decision for a trace rooted at a span named `name`, continuing `parent` if
    /// given: `Ok` when sampled, else the context the unsampled trace propagates (its id,
    /// a span id of its own, flags "not sampled").
    pub(crate) fn decide(
        &self,
        parent: Option<&SpanContext>,
        name: &str,
    ) -> Result<(), SpanContext> {
        let trace_id = match parent {
            Some(p) => p.trace_id(),
            None => self.ids.new_trace_id(),
        };
        let cx = parent.map(|p| OtelContext::new().with_remote_span_context(p.clone()));
        let result =
            self.sampler
                .should_sample(cx.as_ref(), trace_id, name, &SpanKind::Internal, &[], &[]);
        match result.decision {
            SamplingDecision::RecordAndSample | SamplingDecision::RecordOnly => Ok(()),
            SamplingDecision::Drop => Err(SpanContext::new(
                trace_id,
                self.ids.new_span_id(),
                TraceFlags::default(),
                false,
                parent.map(|p| p.trace_state().clone()).unwrap_or_default(),
            )),
        }
    }
}

/// A layer that passes the spans of sampled traces, and only those, to `inner`.
pub struct HeadSampled<L> {
    inner: L,
    sampler: HeadSampler,
}

impl<L> HeadSampled<L> {
    pub fn new(inner: L, sampler: Box<dyn ShouldSample>) -> Self {
        HeadSampled {
            inner,
            sampler: HeadSampler {
                sampler,
                ids: RandomIdGenerator::default(),
            },
        }
    }

    /// The decision for a new root named `name`: already made, or made now for a new trace.
    fn decide_root(&self, name: &str) -> Result<(), Unrecorded> {
        if DECIDED_SAMPLED.with(|d| d.replace(false)) {
            return Ok(());
        }
        self.sampler.decide(None, name).map_err(Unrecorded)
    }
}

/// Whether span `id` belongs to a sampled trace.
fn recorded<S>(cx: &Context<'_, S>, id: &Id) -> bool
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    cx.span(id)
        .is_some_and(|s| s.extensions().get::<Recorded>().is_some())
}

impl<S, L> Layer<S> for HeadSampled<L>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    L: Layer<S>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        self.inner.on_register_dispatch(subscriber);
    }

    fn on_layer(&mut self, subscriber: &mut S) {
        self.inner.on_layer(subscriber);
    }

    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        self.inner.register_callsite(metadata)
    }

    fn enabled(&self, metadata: &Metadata<'_>, cx: Context<'_, S>) -> bool {
        self.inner.enabled(metadata, cx)
    }

    fn event_enabled(&self, event: &Event<'_>, cx: Context<'_, S>) -> bool {
        self.inner.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.inner.max_level_hint()
    }

    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        let Some(span) = cx.span(id) else { return };
        // A child shares its trace's decision; only a root decides.
        let decision = match span.parent() {
            Some(parent) => match parent.extensions().get::<Unrecorded>() {
                Some(u) => Err(u.clone()),
                None => Ok(()),
            },
            None => self.decide_root(attrs.metadata().name()),
        };
        match decision {
            Ok(()) => {
                span.extensions_mut().insert(Recorded);
                // The inner layer takes the span's extensions itself.
                drop(span);
                self.inner.on_new_span(attrs, id, cx);
            }
            Err(unrecorded) => span.extensions_mut().insert(unrecorded),
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, cx: Context<'_, S>) {
        if recorded(&cx, id) {
            self.inner.on_record(id, values, cx);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, cx: Context<'_, S>) {
        if recorded(&cx, id) && recorded(&cx, follows) {
            self.inner.on_follows_from(id, follows, cx);
        }
    }

    fn on_event(&self, event: &Event<'_>, cx: Context<'_, S>) {
        let in_sampled_trace = match cx.event_span(event) {
            Some(span) => span.extensions().get::<Recorded>().is_some(),
            None => true,
        };
        if in_sampled_trace {
            self.inner.on_event(event, cx);
        }
    }

    fn on_enter(&self, id: &Id, cx: Context<'_, S>) {
        if recorded(&cx, id) {
            self.inner.on_enter(id, cx);
        }
    }

    fn on_exit(&self, id: &Id, cx: Context<'_, S>) {
        if recorded(&cx, id) {
            self.inner.on_exit(id, cx);
        }
    }

    fn on_close(&self, id: Id, cx: Context<'_, S>) {
        if recorded(&cx, &id) {
            self.inner.on_close(id, cx);
        }
    }

    fn on_id_change(&self, old: &Id, new: &Id, cx: Context<'_, S>) {
        self.inner.on_id_change(old, new, cx);
    }

    // `OpenTelemetrySpanExt` reaches the OpenTelemetry layer through this downcast; a
    // wrapper has to pass it on, which `Layer` allows only as an `unsafe fn`.
    #[allow(unsafe_code)]
    unsafe fn downcast_raw(&self, id: TypeId) -> Option<*const ()> {
        if id == TypeId::of::<Self>() {
            return Some(self as *const Self as *const ());
        }
        // How `TraceDecision` finds the sampler (`HeadSampler::current`).
        if id == TypeId::of::<HeadSampler>() {
            return Some(&self.sampler as *const HeadSampler as *const ());
        }
        // SAFETY: the inner layer's own implementation, called with the same type id: it
        // upholds the contract (a pointer to a value of that type, living as long as the
        // layer), and `self.inner` lives as long as `self`.
        unsafe { self.inner.downcast_raw(id) }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry_sdk::trace::Sampler;
    use tracing_subscriber::layer::SubscriberExt;

    use super::*;
    use crate::testing::{remote, Counting};

    /// Runs `f` under a subscriber whose `HeadSampled` layer (with `sampler`) wraps a
    /// counting layer; returns `f`'s result and the counting layer.
    fn sampled<T>(sampler: Sampler, f: impl FnOnce() -> T) -> (T, Counting) {
        let counting = Counting::default();
        let subscriber = tracing_subscriber::registry()
            .with(HeadSampled::new(counting.clone(), Box::new(sampler)));
        (tracing::subscriber::with_default(subscriber, f), counting)
    }

    /// A root with a child and a grandchild, each entered and closed; returns what the
    /// inner layer saw and the context the grandchild propagates.
    fn trace(sampler: Sampler) -> ((usize, usize, usize), Option<SpanContext>) {
        let (propagated, counting) = sampled(sampler, || {
            let root = tracing::info_span!("root");
            let _root = root.enter();
            let child = tracing::info_span!("child");
            let _child = child.enter();
            let grandchild = tracing::info_span!("grandchild");
            let _g = grandchild.enter();
            crate::propagation::span_context(&grandchild)
        });
        (counting.counts(), propagated)
    }

    #[test]
    fn spans_of_an_unsampled_trace_never_reach_the_inner_layer() {
        let (seen, propagated) = trace(Sampler::TraceIdRatioBased(0.0));
        assert_eq!(seen, (0, 0, 0));
        let sc = propagated.expect("an unsampled trace still has a context to propagate");
        assert!(sc.is_valid() && !sc.is_sampled());
    }

    #[test]
    fn spans_of_a_sampled_trace_all_reach_the_inner_layer() {
        let (seen, _) = trace(Sampler::AlwaysOn);
        assert_eq!(seen, (3, 3, 3));
    }

    #[test]
    fn a_ratio_samples_about_that_share_of_roots() {
        let ((), counting) = sampled(Sampler::TraceIdRatioBased(0.25), || {
            for _ in 0..4000 {
                let root = tracing::info_span!("root");
                let _r = root.enter();
                let _c = tracing::info_span!("child").entered();
            }
        });
        let (created, _, closed) = counting.counts();
        assert_eq!(created, closed);
        assert!(created % 2 == 0, "roots and children together");
        let roots = created / 2;
        assert!(
            (800..1200).contains(&roots),
            "{roots} of 4000 sampled at 25%"
        );
    }

    #[test]
    fn a_root_decided_sampled_is_not_decided_again_and_the_next_one_is() {
        let ((), counting) = sampled(Sampler::TraceIdRatioBased(0.0), || {
            let root = sampled_root(|| tracing::info_span!("decided"));
            drop(tracing::info_span!(parent: &root, "child"));
            drop(tracing::info_span!(parent: None, "undecided"));
        });
        assert_eq!(
            counting.counts().0,
            2,
            "the decided root and its child only"
        );
    }

    #[test]
    fn the_sampler_decides_by_the_remote_parent() {
        let parent = remote;
        let layer = HeadSampled::new(
            Counting::default(),
            Box::new(Sampler::ParentBased(Box::new(Sampler::AlwaysOn))),
        );
        assert!(layer.sampler.decide(Some(&parent(true)), "r").is_ok());
        let unsampled = layer.sampler.decide(Some(&parent(false)), "r").unwrap_err();
        assert_eq!(unsampled.trace_id(), parent(false).trace_id());
        assert!(!unsampled.is_sampled());
        assert_ne!(
            unsampled.span_id(),
            parent(false).span_id(),
            "a span id of its own"
        );
    }
}
