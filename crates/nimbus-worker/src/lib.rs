//! # nimbus-worker
//!
//! The worker's execution side: runs Lambda invocations in isolated,
//! reusable execution environments. No metadata or gateway logic — the node
//! resolves the function version and hands this crate a [`FunctionSpec`].
//!
//! ```text
//! Engine::invoke(spec, invocation)
//!   └─ Pool: warm environment for (name, version)? else reserve memory (LRU-evict idle)
//!        └─ ExecutionEnvironment::start  — nimbus-sandbox + runtime, Init ≤ 10 s
//!        └─ ExecutionEnvironment::invoke — event via the Runtime API, wait for
//!                                          response / error / exit / timeout
//!   └─ InvokeOutcome (payload, status, START/END/REPORT log, durations, memory)
//! ```
//!
//! ## Layout
//!
//! * [`config`]      — [`EngineConfig`].
//! * [`function`]    — [`FunctionSpec`], [`Invocation`], [`InvokeOutcome`].
//! * [`engine`]      — [`Engine`]: invoke, prewarm, metrics, shutdown.
//! * [`pool`]        — warm environments per version; memory, LRU, idle expiry; drop guards.
//! * `environment`   — one environment's lifecycle (Init, Invoke, Shutdown).
//! * [`runtime_api`] — the Runtime API 2018-06-01 server, one per environment.
//! * [`stream_limit`] — Lambda's pace and size limits on streamed responses.
//! * [`logs`]        — log capture and the START / END / REPORT lines (text or JSON).
//! * [`log_store`]   — durable log groups and streams on disk: append, query, retention.
//! * [`metrics`]     — the pool as Prometheus metrics.
//! * [`runtimes`]    — runtime identifiers → what to exec; bundled Python/Node bootstraps.
//! * [`error`]       — [`EngineError`].
//! * [`code_cache`]  — code packages fetched by hash, verified, unpacked once, evicted.
//! * [`contract`]    — [`contract::WorkerContract`]: the answers a worker gives gateways,
//!   the same in process (`nimbus dev`) and over gRPC; every refusal a typed `Rejection`.
//! * [`node`]        — `nimbus worker`: registration, heartbeat, the gRPC service.

pub mod aws_proxy;
pub mod code_cache;
pub mod config;
pub mod contract;
pub mod engine;
mod environment;
pub mod error;
pub mod function;
pub mod log_store;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod pool;
pub mod roots;
pub mod runtime_api;
pub mod runtimes;
pub mod stream_limit;

pub use config::EngineConfig;
pub use engine::Engine;
pub use environment::InitializationType;
pub use error::EngineError;
pub use function::{FunctionKey, FunctionSpec, Invocation, InvokeOutcome, InvokeStatus};
pub use log_store::{LogStore, LogStoreConfig};
pub use logs::LogFormat;
pub use nimbus_sandbox::{NatConfig, NetworkMode, SandboxUser};
pub use pool::PoolMetrics;
