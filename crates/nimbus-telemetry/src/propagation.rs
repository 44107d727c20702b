//! Trace context across process boundaries.
//!
//! In: a request's W3C `traceparent` (with `tracestate`) or, failing that, AWS's
//! `X-Amzn-Trace-Id` (`Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;
//! Sampled=1`) becomes the remote parent of the request's span. An X-Ray trace id is the
//! same 128 bits as a W3C trace id (8 hex digits of epoch seconds, then 24), so one trace
//! continues across both conventions. Out: the function receives the invocation span as
//! its parent in X-Ray form (`Lambda-Runtime-Trace-Id`, `_X_AMZN_TRACE_ID`), so spans the
//! function emits join the same trace.

use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
use opentelemetry::Context;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The remote parent named by a request's headers: `traceparent` first, then
/// `X-Amzn-Trace-Id`. `header` looks a header up by its lower-case name.
pub fn remote_parent<'a>(header: impl Fn(&str) -> Option<&'a str>) -> Option<SpanContext> {
    if let Some(tp) = header("traceparent") {
        if let Some(sc) = parse_traceparent(tp, header("tracestate")) {
            return Some(sc);
        }
    }
    header("x-amzn-trace-id").and_then(parse_amzn_trace_id)
}

/// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` when invalid.
pub fn parse_traceparent(value: &str, tracestate: Option<&str>) -> Option<SpanContext> {
    let mut parts = value.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let span = parts.next()?;
    let flags = parts.next()?;
    // Version 00 has exactly four fields; later versions may append more.
    if version.len() != 2 || version.eq_ignore_ascii_case("ff") || !is_hex(version) {
        return None;
    }
    if version == "00" && parts.next().is_some() {
        return None;
    }
    if trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
        return None;
    }
    let trace_id = hex_lower(trace).and_then(|t| TraceId::from_hex(&t).ok())?;
    let span_id = hex_lower(span).and_then(|s| SpanId::from_hex(&s).ok())?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    let state = tracestate
        .and_then(|s| s.parse::<TraceState>().ok())
        .unwrap_or_default();
    let sc = SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::new(flags & TraceFlags::SAMPLED.to_u8()),
        true,
        state,
    );
    sc.is_valid().then_some(sc)
}

/// Parses `X-Amzn-Trace-Id`. Only a header with `Root`, `Parent` and a sampling decision
/// (`Sampled=0|1`) names a parent; without one, the caller left the decision to us.
pub fn parse_amzn_trace_id(value: &str) -> Option<SpanContext> {
    let (mut root, mut parent, mut sampled) = (None, None, None);
    for field in value.split(';') {
        let (k, v) = field.trim().split_once('=')?;
        match k.trim() {
            "Root" => root = Some(v.trim()),
            "Parent" => parent = Some(v.trim()),
            "Sampled" => sampled = Some(v.trim()),
            _ => {}
        }
    }
    let mut root_parts = root?.split('-');
    if root_parts.next()? != "1" {
        return None;
    }
    let (epoch, unique) = (root_parts.next()?, root_parts.next()?);
    if epoch.len() != 8 || unique.len() != 24 || root_parts.next().is_some() {
        return None;
    }
    let trace_id =
        hex_lower(&format!("{epoch}{unique}")).and_then(|t| TraceId::from_hex(&t).ok())?;
    let parent = parent?;
    if parent.len() != 16 {
        return None;
    }
    let span_id = hex_lower(parent).and_then(|s| SpanId::from_hex(&s).ok())?;
    let flags = match sampled? {
        "1" => TraceFlags::SAMPLED,
        "0" => TraceFlags::default(),
        _ => return None,
    };
    let sc = SpanContext::new(trace_id, span_id, flags, true, TraceState::default());
    sc.is_valid().then_some(sc)
}

/// `X-Amzn-Trace-Id` naming `sc` as the parent.
pub fn amzn_trace_id(sc: &SpanContext) -> String {
    let t = format!("{:032x}", sc.trace_id());
    format!(
        "Root=1-{}-{};Parent={:016x};Sampled={}",
        &t[..8],
        &t[8..],
        sc.span_id(),
        u8::from(sc.is_sampled())
    )
}

/// W3C `traceparent` naming `sc` as the parent.
pub fn traceparent(sc: &SpanContext) -> String {
    format!(
        "00-{:032x}-{:016x}-{:02x}",
        sc.trace_id(),
        sc.span_id(),
        sc.trace_flags().to_u8()
    )
}

/// Makes `parent` the parent of `span` (no effect when tracing is not exported).
pub fn set_remote_parent(span: &tracing::Span, parent: SpanContext) {
    let _ = span.set_parent(Context::new().with_remote_span_context(parent));
}

/// The OpenTelemetry span context of `span`, when traces are exported: its own when its
/// trace is sampled, else its trace's, marked not sampled. A span not built (an unsampled
/// request's, see [`crate::decision`]) gives the context of the unsampled trace the
/// current task works for.
pub fn span_context(span: &tracing::Span) -> Option<SpanContext> {
    if span.is_disabled() {
        return crate::decision::unsampled_context();
    }
    let cx = span.context();
    let sc = cx.span().span_context().clone();
    if sc.is_valid() {
        return Some(sc);
    }
    crate::sampling::unrecorded_context(span)
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Trace ids are lower-case hex on the wire; upper case is tolerated on input.
fn hex_lower(s: &str) -> Option<String> {
    is_hex(s).then(|| s.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trip() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let sc = parse_traceparent(v, Some("congo=t61rcWkgMzE")).unwrap();
        assert!(sc.is_sampled() && sc.is_remote());
        assert_eq!(sc.trace_state().get("congo"), Some("t61rcWkgMzE"));
        assert_eq!(traceparent(&sc), v);
    }

    #[test]
    fn invalid_traceparents_are_ignored() {
        for v in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(parse_traceparent(v, None).is_none(), "{v}");
        }
    }

    #[test]
    fn amzn_trace_id_round_trip() {
        let v = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
        let sc = parse_amzn_trace_id(v).unwrap();
        assert_eq!(
            format!("{:032x}", sc.trace_id()),
            "5759e988bd862e3fe1be46a994272793"
        );
        assert!(sc.is_sampled());
        assert_eq!(amzn_trace_id(&sc), v);
        let unsampled = parse_amzn_trace_id(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a:1",
        )
        .unwrap();
        assert!(!unsampled.is_sampled());
    }

    #[test]
    fn amzn_trace_id_without_parent_or_decision_names_no_parent() {
        for v in [
            "Root=1-5759e988-bd862e3fe1be46a994272793",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8",
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=?",
            "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "Root=1-5759e98-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
            "garbage",
        ] {
            assert!(parse_amzn_trace_id(v).is_none(), "{v}");
        }
    }

    #[test]
    fn traceparent_wins_over_amzn() {
        let sc = remote_parent(|h| match h {
            "traceparent" => Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
            "x-amzn-trace-id" => {
                Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
            }
            _ => None,
        })
        .unwrap();
        assert_eq!(format!("{:016x}", sc.span_id()), "00f067aa0ba902b7");
        let sc = remote_parent(|h| match h {
            "traceparent" => Some("nonsense"),
            "x-amzn-trace-id" => {
                Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
            }
            _ => None,
        })
        .unwrap();
        assert_eq!(format!("{:016x}", sc.span_id()), "53995c3f42cd8ad8");
    }
}
