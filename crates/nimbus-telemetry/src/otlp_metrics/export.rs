//! The export task: every interval (and once more at shutdown) a snapshot of the
//! registry goes to the collector over gRPC or HTTP/protobuf, each bounded by the
//! configured timeout. A failure is counted and logged once per outage; it never
//! reaches an invocation.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use super::config::{ExportConfig, Protocol};
use super::convert::{snapshot, unix_nanos};
use crate::registry::MetricsRegistry;

/// Counters of the export itself (in the same registry, so visible on `/metrics`).
#[derive(Clone, Debug, Default)]
pub struct ExportCounters {
    pub exports: Counter,
    pub failures: Counter,
}

/// Stops the export task after a last export.
#[derive(Debug)]
pub struct ExportHandle {
    stop: mpsc::Sender<oneshot::Sender<()>>,
}

impl ExportHandle {
    /// Exports once more (so the last values reach the collector) and stops; gives up
    /// after `timeout`.
    pub async fn shutdown(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.stop.send(tx).await.is_err() {
            return false;
        }
        matches!(tokio::time::timeout(timeout, rx).await, Ok(Ok(())))
    }
}

/// Starts pushing `registry` on the current tokio runtime.
pub fn start(
    registry: MetricsRegistry,
    config: ExportConfig,
    resource: Vec<KeyValue>,
    counters: ExportCounters,
) -> ExportHandle {
    let (stop, mut stopped) = mpsc::channel::<oneshot::Sender<()>>(1);
    let start_time = unix_nanos(SystemTime::now());
    tokio::spawn(async move {
        let mut exporter = Exporter::new(&config);
        let mut tick = tokio::time::interval(config.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; nothing has happened yet
        let mut failing = false;
        loop {
            let done = tokio::select! {
                _ = tick.tick() => None,
                done = stopped.recv() => Some(done),
            };
            let request = snapshot(&registry, &resource, start_time);
            let failure = match tokio::time::timeout(config.timeout, exporter.export(request)).await
            {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some("timed out".to_string()),
            };
            match failure {
                None => {
                    counters.exports.inc();
                    if failing {
                        tracing::info!("OTLP metrics export works again");
                    }
                    failing = false;
                }
                Some(e) => {
                    counters.failures.inc();
                    // Once per outage, not once per interval.
                    if !failing {
                        tracing::warn!(endpoint = %config.endpoint, "OTLP metrics export failed: {e}");
                    }
                    failing = true;
                }
            }
            if let Some(done) = done {
                if let Some(done) = done {
                    let _ = done.send(());
                }
                return;
            }
        }
    });
    ExportHandle { stop }
}

#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("connecting: {0}")]
    Connect(String),
    #[error("collector answered {0}")]
    Status(String),
}

/// The transport, kept between exports (gRPC keeps its channel; HTTP connects per
/// export, once a minute by default).
enum Exporter {
    Grpc {
        endpoint: String,
        headers: Vec<(String, String)>,
        client: Option<MetricsServiceClient<tonic::transport::Channel>>,
    },
    Http {
        uri: hyper::Uri,
        headers: Vec<(String, String)>,
    },
}

impl Exporter {
    fn new(c: &ExportConfig) -> Self {
        match c.protocol {
            Protocol::Grpc => Exporter::Grpc {
                endpoint: c.endpoint.clone(),
                headers: c.headers.clone(),
                client: None,
            },
            Protocol::HttpProtobuf => Exporter::Http {
                // Checked by `config_from_env` to be an http:// URL; a bad one fails
                // each export (and is counted) rather than the process.
                uri: c
                    .endpoint
                    .parse()
                    .unwrap_or_else(|_| hyper::Uri::from_static("http://invalid./")),
                headers: c.headers.clone(),
            },
        }
    }

    async fn export(&mut self, request: ExportMetricsServiceRequest) -> Result<(), ExportError> {
        match self {
            Exporter::Grpc {
                endpoint,
                headers,
                client,
            } => {
                if client.is_none() {
                    let channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                        .map_err(|e| ExportError::Connect(e.to_string()))?
                        .connect()
                        .await
                        .map_err(|e| ExportError::Connect(e.to_string()))?;
                    *client = Some(MetricsServiceClient::new(channel));
                }
                let mut req = tonic::Request::new(request);
                for (k, v) in headers.iter() {
                    if let (Ok(k), Ok(v)) = (
                        tonic::metadata::MetadataKey::from_bytes(k.as_bytes()),
                        v.parse(),
                    ) {
                        req.metadata_mut().insert(k, v);
                    }
                }
                let c = client.as_mut().expect("connected above");
                match c.export(req).await {
                    Ok(_) => Ok(()),
                    Err(status) => {
                        if status.code() == tonic::Code::Unavailable {
                            *client = None; // reconnect next time
                        }
                        Err(ExportError::Status(status.to_string()))
                    }
                }
            }
            Exporter::Http { uri, headers } => http_post(uri, headers, request).await,
        }
    }
}

async fn http_post(
    uri: &hyper::Uri,
    headers: &[(String, String)],
    request: ExportMetricsServiceRequest,
) -> Result<(), ExportError> {
    let host = uri.host().unwrap_or("localhost");
    let port = uri.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((host, port))
        .await
        .map_err(|e| ExportError::Connect(e.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ExportError::Connect(e.to_string()))?;
    tokio::spawn(conn);
    let authority = uri.authority().map(|a| a.as_str()).unwrap_or(host);
    let mut req = hyper::Request::post(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONTENT_TYPE, "application/x-protobuf");
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let req = req
        .body(Full::new(Bytes::from(request.encode_to_vec())))
        .map_err(|e| ExportError::Connect(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ExportError::Connect(e.to_string()))?;
    let status = resp.status();
    let body = resp
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !status.is_success() {
        return Err(ExportError::Status(status.to_string()));
    }
    // A partial success still means the collector got the request; what it rejected is
    // its own business (and in its logs).
    let _ = ExportMetricsServiceResponse::decode(body);
    Ok(())
}
