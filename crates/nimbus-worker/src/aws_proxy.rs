//! The way out of an environment to the Nimbus API: functions call Lambda, Logs, IAM
//! and STS with the SDKs as on AWS, at `AWS_ENDPOINT_URL`, which points at the
//! environment's own Runtime API address (`127.0.0.1:9001` inside its network
//! namespace). Requests that are not Runtime API calls are forwarded, unchanged, to the
//! gateway endpoint the worker was given (`--aws-endpoint`).
//!
//! Why a relay rather than a route: functions cannot reach any private or loopback
//! address, so the gateway is unreachable from inside by design; the relay opens exactly
//! one destination. It adds no authority: every request is still signed by the
//! function with its execution role's session credentials and authorized by the
//! gateway, so a function can do only what its role allows. The `Host` header travels
//! unchanged, since it is part of what the SDK signed.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

/// Largest request or response relayed (a synchronous invocation's 6 MB payload, or a
/// deployment package, with room to spare).
const MAX_BODY_BYTES: usize = 16 << 20;
/// A call through the relay may take as long as a synchronous invocation can.
const CALL_TIMEOUT: Duration = Duration::from_secs(900);

/// Where the relay forwards to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsProxy {
    /// `host:port` of a gateway's plain-HTTP API listener.
    authority: String,
}

/// An endpoint the relay cannot use.
#[derive(Debug, thiserror::Error)]
#[error("--aws-endpoint {0:?} must be http://HOST:PORT (a gateway's API address)")]
pub struct BadEndpoint(String);

impl AwsProxy {
    /// `endpoint` is `http://HOST:PORT`.
    pub fn new(endpoint: &str) -> Result<Self, BadEndpoint> {
        let authority = endpoint
            .strip_prefix("http://")
            .map(|a| a.trim_end_matches('/'))
            .filter(|a| !a.is_empty() && !a.contains('/'))
            .ok_or_else(|| BadEndpoint(endpoint.into()))?;
        Ok(Self {
            authority: authority.into(),
        })
    }

    /// Forwards one request and returns the gateway's answer (or a 502 in the format of
    /// the Lambda API when the gateway cannot be reached).
    pub(crate) async fn forward(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match tokio::time::timeout(CALL_TIMEOUT, self.try_forward(req)).await {
            Ok(Ok(resp)) => resp,
            Ok(Err(e)) => bad_gateway(&e),
            Err(_) => bad_gateway("the call timed out"),
        }
    }

    async fn try_forward(&self, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, String> {
        let (parts, body) = req.into_parts();
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|_| {
                format!("request bodies through the relay are limited to {MAX_BODY_BYTES} bytes")
            })?
            .to_bytes();
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("cannot reach the Nimbus API: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        let conn = tokio::spawn(conn);
        let upstream = Request::from_parts(parts, Full::new(body));
        let resp = sender
            .send_request(upstream)
            .await
            .map_err(|e| e.to_string());
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                conn.abort();
                return Err(e);
            }
        };
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|_| "the response was too large to relay".to_string())?
            .to_bytes();
        conn.abort();
        Ok(Response::from_parts(parts, Full::new(body)))
    }
}

fn bad_gateway(message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "Type": "Service", "message": message }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp.headers_mut().insert(
        "x-amzn-ErrorType",
        hyper::header::HeaderValue::from_static("ServiceException"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_plain_http_host_and_port() {
        assert_eq!(
            AwsProxy::new("http://127.0.0.1:9000/").unwrap().authority,
            "127.0.0.1:9000"
        );
        assert!(AwsProxy::new("https://gw:443").is_err());
        assert!(AwsProxy::new("http://gw:9000/path").is_err());
        assert!(AwsProxy::new("gw:9000").is_err());
    }
}
