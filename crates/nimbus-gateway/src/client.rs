//! [`LambdaConnection`]: a small Lambda API client for Nimbus's own tools, tests and
//! benchmarks: one keep-alive HTTP/1.1 connection to a gateway, every request signed
//! with Signature V4 (as the AWS SDKs sign).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::http::sigv4;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum LambdaClientError {
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP exchange with {addr}: {source}")]
    Http { addr: String, source: hyper::Error },
    #[error("bad request: {0}")]
    Request(String),
    #[error("{addr} did not answer in time")]
    Timeout { addr: String },
}

/// Credentials and region for signing.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

/// A gateway's answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
    /// From sending the request to the first byte of the body (to its end when empty):
    /// a streamed response's time to first byte.
    pub first_byte: Duration,
}

impl Reply {
    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One connection to one gateway.
pub struct LambdaConnection {
    /// `host:port`, for the `Host` header and errors.
    addr: String,
    credentials: Credentials,
    sender: SendRequest<Full<Bytes>>,
    /// Drives the connection; aborted when this value drops.
    driver: tokio::task::JoinHandle<()>,
}

impl LambdaConnection {
    /// Opens a TCP connection (Nagle off) to `addr` (`host:port`).
    pub async fn connect(addr: &str, credentials: Credentials) -> Result<Self, LambdaClientError> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|source| LambdaClientError::Connect {
                addr: addr.into(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| LambdaClientError::Http {
                addr: addr.into(),
                source,
            })?;
        let driver = tokio::spawn(async move {
            // Ends with an error when the gateway goes away; the next request reports it.
            let _ = conn.await;
        });
        Ok(Self {
            addr: addr.to_string(),
            credentials,
            sender,
            driver,
        })
    }

    /// Sends a signed request. `path` is already percent-encoded; `query` has no `?`.
    pub async fn send(
        &mut self,
        method: &str,
        path: &str,
        query: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, LambdaClientError> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let c = &self.credentials;
        let (amz_date, authorization) = sigv4::sign(
            method,
            path,
            query,
            &self.addr,
            &body,
            (&c.access_key_id, &c.secret_access_key),
            &c.region,
            now,
        );
        let uri = if query.is_empty() {
            path.to_string()
        } else {
            format!("{path}?{query}")
        };
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::HOST, &self.addr)
            .header("x-amz-date", amz_date)
            .header(hyper::header::AUTHORIZATION, authorization)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| LambdaClientError::Request(e.to_string()))?;
        self.exchange(req).await
    }

    /// Sends an unsigned request with `host` as its `Host` (a function URL's host name,
    /// served by the same gateway).
    pub async fn send_unsigned(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        body: Bytes,
    ) -> Result<Reply, LambdaClientError> {
        self.send_unsigned_with(method, host, path, &[], body).await
    }

    /// [`Self::send_unsigned`] with extra headers (`traceparent`, say).
    pub async fn send_unsigned_with(
        &mut self,
        method: &str,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Reply, LambdaClientError> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, host);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| LambdaClientError::Request(e.to_string()))?;
        self.exchange(req).await
    }

    async fn exchange(
        &mut self,
        req: hyper::Request<Full<Bytes>>,
    ) -> Result<Reply, LambdaClientError> {
        let addr = self.addr.clone();
        let http = |source| LambdaClientError::Http {
            addr: addr.clone(),
            source,
        };
        let exchange = async {
            self.sender.ready().await.map_err(http)?;
            let sent = std::time::Instant::now();
            let resp = self.sender.send_request(req).await.map_err(http)?;
            let status = resp.status().as_u16();
            let (parts, mut body) = resp.into_parts();
            let mut data = Vec::new();
            let mut first_byte = None;
            while let Some(frame) = body.frame().await {
                if let Ok(chunk) = frame.map_err(http)?.into_data() {
                    if !chunk.is_empty() {
                        first_byte.get_or_insert_with(|| sent.elapsed());
                    }
                    data.extend_from_slice(&chunk);
                }
            }
            Ok(Reply {
                status,
                headers: parts.headers,
                body: data.into(),
                first_byte: first_byte.unwrap_or_else(|| sent.elapsed()),
            })
        };
        tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| LambdaClientError::Timeout {
                addr: self.addr.clone(),
            })?
    }

    /// `Invoke` (RequestResponse) with extra headers such as `traceparent`.
    pub async fn invoke(
        &mut self,
        function: &str,
        payload: &[u8],
        headers: &[(&str, &str)],
    ) -> Result<Reply, LambdaClientError> {
        let path = format!("/2015-03-31/functions/{function}/invocations");
        self.send("POST", &path, "", headers, Bytes::copy_from_slice(payload))
            .await
    }

    /// `CreateFunction` with a request body as the API takes it.
    pub async fn create_function(
        &mut self,
        request: &serde_json::Value,
    ) -> Result<Reply, LambdaClientError> {
        self.send(
            "POST",
            "/2015-03-31/functions",
            "",
            &[],
            Bytes::from(request.to_string()),
        )
        .await
    }
}

impl Drop for LambdaConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
