//! [`ExecutionEnvironment`]: one sandbox running one runtime for one function
//! version, through Lambda's lifecycle: Init (bounded), Invoke (one at a
//! time, repeated while warm), Shutdown.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use nimbus_sandbox::{ExitStatus, Jail, Sandbox, SandboxSpec};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::function::{FunctionKey, FunctionSpec, Invocation, InvokeOutcome, InvokeStatus};
use crate::logs::{self, LogCapture, LogLine};
use crate::runtime_api::{Dispatch, InitSignal, RuntimeApi, RuntimeReply};
use crate::runtimes;

/// How long an answer waits, once its environment has been killed (a timeout,
/// a failed Init), for the runtime to be reaped: REPORT's peak memory and the
/// last log lines come with it. A runtime alone dies in milliseconds; a fork
/// bomb can take longer even torn down properly, and the answer is due at the
/// deadline, so past this the answer goes without it.
const EXIT_GRACE: Duration = Duration::from_millis(500);

/// How long the teardown started at a timeout keeps killing the environment's
/// processes (on its own blocking thread, off the answer's path) before it
/// leaves the rest to the sandbox's drop.
const TEARDOWN_LIMIT: Duration = Duration::from_secs(10);

/// How the first process of an environment ended.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ExitInfo {
    status: ExitStatus,
    oom_killed: bool,
    peak_bytes: Option<u64>,
}

/// `AWS_LAMBDA_INITIALIZATION_TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitializationType {
    /// Created for an invocation.
    OnDemand,
    /// Created ahead of demand (`prewarm`).
    ProvisionedConcurrency,
}

impl InitializationType {
    fn as_str(self) -> &'static str {
        match self {
            InitializationType::OnDemand => "on-demand",
            InitializationType::ProvisionedConcurrency => "provisioned-concurrency",
        }
    }
}

/// Init failed: the environment is gone; the invocation gets this error.
#[derive(Debug)]
pub(crate) struct InitFailure {
    pub error_type: String,
    pub payload: Bytes,
    pub logs: Vec<LogLine>,
    pub init_duration: Duration,
    /// The stream the failed environment's lines belong to.
    pub log_stream: String,
}

/// Why `start` failed.
#[derive(Debug)]
pub(crate) enum StartError {
    /// The platform could not create the environment (nothing ran).
    Engine(EngineError),
    /// The runtime ran and failed its Init.
    Init(InitFailure),
}

/// A running, initialised environment.
pub(crate) struct ExecutionEnvironment {
    /// Unique id (cgroup, scratch image, logs).
    pub id: String,
    /// The function version it serves.
    pub key: FunctionKey,
    /// Reserved memory.
    pub memory_mb: u64,
    /// Made from a pre-created shell (see `nimbus_sandbox::JailConfig::shell_pool`).
    pub from_shell: bool,
    sandbox: Arc<Mutex<Sandbox>>,
    events: mpsc::Sender<Dispatch>,
    logs: LogCapture,
    api_task: JoinHandle<()>,
    exit_task: JoinHandle<()>,
    exited: watch::Receiver<Option<ExitInfo>>,
    /// Init duration and Init's log lines, reported with the first invocation.
    pending_init: Option<(Duration, Vec<LogLine>)>,
    /// This environment's log stream (`AWS_LAMBDA_LOG_STREAM_NAME`).
    log_stream: String,
    /// On-demand environments report `Init Duration` on their first
    /// invocation; provisioned ones (prewarm) do not, as on Lambda.
    init_type: InitializationType,
    /// When it last finished an invocation (LRU and idle timeout).
    pub last_used: Instant,
    /// When its execution-role credentials expire (Unix ms); it is retired before.
    credentials_expire_ms: Option<u64>,
}

impl std::fmt::Debug for ExecutionEnvironment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecutionEnvironment")
            .field("id", &self.id)
            .field("key", &self.key)
            .finish()
    }
}

/// Open files per environment (Lambda's limit).
pub(crate) const NOFILE: u64 = 1024;

fn lambda_env(
    config: &EngineConfig,
    spec: &FunctionSpec,
    launch_env: &[(String, String)],
    log_stream: &str,
    init_type: InitializationType,
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let reserved = [
        ("_HANDLER", spec.handler.clone()),
        ("LAMBDA_TASK_ROOT", "/var/task".into()),
        ("LAMBDA_RUNTIME_DIR", "/var/runtime".into()),
        ("AWS_LAMBDA_FUNCTION_NAME", spec.function_name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", spec.version.clone()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!(
                "/aws/lambda/{}",
                config.log_group_function(&spec.function_name)
            ),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", log_stream.to_owned()),
        ("AWS_REGION", config.region.clone()),
        ("AWS_DEFAULT_REGION", config.region.clone()),
        ("AWS_EXECUTION_ENV", format!("AWS_Lambda_{}", spec.runtime)),
        ("AWS_LAMBDA_INITIALIZATION_TYPE", init_type.as_str().into()),
        ("AWS_LAMBDA_LOG_FORMAT", spec.log_format.as_str().into()),
        ("_X_AMZN_TRACE_ID", String::new()),
    ];
    let process = crate::runtimes::PROCESS_ENV.map(|(k, v)| (k, v.to_owned()));
    let reserved_names: Vec<&str> = reserved.iter().chain(&process).map(|(k, _)| *k).collect();
    env.retain(|(k, _)| !reserved_names.contains(&k.as_str()) && k != "AWS_LAMBDA_RUNTIME_API");
    env.extend(
        reserved
            .into_iter()
            .chain(process)
            .map(|(k, v)| (k.to_owned(), v)),
    );
    // LoggingConfig.ApplicationLogLevel, when set, is what the runtime filters by.
    if let Some(level) = &spec.application_log_level {
        env.retain(|(k, _)| k != "AWS_LAMBDA_LOG_LEVEL");
        env.push(("AWS_LAMBDA_LOG_LEVEL".into(), level.clone()));
    }
    // The execution role's session, and the Nimbus API at the environment's own
    // Runtime API address (relayed to a gateway: `aws_proxy`), for the SDKs inside.
    for k in CREDENTIAL_VARS {
        env.retain(|(name, _)| name != k);
    }
    if let Some(c) = &spec.credentials {
        env.push(("AWS_ACCESS_KEY_ID".into(), c.access_key_id.clone()));
        env.push(("AWS_SECRET_ACCESS_KEY".into(), c.secret_access_key.clone()));
        env.push(("AWS_SESSION_TOKEN".into(), c.session_token.clone()));
    }
    if config.aws_endpoint.is_some() {
        let url = format!("http://127.0.0.1:{}", config.runtime_api_port);
        for k in ENDPOINT_VARS {
            env.retain(|(name, _)| name != k);
            env.push(((*k).into(), url.clone()));
        }
    }
    env.extend(launch_env.iter().cloned());
    env
}

/// Set by the platform only (a function's own variables of these names are dropped).
const CREDENTIAL_VARS: &[&str] = &[
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];
/// The generic endpoint variable and the per-service ones, for SDKs that read only those.
const ENDPOINT_VARS: &[&str] = &[
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_LAMBDA",
    "AWS_ENDPOINT_URL_STS",
    "AWS_ENDPOINT_URL_IAM",
    "AWS_ENDPOINT_URL_CLOUDWATCH_LOGS",
];

/// An environment is retired this long before its credentials expire.
const CREDENTIALS_MARGIN_MS: u64 = 5 * 60 * 1000;

fn error_payload(error_type: &str, message: &str) -> Bytes {
    Bytes::from(serde_json::json!({ "errorType": error_type, "errorMessage": message }).to_string())
}

impl ExecutionEnvironment {
    /// Creates the sandbox, starts the runtime and waits for Init to finish.
    pub(crate) async fn start(
        config: &EngineConfig,
        jail: Arc<Jail>,
        spec: &FunctionSpec,
        init_type: InitializationType,
    ) -> Result<Self, StartError> {
        let started = Instant::now();
        let id = format!("env-{}", uuid::Uuid::new_v4().simple());
        let log_stream = logs::log_stream_name(&spec.version);
        let init_start: Vec<LogLine> = logs::platform_init_start(
            spec.log_format,
            &spec.function_name,
            &spec.version,
            init_type.as_str(),
        )
        .into_iter()
        .collect();
        let launch = match runtimes::launch(config, spec) {
            Ok(l) => l,
            Err(message) => {
                return Err(StartError::Init(InitFailure {
                    error_type: "Runtime.InvalidEntrypoint".into(),
                    payload: error_payload("Runtime.InvalidEntrypoint", &message),
                    logs: init_start,
                    init_duration: started.elapsed(),
                    log_stream,
                }))
            }
        };
        let (read_end, write_end) =
            std::io::pipe().map_err(|e| StartError::Engine(EngineError::io("log pipe", e)))?;
        let write_end: OwnedFd = write_end.into();
        let stderr = write_end
            .try_clone()
            .map_err(|e| StartError::Engine(EngineError::io("log pipe", e)))?;
        let env = lambda_env(config, spec, &launch.env, &log_stream, init_type);
        let sandbox_spec = SandboxSpec {
            id: id.clone(),
            program: launch.program.clone(),
            args: launch.args.clone(),
            zygote: launch.zygote_for(&env),
            env,
            cwd: "/var/task".into(),
            code_dir: spec.code_dir.clone(),
            runtime_dir: launch.runtime_dir.clone(),
            system_root: launch.system_root.clone(),
            layers: spec.layers.clone(),
            memory_mb: spec.memory_mb,
            ephemeral_mb: spec.ephemeral_mb,
            pids_max: config.pids_max,
            nofile: NOFILE,
            user: config.user,
            stdout: write_end,
            stderr,
            service_port: Some(config.runtime_api_port),
            service_addr_env: "AWS_LAMBDA_RUNTIME_API".into(),
            unrestricted_cpu_at_start: config.init_cpu_boost,
        };
        let (api, events, init_rx) =
            RuntimeApi::new(config.aws_endpoint.clone(), config.stream_limits);
        // Sandbox creation makes blocking system calls.
        let jail2 = jail.clone();
        let created = tokio::task::spawn_blocking(move || {
            let mut prepared = jail2.prepare(sandbox_spec)?;
            let listener = prepared.take_service_listener();
            // A zygote writes to its own pipe, made when it started.
            let output = prepared.take_output();
            let sandbox = prepared.start()?;
            Ok::<_, nimbus_sandbox::SandboxError>((sandbox, listener, output))
        })
        .await
        .map_err(|e| {
            StartError::Engine(EngineError::io("sandbox task", std::io::Error::other(e)))
        })?;
        let (sandbox, listener, output) = created.map_err(|e| StartError::Engine(e.into()))?;
        let output = output.unwrap_or_else(|| read_end.into());
        let logs = LogCapture::start(id.clone(), output)
            .map_err(|e| StartError::Engine(EngineError::io("log capture", e)))?;
        let api_task = match listener {
            Some(l) => api
                .serve(l)
                .map_err(|e| StartError::Engine(EngineError::io("runtime api", e)))?,
            None => tokio::spawn(async {}),
        };
        let watch = nimbus_sandbox::ExitWatch::new(&sandbox)
            .map_err(|e| StartError::Engine(EngineError::io("pidfd", e)))?;
        let from_shell = sandbox.pooled();
        let sandbox = Arc::new(Mutex::new(sandbox));
        let (exit_tx, exited) = watch::channel(None);
        let exit_task = spawn_exit_watcher(watch, Arc::downgrade(&sandbox), exit_tx);

        let mut env = ExecutionEnvironment {
            id,
            key: spec.key(),
            memory_mb: spec.memory_mb,
            from_shell,
            sandbox,
            events,
            logs,
            api_task,
            exit_task,
            exited,
            pending_init: None,
            log_stream: log_stream.clone(),
            init_type,
            last_used: Instant::now(),
            credentials_expire_ms: spec.credentials.as_ref().map(|c| c.expires_ms),
        };

        // Init: the runtime's first /next, an /init/error, its death, or the time limit.
        let mut exited = env.exited.clone();
        let outcome = tokio::select! {
            signal = init_rx => match signal {
                Ok(InitSignal::Ready) => Ok(()),
                Ok(InitSignal::Failed { body, error_type }) => {
                    let error_type = error_type
                        .or_else(|| json_error_type(&body))
                        .unwrap_or_else(|| "Runtime.Unknown".into());
                    Err((error_type, normalise_error(body, None)))
                }
                Err(_) => Err(("Runtime.Unknown".into(), error_payload("Runtime.Unknown", "init signal lost"))),
            },
            info = wait_exit(&mut exited) => {
                let message = format!("Runtime exited with error: {}", info.status);
                let t = if info.oom_killed { "Runtime.OutOfMemory" } else { "Runtime.ExitError" };
                Err((t.to_owned(), error_payload(t, &message)))
            }
            _ = tokio::time::sleep(config.init_timeout) => {
                let message = format!("INIT phase timed out after {:.2} seconds", config.init_timeout.as_secs_f64());
                Err(("Sandbox.Timedout".to_owned(), error_payload("Sandbox.Timedout", &message)))
            }
        };
        let init_duration = started.elapsed();
        match outcome {
            Ok(()) => {
                // Init is over: from now on CPU is proportional to memory.
                let quota = env
                    .sandbox
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .apply_cpu_quota();
                if let Err(e) = quota {
                    env.kill();
                    return Err(StartError::Engine(e.into()));
                }
                let mut init_logs = init_start;
                init_logs.extend(env.logs.drain());
                env.pending_init = Some((init_duration, init_logs));
                Ok(env)
            }
            Err((error_type, payload)) => {
                env.terminate();
                wait_exit_within(env.exited.clone(), EXIT_GRACE).await;
                let mut logs = init_start;
                logs.extend(env.logs.drain());
                // The failure is answered now; the environment finishes dying
                // in the background.
                tokio::spawn(env.shutdown());
                Err(StartError::Init(InitFailure {
                    error_type,
                    payload,
                    logs,
                    init_duration,
                    log_stream,
                }))
            }
        }
    }

    /// Runs one invocation. Returns the outcome and whether the environment
    /// can be reused (false after a timeout, crash or OOM).
    pub(crate) async fn invoke(
        &mut self,
        spec: &FunctionSpec,
        inv: Invocation,
    ) -> (InvokeOutcome, bool) {
        let cold = self.pending_init.take();
        let mut log = Vec::new();
        let mut init_duration = None;
        if let Some((d, init_logs)) = cold {
            if self.init_type == InitializationType::OnDemand {
                init_duration = Some(d);
            }
            log.extend(init_logs);
        }
        let format = spec.log_format;
        log.push(logs::platform_start(format, &inv.request_id, &spec.version));

        let (reply_tx, reply_rx) = oneshot::channel();
        let trace_id = inv.trace_id.clone().unwrap_or_else(new_trace_id);
        let dispatch = Dispatch {
            request_id: inv.request_id.clone(),
            payload: inv.payload.clone(),
            deadline: SystemTime::now() + spec.timeout,
            function_arn: spec.arn.clone(),
            trace_id,
            client_context: inv.client_context.clone(),
            cognito_identity: inv.cognito_identity.clone(),
            reply: reply_tx,
            stream: inv.stream.clone(),
        };
        let sent_at = Instant::now();
        let _ = self.events.send(dispatch).await;
        let deadline = tokio::time::Instant::now() + spec.timeout;
        let mut exited = self.exited.clone();
        let rid = &inv.request_id;
        enum End {
            Reply(RuntimeReply),
            Exit(ExitInfo),
            Timeout,
        }
        let end = tokio::select! {
            r = reply_rx => match r {
                Ok(reply) => End::Reply(reply),
                // The API dropped the event: the runtime is gone, or going. Its
                // exit is the answer, but the deadline still holds.
                Err(_) => match tokio::time::timeout_at(deadline, wait_exit(&mut exited)).await {
                    Ok(info) => End::Exit(info),
                    Err(_) => End::Timeout,
                },
            },
            info = wait_exit(&mut exited) => End::Exit(info),
            _ = tokio::time::sleep_until(deadline) => End::Timeout,
        };
        let finished = Instant::now();
        let (status, payload, healthy, duration) = match end {
            End::Reply(RuntimeReply::Response { body, delivered_at }) => {
                (InvokeStatus::Ok, body, true, finished - delivered_at)
            }
            End::Reply(RuntimeReply::ResponseTooLarge {
                limit,
                delivered_at,
            }) => {
                let t = "Function.ResponseSizeTooLarge";
                let msg = format!(
                    "Response payload size exceeded maximum allowed payload size ({limit} bytes)."
                );
                (fe(t), error_payload(t, &msg), true, finished - delivered_at)
            }
            End::Reply(RuntimeReply::Error {
                body,
                error_type,
                delivered_at,
            }) => {
                let t = json_error_type(&body)
                    .or(error_type.clone())
                    .unwrap_or_else(|| "Unhandled".into());
                (
                    fe(&t),
                    normalise_error(body, error_type),
                    true,
                    finished - delivered_at,
                )
            }
            End::Exit(info) => {
                let t = if info.oom_killed {
                    "Runtime.OutOfMemory"
                } else {
                    "Runtime.ExitError"
                };
                let msg = match info.status {
                    ExitStatus::Exited(0) => {
                        format!("RequestId: {rid} Error: Runtime exited without providing a reason")
                    }
                    status => {
                        format!("RequestId: {rid} Error: Runtime exited with error: {status}")
                    }
                };
                (fe(t), error_payload(t, &msg), false, finished - sent_at)
            }
            End::Timeout => {
                self.terminate();
                let t = "Sandbox.Timedout";
                let msg = format!(
                    "RequestId: {rid} Error: Task timed out after {:.2} seconds",
                    spec.timeout.as_secs_f64()
                );
                (fe(t), error_payload(t, &msg), false, spec.timeout)
            }
        };
        if !healthy {
            // Bounded: the answer never waits for a fork bomb to die.
            wait_exit_within(exited, EXIT_GRACE).await;
        }
        let max_memory_mb = self.peak_mb();
        log.extend(self.logs.drain());
        let error_type = match &status {
            InvokeStatus::Ok => None,
            InvokeStatus::FunctionError { error_type } => Some(error_type.as_str()),
        };
        if error_type == Some("Sandbox.Timedout") && format == logs::LogFormat::Text {
            log.push(LogLine::now(logs::timeout_line(rid, spec.timeout)));
        }
        log.extend(logs::platform_end(format, rid));
        log.push(logs::platform_report(
            format,
            &logs::Report {
                request_id: rid,
                duration,
                memory_mb: spec.memory_mb,
                max_memory_mb,
                init_duration,
                error_type,
            },
        ));
        let text = logs::text(&log);
        self.last_used = Instant::now();
        let outcome = InvokeOutcome {
            request_id: inv.request_id,
            status,
            payload,
            log_tail: logs::tail(&text),
            log: text,
            log_lines: log,
            log_stream: self.log_stream.clone(),
            executed_version: spec.version.clone(),
            init_duration,
            duration,
            billed_duration_ms: logs::billed_ms(duration),
            memory_mb: spec.memory_mb,
            max_memory_mb,
        };
        (outcome, healthy)
    }

    fn peak_mb(&self) -> u64 {
        let exit_peak = self.exited.borrow().and_then(|i| i.peak_bytes);
        let peak = exit_peak.or_else(|| {
            self.sandbox
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .memory_peak_bytes()
        });
        peak.unwrap_or(0).div_ceil(1024 * 1024)
    }

    /// True while the runtime process is alive.
    pub(crate) fn is_alive(&self) -> bool {
        self.exited.borrow().is_none()
    }

    /// Whether it may take another invocation: alive, with credentials that stay valid
    /// for a while yet (a function never sees them expire mid-invocation).
    pub(crate) fn is_usable(&self) -> bool {
        self.is_alive()
            && self.credentials_expire_ms.is_none_or(|exp| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                exp > now + CREDENTIALS_MARGIN_MS
            })
    }

    fn kill(&self) {
        self.sandbox
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .kill();
    }

    /// Kills the environment now and tears it down on a blocking thread
    /// (every process in its cgroup, see `nimbus_sandbox::Teardown`) without
    /// waiting for that: the lock is held only to signal and to copy the
    /// cgroup's paths, so reading the peak memory or reaping is never stuck
    /// behind a dying fork bomb.
    fn terminate(&self) {
        let sandbox = self.sandbox.lock().unwrap_or_else(PoisonError::into_inner);
        sandbox.kill();
        let teardown = sandbox.teardown();
        drop(sandbox);
        if let Some(teardown) = teardown {
            let id = self.id.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = teardown.run(TEARDOWN_LIMIT) {
                    tracing::warn!(env = %id, error = %e, "environment not torn down in time");
                }
            });
        }
    }

    /// Kills the environment and releases its sandbox (on a blocking thread).
    pub(crate) async fn shutdown(self) {
        let sandbox = self.sandbox.clone();
        drop(self);
        let _ = tokio::task::spawn_blocking(move || drop(sandbox)).await;
    }
}

impl Drop for ExecutionEnvironment {
    fn drop(&mut self) {
        self.kill();
        self.api_task.abort();
        self.exit_task.abort();
        // Reaping and cleanup block; keep them off the async threads.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let sandbox = self.sandbox.clone();
            handle.spawn_blocking(move || drop(sandbox));
        }
    }
}

fn fe(t: &str) -> InvokeStatus {
    InvokeStatus::FunctionError {
        error_type: t.to_owned(),
    }
}

fn json_error_type(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("errorType")?.as_str().map(str::to_owned)
}

/// Runtimes post `{"errorMessage","errorType","stackTrace"}`; anything else is wrapped.
fn normalise_error(body: Bytes, header_type: Option<String>) -> Bytes {
    if serde_json::from_slice::<serde_json::Value>(&body).is_ok_and(|v| v.is_object()) {
        return body;
    }
    let t = header_type.unwrap_or_else(|| "Unhandled".into());
    error_payload(&t, &String::from_utf8_lossy(&body))
}

/// `Root=1-<8 hex epoch>-<24 hex>;Parent=<16 hex>;Sampled=0`
fn new_trace_id() -> String {
    let secs = SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let a = uuid::Uuid::new_v4().simple().to_string();
    let b = uuid::Uuid::new_v4().simple().to_string();
    format!(
        "Root=1-{secs:08x}-{};Parent={};Sampled=0",
        &a[..24],
        &b[..16]
    )
}

async fn wait_exit(rx: &mut watch::Receiver<Option<ExitInfo>>) -> ExitInfo {
    // Copy the value out first: the borrow holds a lock guard, which must not live across
    // the `pending()` await below (the future has to stay `Send`).
    let seen = rx.wait_for(Option::is_some).await.map(|v| *v);
    match seen {
        Ok(v) => v.unwrap_or(ExitInfo {
            status: ExitStatus::Exited(-1),
            oom_killed: false,
            peak_bytes: None,
        }),
        Err(_) => std::future::pending().await,
    }
}

/// Waits at most `grace` for the runtime to have exited and been reaped.
async fn wait_exit_within(mut rx: watch::Receiver<Option<ExitInfo>>, grace: Duration) {
    let _ = tokio::time::timeout(grace, wait_exit(&mut rx)).await;
}

/// Watches for the runtime's exit, then reaps it and publishes how it ended.
/// It holds the sandbox weakly while it waits: when the environment is
/// dropped, this task is aborted, and an aborted task drops what it holds on
/// an async thread, where the sandbox's drop (a teardown, then a reap) must
/// never run.
fn spawn_exit_watcher(
    watch: nimbus_sandbox::ExitWatch,
    sandbox: Weak<Mutex<Sandbox>>,
    tx: watch::Sender<Option<ExitInfo>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        watch.exited().await;
        // Reaping releases the cgroup and scratch disk: blocking work.
        let info = tokio::task::spawn_blocking(move || {
            // Gone: the environment was dropped, and the sandbox's drop reaps.
            let sandbox = sandbox.upgrade()?;
            let mut s = sandbox.lock().unwrap_or_else(PoisonError::into_inner);
            // Read the cgroup before reaping: reaping removes it.
            let oom_killed = s.oom_kills() > 0;
            let peak_bytes = s.memory_peak_bytes();
            let status = s.wait().unwrap_or(ExitStatus::Exited(-1));
            Some(ExitInfo {
                status,
                oom_killed,
                peak_bytes,
            })
        })
        .await;
        let info = match info {
            Ok(Some(info)) => info,
            Ok(None) => return,
            Err(_) => ExitInfo {
                status: ExitStatus::Exited(-1),
                oom_killed: false,
                peak_bytes: None,
            },
        };
        let _ = tx.send(Some(info));
    })
}
