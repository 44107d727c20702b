//! The Lambda Runtime API (2018-06-01) that one environment's runtime polls.
//!
//! Each environment has its own server, listening on `127.0.0.1:9001`
//! *inside* the environment's network namespace (the socket is created there
//! by the sandbox, accepted on here), so a runtime can only reach its own API.
//!
//! HTTP is parsed into a typed [`Route`] in one place ([`Route::parse`]) and
//! every error status is produced in one place ([`ApiError::into_response`]);
//! the state machine in [`RuntimeApi`] knows nothing about HTTP.

use std::convert::Infallible;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

use crate::stream_limit::{StreamLimits, StreamPacer, StreamTooLarge};

/// Lambda's synchronous response limit (6 MB).
pub const MAX_RESPONSE_BYTES: usize = nimbus_types::limits::SYNC_RESPONSE_MAX_BYTES;
/// Error bodies are small; anything bigger is cut.
const MAX_ERROR_BYTES: usize = 1024 * 1024;
/// A streamed chunk is passed on in pieces of at most this size, well inside a gRPC
/// message and small enough that back-pressure acts promptly.
const MAX_CHUNK_BYTES: usize = 256 * 1024;

/// A request the runtime can make, parsed from method and path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /2018-06-01/runtime/invocation/next`
    Next,
    /// `POST /2018-06-01/runtime/invocation/{id}/response`
    Response(String),
    /// `POST /2018-06-01/runtime/invocation/{id}/error`
    Error(String),
    /// `POST /2018-06-01/runtime/init/error`
    InitError,
}

impl Route {
    /// Parses method and path; `None` is a 404.
    pub fn parse(method: &Method, path: &str) -> Option<Route> {
        let rest = path.strip_prefix("/2018-06-01/runtime/")?;
        match (method, rest.split('/').collect::<Vec<_>>().as_slice()) {
            (&Method::GET, ["invocation", "next"]) => Some(Route::Next),
            (&Method::POST, ["invocation", id, "response"]) if !id.is_empty() => {
                Some(Route::Response((*id).to_owned()))
            }
            (&Method::POST, ["invocation", id, "error"]) if !id.is_empty() => {
                Some(Route::Error((*id).to_owned()))
            }
            (&Method::POST, ["init", "error"]) => Some(Route::InitError),
            _ => None,
        }
    }
}

/// Errors answered to the runtime, with Lambda's status codes and bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 404: no such route.
    NotFound,
    /// 400: the request id is not the current invocation.
    InvalidRequestId,
    /// 403: the call is not valid in the current state (e.g. a second response).
    InvalidStateTransition,
    /// 413: the response exceeds 6 MB.
    PayloadTooLarge,
    /// 500: the runtime API is shutting down.
    ShuttingDown,
    /// 413: a streamed response passed its limit (200 MB).
    StreamTooLarge(u64),
}

impl ApiError {
    /// The one place Runtime API errors become HTTP.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let (status, error_type, message) = match self {
            ApiError::NotFound => (StatusCode::NOT_FOUND, "NotFound", "Not found".to_owned()),
            ApiError::InvalidRequestId => (
                StatusCode::BAD_REQUEST,
                "InvalidRequestID",
                "Invalid request ID".to_owned(),
            ),
            ApiError::InvalidStateTransition => (
                StatusCode::FORBIDDEN,
                "InvalidStateTransition",
                "State transition from the current state is not allowed".to_owned(),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                format!("Exceeded maximum allowed payload size ({MAX_RESPONSE_BYTES} bytes)."),
            ),
            ApiError::ShuttingDown => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "The environment is shutting down".to_owned(),
            ),
            ApiError::StreamTooLarge(max) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "RequestEntityTooLarge",
                StreamTooLarge { max }.to_string(),
            ),
        };
        json_response(
            status,
            serde_json::json!({ "errorMessage": message, "errorType": error_type }),
        )
    }
}

fn json_response(status: StatusCode, body: serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn accepted() -> Response<Full<Bytes>> {
    json_response(StatusCode::ACCEPTED, serde_json::json!({ "status": "OK" }))
}

/// The error a streamed response ended with (`Lambda-Runtime-Function-Error-Type` and
/// the base64 `Lambda-Runtime-Function-Error-Body` trailers), if any.
fn stream_error(trailers: &hyper::HeaderMap) -> Option<(String, Bytes)> {
    use base64::Engine;
    let kind = trailers
        .get("Lambda-Runtime-Function-Error-Type")?
        .to_str()
        .ok()?
        .to_owned();
    let body = trailers
        .get("Lambda-Runtime-Function-Error-Body")
        .and_then(|v| {
            base64::engine::general_purpose::STANDARD
                .decode(v.as_bytes())
                .ok()
        })
        .map(Bytes::from)
        .unwrap_or_else(|| {
            Bytes::from(serde_json::json!({ "errorType": kind, "errorMessage": "" }).to_string())
        });
    Some((kind, body))
}

/// Paths of the APIs Lambda serves inside an environment (Runtime, and the Extensions,
/// Logs and Telemetry APIs that Nimbus answers 404): never relayed to the Nimbus API.
fn is_platform_path(path: &str) -> bool {
    [
        "/2018-06-01/",
        "/2020-01-01/extension",
        "/2020-08-15/logs",
        "/2022-07-01/telemetry",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// An event handed to the runtime by `/next`.
#[derive(Debug)]
pub(crate) struct Dispatch {
    pub request_id: String,
    pub payload: Bytes,
    pub deadline: SystemTime,
    pub function_arn: String,
    pub trace_id: String,
    pub client_context: Option<String>,
    pub cognito_identity: Option<String>,
    /// Where the runtime's answer goes.
    pub reply: oneshot::Sender<RuntimeReply>,
    /// Where a streamed response's bytes go as the function writes them (`None`: the
    /// caller wants the response in one piece, so a streamed one is collected, ≤ 6 MB).
    pub stream: Option<mpsc::Sender<Bytes>>,
}

/// What the runtime answered for one invocation.
#[derive(Debug)]
pub(crate) enum RuntimeReply {
    /// `/response` with this body.
    Response { body: Bytes, delivered_at: Instant },
    /// `/response` was over its limit (6 MB, or 200 MB for a streamed one).
    ResponseTooLarge { limit: u64, delivered_at: Instant },
    /// `/error` with this body and `Lambda-Runtime-Function-Error-Type`.
    Error {
        body: Bytes,
        error_type: Option<String>,
        delivered_at: Instant,
    },
}

/// Init's result, reported by the first `/next` or by `/init/error`.
#[derive(Debug)]
pub(crate) enum InitSignal {
    /// The runtime asked for its first event: Init is done.
    Ready,
    /// The runtime reported an Init failure.
    Failed {
        body: Bytes,
        error_type: Option<String>,
    },
}

struct Active {
    request_id: String,
    reply: Option<oneshot::Sender<RuntimeReply>>,
    delivered_at: Instant,
    stream: Option<mpsc::Sender<Bytes>>,
    /// A streamed response is being read: no other answer is accepted meanwhile.
    streaming: bool,
}

struct State {
    init: Option<oneshot::Sender<InitSignal>>,
    active: Option<Active>,
}

/// One environment's Runtime API state machine.
pub(crate) struct RuntimeApi {
    state: Mutex<State>,
    /// Events waiting for `/next`; a tokio mutex because `/next` holds it while it long-polls.
    events: tokio::sync::Mutex<mpsc::Receiver<Dispatch>>,
    /// Where calls to the Nimbus API (`AWS_ENDPOINT_URL`) are relayed, if anywhere.
    proxy: Option<Arc<crate::aws_proxy::AwsProxy>>,
    stream_limits: StreamLimits,
}

impl RuntimeApi {
    /// A new API; returns the sender for events and the Init signal receiver.
    pub(crate) fn new(
        proxy: Option<Arc<crate::aws_proxy::AwsProxy>>,
        stream_limits: StreamLimits,
    ) -> (
        Arc<Self>,
        mpsc::Sender<Dispatch>,
        oneshot::Receiver<InitSignal>,
    ) {
        let (tx, rx) = mpsc::channel(1);
        let (init_tx, init_rx) = oneshot::channel();
        let api = Arc::new(RuntimeApi {
            state: Mutex::new(State {
                init: Some(init_tx),
                active: None,
            }),
            events: tokio::sync::Mutex::new(rx),
            proxy,
            stream_limits,
        });
        (api, tx, init_rx)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Some(proxy) = &self.proxy {
            if !is_platform_path(req.uri().path()) {
                return proxy.forward(req).await;
            }
        }
        let Some(route) = Route::parse(req.method(), req.uri().path()) else {
            return ApiError::NotFound.into_response();
        };
        let error_type = req
            .headers()
            .get("Lambda-Runtime-Function-Error-Type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let streaming = req
            .headers()
            .get("Lambda-Runtime-Function-Response-Mode")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"streaming"));
        if streaming {
            if let Route::Response(id) = &route {
                return match self.stream_sink(id) {
                    Ok(Some(sink)) => self.stream_response(id, req.into_body(), sink).await,
                    Ok(None) => self.collect_streamed(id, req.into_body()).await,
                    Err(e) => e.into_response(),
                };
            }
        }
        let limit = match route {
            Route::Response(_) => MAX_RESPONSE_BYTES,
            _ => MAX_ERROR_BYTES,
        };
        let body = match route {
            Route::Next => Bytes::new(),
            _ => match Limited::new(req.into_body(), limit).collect().await {
                Ok(b) => b.to_bytes(),
                Err(_) => {
                    if let Route::Response(id) = &route {
                        let _ = self.response_too_large(id);
                    }
                    return ApiError::PayloadTooLarge.into_response();
                }
            },
        };
        match route {
            Route::Next => self.next().await,
            Route::Response(id) => self
                .reply(&id, |at| RuntimeReply::Response {
                    body,
                    delivered_at: at,
                })
                .map(|()| accepted())
                .unwrap_or_else(ApiError::into_response),
            Route::Error(id) => self
                .reply(&id, |at| RuntimeReply::Error {
                    body,
                    error_type,
                    delivered_at: at,
                })
                .map(|()| accepted())
                .unwrap_or_else(ApiError::into_response),
            Route::InitError => match self.state().init.take() {
                Some(tx) => {
                    let _ = tx.send(InitSignal::Failed { body, error_type });
                    accepted()
                }
                None => ApiError::InvalidStateTransition.into_response(),
            },
        }
    }

    fn response_too_large(&self, id: &str) -> Result<(), ApiError> {
        self.reply(id, |at| RuntimeReply::ResponseTooLarge {
            limit: MAX_RESPONSE_BYTES as u64,
            delivered_at: at,
        })
    }

    /// The end of a streamed response to `id`: the error in its trailers, if any, else
    /// `body` (what was collected; empty when it was passed on as it came).
    fn finish_streamed(
        &self,
        id: &str,
        trailers: Option<&hyper::HeaderMap>,
        body: Bytes,
    ) -> Response<Full<Bytes>> {
        let reply = match trailers.and_then(stream_error) {
            Some((kind, body)) => self.reply(id, |at| RuntimeReply::Error {
                body,
                error_type: Some(kind),
                delivered_at: at,
            }),
            None => self.reply(id, |at| RuntimeReply::Response {
                body,
                delivered_at: at,
            }),
        };
        reply
            .map(|()| accepted())
            .unwrap_or_else(ApiError::into_response)
    }

    /// The caller's sink for a streamed response to `id`, if it wants the bytes as they
    /// come; marks the response as being streamed.
    fn stream_sink(&self, id: &str) -> Result<Option<mpsc::Sender<Bytes>>, ApiError> {
        let mut st = self.state();
        let active = st.active.as_mut().ok_or(ApiError::InvalidRequestId)?;
        if active.request_id != id {
            return Err(ApiError::InvalidRequestId);
        }
        if active.reply.is_none() || active.streaming {
            return Err(ApiError::InvalidStateTransition);
        }
        active.streaming = true;
        Ok(active.stream.clone())
    }

    /// A streamed response for a caller that wants it in one piece: collected (≤ 6 MB);
    /// an error raised mid-stream is in the trailers.
    async fn collect_streamed(&self, id: &str, body: Incoming) -> Response<Full<Bytes>> {
        match Limited::new(body, MAX_RESPONSE_BYTES).collect().await {
            Ok(b) => {
                let trailers = b.trailers().cloned();
                self.finish_streamed(id, trailers.as_ref(), b.to_bytes())
            }
            Err(_) => {
                let _ = self.response_too_large(id);
                ApiError::PayloadTooLarge.into_response()
            }
        }
    }

    /// Passes a streamed response on as the function writes it, paced by Lambda's
    /// bandwidth cap and bounded by its size limit. Each piece waits for room in the
    /// caller's sink, so a slow reader slows the function's writes instead of filling
    /// memory. A caller that went away stops receiving; the function still runs to its
    /// end, as on Lambda. The invocation ends when the body does (or with the error in
    /// its trailers); a runtime that dies mid-stream is reported by the environment.
    async fn stream_response(
        &self,
        id: &str,
        mut body: Incoming,
        sink: mpsc::Sender<Bytes>,
    ) -> Response<Full<Bytes>> {
        let mut pacer = StreamPacer::new(self.stream_limits);
        let mut reading = true;
        let mut trailers = None;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                // The runtime's connection broke: its exit (or the deadline) ends the
                // invocation.
                return ApiError::InvalidStateTransition.into_response();
            };
            let mut data = match frame.into_data() {
                Ok(data) => data,
                Err(frame) => {
                    trailers = frame.into_trailers().ok();
                    continue;
                }
            };
            match pacer.admit(data.len(), tokio::time::Instant::now()) {
                Ok(None) => {}
                Ok(Some(due)) => tokio::time::sleep_until(due).await,
                Err(too_large) => {
                    let _ = self.reply(id, |at| RuntimeReply::ResponseTooLarge {
                        limit: too_large.max,
                        delivered_at: at,
                    });
                    return ApiError::StreamTooLarge(too_large.max).into_response();
                }
            }
            while reading && !data.is_empty() {
                let piece = data.split_to(data.len().min(MAX_CHUNK_BYTES));
                reading = sink.send(piece).await.is_ok();
            }
        }
        drop(sink);
        self.finish_streamed(id, trailers.as_ref(), Bytes::new())
    }

    /// Sends the runtime's answer for `id`, if `id` is the active invocation.
    fn reply(&self, id: &str, make: impl FnOnce(Instant) -> RuntimeReply) -> Result<(), ApiError> {
        let mut st = self.state();
        let active = st.active.as_mut().ok_or(ApiError::InvalidRequestId)?;
        if active.request_id != id {
            return Err(ApiError::InvalidRequestId);
        }
        let reply = active
            .reply
            .take()
            .ok_or(ApiError::InvalidStateTransition)?;
        active.stream = None;
        let _ = reply.send(make(active.delivered_at));
        Ok(())
    }

    async fn next(&self) -> Response<Full<Bytes>> {
        {
            let mut st = self.state();
            if let Some(tx) = st.init.take() {
                let _ = tx.send(InitSignal::Ready);
            }
            if st.active.as_ref().is_some_and(|a| a.reply.is_some()) {
                // The runtime asks for more work without answering the last.
                return ApiError::InvalidStateTransition.into_response();
            }
        }
        let mut events = self.events.lock().await;
        let Some(d) = events.recv().await else {
            return ApiError::ShuttingDown.into_response();
        };
        let deadline_ms = d
            .deadline
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        self.state().active = Some(Active {
            request_id: d.request_id.clone(),
            reply: Some(d.reply),
            delivered_at: Instant::now(),
            stream: d.stream,
            streaming: false,
        });
        let mut resp = Response::new(Full::new(d.payload));
        let h = resp.headers_mut();
        let mut set = |name: &'static str, value: &str| {
            if let Ok(v) = hyper::header::HeaderValue::from_str(value) {
                h.insert(name, v);
            }
        };
        set("content-type", "application/json");
        set("Lambda-Runtime-Aws-Request-Id", &d.request_id);
        set("Lambda-Runtime-Deadline-Ms", &deadline_ms.to_string());
        set("Lambda-Runtime-Invoked-Function-Arn", &d.function_arn);
        set("Lambda-Runtime-Trace-Id", &d.trace_id);
        if let Some(cc) = &d.client_context {
            set("Lambda-Runtime-Client-Context", cc);
        }
        if let Some(ci) = &d.cognito_identity {
            set("Lambda-Runtime-Cognito-Identity", ci);
        }
        resp
    }

    /// Serves HTTP/1.1 on `listener` until the returned task is aborted.
    pub(crate) fn serve(
        self: Arc<Self>,
        listener: std::net::TcpListener,
    ) -> std::io::Result<tokio::task::JoinHandle<()>> {
        listener.set_nonblocking(true)?;
        let listener = tokio::net::TcpListener::from_std(listener)?;
        Ok(tokio::spawn(async move {
            // Dropping the set (when this task is aborted) aborts every connection.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let api = self.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let api = api.clone();
                        async move { Ok::<_, Infallible>(api.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_parse() {
        let p = |m: Method, path: &str| Route::parse(&m, path);
        assert_eq!(
            p(Method::GET, "/2018-06-01/runtime/invocation/next"),
            Some(Route::Next)
        );
        assert_eq!(
            p(Method::POST, "/2018-06-01/runtime/invocation/abc/response"),
            Some(Route::Response("abc".into()))
        );
        assert_eq!(
            p(Method::POST, "/2018-06-01/runtime/invocation/abc/error"),
            Some(Route::Error("abc".into()))
        );
        assert_eq!(
            p(Method::POST, "/2018-06-01/runtime/init/error"),
            Some(Route::InitError)
        );
        assert_eq!(p(Method::POST, "/2018-06-01/runtime/invocation/next"), None);
        assert_eq!(
            p(Method::GET, "/2018-06-01/runtime/invocation//response"),
            None
        );
        assert_eq!(p(Method::GET, "/2020-01-01/extension/register"), None);
        assert!(is_platform_path("/2020-01-01/extension/register"));
        assert!(is_platform_path("/2018-06-01/runtime/invocation/next"));
        assert!(!is_platform_path("/2015-03-31/functions/f/invocations"));
        assert!(!is_platform_path("/"));
    }

    #[test]
    fn error_statuses_match_lambda() {
        assert_eq!(ApiError::PayloadTooLarge.into_response().status(), 413);
        assert_eq!(
            ApiError::InvalidStateTransition.into_response().status(),
            403
        );
        assert_eq!(ApiError::InvalidRequestId.into_response().status(), 400);
        assert_eq!(ApiError::NotFound.into_response().status(), 404);
    }
}
