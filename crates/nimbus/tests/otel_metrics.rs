//! Metrics over OTLP end to end: a real `nimbus dev` pushes its metrics to a real OTLP
//! receiver in this test (tonic's MetricsService from `opentelemetry-proto`, and the
//! OTLP/HTTP endpoint), and after a known workload the pushed values match what the
//! workload did and what `/metrics` serves. A collector that is down costs failed exports
//! (counted), never an invocation.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point, Metric};

use common::dev::{sample, Dev};
use common::otlp::attr;

/// Every export request received.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<ExportMetricsServiceRequest>>>);

impl Received {
    fn add(&self, req: ExportMetricsServiceRequest) {
        self.0.lock().unwrap().push(req);
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// The newest request's metrics, with its resource's `service.name`.
    fn latest(&self) -> Option<(String, Vec<Metric>)> {
        let all = self.0.lock().unwrap();
        let req = all.last()?;
        let rm = req.resource_metrics.first()?;
        let service = rm
            .resource
            .as_ref()
            .and_then(|r| attr(&r.attributes, "service.name"))
            .unwrap_or_default();
        let metrics = rm
            .scope_metrics
            .iter()
            .flat_map(|s| s.metrics.clone())
            .collect();
        Some((service, metrics))
    }
}

#[tonic::async_trait]
impl MetricsService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.add(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

async fn grpc_receiver() -> (String, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(MetricsServiceServer::new(received.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (format!("http://{addr}"), received)
}

async fn http_receiver() -> (String, Received) {
    let received = Received::default();
    let r = received.clone();
    let url = common::otlp::http_receiver::<
        ExportMetricsServiceRequest,
        ExportMetricsServiceResponse,
    >("/v1/metrics", move |headers, req| {
        // The headers from OTEL_EXPORTER_OTLP_HEADERS arrive with every export.
        if headers.get("x-tenant").and_then(|v| v.to_str().ok()) != Some("blue team") {
            return Err(axum::http::StatusCode::UNAUTHORIZED);
        }
        r.add(req);
        Ok(())
    })
    .await;
    (url, received)
}

fn number(v: &Option<number_data_point::Value>) -> f64 {
    match v {
        Some(number_data_point::Value::AsInt(i)) => *i as f64,
        Some(number_data_point::Value::AsDouble(d)) => *d,
        None => f64::NAN,
    }
}

/// The value of a Sum or Gauge point of `function`, if present.
fn function_value(metrics: &[Metric], name: &str, function: &str) -> Option<f64> {
    let m = metrics.iter().find(|m| m.name == name)?;
    let points = match m.data.as_ref()? {
        metric::Data::Sum(s) => &s.data_points,
        metric::Data::Gauge(g) => &g.data_points,
        _ => return None,
    };
    points
        .iter()
        .find(|p| attr(&p.attributes, "function").as_deref() == Some(function))
        .map(|p| number(&p.value))
}

/// The unlabelled Gauge or Sum `name`.
fn plain_value(metrics: &[Metric], name: &str) -> Option<f64> {
    let m = metrics.iter().find(|m| m.name == name)?;
    let points = match m.data.as_ref()? {
        metric::Data::Sum(s) => &s.data_points,
        metric::Data::Gauge(g) => &g.data_points,
        _ => return None,
    };
    points.first().map(|p| number(&p.value))
}

const FUNCTION: &str = r#"
def handler(event, context):
    if event.get("fail"):
        raise ValueError("asked to fail")
    return {"ok": True}
"#;

/// Three invocations (one a function error) and one throttle-free async event, then waits
/// until an export carries all of them and checks it against `/metrics`.
async fn workload_then_check(dev: &Dev, received: &Received, function: &str) {
    dev.create_python_function(function, FUNCTION).await;
    let mut client = dev.client().await;
    for payload in [&b"{}"[..], b"{}", br#"{"fail": true}"#] {
        let r = client.invoke(function, payload, &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let (service, metrics) = loop {
        if let Some((service, metrics)) = received.latest() {
            if function_value(&metrics, "lambda_invocations", function) == Some(3.0) {
                break (service, metrics);
            }
        }
        assert!(
            Instant::now() < deadline,
            "no export with 3 invocations of {function} ({} exports received)\n{}",
            received.count(),
            dev.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(service, "nimbus-dev", "service.name");

    let invocations = metrics
        .iter()
        .find(|m| m.name == "lambda_invocations")
        .unwrap();
    let Some(metric::Data::Sum(sum)) = &invocations.data else {
        panic!("Invocations is a Sum: {invocations:?}")
    };
    assert!(sum.is_monotonic, "a counter");
    let point = sum
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "function").as_deref() == Some(function))
        .unwrap();
    assert_eq!(
        attr(&point.attributes, "region").as_deref(),
        Some("us-east-1")
    );
    assert_eq!(
        attr(&point.attributes, "account").as_deref(),
        Some("000000000000")
    );
    assert_eq!(
        attr(&point.attributes, "resource").as_deref(),
        Some(function)
    );
    assert!(point.start_time_unix_nano > 0 && point.time_unix_nano >= point.start_time_unix_nano);

    assert_eq!(
        function_value(&metrics, "lambda_errors", function),
        Some(1.0)
    );
    let duration = metrics
        .iter()
        .find(|m| m.name == "lambda_duration_seconds")
        .unwrap();
    assert_eq!(duration.unit, "s");
    let Some(metric::Data::Histogram(h)) = &duration.data else {
        panic!("Duration is a Histogram: {duration:?}")
    };
    let p = h
        .data_points
        .iter()
        .find(|p| attr(&p.attributes, "function").as_deref() == Some(function))
        .unwrap();
    assert_eq!(p.count, 3);
    assert_eq!(p.bucket_counts.iter().sum::<u64>(), 3, "buckets add up");
    assert_eq!(p.bucket_counts.len(), p.explicit_bounds.len() + 1);
    assert!(p.sum.unwrap() > 0.0);

    // The cluster's own metrics travel too: this process is also the metadata node and
    // the worker.
    assert_eq!(plain_value(&metrics, "nimbus_raft_is_leader"), Some(1.0));
    assert!(plain_value(&metrics, "nimbus_raft_term").unwrap() >= 1.0);
    assert!(
        metrics.iter().any(|m| m.name.starts_with("nimbus_worker_")),
        "worker metrics: {:?}",
        metrics.iter().map(|m| &m.name).collect::<Vec<_>>()
    );

    // The same values as the Prometheus endpoint.
    let text = dev.scrape().await;
    let labels = format!(
        "{{account=\"000000000000\",region=\"us-east-1\",function=\"{function}\",resource=\"{function}\"}}"
    );
    assert_eq!(
        sample(&text, &format!("lambda_invocations_total{labels}")),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, &format!("lambda_errors_total{labels}")),
        Some(1.0),
        "{text}"
    );
    // The exporter counts an export once the collector's answer is back, which can be
    // just after the receiver above has stored the request: wait for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = dev.scrape().await;
        if sample(&text, "nimbus_otel_metric_exports_total").unwrap() >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no accepted export counted\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_over_otlp_grpc_and_http() {
    let _one_at_a_time = common::dev::LOCK.lock().await;
    {
        let (endpoint, received) = grpc_receiver().await;
        let dev = Dev::start(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])
        .await;
        workload_then_check(&dev, &received, "counted-grpc").await;
    }
    let (endpoint, received) = http_receiver().await;
    let dev = Dev::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_EXPORTER_OTLP_HEADERS", "x-tenant=blue%20team"),
        ("OTEL_METRIC_EXPORT_INTERVAL", "300"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ])
    .await;
    workload_then_check(&dev, &received, "counted-http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_only_failed_exports() {
    let _one_at_a_time = common::dev::LOCK.lock().await;
    // A port nobody listens on.
    let port = common::free_ports(1)[0];
    let dev = Dev::start(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ("OTEL_TRACES_EXPORTER", "none"),
    ])
    .await;
    dev.create_python_function("uncollected", FUNCTION).await;
    let mut client = dev.client().await;
    for _ in 0..3 {
        let r = client.invoke("uncollected", b"{}", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = dev.scrape().await;
        let failures = sample(&text, "nimbus_otel_metric_export_failures_total").unwrap_or(0.0);
        if failures >= 2.0 {
            assert_eq!(sample(&text, "nimbus_otel_metric_exports_total"), Some(0.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failed exports counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Warned once per outage, with the endpoint, not once per export.
    let log = dev.log();
    assert_eq!(
        log.matches("OTLP metrics export failed").count(),
        1,
        "{log}"
    );
}

/// A bad OTLP metrics setting stops the node at start with a message naming it.
#[test]
fn a_bad_setting_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().unwrap();
    let port = common::free_ports(1)[0];
    let out = std::process::Command::new(common::BIN)
        .args(["dev", "--data-dir"])
        .arg(dir.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("OTEL_METRICS_EXPORTER", "statsd")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("OTEL_METRICS_EXPORTER=statsd"), "{err}");
}
