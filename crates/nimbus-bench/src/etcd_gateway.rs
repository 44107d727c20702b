//! A minimal client for etcd's v3 JSON gateway: one keep-alive HTTP/1.1 connection.
//!
//! etcd's own clients speak gRPC; the gateway adds JSON and base64 work on both sides and
//! HTTP/1.1 framing. The benchmark accepts that cost so that both systems are driven by
//! code in this crate, on the same runtime, with the same timing.

use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One connection to one etcd member's client URL.
pub struct GatewayConnection {
    /// `host:port`, for the `Host` header and errors.
    addr: String,
    sender: SendRequest<Full<Bytes>>,
    /// Drives the connection; aborted when this value drops.
    driver: tokio::task::JoinHandle<()>,
}

impl GatewayConnection {
    /// Opens a TCP connection (Nagle off) and completes the HTTP/1.1 handshake.
    pub async fn connect(addr: &str) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to etcd at {addr}"))?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .with_context(|| format!("HTTP handshake with etcd at {addr}"))?;
        let driver = tokio::spawn(async move {
            // The connection ends with an error when etcd goes away; the next request
            // reports that.
            let _ = conn.await;
        });
        Ok(Self {
            addr: addr.to_string(),
            sender,
            driver,
        })
    }

    /// `PUT key value`, waiting for etcd's acknowledgement (committed by a quorum).
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> anyhow::Result<()> {
        let body = serde_json::json!({
            "key": BASE64.encode(key),
            "value": BASE64.encode(value),
        })
        .to_string();
        let v = self.post_json("/v3/kv/put", &body).await?;
        anyhow::ensure!(
            v.get("header").is_some(),
            "etcd at {} answered a put without a header: {v}",
            self.addr
        );
        Ok(())
    }

    /// POSTs a JSON body and parses the JSON answer; a non-200 status is an error.
    pub async fn post_json(&mut self, path: &str, body: &str) -> anyhow::Result<serde_json::Value> {
        let req = hyper::Request::post(path)
            .header(hyper::header::HOST, &self.addr)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))?;
        let exchange = async {
            self.sender.ready().await?;
            let resp = self.sender.send_request(req).await?;
            let status = resp.status();
            let bytes = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| format!("etcd at {} did not answer {path} in time", self.addr))?
            .with_context(|| format!("POST {path} to etcd at {}", self.addr))?;
        anyhow::ensure!(
            status == hyper::StatusCode::OK,
            "etcd at {} answered {path} with {status}: {}",
            self.addr,
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes)
            .with_context(|| format!("etcd at {} answered {path} with bad JSON", self.addr))
    }
}

impl Drop for GatewayConnection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}
