//! Metrics over OTLP: the values `/metrics` serves, pushed to an OTLP collector (gRPC or
//! HTTP/protobuf) every `OTEL_METRIC_EXPORT_INTERVAL` when the standard variables ask for
//! it (<https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/>).
//!
//! Why a bridge and not the OpenTelemetry SDK's metrics pipeline: Nimbus's metrics live in
//! one `prometheus-client` registry, which Prometheus scrapes. The SDK exports only what
//! was recorded through its own instruments (its hook for outside producers and its data
//! types' constructors are crate-private), and recording every value twice would double
//! the metrics cost on the invocation path. So each export snapshots the registry
//! ([`crate::openmetrics`]) and maps it onto OTLP's data model the way OpenTelemetry's
//! Prometheus compatibility rules do: counter → monotonic cumulative Sum (without the
//! `_total` suffix), gauge → Gauge, histogram → explicit-bucket cumulative Histogram, info
//! → Gauge of 1. Exports run on a tokio task; a collector that is down costs a failed
//! export (counted), never an invocation's time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram, HistogramDataPoint,
    Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prometheus_client::metrics::counter::Counter;
use prost::Message;
use tokio::sync::{mpsc, oneshot};

use crate::openmetrics::{self, Family, Kind, Sample};
use crate::registry::MetricsRegistry;
use crate::setup::TelemetryError;

/// How metrics reach the collector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    HttpProtobuf,
}

/// The export's settings, read from the environment by [`config_from_env`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportConfig {
    pub protocol: Protocol,
    /// For gRPC the collector's base URL; for HTTP the full URL (`…/v1/metrics`).
    pub endpoint: String,
    pub headers: Vec<(String, String)>,
    pub interval: Duration,
    pub timeout: Duration,
}

/// Decides from the environment whether metrics are pushed, and where.
///
/// On when `OTEL_METRICS_EXPORTER` includes `otlp`, or when it is unset and an OTLP
/// endpoint is (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
/// `none` and `prometheus` (always served on `/metrics` anyway) leave it off, as does
/// `OTEL_SDK_DISABLED=true`.
pub fn config_from_env(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<ExportConfig>, TelemetryError> {
    let get = |k: &str| {
        env(k)
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
    };
    if get("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let on = match get("OTEL_METRICS_EXPORTER") {
        Some(list) => {
            let mut on = false;
            for e in list.split(',').map(|e| e.trim().to_ascii_lowercase()) {
                match e.as_str() {
                    "otlp" => on = true,
                    "none" | "prometheus" | "" => {}
                    other => {
                        return Err(TelemetryError::Config(format!(
                            "OTEL_METRICS_EXPORTER={other} is not supported (use otlp, prometheus or none)"
                        )))
                    }
                }
            }
            on
        }
        None => {
            get("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
                || get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT").is_some()
        }
    };
    if !on {
        return Ok(None);
    }
    let protocol = match get("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL")
        .or_else(|| get("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .as_deref()
    {
        None | Some("http/protobuf") => Protocol::HttpProtobuf,
        Some("grpc") => Protocol::Grpc,
        Some(other) => {
            return Err(TelemetryError::Config(format!(
                "OTLP protocol {other} is not supported for metrics (use grpc or http/protobuf)"
            )))
        }
    };
    // The signal-specific endpoint is used as given; the general one is a base URL to
    // which HTTP appends the signal's path.
    let endpoint = match (get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"), protocol) {
        (Some(e), _) => e,
        (None, Protocol::Grpc) => {
            get("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_else(|| "http://localhost:4317".into())
        }
        (None, Protocol::HttpProtobuf) => format!(
            "{}/v1/metrics",
            get("OTEL_EXPORTER_OTLP_ENDPOINT")
                .unwrap_or_else(|| "http://localhost:4318".into())
                .trim_end_matches('/')
        ),
    };
    if !endpoint.starts_with("http://") {
        return Err(TelemetryError::Config(format!(
            "OTLP metrics endpoint {endpoint}: only http:// is supported (this build has no TLS; \
             run a collector next to the node)"
        )));
    }
    let mut headers = parse_headers(get("OTEL_EXPORTER_OTLP_HEADERS").as_deref())?;
    headers.extend(parse_headers(
        get("OTEL_EXPORTER_OTLP_METRICS_HEADERS").as_deref(),
    )?);
    let millis = |k: &str, default: u64| -> Result<Duration, TelemetryError> {
        match get(k) {
            None => Ok(Duration::from_millis(default)),
            Some(v) => match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(Duration::from_millis(n)),
                _ => Err(TelemetryError::Config(format!(
                    "{k}={v} should be a positive number of milliseconds"
                ))),
            },
        }
    };
    let timeout = match get("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT") {
        Some(_) => millis("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", 10_000)?,
        None => millis("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000)?,
    };
    if let Some(t) = get("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE") {
        if !t.eq_ignore_ascii_case("cumulative") {
            return Err(TelemetryError::Config(format!(
                "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE={t}: Nimbus exports cumulative \
                 values only (as Prometheus does)"
            )));
        }
    }
    Ok(Some(ExportConfig {
        protocol,
        endpoint,
        headers,
        interval: millis("OTEL_METRIC_EXPORT_INTERVAL", 60_000)?,
        timeout: timeout.min(millis("OTEL_METRIC_EXPORT_TIMEOUT", 30_000)?),
    }))
}

/// `k1=v1,k2=v2` with percent-encoded values, as the specification writes headers.
fn parse_headers(v: Option<&str>) -> Result<Vec<(String, String)>, TelemetryError> {
    let Some(v) = v else { return Ok(Vec::new()) };
    v.split(',')
        .filter(|p| !p.trim().is_empty())
        .map(|p| {
            let (k, val) = p.split_once('=').ok_or_else(|| {
                // Never echo the value: headers usually carry credentials.
                TelemetryError::Config(
                    "OTEL_EXPORTER_OTLP_HEADERS: expected key=value pairs".into(),
                )
            })?;
            let val = percent_encoding::percent_decode_str(val.trim())
                .decode_utf8()
                .map_err(|_| {
                    TelemetryError::Config(
                        "OTEL_EXPORTER_OTLP_HEADERS: a value is not UTF-8".into(),
                    )
                })?;
            Ok((k.trim().to_ascii_lowercase(), val.into_owned()))
        })
        .collect()
}

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

/// A resource's attributes in OTLP's form.
pub fn resource_attributes(resource: &opentelemetry_sdk::Resource) -> Vec<KeyValue> {
    use opentelemetry::Value;
    resource
        .iter()
        .map(|(k, v)| {
            let value = match v {
                Value::Bool(b) => any_value::Value::BoolValue(*b),
                Value::I64(i) => any_value::Value::IntValue(*i),
                Value::F64(f) => any_value::Value::DoubleValue(*f),
                other => any_value::Value::StringValue(other.to_string()),
            };
            KeyValue {
                key: k.to_string(),
                value: Some(AnyValue { value: Some(value) }),
                ..Default::default()
            }
        })
        .collect()
}

fn unix_nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// One export request holding every family in the registry now.
fn snapshot(
    registry: &MetricsRegistry,
    resource: &[KeyValue],
    start_time: u64,
) -> ExportMetricsServiceRequest {
    let families = match openmetrics::parse(&registry.encode()) {
        Ok(f) => f,
        Err(e) => {
            // Only a bug can get here (the text is our own); export nothing rather than
            // something wrong.
            tracing::error!("cannot read the metrics registry back: {e}");
            Vec::new()
        }
    };
    to_request(
        &families,
        resource,
        start_time,
        unix_nanos(SystemTime::now()),
    )
}

/// Maps families onto one OTLP request (see the module documentation).
pub fn to_request(
    families: &[Family],
    resource: &[KeyValue],
    start_time: u64,
    now: u64,
) -> ExportMetricsServiceRequest {
    let metrics = families
        .iter()
        .filter_map(|f| to_metric(f, start_time, now))
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource.to_vec(),
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: "nimbus".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn to_metric(f: &Family, start_time: u64, now: u64) -> Option<Metric> {
    let point = |s: &Sample| NumberDataPoint {
        attributes: attributes(&s.labels, None),
        start_time_unix_nano: start_time,
        time_unix_nano: now,
        value: Some(match s.int {
            Some(i) => number_data_point::Value::AsInt(i),
            None => number_data_point::Value::AsDouble(s.value),
        }),
        ..Default::default()
    };
    let points = |suffix: &str| -> Vec<NumberDataPoint> {
        f.samples
            .iter()
            .filter(|s| s.suffix == suffix)
            .map(point)
            .collect()
    };
    let data = match f.kind {
        Kind::Counter => metric::Data::Sum(Sum {
            data_points: points("_total"),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        Kind::Gauge => metric::Data::Gauge(Gauge {
            data_points: points(""),
        }),
        Kind::Info => metric::Data::Gauge(Gauge {
            data_points: points("_info"),
        }),
        Kind::Histogram => metric::Data::Histogram(Histogram {
            data_points: histogram_points(f, start_time, now),
            aggregation_temporality: AggregationTemporality::Cumulative as i32,
        }),
        Kind::Other => return None,
    };
    Some(Metric {
        name: f.name.clone(),
        description: f.help.trim_end_matches('.').to_string(),
        unit: unit(f),
        data: Some(data),
        ..Default::default()
    })
}

/// OTLP wants UCUM units; Prometheus puts the unit at the end of the name.
fn unit(f: &Family) -> String {
    let u = if f.unit.is_empty() {
        f.name.rsplit('_').next().unwrap_or("")
    } else {
        f.unit.as_str()
    };
    match u {
        "seconds" => "s",
        "bytes" => "By",
        "milliseconds" => "ms",
        _ => "",
    }
    .to_string()
}

/// Labels as attributes, leaving out `skip` (a histogram's `le`).
fn attributes(labels: &[(String, String)], skip: Option<&str>) -> Vec<KeyValue> {
    labels
        .iter()
        .filter(|(k, _)| Some(k.as_str()) != skip)
        .map(|(k, v)| KeyValue {
            key: k.clone(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue(v.clone())),
            }),
            ..Default::default()
        })
        .collect()
}

/// Prometheus histograms are series of cumulative `_bucket{le}` counts plus `_sum` and
/// `_count` per label set; OTLP wants one point per label set with per-bucket counts.
fn histogram_points(f: &Family, start_time: u64, now: u64) -> Vec<HistogramDataPoint> {
    let key = |s: &Sample| -> Vec<(String, String)> {
        s.labels
            .iter()
            .filter(|(k, _)| k != "le")
            .cloned()
            .collect()
    };
    let mut sets: Vec<Vec<(String, String)>> = Vec::new();
    for s in &f.samples {
        let k = key(s);
        if !sets.contains(&k) {
            sets.push(k);
        }
    }
    sets.into_iter()
        .map(|labels| {
            let mine: Vec<&Sample> = f.samples.iter().filter(|s| key(s) == labels).collect();
            let mut buckets: Vec<(f64, f64)> = mine
                .iter()
                .filter(|s| s.suffix == "_bucket")
                .filter_map(|s| {
                    let le = s.labels.iter().find(|(k, _)| k == "le")?.1.as_str();
                    let bound = match le {
                        "+Inf" => f64::INFINITY,
                        v => v.parse().ok()?,
                    };
                    Some((bound, s.value))
                })
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut bucket_counts = Vec::with_capacity(buckets.len());
            let mut below = 0.0;
            for (_, cumulative) in &buckets {
                bucket_counts.push((cumulative - below).max(0.0) as u64);
                below = *cumulative;
            }
            let find = |suffix: &str| mine.iter().find(|s| s.suffix == suffix).map(|s| s.value);
            HistogramDataPoint {
                attributes: attributes(&labels, Some("le")),
                start_time_unix_nano: start_time,
                time_unix_nano: now,
                count: find("_count").unwrap_or(below) as u64,
                sum: find("_sum"),
                explicit_bounds: buckets
                    .iter()
                    .map(|(b, _)| *b)
                    .filter(|b| b.is_finite())
                    .collect(),
                bucket_counts,
                ..Default::default()
            }
        })
        .collect()
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

#[cfg(test)]
mod tests {
    use prometheus_client::encoding::EncodeLabelSet;
    use prometheus_client::metrics::family::Family as PcFamily;
    use prometheus_client::metrics::gauge::Gauge as PcGauge;
    use prometheus_client::metrics::histogram::Histogram as PcHistogram;

    use super::*;
    use crate::test_env::env;

    #[test]
    fn off_unless_configured() {
        assert_eq!(config_from_env(&env(&[])).unwrap(), None);
        assert_eq!(
            config_from_env(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_METRICS_EXPORTER", "none")
            ]))
            .unwrap(),
            None
        );
        assert_eq!(
            config_from_env(&env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "true")
            ]))
            .unwrap(),
            None
        );
        assert_eq!(
            config_from_env(&env(&[("OTEL_METRICS_EXPORTER", "prometheus")])).unwrap(),
            None
        );
    }

    #[test]
    fn endpoints_protocols_and_limits() {
        let c = config_from_env(&env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318/")]))
            .unwrap()
            .unwrap();
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        assert_eq!(c.endpoint, "http://c:4318/v1/metrics");
        assert_eq!(c.interval, Duration::from_secs(60));

        let c = config_from_env(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "500"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20s3cret,x-a=b",
            ),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.protocol, Protocol::Grpc);
        assert_eq!(c.endpoint, "http://c:4317");
        assert_eq!(c.interval, Duration::from_millis(500));
        assert_eq!(
            c.headers,
            vec![
                ("authorization".into(), "Bearer s3cret".into()),
                ("x-a".into(), "b".into())
            ]
        );

        let c = config_from_env(&env(&[
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", "http://m:9/custom"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(c.endpoint, "http://m:9/custom", "used as given");
    }

    #[test]
    fn bad_settings_are_errors_that_name_the_variable() {
        for (pairs, needle) in [
            (vec![("OTEL_METRICS_EXPORTER", "statsd")], "statsd"),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
                ],
                "http/json",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_METRIC_EXPORT_INTERVAL", "soon"),
                ],
                "OTEL_METRIC_EXPORT_INTERVAL",
            ),
            (
                vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "https://c:4318")],
                "only http://",
            ),
            (
                vec![
                    ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                    ("OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE", "delta"),
                ],
                "cumulative",
            ),
        ] {
            let e = config_from_env(&env(&pairs)).unwrap_err().to_string();
            assert!(e.contains(needle), "{e}");
        }
        let e = config_from_env(&env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "token"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(e.contains("key=value"), "{e}");
    }

    #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
    struct L {
        function: String,
    }

    #[test]
    fn maps_a_registry_onto_otlp() {
        let r = MetricsRegistry::new();
        let calls = PcFamily::<L, Counter>::default();
        r.register("lambda_invocations", "Invocations", calls.clone());
        let level = PcGauge::<f64, std::sync::atomic::AtomicU64>::default();
        r.register("pool_level", "Level", level.clone());
        let wait =
            PcFamily::<L, PcHistogram>::new_with_constructor(|| PcHistogram::new([0.5, 1.0]));
        r.register("lambda_duration_seconds", "Duration", wait.clone());
        let l = L {
            function: "f".into(),
        };
        calls.get_or_create(&l).inc_by(3);
        level.set(0.25);
        for v in [0.1, 0.2, 0.7, 9.0] {
            wait.get_or_create(&l).observe(v);
        }

        let fams = openmetrics::parse(&r.encode()).unwrap();
        let req = to_request(&fams, &[], 10, 20);
        let metrics = &req.resource_metrics[0].scope_metrics[0].metrics;
        let m = |n: &str| metrics.iter().find(|m| m.name == n).unwrap();

        let Some(metric::Data::Sum(sum)) = &m("lambda_invocations").data else {
            panic!("a counter is a Sum")
        };
        assert!(sum.is_monotonic);
        assert_eq!(
            sum.aggregation_temporality,
            AggregationTemporality::Cumulative as i32
        );
        assert_eq!(
            sum.data_points[0].value,
            Some(number_data_point::Value::AsInt(3))
        );
        assert_eq!(sum.data_points[0].attributes[0].key, "function");
        assert_eq!(sum.data_points[0].start_time_unix_nano, 10);
        assert_eq!(sum.data_points[0].time_unix_nano, 20);

        let Some(metric::Data::Gauge(g)) = &m("pool_level").data else {
            panic!("a gauge is a Gauge")
        };
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsDouble(0.25))
        );

        let d = m("lambda_duration_seconds");
        assert_eq!(d.unit, "s");
        let Some(metric::Data::Histogram(h)) = &d.data else {
            panic!("a histogram is a Histogram")
        };
        let p = &h.data_points[0];
        assert_eq!(p.explicit_bounds, vec![0.5, 1.0]);
        assert_eq!(p.bucket_counts, vec![2, 1, 1], "per bucket, not cumulative");
        assert_eq!(p.count, 4);
        assert!((p.sum.unwrap() - 10.0).abs() < 1e-9);
        assert!(
            p.attributes.iter().all(|a| a.key != "le"),
            "le is not an attribute"
        );
    }
}
