//! [`Engine`]: the worker's execution side as one object the node calls.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use nimbus_sandbox::{Jail, JailConfig, ShellShape, ZygoteShape};
use nimbus_telemetry::decision::child_span;
use nimbus_types::limits;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::config::EngineConfig;
use crate::environment::{ExecutionEnvironment, InitializationType, StartError};
use crate::error::EngineError;
use crate::function::{FunctionSpec, Invocation, InvokeOutcome, InvokeStatus};
use crate::log_store::LogStore;
use crate::logs;
use crate::pool::{Acquire, Pool, PoolMetrics};

/// Lambda's default `/tmp` size, in MB: the shape pre-created shells are kept for.
const DEFAULT_EPHEMERAL_MB: u64 = 512;

/// Runs Lambda invocations in sandboxed, reusable execution environments.
/// Cheap to clone; all clones share one pool.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    config: EngineConfig,
    /// Every invocation's lines land here before the invocation is answered.
    logs: Arc<LogStore>,
    /// The background retention sweep of `logs`.
    log_sweeper: Mutex<Option<JoinHandle<()>>>,
    jail: Arc<Jail>,
    pool: Pool,
    reaper: Mutex<Option<JoinHandle<()>>>,
    shutting_down: std::sync::atomic::AtomicBool,
    /// The interpreters' versions, asked once (see `runtimes::Interpreters`).
    interpreters: crate::runtimes::Interpreters,
    /// Shells kept ready with a runtime's zygote started (`runtimes::zygotes`).
    zygote_shapes: Vec<ShellShape>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("metrics", &self.metrics())
            .finish()
    }
}

impl Engine {
    /// Validates the configuration, checks the sandbox prerequisites (fails
    /// closed if isolation is unavailable), installs the bundled runtimes and
    /// starts the idle reaper. Must be called inside a tokio runtime.
    pub fn new(config: EngineConfig) -> Result<Self, EngineError> {
        config.validate()?;
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| EngineError::io(format!("create {}", config.state_dir.display()), e))?;
        crate::runtimes::install(&config.state_dir)?;
        let jail = Jail::new(JailConfig {
            state_dir: config.state_dir.join("sandbox"),
            cgroup_parent: config.cgroup_parent.clone(),
            network: config.network.clone(),
            insecure_no_isolation: config.insecure_no_isolation,
            expedite_rcu: config.expedite_rcu,
            shell_pool: config.shell_pool,
            zygotes: config.zygotes,
            ..JailConfig::default()
        })?;
        if config.reclaim_orphans {
            jail.reclaim_orphans();
        }
        // After reclaiming: shells live in cgroups under the same parent.
        // Other /tmp sizes get shells after their first cold start.
        jail.keep_shells_ready(Some(config.runtime_api_port), DEFAULT_EPHEMERAL_MB);
        // And shells with each runtime's zygote started, for the default /tmp size.
        let interpreters = crate::runtimes::Interpreters::new(&config);
        let zygote_shapes: Vec<ShellShape> = if config.zygotes && config.shell_pool > 0 {
            crate::runtimes::zygotes(&config, &interpreters)
                .into_iter()
                .map(|(system_root, zygote)| ShellShape {
                    service_port: Some(config.runtime_api_port),
                    ephemeral_mb: DEFAULT_EPHEMERAL_MB,
                    system_root,
                    zygote: Some(ZygoteShape {
                        zygote,
                        user: config.user,
                        nofile: crate::environment::NOFILE,
                    }),
                })
                .collect()
        } else {
            Vec::new()
        };
        for shape in &zygote_shapes {
            jail.keep_ready(shape.clone());
        }
        let logs = Arc::new(
            LogStore::open(config.log_dir(), &config.logs)
                .map_err(|e| EngineError::io("log store", std::io::Error::other(e)))?,
        );
        let log_sweeper = logs.spawn_retention(config.logs.sweep_interval);
        let inner = Arc::new(Inner {
            logs,
            log_sweeper: Mutex::new(Some(log_sweeper)),
            pool: Pool::new(config.max_memory_mb).with_weights(config.account_weights.clone()),
            jail: Arc::new(jail),
            interpreters,
            zygote_shapes,
            config,
            reaper: Mutex::new(None),
            shutting_down: false.into(),
        });
        let weak = Arc::downgrade(&inner);
        let interval = inner.config.reap_interval;
        let reaper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            loop {
                tick.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let expired = inner.pool.expire(inner.config.idle_timeout);
                for env in expired {
                    tracing::debug!(env = %env.id, "shutting down idle environment");
                    env.shutdown().await;
                }
            }
        });
        *inner.reaper.lock().unwrap_or_else(PoisonError::into_inner) = Some(reaper);
        Ok(Engine { inner })
    }

    /// The configuration in force.
    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// The cluster's node addresses, which environments may never reach.
    pub fn set_cluster_nodes(&self, addrs: &[std::net::Ipv4Addr]) -> Result<(), EngineError> {
        Ok(self.inner.jail.set_cluster_nodes(addrs)?)
    }

    /// The function log store (for queries).
    pub fn log_store(&self) -> &Arc<LogStore> {
        &self.inner.logs
    }

    /// Appends an invocation's lines to its stream before the invocation is answered, so
    /// a query right after sees them. A failing disk costs the logs, not the invocation.
    ///
    /// Written from the invoking task rather than on a blocking thread: it is one small
    /// append to a local file (the page cache takes it; nothing is synced), and handing
    /// it to tokio's blocking pool and waiting for it cost more than the write itself
    /// (a thread wake-up and a futex each way on every invocation; docs/benchmarks.md,
    /// "Where an invocation's CPU goes").
    fn persist_logs(&self, spec: &FunctionSpec, outcome: &InvokeOutcome) {
        let function = self.inner.config.log_group_function(&spec.function_name);
        if let Err(e) = self.inner.logs.append(
            &spec.account_id,
            &function,
            &outcome.log_stream,
            &outcome.log_lines,
        ) {
            tracing::warn!(function = %spec.function_name, "writing function logs: {e}");
        }
    }

    /// Invokes `spec` synchronously: warm environment if one is idle, cold
    /// start otherwise. Function failures (errors, timeouts, crashes, Init
    /// failures) are `Ok` outcomes with [`InvokeStatus::FunctionError`];
    /// `Err` means the invocation could not be attempted.
    pub async fn invoke(
        &self,
        spec: &FunctionSpec,
        mut inv: Invocation,
    ) -> Result<InvokeOutcome, EngineError> {
        self.check(spec)?;
        // The request's limit (6 MiB), not the response's.
        let limit = nimbus_types::limits::SYNC_PAYLOAD_MAX_BYTES;
        if inv.payload.len() > limit {
            return Err(EngineError::PayloadTooLarge {
                size: inv.payload.len(),
                limit,
            });
        }
        let acquired = self.inner.pool.acquire(&spec.key(), spec.memory_mb, true);
        let cold = matches!(acquired, Acquire::Cold { .. });
        let mut env = match acquired {
            Acquire::Warm(env) => env,
            Acquire::NoCapacity { free_mb } => {
                return Err(EngineError::NoCapacity {
                    needed_mb: spec.memory_mb,
                    free_mb,
                })
            }
            Acquire::OverShare { evicted } => {
                // Its idle environments made room for the account that waits.
                for e in evicted {
                    tokio::spawn(e.shutdown());
                }
                return Err(EngineError::OverShare {
                    account: spec.account_id.clone(),
                });
            }
            Acquire::Cold { slot, evicted } => {
                // If the caller goes away mid-start, or the start fails, `slot` drops and
                // gives the reservation back.
                for e in evicted {
                    e.shutdown().await;
                }
                // Cold start only: the environment's Init, as its own span.
                let init_span = child_span(|| {
                    tracing::info_span!(
                        "init",
                        otel.name = "Init",
                        faas.name = %spec.function_name,
                        faas.version = %spec.version,
                    )
                });
                match ExecutionEnvironment::start(
                    &self.inner.config,
                    self.inner.jail.clone(),
                    spec,
                    InitializationType::OnDemand,
                )
                .instrument(init_span)
                .await
                {
                    Ok(env) => slot.into_busy(env),
                    Err(StartError::Engine(e)) => return Err(e),
                    Err(StartError::Init(failure)) => {
                        drop(slot);
                        let mut outcome = init_failure_outcome(spec, inv, failure);
                        logs::apply_system_level(spec.system_log_level.as_deref(), &mut outcome);
                        self.persist_logs(spec, &outcome);
                        return Ok(outcome);
                    }
                }
            }
        };
        // The invocation inside the runtime (OpenTelemetry's FaaS server span). Its
        // context goes into the function as X-Amzn-Trace-Id, so the function's own spans
        // join this trace; without exported traces the caller's header passes through. An
        // unsampled trace has no span here, and passes on its own context.
        let span = child_span(|| {
            tracing::info_span!(
                "invocation",
                otel.name = "Invocation",
                otel.kind = "server",
                otel.status_code = tracing::field::Empty,
                faas.invocation_id = %inv.request_id,
                faas.coldstart = cold,
                faas.name = %spec.function_name,
                faas.version = %spec.version,
            )
        });
        if let Some(sc) = nimbus_telemetry::propagation::span_context(&span) {
            inv.trace_id = Some(nimbus_telemetry::propagation::amzn_trace_id(&sc));
        }
        // If the caller goes away mid-invocation (a gateway died), the future is dropped
        // here: `env` drops, which gives its memory back and kills the environment.
        let (mut outcome, healthy) = env.invoke(spec, inv).instrument(span.clone()).await;
        logs::apply_system_level(spec.system_log_level.as_deref(), &mut outcome);
        if outcome.status != InvokeStatus::Ok {
            span.record("otel.status_code", "ERROR");
        }
        self.persist_logs(spec, &outcome);
        let keep = healthy && !self.is_shutting_down();
        if keep {
            env.release();
        } else {
            // Its memory is free from here on; the answer does not wait for the
            // environment to be gone (after a timeout, a fork bomb may still be
            // dying), so that goes on in the background.
            tokio::spawn(env.retire().shutdown());
        }
        Ok(outcome)
    }

    /// Starts `count` environments for `spec` ahead of demand
    /// (`AWS_LAMBDA_INITIALIZATION_TYPE=provisioned-concurrency`).
    /// Returns how many were started.
    pub async fn prewarm(&self, spec: &FunctionSpec, count: usize) -> Result<usize, EngineError> {
        self.check(spec)?;
        let mut started = 0;
        for _ in 0..count {
            let acquired = self.inner.pool.acquire(&spec.key(), spec.memory_mb, false);
            match acquired {
                Acquire::Warm(_) => unreachable!("acquire(for_invoke=false) never returns Warm"),
                Acquire::NoCapacity { .. } => break,
                Acquire::OverShare { evicted } => {
                    for e in evicted {
                        e.shutdown().await;
                    }
                    break;
                }
                // A failed or abandoned start drops `slot`, which releases its memory.
                Acquire::Cold { slot, evicted } => {
                    for e in evicted {
                        e.shutdown().await;
                    }
                    match ExecutionEnvironment::start(
                        &self.inner.config,
                        self.inner.jail.clone(),
                        spec,
                        InitializationType::ProvisionedConcurrency,
                    )
                    .await
                    {
                        Ok(env) => {
                            slot.into_idle(env);
                            started += 1;
                        }
                        Err(StartError::Engine(e)) => return Err(e),
                        Err(StartError::Init(_)) => break,
                    }
                }
            }
        }
        Ok(started)
    }

    /// Provisioned concurrency: keeps `count` environments of `spec` for `hold` (renewed
    /// by calling again), starting the missing ones now. Held environments are neither
    /// reaped when idle nor evicted for other functions; `count` 0 releases the hold.
    /// Returns how many environments of `spec` exist (at most `count`).
    pub async fn provision(
        &self,
        spec: &FunctionSpec,
        count: usize,
        hold: Duration,
    ) -> Result<usize, EngineError> {
        self.check(spec)?;
        let key = spec.key();
        let have = self.inner.pool.hold(&key, count, hold);
        if count > have {
            self.prewarm(spec, count - have).await?;
        }
        Ok(self.inner.pool.environments(&key).min(count))
    }

    /// The pool's own counts (environments, memory, invocations), without the shell
    /// and zygote counts. Every invocation's answer carries these as the worker's load,
    /// so they must be cheap: counting ready shells copies their pids out of the shell
    /// pool.
    pub fn pool_metrics(&self) -> PoolMetrics {
        self.inner.pool.metrics()
    }

    /// Current pool counts, ready shells and zygotes included (for metrics and status).
    pub fn metrics(&self) -> PoolMetrics {
        let mut m = self.inner.pool.metrics();
        m.shells_ready = self
            .inner
            .jail
            .ready_shells(
                Some(self.inner.config.runtime_api_port),
                DEFAULT_EPHEMERAL_MB,
            )
            .len();
        m.zygote_shapes = self.inner.zygote_shapes.len();
        m.zygotes_ready = self
            .inner
            .zygote_shapes
            .iter()
            .map(|shape| self.inner.jail.ready(shape.clone()).len())
            .sum();
        m
    }

    /// Revisions with an idle warm environment right now (for placement).
    pub fn warm_revisions(&self) -> Vec<String> {
        self.inner.pool.warm_revisions()
    }

    /// Stops the reaper and shuts down every idle environment; busy ones are
    /// shut down when their invocation ends.
    pub async fn shutdown(&self) {
        self.inner
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(r) = self
            .inner
            .reaper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            r.abort();
        }
        if let Some(r) = self
            .inner
            .log_sweeper
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            r.abort();
        }
        let idle = self.inner.pool.drain_idle();
        for env in idle {
            env.shutdown().await;
        }
        // The pool's waiting shells too: left to the process's exit, their cgroups stay.
        let jail = self.inner.jail.clone();
        let _ = tokio::task::spawn_blocking(move || jail.close_shells()).await;
    }

    fn is_shutting_down(&self) -> bool {
        self.inner
            .shutting_down
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    fn check(&self, spec: &FunctionSpec) -> Result<(), EngineError> {
        if self.is_shutting_down() {
            return Err(EngineError::ShuttingDown);
        }
        self.inner.interpreters.check(&spec.runtime)?;
        if !(u64::from(limits::MEMORY_MIN_MB)..=u64::from(limits::MEMORY_MAX_MB))
            .contains(&spec.memory_mb)
        {
            return Err(EngineError::InvalidFunction(
                "MemorySize must be 128-10240".into(),
            ));
        }
        if !(u64::from(limits::EPHEMERAL_MIN_MB)..=u64::from(limits::EPHEMERAL_MAX_MB))
            .contains(&spec.ephemeral_mb)
        {
            return Err(EngineError::InvalidFunction(
                "EphemeralStorage must be 512-10240".into(),
            ));
        }
        if spec.timeout.is_zero() {
            return Err(EngineError::InvalidFunction(
                "Timeout must be positive".into(),
            ));
        }
        Ok(())
    }
}

fn init_failure_outcome(
    spec: &FunctionSpec,
    inv: Invocation,
    failure: crate::environment::InitFailure,
) -> InvokeOutcome {
    let rid = &inv.request_id;
    let format = spec.log_format;
    let mut lines = failure.logs;
    lines.push(logs::platform_start(format, rid, &spec.version));
    lines.extend(logs::platform_end(format, rid));
    lines.push(logs::platform_report(
        format,
        &logs::Report {
            request_id: rid,
            duration: std::time::Duration::ZERO,
            memory_mb: spec.memory_mb,
            max_memory_mb: 0,
            init_duration: Some(failure.init_duration),
            error_type: Some(&failure.error_type),
        },
    ));
    let text = logs::text(&lines);
    InvokeOutcome {
        request_id: inv.request_id,
        status: InvokeStatus::FunctionError {
            error_type: failure.error_type,
        },
        payload: failure.payload,
        log_tail: logs::tail(&text),
        log: text,
        log_lines: lines,
        log_stream: failure.log_stream,
        executed_version: spec.version.clone(),
        init_duration: Some(failure.init_duration),
        duration: std::time::Duration::ZERO,
        billed_duration_ms: 0,
        memory_mb: spec.memory_mb,
        max_memory_mb: 0,
    }
}
