//! A Lambda API client over both gateways that behaves like an AWS SDK in its standard
//! retry mode, and how a sync invocation ended after those retries.

use std::time::Duration;

use bytes::Bytes;
use nimbus_gateway::client::{Credentials, LambdaClientError, LambdaConnection, Reply};

/// How a sync invocation ended, after the retries an AWS SDK makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    Ok,
    /// Still throttled (429) after every retry: the limit held, nothing failed.
    Throttled,
    /// An error the caller sees: a 5xx, a function error, a cut or timed-out exchange.
    Failed(String),
}

/// A Lambda API client over both gateways that behaves like an AWS SDK in its standard
/// retry mode: a request that never reached a gateway (connection refused) and a 429
/// are retried with backoff, on the other gateway for connection failures. Anything else
/// is the caller's answer; in particular a 5xx is a failure here (stricter than the SDKs,
/// which retry those too).
#[derive(Clone)]
pub struct Api {
    pub gateways: Vec<String>,
    pub credentials: Credentials,
}

const ATTEMPTS: u32 = 8;

impl Api {
    /// A new connection; a gateway that does not accept within a second is treated as
    /// unreachable (a dead container's address answers nothing, not even a refusal).
    async fn connect(&self, addr: &str) -> Result<LambdaConnection, LambdaClientError> {
        match tokio::time::timeout(
            Duration::from_secs(1),
            LambdaConnection::connect(addr, self.credentials.clone()),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(LambdaClientError::Connect {
                addr: addr.into(),
                source: std::io::ErrorKind::TimedOut.into(),
            }),
        }
    }

    /// One request to the first gateway that accepts a connection.
    pub async fn call(&self, method: &str, path: &str, body: String) -> anyhow::Result<Reply> {
        self.send(method, path, "", Bytes::from(body)).await
    }

    /// A GET (no body) to the first gateway that accepts a connection.
    pub async fn get(&self, path: &str, query: &str) -> anyhow::Result<Reply> {
        self.send("GET", path, query, Bytes::new()).await
    }

    /// One request to the first gateway that accepts a connection, trying them in turn
    /// with backoff. Only a connection that was never made is retried: a request that
    /// reached a gateway may have taken effect.
    async fn send(
        &self,
        method: &str,
        path: &str,
        query: &str,
        body: Bytes,
    ) -> anyhow::Result<Reply> {
        let mut last = None;
        for attempt in 0..ATTEMPTS {
            let addr = &self.gateways[attempt as usize % self.gateways.len()];
            match self.connect(addr).await {
                Ok(mut c) => return Ok(c.send(method, path, query, &[], body).await?),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        Err(last.map_or_else(|| anyhow::anyhow!("no gateway"), Into::into))
    }

    pub async fn invoke_sync(&self, client: usize, function: &str, payload: &Bytes) -> SyncOutcome {
        let mut gw = client % self.gateways.len();
        let mut throttled = false;
        for attempt in 0..ATTEMPTS {
            let addr = &self.gateways[gw];
            let reply = match self.connect(addr).await {
                Ok(mut c) => c.invoke(function, payload, &[]).await,
                Err(e) => Err(e),
            };
            match reply {
                Ok(r) if r.status == 200 && r.header("x-amz-function-error").is_none() => {
                    return SyncOutcome::Ok
                }
                Ok(r) if r.status == 429 => throttled = true,
                Ok(r) => {
                    return SyncOutcome::Failed(format!(
                        "{} {} {}",
                        r.status,
                        r.header("x-amz-function-error").unwrap_or(""),
                        String::from_utf8_lossy(&r.body)
                    ))
                }
                // Never reached the gateway: safe to send again, elsewhere.
                Err(LambdaClientError::Connect { .. }) => {
                    gw = (gw + 1) % self.gateways.len();
                    throttled = false;
                }
                Err(e) => return SyncOutcome::Failed(e.to_string()),
            }
            tokio::time::sleep(backoff(attempt)).await;
        }
        if throttled {
            SyncOutcome::Throttled
        } else {
            SyncOutcome::Failed("no gateway reachable".into())
        }
    }

    /// `Event` invocation through one gateway; true when it answered 202 (accepted).
    pub async fn invoke_async(&self, gateway: usize, function: &str, payload: &Bytes) -> bool {
        let addr = &self.gateways[gateway % self.gateways.len()];
        let Ok(mut c) = self.connect(addr).await else {
            return false;
        };
        matches!(
            c.invoke(function, payload, &[("x-amz-invocation-type", "Event")]).await,
            Ok(r) if r.status == 202
        )
    }
}

/// An error naming the call (`what`) unless the reply's status is one of `expected`.
pub(super) fn expect_status(r: &Reply, expected: &[u16], what: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        expected.contains(&r.status),
        "{what}: {} {}",
        r.status,
        String::from_utf8_lossy(&r.body)
    );
    Ok(())
}

/// 50 ms, doubling, capped at 1.6 s (about 6 s over all attempts).
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(50u64 << attempt.min(5))
}
