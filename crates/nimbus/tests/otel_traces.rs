//! Traces end to end: a real `nimbus dev` exports over OTLP to a real receiver (tonic's
//! TraceService from `opentelemetry-proto`, and the OTLP/HTTP endpoint) in this test, and
//! the span tree of two invocations is checked: parentage from the caller's trace
//! context, Init on the cold start only, FaaS attributes, and durations that nest.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;

use common::dev::Dev;
use common::otlp::attr;
use nimbus_gateway::client::LambdaConnection;

/// Every span received, with its resource's `service.name`.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn add(&self, req: ExportTraceServiceRequest) {
        let mut all = self.0.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    all.push((service.clone(), span));
                }
            }
        }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.0.lock().unwrap().clone()
    }
}

#[tonic::async_trait]
impl TraceService for Received {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver on a free port.
async fn grpc_receiver() -> (String, Received) {
    let received = Received::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(received.clone());
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    (format!("http://{addr}"), received)
}

/// `nimbus dev` exporting over gRPC to a new receiver, with `extra` settings.
async fn grpc_dev(extra: &[(&str, &str)]) -> (Dev, Received) {
    let (endpoint, received) = grpc_receiver().await;
    let mut env = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    env.extend_from_slice(extra);
    (Dev::start(&env).await, received)
}

/// The `_X_AMZN_TRACE_ID` the function saw (it answers with it), from a 200 reply.
fn trace_seen(r: &nimbus_gateway::client::Reply) -> String {
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    body["trace"].as_str().unwrap().to_string()
}

/// An OTLP/HTTP (protobuf) receiver on a free port.
async fn http_receiver() -> (String, Received) {
    let received = Received::default();
    let r = received.clone();
    let url = common::otlp::http_receiver::<ExportTraceServiceRequest, ExportTraceServiceResponse>(
        "/v1/traces",
        move |_, req| {
            r.add(req);
            Ok(())
        },
    )
    .await;
    (url, received)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

const FUNCTION: &str = r#"
import os
def handler(event, context):
    return {"trace": os.environ.get("_X_AMZN_TRACE_ID", "")}
"#;

/// Waits until `n` API spans with these invocation ids (and their children) have arrived.
async fn wait_for(received: &Received, ids: &[String], dev: &Dev) -> Vec<(String, Span)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = received.spans();
        let complete = ids.iter().all(|id| {
            spans.iter().any(|(_, s)| {
                s.name == "Invoke"
                    && attr(&s.attributes, "faas.invocation_id").as_deref() == Some(id)
            }) && spans.iter().any(|(_, s)| {
                s.name == "Invocation"
                    && attr(&s.attributes, "faas.invocation_id").as_deref() == Some(id)
            })
        });
        if complete {
            return spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans did not arrive; got {:?}\nnimbus log:\n{}",
            spans.iter().map(|(_, s)| &s.name).collect::<Vec<_>>(),
            dev.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The spans of one trace by name, checking each has exactly one of that name.
struct Tree {
    by_name: HashMap<String, Span>,
}

impl Tree {
    fn of(spans: &[(String, Span)], trace_id: &[u8]) -> Self {
        let mut by_name = HashMap::new();
        for (service, s) in spans.iter().filter(|(_, s)| s.trace_id == trace_id) {
            assert_eq!(service, "nimbus-dev", "service.name");
            assert!(
                by_name.insert(s.name.clone(), s.clone()).is_none(),
                "two {} spans in one trace",
                s.name
            );
        }
        Tree { by_name }
    }

    fn get(&self, name: &str) -> &Span {
        self.by_name
            .get(name)
            .unwrap_or_else(|| panic!("no {name} span; have {:?}", self.by_name.keys()))
    }

    fn assert_child(&self, child: &str, parent: &str) {
        let (c, p) = (self.get(child), self.get(parent));
        assert_eq!(
            c.parent_span_id, p.span_id,
            "{child} is a child of {parent}"
        );
        assert!(
            c.start_time_unix_nano >= p.start_time_unix_nano
                && c.end_time_unix_nano <= p.end_time_unix_nano,
            "{child} lies within {parent}"
        );
    }

    fn duration(&self, name: &str) -> u64 {
        let s = self.get(name);
        s.end_time_unix_nano - s.start_time_unix_nano
    }
}

async fn invoke_twice_and_check(dev: &Dev, received: &Received) {
    dev.create_python_function("traced", FUNCTION).await;
    let mut client = dev.client().await;

    // 1: W3C trace context, cold start.
    let parent_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{parent_trace}-{parent_span}-01");
    let r1 = client
        .invoke("traced", b"{}", &[("traceparent", &traceparent)])
        .await
        .unwrap();
    assert_eq!(r1.status, 200, "{}", String::from_utf8_lossy(&r1.body));
    // 2: X-Ray trace context, warm.
    let amzn = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
    let r2 = client
        .invoke("traced", b"{}", &[("x-amzn-trace-id", amzn)])
        .await
        .unwrap();
    assert_eq!(r2.status, 200, "{}", String::from_utf8_lossy(&r2.body));
    let ids: Vec<String> = [&r1, &r2]
        .iter()
        .map(|r| r.header("x-amzn-requestid").unwrap().to_string())
        .collect();
    let spans = wait_for(received, &ids, dev).await;

    for (i, (reply, (trace, parent))) in [&r1, &r2]
        .into_iter()
        .zip([
            (parent_trace, parent_span),
            ("5759e988bd862e3fe1be46a994272793", "53995c3f42cd8ad8"),
        ])
        .enumerate()
    {
        let cold = i == 0;
        let trace_id: Vec<u8> = (0..16)
            .map(|k| u8::from_str_radix(&trace[2 * k..2 * k + 2], 16).unwrap())
            .collect();
        let tree = Tree::of(&spans, &trace_id);
        let api = tree.get("Invoke");
        assert_eq!(
            hex(&api.parent_span_id),
            parent,
            "the caller's span is the parent"
        );
        assert_eq!(
            attr(&api.attributes, "faas.invocation_id").as_ref(),
            Some(&ids[i])
        );
        assert_eq!(
            attr(&api.attributes, "faas.name").as_deref(),
            Some("traced")
        );
        assert_eq!(
            attr(&api.attributes, "faas.version").as_deref(),
            Some("$LATEST")
        );
        assert_eq!(
            attr(&api.attributes, "faas.trigger").as_deref(),
            Some("http")
        );
        assert_eq!(
            attr(&api.attributes, "cloud.region").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            attr(&api.attributes, "cloud.account.id").as_deref(),
            Some("000000000000")
        );
        tree.assert_child("Admission", "Invoke");
        tree.assert_child("Place and invoke", "Invoke");
        tree.assert_child("Invocation", "Place and invoke");
        let inv = tree.get("Invocation");
        assert_eq!(
            attr(&inv.attributes, "faas.coldstart").as_deref(),
            Some(if cold { "true" } else { "false" })
        );
        if cold {
            tree.assert_child("Init", "Place and invoke");
            let init = tree.get("Init");
            assert!(
                init.end_time_unix_nano <= inv.start_time_unix_nano,
                "Init before Invocation"
            );
            assert!(
                tree.duration("Init") + tree.duration("Invocation")
                    <= tree.duration("Place and invoke"),
                "Init and Invocation fit in Place and invoke"
            );
        } else {
            assert!(
                !tree.by_name.contains_key("Init"),
                "no Init on a warm start"
            );
        }
        // The function saw the invocation span as its parent, in X-Ray form.
        let body: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let seen = body["trace"].as_str().unwrap();
        let expected = format!(
            "Root=1-{}-{};Parent={};Sampled=1",
            &trace[..8],
            &trace[8..],
            hex(&inv.span_id)
        );
        assert_eq!(seen, expected, "_X_AMZN_TRACE_ID in the function");
    }
}

/// An async (Event) invocation keeps the trace of the request that queued it.
async fn async_event_keeps_the_trace(dev: &Dev, received: &Received) {
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{trace}-b7ad6b7169203331-01");
    let r = dev
        .client()
        .await
        .invoke(
            "traced",
            b"{}",
            &[
                ("traceparent", &traceparent),
                ("x-amz-invocation-type", "Event"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    let trace_id: Vec<u8> = (0..16)
        .map(|k| u8::from_str_radix(&trace[2 * k..2 * k + 2], 16).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = received.spans();
        let in_trace: Vec<&Span> = spans
            .iter()
            .map(|(_, s)| s)
            .filter(|s| s.trace_id == trace_id)
            .collect();
        let find = |n: &str| in_trace.iter().find(|s| s.name == n).copied();
        if let (Some(api), Some(queued), Some(inv)) =
            (find("Invoke"), find("Async invoke"), find("Invocation"))
        {
            assert_eq!(hex(&api.parent_span_id), "b7ad6b7169203331");
            assert_eq!(
                queued.parent_span_id, api.span_id,
                "queued under the request"
            );
            assert_eq!(
                inv.parent_span_id, queued.span_id,
                "runs under the dispatch"
            );
            return;
        }
        assert!(
            Instant::now() < deadline,
            "async spans did not arrive: {:?}\n{}",
            in_trace.iter().map(|s| &s.name).collect::<Vec<_>>(),
            dev.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_over_otlp_grpc_and_http() {
    let _one_at_a_time = common::dev::LOCK.lock().await;
    let (endpoint, received) = grpc_receiver().await;
    {
        let dev = Dev::start(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ])
        .await;
        invoke_twice_and_check(&dev, &received).await;
        async_event_keeps_the_trace(&dev, &received).await;
    }

    let (endpoint, received) = http_receiver().await;
    let dev = Dev::start(&[
        ("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ])
    .await;
    invoke_twice_and_check(&dev, &received).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_nothing_but_dropped_spans() {
    let _one_at_a_time = common::dev::LOCK.lock().await;
    // Nothing listens on this port.
    let port = common::free_ports(1)[0];
    let dev = Dev::start(&[
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            &format!("http://127.0.0.1:{port}"),
        ),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ("OTEL_BSP_EXPORT_TIMEOUT", "500"),
    ])
    .await;
    dev.create_python_function("untraced", FUNCTION).await;
    let mut client = dev.client().await;
    for _ in 0..3 {
        let r = client.invoke("untraced", b"{}", &[]).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = dev.scrape().await;
        let dropped = common::dev::sample(&text, "nimbus_otel_spans_dropped_total").unwrap_or(0.0);
        if dropped > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no dropped spans counted:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Head sampling at ratio 0 with a parent-based sampler: a caller's sampled trace is still
/// recorded whole; an unsampled one, or a new trace, exports nothing, yet the function
/// still receives the trace's id marked `Sampled=0`, the caller's id when it sent one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsampled_traces_export_nothing_and_still_propagate() {
    let _one_at_a_time = common::dev::LOCK.lock().await;
    let (dev, received) = grpc_dev(&[
        ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
        ("OTEL_TRACES_SAMPLER_ARG", "0"),
    ])
    .await;
    dev.create_python_function("sampled", FUNCTION).await;
    let mut client = dev.client().await;

    // Not sampled upstream: the caller's trace id travels on, unsampled.
    let unsampled = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0";
    let r = client
        .invoke("sampled", b"{}", &[("x-amzn-trace-id", unsampled)])
        .await
        .unwrap();
    let in_function = trace_seen(&r);
    assert!(
        in_function.starts_with("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=")
            && in_function.ends_with(";Sampled=0"),
        "{in_function}"
    );
    assert!(
        !in_function.contains("53995c3f42cd8ad8"),
        "a parent of our own"
    );
    // No caller context: a new trace, and at ratio 0 not sampled.
    let r = client.invoke("sampled", b"{}", &[]).await.unwrap();
    let fresh = trace_seen(&r);
    assert!(
        fresh.starts_with("Root=1-") && fresh.ends_with(";Sampled=0"),
        "{fresh}"
    );
    let fresh_trace = fresh[7..15].to_string() + &fresh[16..40];

    // Sampled upstream: recorded whole, although the ratio is 0.
    let sampled = "Root=1-6759e988-cd862e3fe1be46a994272793;Parent=63995c3f42cd8ad8;Sampled=1";
    let r = client
        .invoke("sampled", b"{}", &[("x-amzn-trace-id", sampled)])
        .await
        .unwrap();
    assert!(trace_seen(&r).ends_with(";Sampled=1"));
    let id = r.header("x-amzn-requestid").unwrap().to_string();
    // The batch queue exports in order: once the sampled trace is here, the spans of the
    // two earlier calls would be too, had any been built.
    let spans = wait_for(&received, &[id], &dev).await;
    let traces: std::collections::HashSet<String> =
        spans.iter().map(|(_, s)| hex(&s.trace_id)).collect();
    assert!(traces.contains("6759e988cd862e3fe1be46a994272793"));
    assert!(
        !traces.contains("5759e988bd862e3fe1be46a994272793"),
        "{traces:?}"
    );
    assert!(
        !traces.contains(&fresh_trace),
        "{fresh_trace} in {traces:?}"
    );
    assert_eq!(traces.len(), 1, "{traces:?}");
}

/// With the default sampler (parent-based, always on), a caller that did not sample its
/// trace gets no span built on the invoke path: the root is decided first and nothing
/// under it is made. A span made anyway (outside the decision) would have no parent,
/// start a trace of its own, be sampled, and arrive here. Cold and warm, sync and async;
/// the function still sees the caller's trace, unsampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_caller_gets_no_span_on_the_invoke_path() {
    let _one_at_a_time = common::dev::LOCK.lock().await;
    let (dev, received) = grpc_dev(&[]).await;
    dev.create_python_function("unsampled", FUNCTION).await;
    let mut client = dev.client().await;
    let unsampled = "00-5759e988bd862e3fe1be46a994272793-53995c3f42cd8ad8-00";
    for _ in 0..2 {
        let r = client
            .invoke("unsampled", b"{}", &[("traceparent", unsampled)])
            .await
            .unwrap();
        let seen = trace_seen(&r);
        assert!(
            seen.starts_with("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=")
                && seen.ends_with(";Sampled=0"),
            "{seen}"
        );
    }
    // InvokeWithResponseStream.
    let r = client
        .send(
            "POST",
            "/2021-11-15/functions/unsampled/response-streaming-invocations",
            "",
            &[("traceparent", unsampled)],
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // A public function URL.
    let host = public_url(&mut client, "unsampled").await;
    let r = client
        .send_unsigned_with(
            "GET",
            &host,
            "/",
            &[("traceparent", unsampled)],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let r = client
        .invoke(
            "unsampled",
            b"{}",
            &[
                ("traceparent", unsampled),
                ("x-amz-invocation-type", "Event"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 202, "{}", String::from_utf8_lossy(&r.body));
    // The event has run once it is counted (with the two syncs, the stream and the URL).
    let invocations = "lambda_invocations_total{account=\"000000000000\",region=\"us-east-1\",function=\"unsampled\",resource=\"unsampled\"}";
    let deadline = Instant::now() + Duration::from_secs(30);
    while common::dev::sample(&dev.scrape().await, invocations) != Some(5.0) {
        assert!(Instant::now() < deadline, "the async event did not run");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new trace, sampled: spans leave in the order they end, so once its spans are
    // here, any made before would be too.
    let r = client.invoke("unsampled", b"{}", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let id = r.header("x-amzn-requestid").unwrap().to_string();
    let spans = wait_for(&received, &[id], &dev).await;
    let traces: std::collections::HashSet<String> =
        spans.iter().map(|(_, s)| hex(&s.trace_id)).collect();
    assert_eq!(
        traces.len(),
        1,
        "only the sampled trace; got {:?}",
        spans
            .iter()
            .map(|(_, s)| (hex(&s.trace_id), &s.name))
            .collect::<Vec<_>>()
    );
}

/// A streamed invocation's and a function URL's root spans name the function and the
/// version that ran, as the API's `Invoke` does (`faas.name`, `faas.version`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_and_url_root_spans_name_the_function() {
    let _one_at_a_time = common::dev::LOCK.lock().await;
    let (dev, received) = grpc_dev(&[]).await;
    dev.create_python_function("named", FUNCTION).await;
    let mut client = dev.client().await;
    let streamed = "6759e988cd862e3fe1be46a994272711";
    let r = client
        .send(
            "POST",
            "/2021-11-15/functions/named/response-streaming-invocations",
            "",
            &[("traceparent", &format!("00-{streamed}-53995c3f42cd8ad8-01"))],
            Bytes::from_static(b"{}"),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let host = public_url(&mut client, "named").await;
    let through_url = "6759e988cd862e3fe1be46a994272722";
    let r = client
        .send_unsigned_with(
            "GET",
            &host,
            "/",
            &[(
                "traceparent",
                &format!("00-{through_url}-53995c3f42cd8ad8-01"),
            )],
            Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // Spans leave in the order they end: once this call's are here, those are too.
    let r = client.invoke("named", b"{}", &[]).await.unwrap();
    let id = r.header("x-amzn-requestid").unwrap().to_string();
    let spans = wait_for(&received, &[id], &dev).await;
    for (trace, root) in [
        (streamed, "InvokeWithResponseStream"),
        (through_url, "Invoke"),
    ] {
        let trace_id: Vec<u8> = (0..16)
            .map(|k| u8::from_str_radix(&trace[2 * k..2 * k + 2], 16).unwrap())
            .collect();
        let span = &Tree::of(&spans, &trace_id).by_name[root];
        assert_eq!(
            attr(&span.attributes, "faas.name").as_deref(),
            Some("named"),
            "{root}: {:?}",
            span.attributes
        );
        assert_eq!(
            attr(&span.attributes, "faas.version").as_deref(),
            Some("$LATEST"),
            "{root}"
        );
    }
}

/// Gives `function` a public URL (auth NONE, both permissions a public URL needs);
/// returns the URL's host.
async fn public_url(client: &mut LambdaConnection, function: &str) -> String {
    let r = client
        .send(
            "POST",
            &format!("/2021-10-31/functions/{function}/url"),
            "",
            &[],
            Bytes::from_static(br#"{"AuthType":"NONE"}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    let url: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let host = url["FunctionUrl"]
        .as_str()
        .unwrap()
        .trim_start_matches("http://")
        .trim_start_matches("https://")
        .trim_end_matches('/')
        .to_string();
    for (id, action, extra) in [
        (
            "url",
            "lambda:InvokeFunctionUrl",
            r#","FunctionUrlAuthType":"NONE""#,
        ),
        ("invoke", "lambda:InvokeFunction", ""),
    ] {
        let body =
            format!(r#"{{"StatementId":"{id}","Action":"{action}","Principal":"*"{extra}}}"#);
        let r = client
            .send(
                "POST",
                &format!("/2015-03-31/functions/{function}/policy"),
                "",
                &[],
                Bytes::from(body),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    }
    host
}

/// Kills the processes of a small cluster when the test ends.
struct Procs(Vec<std::process::Child>);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// In a cluster the trace crosses processes: gateway (Invoke, Place and invoke) → worker
/// over gRPC (`traceparent` metadata) → the worker's Init and Invocation spans, one tree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traces_cross_from_gateway_to_worker_in_a_cluster() {
    use std::process::{Command, Stdio};
    let _one_at_a_time = common::dev::LOCK.lock().await;
    let (endpoint, received) = grpc_receiver().await;
    let otel = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ];
    let dir = tempfile::tempdir().unwrap();
    let ports = common::free_ports(3);
    let (meta, worker, gateway) = (
        format!("127.0.0.1:{}", ports[0]),
        format!("127.0.0.1:{}", ports[1]),
        format!("127.0.0.1:{}", ports[2]),
    );
    let log = |name: &str| std::fs::File::create(dir.path().join(name)).unwrap();
    let mut procs = Procs(vec![]);
    procs.0.push(
        Command::new(common::BIN)
            .arg("--insecure-plaintext")
            .args(["meta", "--id", "1", "--listen", &meta])
            .args(["--initial-cluster", &format!("1={meta}"), "--data-dir"])
            .arg(dir.path().join("meta"))
            .stdout(Stdio::null())
            .stderr(log("meta.log"))
            .spawn()
            .unwrap(),
    );
    // The account gets the dev key, so the dev client helpers work against the gateway.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = Command::new(common::BIN)
            .arg("--insecure-plaintext")
            .args([
                "account",
                "create",
                "--meta",
                &meta,
                "--account-id",
                "000000000000",
            ])
            .args(["--access-key-id", "test", "--region", "us-east-1"])
            .env("NIMBUS_SECRET_ACCESS_KEY", "test")
            .output()
            .unwrap();
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    procs.0.push(
        Command::new(common::BIN)
            .arg("--insecure-plaintext")
            .args([
                "worker",
                "--listen",
                &worker,
                "--meta",
                &meta,
                "--network",
                "none",
            ])
            .arg("--data-dir")
            .arg(dir.path().join("worker"))
            .envs(otel)
            .stdout(Stdio::null())
            .stderr(log("worker.log"))
            .spawn()
            .unwrap(),
    );
    let gw = Command::new(common::BIN)
        .arg("--insecure-plaintext")
        .args(["gateway", "--listen", &gateway, "--meta", &meta])
        // The test is about traces: the function's role is made on first use.
        .arg("--create-missing-roles")
        .envs(otel)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("nimbus.log")).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&gateway).is_err()
        || std::net::TcpStream::connect(&worker).is_err()
    {
        assert!(Instant::now() < deadline, "cluster did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gw_dir = tempfile::tempdir().unwrap();
    let dev = Dev::attach(gateway.clone(), gw_dir, gw);
    dev.create_python_function("traced", FUNCTION).await;
    let mut client = dev.client().await;
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let traceparent = format!("00-{trace}-b7ad6b7169203331-01");
    // The worker registers within a heartbeat; retry until the gateway knows it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        let r = client
            .invoke("traced", b"{}", &[("traceparent", &traceparent)])
            .await
            .unwrap();
        if r.status == 200 || Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    let trace_id: Vec<u8> = (0..16)
        .map(|k| u8::from_str_radix(&trace[2 * k..2 * k + 2], 16).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<(String, Span)> = received
            .spans()
            .into_iter()
            .filter(|(_, s)| s.trace_id == trace_id)
            .collect();
        if spans.iter().any(|(_, s)| s.name == "Invocation")
            && spans.iter().any(|(_, s)| s.name == "Invoke")
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans did not arrive: {:?}",
            spans
                .iter()
                .map(|(svc, s)| (svc, &s.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let find = |name: &str| {
        spans
            .iter()
            .find(|(_, s)| s.name == name)
            .unwrap_or_else(|| panic!("no {name} span in {spans:?}"))
    };
    let (gw_service, place) = find("Place and invoke");
    let (worker_service, hop) = find("Worker invoke");
    let (_, invocation) = find("Invocation");
    let (_, init) = find("Init");
    assert_eq!(gw_service, "nimbus-gateway");
    assert_eq!(worker_service, "nimbus-worker");
    assert_eq!(
        hop.parent_span_id, place.span_id,
        "the worker continues the gateway's span"
    );
    assert_eq!(invocation.parent_span_id, hop.span_id);
    assert_eq!(
        init.parent_span_id, hop.span_id,
        "cold start: Init on the worker"
    );

    // Not sampled by the caller: the worker follows the gateway's flag and builds no
    // span either (one made anyway would start a sampled trace of its own), and the
    // function still sees the caller's trace.
    let unsampled = "5759e988bd862e3fe1be46a994272793";
    let r = client
        .invoke(
            "traced",
            b"{}",
            &[(
                "traceparent",
                &format!("00-{unsampled}-53995c3f42cd8ad8-00"),
            )],
        )
        .await
        .unwrap();
    let seen = trace_seen(&r);
    assert!(
        seen.starts_with(&format!("Root=1-{}-{};", &unsampled[..8], &unsampled[8..]))
            && seen.ends_with(";Sampled=0"),
        "{seen}"
    );
    // Then a sampled one: once both processes' spans of it are here, any made before
    // would be too (each exports in the order spans end).
    let last = "1af7651916cd43dd8448eb211c80319c";
    let r = client
        .invoke(
            "traced",
            b"{}",
            &[("traceparent", &format!("00-{last}-b7ad6b7169203331-01"))],
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = received.spans();
        let of_last = |name: &str| {
            spans
                .iter()
                .any(|(_, s)| hex(&s.trace_id) == last && s.name == name)
        };
        if of_last("Invocation") && of_last("Invoke") {
            let traces: std::collections::HashSet<String> =
                spans.iter().map(|(_, s)| hex(&s.trace_id)).collect();
            assert_eq!(
                traces,
                [trace, last].into_iter().map(String::from).collect(),
                "the two sampled traces only"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the last trace did not arrive");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(procs);
}
