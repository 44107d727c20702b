//! What the crate's unit tests share: a layer that counts the spans it sees, and a
//! caller's trace context.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use tracing::span::{Attributes, Id};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::LookupSpan;

/// A span's name and its parent's.
pub(crate) type Named = (&'static str, Option<&'static str>);

/// Counts the spans it is given, and keeps each one's name and its parent's.
#[derive(Clone, Default)]
pub(crate) struct Counting {
    /// (name, parent's name) of each span created.
    pub(crate) created: Arc<Mutex<Vec<Named>>>,
    pub(crate) entered: Arc<AtomicUsize>,
    pub(crate) closed: Arc<AtomicUsize>,
    /// Events (log lines) seen.
    pub(crate) events: Arc<AtomicUsize>,
}

impl<S> Layer<S> for Counting
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, cx: Context<'_, S>) {
        let parent = cx
            .span(id)
            .and_then(|s| s.parent())
            .map(|p| p.metadata().name());
        let mut created = self.created.lock().unwrap();
        created.push((attrs.metadata().name(), parent));
    }
    fn on_enter(&self, _: &Id, _: Context<'_, S>) {
        self.entered.fetch_add(1, Ordering::SeqCst);
    }
    fn on_close(&self, _: Id, _: Context<'_, S>) {
        self.closed.fetch_add(1, Ordering::SeqCst);
    }
    fn on_event(&self, _: &Event<'_>, _: Context<'_, S>) {
        self.events.fetch_add(1, Ordering::SeqCst);
    }
}

impl Counting {
    /// The (name, parent's name) of each span created.
    pub(crate) fn spans(&self) -> Vec<Named> {
        self.created.lock().unwrap().clone()
    }

    /// Spans created, entered and closed.
    pub(crate) fn counts(&self) -> (usize, usize, usize) {
        (
            self.created.lock().unwrap().len(),
            self.entered.load(Ordering::SeqCst),
            self.closed.load(Ordering::SeqCst),
        )
    }
}

/// A caller's span context, `sampled` or not.
pub(crate) fn remote(sampled: bool) -> SpanContext {
    let flags = match sampled {
        true => TraceFlags::SAMPLED,
        false => TraceFlags::default(),
    };
    SpanContext::new(
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
        SpanId::from_hex("00f067aa0ba902b7").unwrap(),
        flags,
        true,
        TraceState::default(),
    )
}
