//! Serving function URLs: a request whose `Host` is
//! `<url-id>.lambda-url.<region>.<url-domain>` is answered here, before the Lambda API's
//! routing and authentication. Every gateway serves every URL of its region, found by
//! its id in the catalog (`UrlRoute`).
//!
//! The path of one request: CORS preflight (answered from the config, no invocation) →
//! authorization (`AWS_IAM`: Signature V4 and `lambda:InvokeFunctionUrl`; `NONE`: the
//! function's resource policy must allow anyone `lambda:InvokeFunctionUrl` with
//! `lambda:FunctionUrlAuthType NONE`, and `lambda:InvokeFunction`) → the event in
//! payload format 2.0 ([`payload`]) → the core's invocation → the function's result
//! taken apart into an HTTP response, with Lambda's 502/429/413 for what went wrong.

pub mod payload;
pub mod stream;

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use nimbus_iam::{Context, Principal, PrincipalKind};
use nimbus_telemetry::decision::TraceDecision;
use nimbus_telemetry::propagation;
use nimbus_types::{keys, Entity, FunctionUrlConfig, UrlCors};
use tracing::field::Empty;

use crate::core::access::{Caller, Identity, Operation};
use crate::core::resolve::Named;
use crate::core::{ApiError, Gateway, InvokeRequest};

/// Lambda's limit on a URL request's body.
const MAX_REQUEST_BYTES: usize = 6 * 1024 * 1024;

/// The URL id named by a `Host` header, when it is one of this gateway's URL hosts.
pub fn url_id(gw: &Gateway, host: &str) -> Option<String> {
    let host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.chars().all(|c| c.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let host = host.to_ascii_lowercase();
    let suffix = format!(".lambda-url.{}.{}", gw.region(), gw.url_domain());
    let id = host.strip_suffix(&suffix)?;
    (!id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric())).then(|| id.to_string())
}

/// The front door for URL hosts; everything else goes on to the Lambda API.
pub async fn front(State(gw): State<Arc<Gateway>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let Some(id) = host.as_deref().and_then(|h| url_id(&gw, h)) else {
        return next.run(req).await;
    };
    // The invocation's root span, made after the sampling decision like the API's
    // `Invoke`: an unsampled request builds no span here or below.
    let parent = propagation::remote_parent(|h| req.headers().get(h).and_then(|v| v.to_str().ok()));
    let trace = TraceDecision::new(parent, "Invoke");
    let span = trace.root_span(|| {
        tracing::info_span!(
            "function_url",
            otel.name = "Invoke",
            otel.kind = "server",
            otel.status_code = Empty,
            faas.trigger = "http",
            url.id = %id,
            faas.name = Empty,
            faas.version = Empty,
            cloud.provider = "nimbus",
            cloud.region = %gw.region(),
            http.response.status_code = Empty,
        )
    });
    let resp = trace
        .scope(serve(&gw, &id, host.unwrap_or_default(), req), span.clone())
        .await;
    crate::http::api::invoke::record_status(&span, resp.status().as_u16());
    resp
}

/// Lambda's URL error bodies: `{"Message": ...}`.
fn message(status: StatusCode, text: &str) -> Response {
    let mut r = (status, axum::Json(serde_json::json!({ "Message": text }))).into_response();
    r.headers_mut()
        .insert("x-amzn-ErrorType", HeaderValue::from_static("UrlError"));
    r
}

/// A URL's invocation, by its `InvokeMode`.
enum Answer {
    /// `RESPONSE_STREAM`: the response, its body still coming.
    Streamed(Response),
    /// `BUFFERED`: the result, to be taken apart (payload format 2.0).
    Buffered(crate::core::Invoked),
}

async fn serve(gw: &Arc<Gateway>, url_id: &str, host: String, req: Request) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    let Some((named, config)) = route(gw, url_id) else {
        return message(StatusCode::NOT_FOUND, "Not Found");
    };
    let ext = req.extensions();
    let source_ip = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip())
        .or_else(|| {
            ext.get::<axum::extract::ConnectInfo<super::https::PeerAddr>>()
                .map(|c| c.0 .0.ip())
        })
        .map_or_else(|| "unknown".into(), |ip| ip.to_string());
    let (parts, body) = req.into_parts();
    let cors = config.cors.as_ref().map(cors_of);
    if let Some(c) = &cors {
        if payload::is_preflight(&parts.method, &parts.headers) {
            let mut r = StatusCode::OK.into_response();
            add_headers(&mut r, payload::preflight(c, &parts.headers));
            return r;
        }
    }
    let body = match axum::body::to_bytes(body, MAX_REQUEST_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request must be smaller than 6291456 bytes for the InvokeFunction operation",
            )
        }
    };
    let resource = if config.qualifier.is_empty() {
        named.key.arn()
    } else {
        format!("{}:{}", named.key.arn(), config.qualifier)
    };
    if let Err(e) = authorize(gw, &parts, &body, &config, &resource).await {
        tracing::info!(url_id, error = %e, "function URL request refused");
        return message(StatusCode::FORBIDDEN, "Forbidden");
    }
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let domain = host
        .rsplit_once(':')
        .map_or(host.as_str(), |(h, _)| h)
        .to_string();
    let event = payload::event(&payload::UrlRequest {
        method: &parts.method,
        raw_path: &path,
        raw_query: &query,
        headers: &parts.headers,
        body: &body,
        source_ip,
        url_id,
        domain_name: domain,
        account_id: &named.key.account_id,
        request_id: &request_id,
        now: time::OffsetDateTime::now_utc(),
    });
    let request = InvokeRequest {
        request_id: request_id.clone(),
        payload: Bytes::from(event.to_string()),
        client_context: None,
        trace_id: parts
            .headers
            .get("x-amzn-trace-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
    };
    let invoked = if config.invoke_mode == "RESPONSE_STREAM" {
        match gw.invoke_stream(&named, request).await {
            Ok(streamed) => stream::respond(streamed).await.map(Answer::Streamed),
            Err(e) => Err(e),
        }
    } else {
        gw.invoke(&named, request).await.map(Answer::Buffered)
    };
    let mut resp = match invoked {
        Err(e) if e.is_throttle() => message(StatusCode::TOO_MANY_REQUESTS, "Rate Exceeded."),
        Err(e) if e.is_not_found() => message(StatusCode::NOT_FOUND, "Not Found"),
        Err(e) => {
            tracing::info!(url_id, error = %e, "function URL invocation failed");
            message(StatusCode::BAD_GATEWAY, "Internal Server Error")
        }
        Ok(Answer::Streamed(response)) => response,
        Ok(Answer::Buffered(invoked)) if invoked.result.function_error.is_some() => {
            message(StatusCode::BAD_GATEWAY, "Internal Server Error")
        }
        Ok(Answer::Buffered(invoked)) => match payload::response(&invoked.result.payload) {
            Ok(out) => http_response(out),
            Err(e) => {
                tracing::info!(url_id, error = %e, "function URL result unusable");
                message(StatusCode::BAD_GATEWAY, "Internal Server Error")
            }
        },
    };
    if let Some(c) = &cors {
        add_headers(&mut resp, payload::cors_headers(c, &parts.headers));
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

/// The function and config a URL id leads to, as the catalog has them now.
fn route(gw: &Gateway, url_id: &str) -> Option<(Named, FunctionUrlConfig)> {
    let Some(Entity::UrlRoute(r)) = gw.catalog().get(&keys::url_route(url_id)) else {
        return None;
    };
    if r.key.region != gw.region() {
        return None;
    }
    let Some(Entity::Function(f)) = gw.catalog().get(&keys::function(&r.key)) else {
        return None;
    };
    let config = f.url_configs.get(&r.qualifier)?.clone();
    let named = Named {
        key: r.key,
        qualifier: (!r.qualifier.is_empty()).then_some(r.qualifier),
    };
    Some((named, config))
}

/// Who may call: a signed caller with `lambda:InvokeFunctionUrl` for `AWS_IAM`; for
/// `NONE`, anyone the function's resource policy lets in.
async fn authorize(
    gw: &Arc<Gateway>,
    parts: &axum::http::request::Parts,
    body: &[u8],
    config: &FunctionUrlConfig,
    resource: &str,
) -> Result<(), ApiError> {
    let context = Context::new().with("lambda:FunctionUrlAuthType", config.auth_type.as_str());
    if config.auth_type == "AWS_IAM" {
        let caller = super::verify_signed(gw, parts, body).await?;
        return gw.authorize(
            &caller,
            &Operation::new("lambda:InvokeFunctionUrl", resource),
            &context,
        );
    }
    // Anyone: an anonymous principal that only a resource policy naming "*" lets in.
    let mut anonymous = Caller::new("", "", Identity::Root, "/");
    anonymous.principal = Arc::new(Principal {
        arn: "anonymous".into(),
        account: String::new(),
        kind: PrincipalKind::Service,
    });
    gw.authorize(
        &anonymous,
        &Operation::new("lambda:InvokeFunctionUrl", resource),
        &context,
    )?;
    gw.authorize(
        &anonymous,
        &Operation::new("lambda:InvokeFunction", resource),
        &context,
    )
}

fn cors_of(c: &UrlCors) -> payload::Cors {
    payload::Cors {
        allow_origins: c.allow_origins.clone(),
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: c.max_age,
        allow_credentials: c.allow_credentials,
    }
}

/// A function's answer as HTTP: each cookie its own `Set-Cookie`.
fn http_response(out: payload::UrlResponse) -> Response {
    let mut r = (out.status, out.body).into_response();
    add_headers(&mut r, out.headers);
    for c in out.cookies {
        if let Ok(v) = HeaderValue::from_str(&c) {
            r.headers_mut().append(axum::http::header::SET_COOKIE, v);
        }
    }
    r
}

fn add_headers(resp: &mut Response, headers: Vec<(String, String)>) {
    for (k, v) in headers {
        if let (Ok(k), Ok(v)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(&v),
        ) {
            resp.headers_mut().append(k, v);
        }
    }
}
