//! Invoke: resolve the qualifier from the cache, admit against concurrency limits, run
//! on a worker, and answer with Lambda's headers.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use nimbus_telemetry::propagation;
use nimbus_telemetry::FunctionLabels;
use nimbus_types::limits::ASYNC_PAYLOAD_MAX_BYTES;
use nimbus_types::AsyncEvent;
use tracing::field::Empty;
use tracing::Instrument;

use super::query_map;
use crate::admission::Limits;
use crate::error::ApiError;
use crate::invoker::{InvokeRequest, InvokeTarget};
use crate::resolve::{self, Resolved};
use crate::server::{Caller, Gateway, RequestId};

/// Synchronous payloads: 6 MB each way.
pub const SYNC_PAYLOAD_MAX: usize = 6 * 1024 * 1024;
/// `X-Amz-Client-Context`, decoded.
pub const CLIENT_CONTEXT_MAX: usize = 3583;
/// `X-Amz-Log-Result`: the last 4 KB of the log.
const LOG_TAIL_MAX: usize = 4096;

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// The API request's span (the root of an invocation's trace in Nimbus), continuing the
/// caller's trace when it sent `traceparent` or `X-Amzn-Trace-Id`.
pub async fn invoke(
    State(gw): State<Arc<Gateway>>,
    Extension(caller): Extension<Caller>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Response, ApiError> {
    let span = tracing::info_span!(
        "invoke_api",
        otel.name = "Invoke",
        otel.kind = "server",
        otel.status_code = Empty,
        faas.trigger = "http",
        faas.invocation_id = %request_id,
        faas.name = Empty,
        faas.version = Empty,
        cloud.provider = "nimbus",
        cloud.region = %gw.region,
        cloud.account.id = %caller.account_id,
        http.response.status_code = Empty,
    );
    if let Some(parent) = propagation::remote_parent(|h| header(&headers, h)) {
        propagation::set_remote_parent(&span, parent);
    }
    let result = run(gw, caller, request_id, name, q, headers, payload)
        .instrument(span.clone())
        .await;
    let status = match &result {
        Ok(resp) => resp.status().as_u16(),
        Err(e) => e.status,
    };
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
    result
}

async fn run(
    gw: Arc<Gateway>,
    caller: Caller,
    request_id: String,
    name: String,
    q: Option<String>,
    headers: HeaderMap,
    payload: Bytes,
) -> Result<Response, ApiError> {
    let q = query_map(q.as_deref());
    let invocation_type = header(&headers, "x-amz-invocation-type").unwrap_or("RequestResponse");
    if !matches!(invocation_type, "RequestResponse" | "Event" | "DryRun") {
        return Err(ApiError::validation(format!(
            "1 validation error detected: Value '{invocation_type}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [Event, RequestResponse, DryRun]"
        )));
    }
    let log_type = header(&headers, "x-amz-log-type").unwrap_or("None");
    if !matches!(log_type, "None" | "Tail") {
        return Err(ApiError::validation(format!("Value '{log_type}' at 'logType' failed to satisfy constraint: Member must satisfy enum value set: [None, Tail]")));
    }
    let payload_max = match invocation_type {
        "Event" => ASYNC_PAYLOAD_MAX_BYTES,
        _ => SYNC_PAYLOAD_MAX,
    };
    if payload.len() > payload_max {
        return Err(ApiError::too_large(format!(
            "{} byte payload is too large for the {invocation_type} invocation type (limit {payload_max} bytes)",
            payload.len()
        )));
    }
    if !payload.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return Err(ApiError::new(
            400,
            "InvalidRequestContentException",
            "Could not parse request body into json: payload is not valid JSON",
        ));
    }
    let client_context = match header(&headers, "x-amz-client-context") {
        None => None,
        Some(b64) => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| {
                    ApiError::invalid("Client context must be a valid Base64-encoded JSON object.")
                })?;
            if raw.len() > CLIENT_CONTEXT_MAX {
                return Err(ApiError::invalid(format!(
                    "Client context must be at most {CLIENT_CONTEXT_MAX} bytes"
                )));
            }
            Some(String::from_utf8(raw).map_err(|_| {
                ApiError::invalid("Client context must be a valid Base64-encoded JSON object.")
            })?)
        }
    };

    let named = resolve::named(&gw, &caller, &name, q.get("Qualifier").map(String::as_str))?;
    let function = resolve::function(&gw, &named.key)?;
    let (version, config, code, revision_id) =
        match resolve::qualifier(&gw, &named.key, named.qualifier.as_deref())? {
            Resolved::Latest(f) => ("$LATEST".to_string(), f.config, f.code, f.revision_id),
            Resolved::Version(v) => (v.number.to_string(), v.config, v.code, v.revision_id),
        };
    let span = tracing::Span::current();
    span.record("faas.name", named.key.name.as_str());
    span.record("faas.version", version.as_str());
    let labels = FunctionLabels::new(
        &caller.account_id,
        &gw.region,
        &named.key.name,
        named.qualifier.as_deref(),
    );
    let invoked_arn = match &named.qualifier {
        Some(q) => format!("{}:{q}", named.key.arn()),
        None => named.key.arn(),
    };
    if invocation_type == "DryRun" {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    if invocation_type == "Event" {
        let event = AsyncEvent {
            id: request_id,
            key: named.key,
            qualifier: named.qualifier,
            client_context,
            // With traces exported, the event carries this request's span as its parent.
            trace_id: propagation::span_context(&span)
                .map(|sc| propagation::amzn_trace_id(&sc))
                .or_else(|| header(&headers, "x-amzn-trace-id").map(str::to_string)),
            enqueued_ms: super::now_ms(),
            attempts: 0,
            deferrals: 0,
            not_before_ms: 0,
            lease: None,
        };
        let accepted = crate::async_events::accept(&gw, event, payload.to_vec()).await;
        if accepted.is_ok() {
            gw.metrics.async_event_received(&labels);
        }
        return accepted;
    }

    let (limits, reserved_total, _, _) = super::settings::account_limits(&gw, &caller.account_id);
    let admitted = gw
        .admission
        .admit(&Limits {
            account: &caller.account_id,
            region: &gw.region,
            function_name: &named.key.name,
            reserved: function.reserved_concurrency,
            account_limit: limits.concurrent_executions,
            reserved_total,
        })
        .instrument(tracing::info_span!("admission", otel.name = "Admission"))
        .await;
    let slot = admitted.inspect_err(|e| {
        if e.status == 429 {
            gw.metrics.throttled(&labels);
        }
    })?;
    let running = gw
        .metrics
        .running(&labels, function.reserved_concurrency.is_none());

    let target = InvokeTarget {
        key: named.key,
        version: version.clone(),
        config,
        code,
        invoked_arn,
        code_revision: gw.cache.revision(),
        revision_id,
    };
    let request = InvokeRequest {
        request_id,
        payload,
        client_context,
        trace_id: header(&headers, "x-amzn-trace-id").map(str::to_string),
    };
    let started = Instant::now();
    // The invocation runs to its end even if the caller disconnects (as on Lambda), and
    // keeps its concurrency slot until then.
    let invoker = gw.invoker.clone();
    let span = tracing::info_span!(
        "place_and_invoke",
        otel.name = "Place and invoke",
        otel.kind = "client",
    );
    let result = tokio::spawn(async move {
        let result = invoker.invoke(&target, request).instrument(span).await;
        drop(slot);
        drop(running);
        result
    })
    .await
    .map_err(|e| ApiError::service(format!("invocation task failed: {e}")))??;
    gw.metrics
        .invoked(&labels, started.elapsed(), result.function_error.is_some());
    if result.payload.len() > SYNC_PAYLOAD_MAX {
        return Err(ApiError::new(
            413,
            "RequestTooLargeException",
            format!("Response payload size ({} bytes) exceeded maximum allowed payload size ({SYNC_PAYLOAD_MAX} bytes).", result.payload.len()),
        ));
    }
    let mut resp = (StatusCode::OK, result.payload).into_response();
    let h = resp.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    if let Ok(v) = HeaderValue::from_str(&version) {
        h.insert("x-amz-executed-version", v);
    }
    if result.function_error.is_some() {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if log_type == "Tail" {
        let tail = result.log_tail.as_bytes();
        let tail = &tail[tail.len().saturating_sub(LOG_TAIL_MAX)..];
        if let Ok(v) =
            HeaderValue::from_str(&base64::engine::general_purpose::STANDARD.encode(tail))
        {
            h.insert("x-amz-log-result", v);
        }
    }
    Ok(resp)
}
