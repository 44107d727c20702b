//! Sync invocations per second and latency of a no-op function through `nimbus dev` and
//! through a cluster of separate processes, against the same runtime reached directly,
//! in one run (issue 4's load benchmark).
//!
//! The three targets serve the same Lambda `Invoke` path, so one client (signed
//! `LambdaConnection`s, one keep-alive connection per client task) drives them all:
//! - `direct`: Nimbus's own Python bootstrap (the file the worker ships) running the same
//!   handler, started here with fork+exec and no sandbox, behind a minimal Runtime API
//!   served by this process on the same port as the `Invoke` path. This is the floor: one
//!   loopback HTTP round trip from the client plus the runtime's own Runtime API round
//!   trip, no authentication, admission, placement or isolation.
//! - `dev`: `nimbus dev` (gateway and worker in one process, functions sandboxed).
//! - `cluster`: 3 `nimbus meta`, 1 `nimbus gateway` and 1 `nimbus worker`, each its own
//!   process, talking gRPC over loopback (functions sandboxed, admission leased from the
//!   metadata leader).

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use nimbus_gateway::client::Credentials;
use tokio::sync::{mpsc, oneshot};

use crate::invoke_tracing::{Endpoint, FUNCTION};
use crate::nimbus_cluster::{gateway_command, worker_command, BenchCerts, NimbusCluster};
use crate::processes::{free_ports, ProcessGroup};

/// The very bootstrap `nimbus worker` runs for `python3.x` functions.
const PYTHON_BOOTSTRAP: &str = include_str!("../../nimbus-worker/runtimes/python/bootstrap.py");

/// What the runtime answered for one invocation.
type Outcome = Result<Bytes, Bytes>;

/// An invocation waiting for a runtime to take it.
struct Pending {
    id: String,
    payload: Bytes,
}

/// State shared by the direct target's `Invoke` and Runtime API handlers.
struct Direct {
    /// Invocations not yet taken by a runtime; every runtime's `next` takes from here.
    queue: tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>,
    submit: mpsc::UnboundedSender<Pending>,
    /// Taken invocations, by request id, waiting for their runtime's answer.
    waiting: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    next_id: AtomicU64,
    /// Set when a runtime reported an init error.
    init_error: Mutex<Option<String>>,
}

/// `runtimes` copies of the Python runtime reached directly; dropping it stops them.
pub struct DirectRuntime {
    pub addr: String,
    processes: ProcessGroup,
    state: Arc<Direct>,
    server: tokio::task::JoinHandle<()>,
}

impl DirectRuntime {
    pub async fn start(python: &Path, work_dir: &Path, runtimes: usize) -> anyhow::Result<Self> {
        let mut processes = ProcessGroup::new(work_dir, "nimbus-bench-direct-")?;
        let task = processes.dir().join("task");
        std::fs::create_dir_all(&task)?;
        std::fs::write(task.join("app.py"), FUNCTION)?;
        let bootstrap = processes.dir().join("bootstrap.py");
        std::fs::write(&bootstrap, PYTHON_BOOTSTRAP)?;

        let (submit, queue) = mpsc::unbounded_channel();
        let state = Arc::new(Direct {
            queue: tokio::sync::Mutex::new(queue),
            submit,
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            init_error: Mutex::new(None),
        });
        let app = axum::Router::new()
            .route(
                "/2015-03-31/functions/{name}/invocations",
                post(direct_invoke),
            )
            .route("/2018-06-01/runtime/invocation/next", get(runtime_next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(runtime_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(runtime_error),
            )
            .route("/2018-06-01/runtime/init/error", post(runtime_init_error))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?.to_string();
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        for i in 0..runtimes {
            let mut cmd = Command::new(python);
            cmd.arg(&bootstrap)
                .env_clear()
                .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                .env("AWS_LAMBDA_RUNTIME_API", &addr)
                .env("_HANDLER", "app.handler")
                .env("LAMBDA_TASK_ROOT", &task)
                .env("AWS_LAMBDA_FUNCTION_NAME", "bench")
                .env(
                    "AWS_LAMBDA_FUNCTION_VERSION",
                    nimbus_types::Qualifier::LATEST,
                )
                .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
                .env("PYTHONUNBUFFERED", "1")
                .env("PYTHONDONTWRITEBYTECODE", "1");
            processes.spawn(&format!("direct runtime {i}"), &format!("runtime{i}"), cmd)?;
        }
        Ok(Self {
            addr,
            processes,
            state,
            server,
        })
    }

    pub fn endpoint(&self) -> Endpoint {
        Endpoint {
            addr: self.addr.clone(),
            credentials: Credentials {
                access_key_id: "unused".into(),
                secret_access_key: "unused".into(),
                region: "us-east-1".into(),
            },
        }
    }

    /// Fails if a runtime exited or reported an init error.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        if let Some(e) = self
            .state
            .init_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
        {
            anyhow::bail!("a direct runtime failed to initialise: {e}");
        }
        self.processes.check_alive()
    }
}

impl Drop for DirectRuntime {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn direct_invoke(
    State(s): State<Arc<Direct>>,
    payload: Bytes,
) -> (StatusCode, HeaderMap, Bytes) {
    let id = format!("bench-{}", s.next_id.fetch_add(1, Ordering::Relaxed));
    let (tx, rx) = oneshot::channel();
    s.waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id.clone(), tx);
    let mut headers = HeaderMap::new();
    if s.submit.send(Pending { id, payload }).is_err() {
        return (StatusCode::INTERNAL_SERVER_ERROR, headers, Bytes::new());
    }
    match rx.await {
        Ok(Ok(body)) => (StatusCode::OK, headers, body),
        Ok(Err(body)) => {
            headers.insert("x-amz-function-error", "Unhandled".parse().expect("header"));
            (StatusCode::OK, headers, body)
        }
        Err(_) => (StatusCode::INTERNAL_SERVER_ERROR, headers, Bytes::new()),
    }
}

async fn runtime_next(State(s): State<Arc<Direct>>) -> (StatusCode, HeaderMap, Bytes) {
    let next = s.queue.lock().await.recv().await;
    let mut headers = HeaderMap::new();
    let Some(p) = next else {
        return (StatusCode::INTERNAL_SERVER_ERROR, headers, Bytes::new());
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        + Duration::from_secs(3);
    let h = |v: &str| v.parse().expect("header value");
    headers.insert("lambda-runtime-aws-request-id", h(&p.id));
    headers.insert(
        "lambda-runtime-deadline-ms",
        h(&deadline.as_millis().to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        h("arn:aws:lambda:us-east-1:000000000000:function:bench"),
    );
    (StatusCode::OK, headers, p.payload)
}

fn answer(s: &Direct, id: &str, outcome: Outcome) -> StatusCode {
    match s
        .waiting
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(id)
    {
        Some(tx) => {
            let _ = tx.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::BAD_REQUEST,
    }
}

async fn runtime_response(
    State(s): State<Arc<Direct>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    answer(&s, &id, Ok(body))
}

async fn runtime_error(
    State(s): State<Arc<Direct>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    answer(&s, &id, Err(body))
}

async fn runtime_init_error(State(s): State<Arc<Direct>>, body: Bytes) -> StatusCode {
    *s.init_error.lock().unwrap_or_else(PoisonError::into_inner) =
        Some(String::from_utf8_lossy(&body).into_owned());
    StatusCode::ACCEPTED
}

/// The benchmark's account in the cluster target.
pub(crate) const ACCOUNT: &str = "000000000000";
pub(crate) const ACCESS_KEY_ID: &str = "AKIDNIMBUSBENCH00001";
pub(crate) const SECRET_ACCESS_KEY: &str = "nimbus-bench-secret-access-key-0000000000";

/// A cluster gateway at `addr`, with the benchmark account's key.
pub(crate) fn bench_endpoint(addr: &str) -> Endpoint {
    Endpoint {
        addr: addr.to_string(),
        credentials: Credentials {
            access_key_id: ACCESS_KEY_ID.into(),
            secret_access_key: SECRET_ACCESS_KEY.into(),
            region: "us-east-1".into(),
        },
    }
}

/// 3 metadata nodes, one gateway and one worker, each its own process.
pub struct Cluster {
    pub gateway_addr: String,
    meta: NimbusCluster,
    processes: ProcessGroup,
    /// The certificates' directory, removed with the cluster.
    _certs: Option<tempfile::TempDir>,
}

impl Cluster {
    pub async fn start(
        nimbus_bin: &Path,
        work_dir: &Path,
        worker_memory_mb: u64,
        tls: bool,
    ) -> anyhow::Result<Self> {
        let certs_dir = match tls {
            true => Some(
                tempfile::Builder::new()
                    .prefix("nimbus-bench-tls-")
                    .tempdir_in(work_dir)?,
            ),
            false => None,
        };
        let certs = match &certs_dir {
            Some(d) => Some(BenchCerts::make(d.path(), 3)?),
            None => None,
        };
        let mut meta = NimbusCluster::start(nimbus_bin, work_dir, 3, certs.as_ref())?;
        meta.wait_leader(Duration::from_secs(30)).await?;
        let metas = meta.addrs.join(",");
        let status = Command::new(nimbus_bin)
            .args(BenchCerts::flags(certs.as_ref(), "admin"))
            .args(["account", "create", "--meta", &metas])
            .args(["--account-id", ACCOUNT, "--access-key-id", ACCESS_KEY_ID])
            .args(["--region", "us-east-1"])
            .env("NIMBUS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("RUST_LOG", "warn")
            .status()
            .context("running nimbus account create")?;
        anyhow::ensure!(status.success(), "nimbus account create failed: {status}");

        let mut processes = ProcessGroup::new(work_dir, "nimbus-bench-cluster-")?;
        let ports = free_ports(2)?;
        let (gateway_addr, worker_addr) = (
            format!("127.0.0.1:{}", ports[0]),
            format!("127.0.0.1:{}", ports[1]),
        );
        let mut worker = worker_command(
            nimbus_bin,
            certs.as_ref(),
            &processes.dir().join("worker"),
            &worker_addr,
            &metas,
        );
        worker
            .args(["--zone", "us-east-1a"])
            .args(["--memory-mb", &worker_memory_mb.to_string()])
            .args(["--heartbeat-ms", "1000", "--nat-pool", "100.90"]);
        processes.spawn("nimbus worker", "worker", worker)?;
        let mut gateway = gateway_command(nimbus_bin, certs.as_ref(), &gateway_addr, &metas);
        // The benchmark measures invocations, not IAM set-up.
        gateway.arg("--create-missing-roles");
        processes.spawn("nimbus gateway", "gateway", gateway)?;
        processes
            .wait_listening(
                &[&gateway_addr, &worker_addr],
                || meta.check_alive(),
                Duration::from_secs(120),
            )
            .await?;
        Ok(Self {
            gateway_addr,
            meta,
            processes,
            _certs: certs_dir,
        })
    }

    pub fn endpoint(&self) -> Endpoint {
        bench_endpoint(&self.gateway_addr)
    }

    /// Creates the function, then waits until an invocation succeeds: the gateway learns
    /// of the worker from its heartbeats, a second or two after both started.
    pub async fn create_function(&self, name: &str) -> anyhow::Result<()> {
        let endpoint = self.endpoint();
        endpoint.create_function(name).await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut c = endpoint.connect().await?;
            let r = c.invoke(name, b"{}", &[]).await?;
            if r.status == 200 && r.header("x-amz-function-error").is_none() {
                return Ok(());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "no successful invocation through the cluster: {} {}\n{}",
                r.status,
                String::from_utf8_lossy(&r.body),
                self.processes.log_tails(20)
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.meta.check_alive()?;
        self.processes.check_alive()
    }

    /// Stops the worker first (SIGTERM: it tears its sandboxes down), then the rest.
    pub async fn stop(mut self) {
        self.processes.stop().await;
    }
}
