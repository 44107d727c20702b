//! [`EngineConfig`]: a plain struct with `Default` and `validate()`.

use std::path::PathBuf;
use std::time::Duration;

use nimbus_sandbox::{NetworkMode, SandboxUser};

use crate::error::EngineError;

/// Worker-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// State directory (runtimes, scratch images, sandbox roots).
    pub state_dir: PathBuf,
    /// Memory that environments may reserve in total (sum of their MemorySize).
    pub max_memory_mb: u64,
    /// Weights of accounts' fair shares of that memory while accounts wait for it (an
    /// account not listed weighs 1): account id → weight.
    pub account_weights: std::collections::HashMap<String, u32>,
    /// An idle environment is shut down after this long.
    pub idle_timeout: Duration,
    /// How often the idle reaper runs.
    pub reap_interval: Duration,
    /// Limit for the Init phase (Lambda: 10 s).
    pub init_timeout: Duration,
    /// `AWS_REGION` / `AWS_DEFAULT_REGION`.
    pub region: String,
    /// Interpreter for `python3.x` runtimes (must be under a read-only host path).
    pub python: PathBuf,
    /// Interpreter for `nodejs*` runtimes.
    pub node: PathBuf,
    /// Runtime root file systems (`--runtime-roots`): when set, every function runs in
    /// the root of its runtime, and only the runtimes those roots serve are offered.
    /// `None`: the host's system directories and interpreters (`python`, `node`).
    pub runtime_roots: Option<std::sync::Arc<crate::roots::RuntimeRoots>>,
    /// Port of the Runtime API inside each environment (Lambda: 9001).
    pub runtime_api_port: u16,
    /// Give Init the whole machine's CPU and apply the memory-proportional
    /// quota only once Init is done (Lambda boosts Init the same way).
    pub init_cpu_boost: bool,
    /// Task limit per environment (Lambda allows 1,024).
    pub pids_max: u64,
    /// Who functions run as.
    pub user: SandboxUser,
    /// Network for environments.
    pub network: NetworkMode,
    /// cgroup under which environments are created.
    pub cgroup_parent: String,
    /// On start, kill environments a crashed predecessor left in
    /// `cgroup_parent` (requires this engine to own that cgroup alone).
    pub reclaim_orphans: bool,
    /// Host tuning for faster cold starts (`/sys/kernel/rcu_expedited=1`);
    /// see `nimbus_sandbox::JailConfig::expedite_rcu`. Changes the whole host.
    pub expedite_rcu: bool,
    /// Pre-created environment shells kept ready (namespaces, cgroups and
    /// network done ahead, limits written at use): a cold start skips the
    /// slow part of creating a sandbox. 0 creates every environment from
    /// scratch. See `nimbus_sandbox::JailConfig::shell_pool`.
    pub shell_pool: usize,
    /// Start runtimes that have a zygote (Python, Node.js) ahead of time in the pool's shells,
    /// so a cold start skips the interpreter's start-up. See
    /// `nimbus_sandbox::JailConfig::zygotes`.
    pub zygotes: bool,
    /// DEVELOPER ONLY: no isolation at all (warns loudly on every start).
    pub insecure_no_isolation: bool,
    /// Where function logs are kept and for how long (see [`crate::log_store`]).
    pub logs: crate::log_store::LogStoreConfig,
    /// The Nimbus API (a gateway's `http://HOST:PORT`) that functions reach at
    /// `AWS_ENDPOINT_URL` through their Runtime API address (`aws_proxy`); unset: the
    /// SDKs inside functions have no endpoint set.
    pub aws_endpoint: Option<std::sync::Arc<crate::aws_proxy::AwsProxy>>,
    /// The edge location this worker serves, if any: what runs here logs to
    /// `/aws/lambda/<region>.<name>`, as Lambda@Edge does.
    pub edge_location: Option<String>,
    /// Limits on streamed responses (Lambda's by default).
    pub stream_limits: crate::stream_limit::StreamLimits,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            state_dir: PathBuf::from("/var/lib/nimbus/worker"),
            max_memory_mb: 16 * 1024,
            account_weights: Default::default(),
            idle_timeout: Duration::from_secs(300),
            reap_interval: Duration::from_secs(1),
            init_timeout: Duration::from_secs(10),
            region: "us-east-1".into(),
            python: PathBuf::from("/usr/bin/python3"),
            node: PathBuf::from("/usr/bin/node"),
            runtime_roots: None,
            runtime_api_port: 9001,
            init_cpu_boost: true,
            pids_max: 1024,
            user: SandboxUser::default(),
            network: NetworkMode::Loopback,
            cgroup_parent: "nimbus".into(),
            reclaim_orphans: true,
            expedite_rcu: false,
            shell_pool: 2,
            zygotes: true,
            insecure_no_isolation: false,
            logs: crate::log_store::LogStoreConfig::default(),
            aws_endpoint: None,
            edge_location: None,
            stream_limits: Default::default(),
        }
    }
}

impl EngineConfig {
    /// The part of `function`'s log group after `/aws/lambda/` on this worker.
    pub fn log_group_function(&self, function: &str) -> String {
        nimbus_types::validate::log_group_function_of(
            function,
            &self.region,
            self.edge_location.is_some(),
        )
    }

    /// The log store's directory: `logs.dir`, or `<state_dir>/logs`.
    pub fn log_dir(&self) -> PathBuf {
        self.logs
            .dir
            .clone()
            .unwrap_or_else(|| self.state_dir.join("logs"))
    }

    /// Checks the settings.
    pub fn validate(&self) -> Result<(), EngineError> {
        let bad = |m: &str| Err(EngineError::Config(m.into()));
        if !self.state_dir.is_absolute() {
            return bad("state_dir must be absolute");
        }
        if self.max_memory_mb < 128 {
            return bad("max_memory_mb must be at least 128");
        }
        if self.init_timeout.is_zero() || self.reap_interval.is_zero() {
            return bad("timeouts must be positive");
        }
        if self.logs.max_age.is_zero() || self.logs.sweep_interval.is_zero() {
            return bad("log retention age and sweep interval must be positive");
        }
        if self.runtime_api_port == 0 {
            return bad("runtime_api_port must not be 0");
        }
        Ok(())
    }
}
