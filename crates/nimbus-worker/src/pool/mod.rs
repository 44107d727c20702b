//! The environment pool: warm environments keyed by function version, and
//! the memory they reserve. Policy lives here; the engine does the I/O.
//!
//! * Warm reuse: an invocation takes the most recently used idle environment
//!   of its function version (LIFO keeps the working set small).
//! * Memory: each environment reserves its MemorySize from the worker's
//!   budget while it exists (starting, busy or idle).
//! * Pressure: when a new environment does not fit, idle environments are
//!   evicted least-recently-used first, across all functions.
//! * Idle timeout: the reaper evicts environments idle for too long.
//! * Provisioned concurrency: a function version under a hold keeps up to its held count
//!   of environments whatever their idle time, and they are not evicted for others; a
//!   hold ends when it is released or not renewed in time (its gateway went away).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::environment::ExecutionEnvironment;
use crate::function::FunctionKey;

/// Counts for monitoring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolMetrics {
    /// Idle, initialised environments.
    pub warm: usize,
    /// Environments running an invocation.
    pub busy: usize,
    /// Environments being created (Init).
    pub starting: usize,
    /// Memory reserved by all of them, in MB.
    pub reserved_mb: u64,
    /// The worker's budget, in MB.
    pub capacity_mb: u64,
    /// Cold starts since the engine started.
    pub cold_starts: u64,
    /// Of those, environments made from a pre-created shell.
    pub cold_starts_from_shells: u64,
    /// Pre-created shells ready for the next cold starts.
    pub shells_ready: usize,
    /// Invocations since the engine started.
    pub invocations: u64,
    /// Environments held for provisioned concurrency (the sum of the holds' counts).
    pub provisioned: usize,
}

/// What `acquire` decided.
pub(crate) enum Acquire {
    /// Reuse this warm environment.
    Warm(Box<ExecutionEnvironment>),
    /// Start a new one (memory already reserved); shut down the evicted ones first.
    Cold { evicted: Vec<ExecutionEnvironment> },
    /// Does not fit even after evicting every idle environment.
    NoCapacity { free_mb: u64 },
}

/// Provisioned concurrency for one function version: keep `count` environments until
/// `until`.
#[derive(Debug, Clone, Copy)]
struct Hold {
    count: usize,
    until: Instant,
}

#[derive(Debug, Default)]
pub(crate) struct Pool {
    idle: HashMap<FunctionKey, Vec<ExecutionEnvironment>>,
    busy: usize,
    busy_by_key: HashMap<FunctionKey, usize>,
    holds: HashMap<FunctionKey, Hold>,
    starting: usize,
    reserved_mb: u64,
    capacity_mb: u64,
    cold_starts: u64,
    cold_starts_from_shells: u64,
    invocations: u64,
}

impl Pool {
    pub(crate) fn new(capacity_mb: u64) -> Self {
        Pool {
            capacity_mb,
            ..Pool::default()
        }
    }

    /// Takes a warm environment for `key`, or reserves memory for a new one.
    pub(crate) fn acquire(
        &mut self,
        key: &FunctionKey,
        memory_mb: u64,
        for_invoke: bool,
    ) -> Acquire {
        if for_invoke {
            self.invocations += 1;
            while let Some(env) = self.idle.get_mut(key).and_then(Vec::pop) {
                if env.is_alive() {
                    self.busy += 1;
                    *self.busy_by_key.entry(key.clone()).or_default() += 1;
                    return Acquire::Warm(Box::new(env));
                }
                // Died while idle: release its memory, try the next.
                self.reserved_mb -= env.memory_mb;
                drop(env);
            }
        }
        // Evict only if that can make enough room (held environments are not evictable).
        let idle_mb: u64 = self
            .evictable()
            .into_iter()
            .map(|(k, i)| self.idle[&k][i].memory_mb)
            .sum();
        let free_mb = self.capacity_mb.saturating_sub(self.reserved_mb);
        if free_mb + idle_mb < memory_mb {
            return Acquire::NoCapacity { free_mb };
        }
        let mut evicted = Vec::new();
        while self.reserved_mb + memory_mb > self.capacity_mb {
            let Some(env) = self.pop_lru() else { break };
            self.reserved_mb -= env.memory_mb;
            evicted.push(env);
        }
        self.reserved_mb += memory_mb;
        self.starting += 1;
        self.cold_starts += 1;
        Acquire::Cold { evicted }
    }

    /// A started environment came from a pre-created shell.
    pub(crate) fn started_from_shell(&mut self) {
        self.cold_starts_from_shells += 1;
    }

    /// A started environment begins its first invocation.
    pub(crate) fn started_busy(&mut self, key: &FunctionKey) {
        self.starting -= 1;
        self.busy += 1;
        *self.busy_by_key.entry(key.clone()).or_default() += 1;
    }

    /// A started environment (prewarm) goes straight to idle.
    pub(crate) fn started_idle(&mut self, env: ExecutionEnvironment) {
        self.starting -= 1;
        self.idle.entry(env.key.clone()).or_default().push(env);
    }

    /// Start failed: release its reservation.
    pub(crate) fn start_failed(&mut self, memory_mb: u64) {
        self.starting -= 1;
        self.reserved_mb -= memory_mb;
    }

    /// An invocation finished on a healthy environment.
    pub(crate) fn release(&mut self, env: ExecutionEnvironment) {
        self.busy -= 1;
        self.not_busy(&env.key);
        self.idle.entry(env.key.clone()).or_default().push(env);
    }

    /// An invocation finished and the environment is being destroyed.
    pub(crate) fn discard(&mut self, key: &FunctionKey, memory_mb: u64) {
        self.busy -= 1;
        self.not_busy(key);
        self.reserved_mb -= memory_mb;
    }

    fn not_busy(&mut self, key: &FunctionKey) {
        if let Some(n) = self.busy_by_key.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.busy_by_key.remove(key);
            }
        }
    }

    /// Holds `count` environments of `key` until `until` (provisioned concurrency);
    /// `count` 0 releases the hold.
    pub(crate) fn hold(&mut self, key: &FunctionKey, count: usize, until: Instant) {
        if count == 0 {
            self.holds.remove(key);
        } else {
            self.holds.insert(key.clone(), Hold { count, until });
        }
    }

    /// Environments of `key` that exist now, idle or busy (not those still starting).
    pub(crate) fn environments(&self, key: &FunctionKey) -> usize {
        self.idle.get(key).map_or(0, Vec::len) + self.busy_by_key.get(key).copied().unwrap_or(0)
    }

    /// How many of `key`'s idle environments its hold protects: enough that, with the
    /// busy ones, the held count exists. The most recently used are the protected ones.
    fn protected(&self, key: &FunctionKey) -> usize {
        let Some(hold) = self.holds.get(key) else {
            return 0;
        };
        let busy = self.busy_by_key.get(key).copied().unwrap_or(0);
        hold.count.saturating_sub(busy)
    }

    /// Idle environments that may be evicted, as (key, index in its idle list).
    fn evictable(&self) -> Vec<(FunctionKey, usize)> {
        let mut out = Vec::new();
        for (k, envs) in &self.idle {
            let free = envs.len().saturating_sub(self.protected(k));
            // Idle lists grow at the end (LIFO reuse): the oldest come first.
            out.extend((0..free).map(|i| (k.clone(), i)));
        }
        out
    }

    fn pop_lru(&mut self) -> Option<ExecutionEnvironment> {
        let (key, index) = self
            .evictable()
            .into_iter()
            .min_by_key(|(k, i)| self.idle[k][*i].last_used)?;
        let envs = self.idle.get_mut(&key)?;
        let env = envs.remove(index);
        if envs.is_empty() {
            self.idle.remove(&key);
        }
        Some(env)
    }

    /// Removes environments idle for longer than `idle_timeout` (or dead), except those
    /// a hold protects; ends holds that were not renewed in time.
    pub(crate) fn expire(&mut self, idle_timeout: Duration) -> Vec<ExecutionEnvironment> {
        let now = Instant::now();
        self.holds.retain(|_, h| h.until > now);
        let protected: HashMap<FunctionKey, usize> = self
            .idle
            .keys()
            .map(|k| (k.clone(), self.protected(k)))
            .collect();
        let mut out = Vec::new();
        for (key, envs) in self.idle.iter_mut() {
            let first_protected = envs.len().saturating_sub(protected[key]);
            let mut keep = Vec::with_capacity(envs.len());
            for (i, env) in envs.drain(..).enumerate() {
                let idle_too_long = now.duration_since(env.last_used) >= idle_timeout;
                if !env.is_alive() || (idle_too_long && i < first_protected) {
                    out.push(env);
                } else {
                    keep.push(env);
                }
            }
            *envs = keep;
        }
        self.idle.retain(|_, v| !v.is_empty());
        for env in &out {
            self.reserved_mb -= env.memory_mb;
        }
        out
    }

    /// Removes every idle environment (shutdown).
    pub(crate) fn drain_idle(&mut self) -> Vec<ExecutionEnvironment> {
        let out: Vec<_> = self.idle.drain().flat_map(|(_, v)| v).collect();
        for env in &out {
            self.reserved_mb -= env.memory_mb;
        }
        out
    }

    /// Revisions (see [`crate::FunctionSpec::revision`]) with at least one idle environment.
    pub(crate) fn warm_revisions(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .idle
            .iter()
            .filter(|(_, envs)| !envs.is_empty())
            .map(|(k, _)| k.revision.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    pub(crate) fn metrics(&self) -> PoolMetrics {
        PoolMetrics {
            warm: self.idle.values().map(Vec::len).sum(),
            busy: self.busy,
            starting: self.starting,
            reserved_mb: self.reserved_mb,
            capacity_mb: self.capacity_mb,
            cold_starts: self.cold_starts,
            cold_starts_from_shells: self.cold_starts_from_shells,
            shells_ready: 0,
            invocations: self.invocations,
            provisioned: self.holds.values().map(|h| h.count).sum(),
        }
    }
}
