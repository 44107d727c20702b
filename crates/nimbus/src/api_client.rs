//! A signed client of one gateway for the CLI (`nimbus logs`, `nimbus edge`): requests
//! signed with Signature V4 with the credentials and region found as the AWS CLI finds
//! them, answers parsed as JSON, AWS error answers as [`AwsError`].

use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use nimbus_gateway::http::sigv4::{self, SigningParams};
use serde_json::Value;

use crate::aws_config::AwsCredentials;

/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer that is an AWS error.
#[derive(Debug, thiserror::Error)]
#[error("{error_type}: {message}")]
pub struct AwsError {
    pub status: u16,
    pub error_type: String,
    pub message: String,
}

/// A signed client of one gateway.
pub struct Gateway {
    endpoint: String,
    /// `host:port`
    authority: String,
    credentials: AwsCredentials,
    region: String,
}

impl Gateway {
    pub fn new(
        endpoint: &str,
        credentials: AwsCredentials,
        region: String,
    ) -> anyhow::Result<Self> {
        if endpoint.starts_with("https://") {
            bail!("--endpoint {endpoint}: https is not supported yet; use the gateway's http:// address");
        }
        let rest = endpoint.strip_prefix("http://").unwrap_or(endpoint);
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            bail!("--endpoint {endpoint:?} has no host");
        }
        let authority = if host.contains(':') {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        Ok(Self {
            endpoint: endpoint.to_owned(),
            authority,
            credentials,
            region,
        })
    }

    /// One signed request; an error answer becomes `Err(AwsError)` inside `Ok`.
    pub async fn send(
        &self,
        service: &str,
        method: &str,
        path: &str,
        target: Option<&str>,
        body: Vec<u8>,
    ) -> anyhow::Result<Result<Value, AwsError>> {
        let c = &self.credentials;
        let params = SigningParams {
            access_key_id: &c.access_key_id,
            secret_access_key: &c.secret_access_key,
            session_token: c.session_token.as_deref(),
            region: &self.region,
            service,
        };
        let extra: Vec<(&str, &str)> = target.map(|t| ("x-amz-target", t)).into_iter().collect();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let signed = sigv4::sign_request(
            method,
            path,
            "",
            &self.authority,
            &extra,
            &body,
            &params,
            now,
        );
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.authority)
            .header("x-amz-date", &signed.amz_date)
            .header(hyper::header::AUTHORIZATION, &signed.authorization)
            .header(hyper::header::CONTENT_TYPE, "application/x-amz-json-1.1");
        if let Some(t) = &signed.security_token {
            req = req.header("x-amz-security-token", t);
        }
        if let Some(t) = target {
            req = req.header("x-amz-target", t);
        }
        let req = req.body(Full::new(Bytes::from(body)))?;
        let unreachable = || format!("cannot reach the gateway at {}", self.endpoint);
        let exchange = async {
            let stream = tokio::net::TcpStream::connect(&self.authority)
                .await
                .with_context(unreachable)?;
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .with_context(unreachable)?;
            tokio::spawn(conn);
            let resp = sender.send_request(req).await.with_context(unreachable)?;
            let status = resp.status().as_u16();
            let header_type = resp
                .headers()
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = resp
                .into_body()
                .collect()
                .await
                .with_context(unreachable)?
                .to_bytes();
            anyhow::Ok((status, header_type, body))
        };
        let (status, header_type, body) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .with_context(|| {
            format!("the gateway at {} did not answer in time", self.endpoint)
        })??;
        let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if status < 300 {
            return Ok(Ok(value));
        }
        let error_type = value["__type"]
            .as_str()
            .map(str::to_owned)
            .or(header_type)
            .unwrap_or_else(|| format!("HTTP {status}"));
        // `aws.protocols#Name` / `Name:detail` → `Name`.
        let error_type = error_type
            .rsplit('#')
            .next()
            .unwrap_or_default()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_owned();
        let message = value["message"]
            .as_str()
            .or(value["Message"].as_str())
            .unwrap_or_default()
            .to_owned();
        Ok(Err(AwsError {
            status,
            error_type,
            message,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let c = AwsCredentials {
            access_key_id: "a".into(),
            secret_access_key: "s".into(),
            session_token: None,
        };
        assert_eq!(
            Gateway::new("http://127.0.0.1:9000", c.clone(), "r".into())
                .unwrap()
                .authority,
            "127.0.0.1:9000"
        );
        assert_eq!(
            Gateway::new("http://gw/", c.clone(), "r".into())
                .unwrap()
                .authority,
            "gw:80"
        );
        assert!(Gateway::new("https://gw", c.clone(), "r".into()).is_err());
        assert!(Gateway::new("http://", c, "r".into()).is_err());
    }
}
