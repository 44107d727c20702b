//! Invoke: the REST adapter over [`Gateway::invoke`] and the async queue. It reads
//! Lambda's headers into typed values, and writes the typed outcome back as Lambda's
//! headers; resolving, admission and placement are the core's.

use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use nimbus_telemetry::decision::TraceDecision;
use nimbus_telemetry::propagation;
use nimbus_types::limits::{CLIENT_CONTEXT_MAX_BYTES, LOG_TAIL_MAX_BYTES, SYNC_RESPONSE_MAX_BYTES};
use nimbus_types::vocabulary::{InvocationType, LogType};
use nimbus_types::AsyncEvent;
use tracing::field::Empty;

use crate::core::async_events;
use crate::core::resolve::{self, Named};
use crate::core::{ApiError, Gateway, InvokeRequest, InvokeResult, Invoked, StreamEvent};
use crate::http::eventstream;
use crate::http::extract::QualifiedFunction;
use crate::http::{Caller, RequestId};

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Records a request's HTTP status on its root span; a 5xx marks the span an error.
pub(crate) fn record_status(span: &tracing::Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// The sampling decision and root span of an API invocation, the operation `$op`:
/// decided before the span exists (an unsampled request builds none), continuing the
/// caller's trace when it sent `traceparent` or `X-Amzn-Trace-Id`. A macro because a
/// span's name (`$name`, what log lines show) must be a literal.
macro_rules! api_root {
    ($name:literal, $op:literal, $headers:expr, $gw:expr, $caller:expr, $request_id:expr) => {{
        let parent = propagation::remote_parent(|h| header(&$headers, h));
        let trace = TraceDecision::new(parent, $op);
        let span = trace.root_span(|| {
            tracing::info_span!(
                $name,
                otel.name = $op,
                otel.kind = "server",
                otel.status_code = Empty,
                faas.trigger = "http",
                faas.invocation_id = %$request_id,
                faas.name = Empty,
                faas.version = Empty,
                cloud.provider = "nimbus",
                cloud.region = %$gw.region(),
                cloud.account.id = %$caller.account_id,
                http.response.status_code = Empty,
            )
        });
        (trace, span)
    }};
}

/// `Invoke`, in its root span (the root of an invocation's trace in Nimbus).
pub async fn invoke(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    QualifiedFunction(named): QualifiedFunction,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Response, ApiError> {
    let (trace, span) = api_root!("invoke_api", "Invoke", headers, gw, caller, request_id);
    in_root(trace, span, run(gw, named, request_id, headers, payload)).await
}

/// Runs an API invocation in its root `span` (or, unsampled, its trace's scope) and
/// records the answer's status on the span.
async fn in_root(
    trace: TraceDecision,
    span: tracing::Span,
    call: impl std::future::Future<Output = Result<Response, ApiError>>,
) -> Result<Response, ApiError> {
    let result = trace.scope(call, span.clone()).await;
    let status = match &result {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status,
    };
    record_status(&span, status);
    result
}

async fn run(
    gw: Arc<Gateway>,
    named: Named,
    request_id: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Response, ApiError> {
    let invocation_type = InvocationType::parse(header(&headers, "x-amz-invocation-type"))?;
    let log_type = LogType::parse(header(&headers, "x-amz-log-type"))?;
    let client_context = checked_input(invocation_type, &payload, &headers)?;
    match invocation_type {
        InvocationType::DryRun => {
            // Checks that the function and qualifier exist, and that the caller may call.
            resolve::qualifier(&gw, &named.key, named.qualifier.as_deref())?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        InvocationType::Event => {
            let labels = gw.labels(&named);
            // Checked now so a missing function is a 404, not a dropped event.
            resolve::qualifier(&gw, &named.key, named.qualifier.as_deref())?;
            let event = AsyncEvent {
                id: request_id,
                key: named.key,
                qualifier: named.qualifier,
                client_context,
                // With traces exported, the event carries this request's span as its parent
                // (or, unsampled, its trace).
                trace_id: propagation::span_context(&tracing::Span::current())
                    .map(|sc| propagation::amzn_trace_id(&sc))
                    .or_else(|| header(&headers, "x-amzn-trace-id").map(str::to_string)),
                enqueued_ms: async_events::now_ms(),
                attempts: 0,
                deferrals: 0,
                not_before_ms: 0,
                lease: None,
            };
            async_events::accept(&gw, event, payload.to_vec()).await?;
            gw.metrics().async_event_received(&labels);
            Ok(StatusCode::ACCEPTED.into_response())
        }
        InvocationType::RequestResponse => {
            let request = InvokeRequest {
                request_id,
                payload,
                client_context,
                trace_id: header(&headers, "x-amzn-trace-id").map(str::to_string),
            };
            let invoked = gw.invoke(&named, request).await?;
            response(invoked, log_type)
        }
    }
}

/// The payload's size for `invocation_type` and its JSON, and the decoded
/// `X-Amz-Client-Context`, checked as Lambda checks them.
fn checked_input(
    invocation_type: InvocationType,
    payload: &[u8],
    headers: &HeaderMap,
) -> Result<Option<String>, ApiError> {
    let payload_max = invocation_type.payload_max();
    if payload.len() > payload_max {
        return Err(ApiError::too_large(format!(
            "{} byte payload is too large for the {invocation_type} invocation type (limit {payload_max} bytes)",
            payload.len()
        )));
    }
    if !payload.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(payload).is_err() {
        return Err(ApiError::bad_content(
            "Could not parse request body into json: payload is not valid JSON",
        ));
    }
    header(headers, "x-amz-client-context")
        .map(client_context)
        .transpose()
}

/// `X-Amz-Client-Context`: base64 of a JSON object, at most 3,583 bytes decoded.
fn client_context(b64: &str) -> Result<String, ApiError> {
    let invalid =
        || ApiError::invalid("Client context must be a valid Base64-encoded JSON object.");
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| invalid())?;
    if raw.len() > CLIENT_CONTEXT_MAX_BYTES {
        return Err(ApiError::invalid(format!(
            "Client context must be at most {CLIENT_CONTEXT_MAX_BYTES} bytes"
        )));
    }
    String::from_utf8(raw).map_err(|_| invalid())
}

/// Lambda's answer to a synchronous invocation.
fn response(invoked: Invoked, log_type: LogType) -> Result<Response, ApiError> {
    let result = invoked.result;
    if result.payload.len() > SYNC_RESPONSE_MAX_BYTES {
        return Err(ApiError::too_large(format!(
            "Response payload size ({} bytes) exceeded maximum allowed payload size ({SYNC_RESPONSE_MAX_BYTES} bytes).",
            result.payload.len()
        )));
    }
    let mut resp = (StatusCode::OK, result.payload).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&invoked.executed_version.to_string()) {
        h.insert("x-amz-executed-version", v);
    }
    if result.function_error.is_some() {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if log_type == LogType::Tail {
        let tail = result.log_tail.as_bytes();
        let tail = &tail[tail.len().saturating_sub(LOG_TAIL_MAX_BYTES)..];
        if let Ok(v) =
            HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(tail))
        {
            h.insert("x-amz-log-result", v);
        }
    }
    Ok(resp)
}

/// `InvokeWithResponseStream` (`POST /2021-11-15/functions/{name}/response-streaming-invocations`):
/// the result as AWS's event stream, `PayloadChunk` events as the function writes, then
/// `InvokeComplete`, which the SDKs decode unchanged. Errors before the function first
/// wrote (not found, throttled) are ordinary Lambda errors; after that they can only be
/// told in `InvokeComplete`.
///
/// Its root span is made like [`invoke`]'s: after the sampling decision, so an unsampled
/// request builds no span here or below.
pub async fn invoke_stream(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    QualifiedFunction(named): QualifiedFunction,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Response, ApiError> {
    let (trace, span) = api_root!(
        "invoke_stream_api",
        "InvokeWithResponseStream",
        headers,
        gw,
        caller,
        request_id
    );
    in_root(
        trace,
        span,
        run_stream(gw, named, request_id, headers, payload),
    )
    .await
}

async fn run_stream(
    gw: Arc<Gateway>,
    named: Named,
    request_id: String,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Response, ApiError> {
    let log_type = LogType::parse(header(&headers, "x-amz-log-type"))?;
    match header(&headers, "x-amz-invocation-type").unwrap_or("RequestResponse") {
        "RequestResponse" => {}
        "DryRun" => {
            resolve::qualifier(&gw, &named.key, named.qualifier.as_deref())?;
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        other => {
            return Err(ApiError::validation(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]"
            )))
        }
    }
    let client_context = checked_input(InvocationType::RequestResponse, &payload, &headers)?;
    let request = InvokeRequest {
        request_id,
        payload,
        client_context,
        trace_id: header(&headers, "x-amzn-trace-id").map(str::to_string),
    };
    let invoked = gw.invoke_stream(&named, request).await?;
    let with_log = log_type == LogType::Tail;
    let frames = futures::stream::unfold(Some(invoked.events), move |events| async move {
        let mut events = events?;
        let frames = match events.recv().await {
            Some(StreamEvent::Chunk(chunk)) => eventstream::payload_chunks(&chunk).collect(),
            Some(StreamEvent::Done(done)) => {
                let frames = complete_frames(done, with_log);
                return Some((Ok::<_, std::convert::Infallible>(frames), None));
            }
            None => return None,
        };
        Some((Ok(frames), Some(events)))
    });
    let body = axum::body::Body::from_stream(frames.map(|f| f.map(|v: Vec<Bytes>| v.concat())));
    let mut resp = (StatusCode::OK, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static(eventstream::CONTENT_TYPE),
    );
    if let Ok(v) = HeaderValue::from_str(&invoked.executed_version.to_string()) {
        h.insert("x-amz-executed-version", v);
    }
    Ok(resp)
}

/// The last events of a streamed invocation: what was not streamed (a function that
/// answered in one piece), then `InvokeComplete` with the error, if any, and the log.
fn complete_frames(done: Result<InvokeResult, ApiError>, with_log: bool) -> Vec<Bytes> {
    let log = |result: &InvokeResult| {
        with_log.then(|| {
            let tail = result.log_tail.as_bytes();
            let tail = &tail[tail.len().saturating_sub(LOG_TAIL_MAX_BYTES)..];
            base64::engine::general_purpose::STANDARD.encode(tail)
        })
    };
    match done {
        Ok(result) if result.function_error.is_none() => {
            let mut frames: Vec<Bytes> = eventstream::payload_chunks(&result.payload).collect();
            frames.push(eventstream::invoke_complete(
                None,
                None,
                log(&result).as_deref(),
            ));
            frames
        }
        Ok(result) => {
            let details = String::from_utf8_lossy(&result.payload);
            let code = serde_json::from_slice::<serde_json::Value>(&result.payload)
                .ok()
                .and_then(|v| v.get("errorType")?.as_str().map(str::to_string))
                .unwrap_or_else(|| "Unhandled".into());
            vec![eventstream::invoke_complete(
                Some(&code),
                Some(&details),
                log(&result).as_deref(),
            )]
        }
        Err(e) => vec![eventstream::invoke_complete(
            Some(&e.error_type),
            Some(&e.message),
            None,
        )],
    }
}
