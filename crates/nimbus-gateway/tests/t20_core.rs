//! The gateway core driven by a fake worker set, with paused time: placement order,
//! retries of what never started, no retry of what may have run, throttles, and
//! resolution errors. No sockets, no HTTP: this is the layer every front door calls.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use nimbus_gateway::core::catalog::Catalog;
use nimbus_gateway::core::resolve::Named;
use nimbus_gateway::core::workers::{WorkerError, WorkerResult, WorkerView, Workers};
use nimbus_gateway::{Gateway, GatewayConfig, InvokeRequest};
use nimbus_meta::MetaClient;
use nimbus_proto::worker::{self as pb, rejection::Reason, Rejection};
use nimbus_types::validate::RUNTIMES;
use nimbus_types::{
    keys, Account, Alias, CodeRef, Entity, Function, FunctionConfig, FunctionKey, FunctionState,
    LastUpdateStatus, Qualifier, Version,
};
use tokio::sync::Notify;

const ACCOUNT: &str = "111122223333";
const REGION: &str = "us-east-1";

/// What a fake worker does with its next invocation.
#[derive(Clone)]
enum Script {
    Answer(&'static str),
    FunctionError,
    Reject(Reason),
    Unreachable,
    Interrupted,
    /// Waits until the test releases it, then answers.
    Hold(Arc<Notify>),
}

#[derive(Default)]
struct FakeWorkers {
    live: Mutex<Vec<WorkerView>>,
    /// Per worker, the scripts of its next invocations (then it answers "ok").
    scripts: Mutex<HashMap<String, VecDeque<Script>>>,
    /// Scripts applied to every invocation of a worker, after the queued ones.
    always: Mutex<HashMap<String, Script>>,
    /// Worker ids in the order invocations reached them.
    calls: Mutex<Vec<String>>,
}

impl FakeWorkers {
    fn with(workers: &[(&str, u64)]) -> Arc<Self> {
        let f = Self::default();
        *f.live.lock().unwrap() = workers
            .iter()
            .map(|(id, free_mb)| WorkerView {
                id: id.to_string(),
                free_mb: *free_mb,
                runtimes: RUNTIMES.iter().map(|r| r.to_string()).collect(),
                zone: None,
                edge_location: None,
            })
            .collect();
        Arc::new(f)
    }

    fn script(&self, worker: &str, s: Script) {
        self.scripts
            .lock()
            .unwrap()
            .entry(worker.into())
            .or_default()
            .push_back(s);
    }

    fn always(&self, worker: &str, s: Script) {
        self.always.lock().unwrap().insert(worker.into(), s);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

fn unused<T: Send + 'static>() -> BoxFuture<'static, WorkerResult<T>> {
    Box::pin(async { Err(WorkerError::Unreachable("not used by these tests".into())) })
}

impl Workers for FakeWorkers {
    fn live(&self) -> Vec<WorkerView> {
        self.live.lock().unwrap().clone()
    }

    fn invoke(
        &self,
        worker: &str,
        request: pb::InvokeRequest,
        _deadline: Duration,
    ) -> BoxFuture<'static, WorkerResult<pb::InvokeResponse>> {
        self.calls.lock().unwrap().push(worker.to_string());
        let script = self
            .scripts
            .lock()
            .unwrap()
            .get_mut(worker)
            .and_then(VecDeque::pop_front)
            .or_else(|| self.always.lock().unwrap().get(worker).cloned())
            .unwrap_or(Script::Answer("ok"));
        let version = request.function.map(|f| f.version).unwrap_or_default();
        Box::pin(async move {
            let answer = |payload: &str, function_error: Option<&str>| pb::InvokeResponse {
                payload: bytes::Bytes::copy_from_slice(payload.as_bytes()),
                function_error: function_error.map(str::to_string),
                executed_version: version.clone(),
                ..Default::default()
            };
            match script {
                Script::Answer(p) => Ok(answer(p, None)),
                Script::FunctionError => Ok(answer(r#"{"errorType":"E"}"#, Some("Unhandled"))),
                Script::Reject(reason) => {
                    Err(WorkerError::Rejected(Rejection::new(reason, "refused")))
                }
                Script::Unreachable => Err(WorkerError::Unreachable("connection refused".into())),
                Script::Interrupted => Err(WorkerError::Interrupted("connection reset".into())),
                Script::Hold(n) => {
                    n.notified().await;
                    Ok(answer("held", None))
                }
            }
        })
    }

    fn prefetch(
        &self,
        _: &str,
        _: pb::PrefetchRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::PrefetchResponse>> {
        unused()
    }

    fn provision(
        &self,
        _: &str,
        _: pb::ProvisionRequest,
        _: Duration,
    ) -> BoxFuture<'static, WorkerResult<pb::ProvisionResponse>> {
        unused()
    }
    fn filter_log_events(
        &self,
        _: &str,
        _: pb::FilterLogEventsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::FilterLogEventsResponse>> {
        unused()
    }
    fn describe_log_streams(
        &self,
        _: &str,
        _: pb::DescribeLogStreamsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::DescribeLogStreamsResponse>> {
        unused()
    }
    fn describe_log_groups(
        &self,
        _: &str,
        _: pb::DescribeLogGroupsRequest,
    ) -> BoxFuture<'static, WorkerResult<pb::DescribeLogGroupsResponse>> {
        unused()
    }
}

fn key(name: &str) -> FunctionKey {
    FunctionKey::new(ACCOUNT, REGION, name)
}

fn function(name: &str, reserved: Option<u32>) -> Function {
    Function {
        key: key(name),
        config: FunctionConfig {
            runtime: "python3.11".into(),
            handler: "app.handler".into(),
            ..Default::default()
        },
        code: CodeRef {
            sha256: "c29tZQ==".into(),
            size: 10,
        },
        tags: BTreeMap::new(),
        state: FunctionState::Active,
        last_update_status: LastUpdateStatus::Successful,
        revision_id: format!("rev-{name}"),
        last_modified_ms: 0,
        reserved_concurrency: reserved,
        event_invoke_configs: BTreeMap::new(),
        provisioned_concurrency: BTreeMap::new(),
        url_configs: Default::default(),
        resource_policy: Default::default(),
        edge_deployments: Default::default(),
        next_version: 2,
    }
}

/// A gateway over a fixed catalog: functions `f` (no reservation), `r0` (reserved 0),
/// `r1` (reserved 1), version 1 of `f`, and alias `live` → 1.
fn gateway(workers: Arc<FakeWorkers>) -> Arc<Gateway> {
    let f = function("f", None);
    let v1 = Version {
        key: key("f"),
        number: 1,
        config: f.config.clone(),
        code: f.code.clone(),
        description: String::new(),
        revision_id: "rev-f-1".into(),
        last_modified_ms: 0,
    };
    let live = Alias {
        key: key("f"),
        name: "live".into(),
        function_version: "1".into(),
        description: String::new(),
        routing: None,
        revision_id: "a".into(),
    };
    let account = Account {
        id: ACCOUNT.into(),
        limits: BTreeMap::new(),
    };
    let entities = vec![
        (keys::account(ACCOUNT), Entity::Account(account)),
        (keys::function(&key("f")), Entity::Function(f)),
        (keys::version(&key("f"), 1), Entity::Version(v1)),
        (keys::alias(&key("f"), "live"), Entity::Alias(live)),
        (
            keys::function(&key("r0")),
            Entity::Function(function("r0", Some(0))),
        ),
        (
            keys::function(&key("r1")),
            Entity::Function(function("r1", Some(1))),
        ),
    ];
    let catalog = Arc::new(Catalog::fixed(entities, 7));
    // Never dialled: the core reads the catalog, and admission counts locally.
    let meta = MetaClient::new(&["127.0.0.1:9"], &nimbus_tls::Transport::Plaintext).unwrap();
    Gateway::new(meta, catalog, GatewayConfig::new(REGION, false), workers)
}

fn named(name: &str, qualifier: Option<&str>) -> Named {
    Named {
        key: key(name),
        qualifier: qualifier.map(str::to_string),
    }
}

fn request() -> InvokeRequest {
    InvokeRequest {
        request_id: "req-1".into(),
        payload: Bytes::from_static(b"{}"),
        client_context: None,
        trace_id: None,
    }
}

#[tokio::test(start_paused = true)]
async fn the_roomiest_worker_runs_it_and_the_version_is_reported() {
    let workers = FakeWorkers::with(&[("small", 100), ("big", 900)]);
    let gw = gateway(workers.clone());
    let out = gw.invoke(&named("f", None), request()).await.unwrap();
    assert_eq!(out.result.payload, Bytes::from_static(b"ok"));
    assert_eq!(out.executed_version, Qualifier::Latest);
    assert_eq!(workers.calls(), ["big"]);
    let out = gw
        .invoke(&named("f", Some("live")), request())
        .await
        .unwrap();
    assert_eq!(
        out.executed_version,
        Qualifier::Version(1),
        "alias → version 1"
    );
}

#[tokio::test(start_paused = true)]
async fn a_worker_without_the_functions_runtime_is_never_chosen() {
    let workers = FakeWorkers::with(&[("python", 100), ("roomy-node-only", 9000)]);
    workers.live.lock().unwrap()[1].runtimes = vec!["nodejs20.x".into()];
    let gw = gateway(workers.clone());
    for _ in 0..3 {
        gw.invoke(&named("f", None), request()).await.unwrap();
    }
    assert_eq!(workers.calls(), ["python", "python", "python"]);
    // With none that runs it, the caller hears so at once (no wait for capacity).
    workers.live.lock().unwrap().remove(0);
    let started = tokio::time::Instant::now();
    let e = gw.invoke(&named("f", None), request()).await.unwrap_err();
    assert_eq!(
        (e.status, e.error_type.as_str()),
        (400, "InvalidParameterValueException")
    );
    assert!(
        e.message.contains("offers runtime python3.11"),
        "{}",
        e.message
    );
    assert!(started.elapsed() < Duration::from_millis(10));
    assert_eq!(
        workers.calls().len(),
        3,
        "the node-only worker was never called"
    );
}

#[tokio::test(start_paused = true)]
async fn what_never_started_is_retried_on_the_next_worker() {
    for reason in [
        Reason::Busy,
        Reason::Draining,
        Reason::SandboxFailed,
        Reason::CodeUnavailable,
    ] {
        let workers = FakeWorkers::with(&[("a", 900), ("b", 100)]);
        workers.script("a", Script::Reject(reason));
        let gw = gateway(workers.clone());
        let out = gw.invoke(&named("f", None), request()).await.unwrap();
        assert_eq!(out.result.payload, Bytes::from_static(b"ok"), "{reason:?}");
        assert_eq!(workers.calls(), ["a", "b"], "{reason:?}");
        // The refusing worker is tried last for a while.
        gw.invoke(&named("f", None), request()).await.unwrap();
        assert_eq!(workers.calls(), ["a", "b", "b"], "{reason:?}");
    }
    let workers = FakeWorkers::with(&[("a", 900), ("b", 100)]);
    workers.script("a", Script::Unreachable);
    let gw = gateway(workers.clone());
    gw.invoke(&named("f", None), request()).await.unwrap();
    assert_eq!(workers.calls(), ["a", "b"]);
}

#[tokio::test(start_paused = true)]
async fn what_may_have_run_is_not_retried() {
    let workers = FakeWorkers::with(&[("a", 900), ("b", 100)]);
    workers.script("a", Script::Interrupted);
    let gw = gateway(workers.clone());
    let e = gw.invoke(&named("f", None), request()).await.unwrap_err();
    assert_eq!((e.status, e.error_type.as_str()), (500, "ServiceException"));
    assert!(
        e.message.contains("interrupted on worker a"),
        "{}",
        e.message
    );
    assert_eq!(workers.calls(), ["a"], "never run twice");
}

#[tokio::test(start_paused = true)]
async fn request_errors_fail_at_once_on_any_worker() {
    for (reason, status, name) in [
        (Reason::PayloadTooLarge, 413, "RequestTooLargeException"),
        (Reason::InvalidZip, 502, "InvalidZipFileException"),
        (
            Reason::InvalidFunction,
            400,
            "InvalidParameterValueException",
        ),
    ] {
        let workers = FakeWorkers::with(&[("a", 900), ("b", 100)]);
        workers.script("a", Script::Reject(reason));
        let gw = gateway(workers.clone());
        let e = gw.invoke(&named("f", None), request()).await.unwrap_err();
        assert_eq!((e.status, e.error_type.as_str()), (status, name));
        assert_eq!(workers.calls(), ["a"], "{reason:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_function_error_is_an_answer_not_a_failure() {
    let workers = FakeWorkers::with(&[("a", 900), ("b", 100)]);
    workers.script("a", Script::FunctionError);
    let gw = gateway(workers.clone());
    let out = gw.invoke(&named("f", None), request()).await.unwrap();
    assert_eq!(out.result.function_error.as_deref(), Some("Unhandled"));
    assert_eq!(workers.calls(), ["a"]);
}

#[tokio::test(start_paused = true)]
async fn with_every_worker_refusing_it_waits_for_one_then_fails() {
    let workers = FakeWorkers::with(&[("a", 900), ("b", 100)]);
    workers.always("a", Script::Reject(Reason::Busy));
    workers.always("b", Script::Unreachable);
    let gw = gateway(workers.clone());
    let started = tokio::time::Instant::now();
    let e = gw.invoke(&named("f", None), request()).await.unwrap_err();
    let waited = started.elapsed();
    assert_eq!((e.status, e.error_type.as_str()), (500, "ServiceException"));
    // The default placement wait is 10 s; rounds back off up to 500 ms.
    assert!(
        waited >= Duration::from_millis(9_500) && waited <= Duration::from_secs(11),
        "{waited:?}"
    );
    assert!(workers.calls().len() > 4, "{:?}", workers.calls());

    // A worker that comes back within the wait takes the invocation.
    let workers = FakeWorkers::with(&[]);
    let gw = gateway(workers.clone());
    let late = workers.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        late.live.lock().unwrap().push(WorkerView {
            id: "late".into(),
            free_mb: 512,
            runtimes: RUNTIMES.iter().map(|r| r.to_string()).collect(),
            zone: None,
            edge_location: None,
        });
    });
    let out = gw.invoke(&named("f", None), request()).await.unwrap();
    assert_eq!(out.result.payload, Bytes::from_static(b"ok"));
    assert_eq!(workers.calls(), ["late"]);
}

#[tokio::test(start_paused = true)]
async fn full_workers_are_a_throttle_after_a_bounded_wait_not_a_fault() {
    let workers = FakeWorkers::with(&[("a", 900), ("b", 100)]);
    workers.always("a", Script::Reject(Reason::Busy));
    workers.always("b", Script::Reject(Reason::Busy));
    let gw = gateway(workers.clone());
    let started = tokio::time::Instant::now();
    let e = gw.invoke(&named("f", None), request()).await.unwrap_err();
    assert_eq!(
        (e.status, e.error_type.as_str()),
        (429, "TooManyRequestsException")
    );
    assert_eq!(e.reason.as_deref(), Some("InsufficientWorkerCapacity"));
    assert!(started.elapsed() <= Duration::from_secs(11), "bounded wait");
    // Capacity that frees up within the wait is used.
    let workers = FakeWorkers::with(&[("a", 900)]);
    for _ in 0..3 {
        workers.script("a", Script::Reject(Reason::Busy));
    }
    let gw = gateway(workers.clone());
    gw.invoke(&named("f", None), request()).await.unwrap();
    assert_eq!(workers.calls().len(), 4);
}

#[tokio::test(start_paused = true)]
async fn reserved_concurrency_throttles_without_reaching_a_worker() {
    let workers = FakeWorkers::with(&[("a", 900)]);
    let gw = gateway(workers.clone());
    let e = gw.invoke(&named("r0", None), request()).await.unwrap_err();
    assert_eq!(
        (e.status, e.error_type.as_str()),
        (429, "TooManyRequestsException")
    );
    assert_eq!(
        e.reason.as_deref(),
        Some("ReservedFunctionConcurrentInvocationLimitExceeded")
    );
    assert!(workers.calls().is_empty());

    // Reserved 1: a second call while the first runs is throttled; afterwards it is not.
    let release = Arc::new(Notify::new());
    workers.script("a", Script::Hold(release.clone()));
    let first = {
        let gw = gw.clone();
        tokio::spawn(async move { gw.invoke(&named("r1", None), request()).await })
    };
    while workers.calls().is_empty() {
        tokio::task::yield_now().await;
    }
    let e = gw.invoke(&named("r1", None), request()).await.unwrap_err();
    assert_eq!(e.status, 429);
    release.notify_one();
    assert_eq!(
        first.await.unwrap().unwrap().result.payload,
        Bytes::from_static(b"held")
    );
    gw.invoke(&named("r1", None), request()).await.unwrap();
    assert_eq!(workers.calls(), ["a", "a"]);
}

#[tokio::test(start_paused = true)]
async fn unknown_functions_versions_and_aliases_are_not_found() {
    let workers = FakeWorkers::with(&[("a", 900)]);
    let gw = gateway(workers.clone());
    for (name, q, message) in [
        (
            "nope",
            None,
            "Function not found: arn:aws:lambda:us-east-1:111122223333:function:nope",
        ),
        (
            "f",
            Some("9"),
            "Function not found: arn:aws:lambda:us-east-1:111122223333:function:f:9",
        ),
        (
            "f",
            Some("gone"),
            "Function not found: arn:aws:lambda:us-east-1:111122223333:function:f:gone",
        ),
    ] {
        let e = gw.invoke(&named(name, q), request()).await.unwrap_err();
        assert_eq!(
            (e.status, e.error_type.as_str()),
            (404, "ResourceNotFoundException")
        );
        assert_eq!(e.message, message);
    }
    assert!(workers.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn account_totals_follow_the_catalog() {
    let gw = gateway(FakeWorkers::with(&[]));
    let c = gw.catalog().account_concurrency(ACCOUNT, REGION);
    assert_eq!(c.totals.reserved, 1, "r0 reserves 0, r1 reserves 1");
    assert_eq!(c.totals.functions, 3);
    assert_eq!(c.unreserved(), 999);
    let other = gw.catalog().account_concurrency("999999999999", REGION);
    assert_eq!(other.totals.functions, 0);
    assert_eq!(other.unreserved(), 1000);
}
