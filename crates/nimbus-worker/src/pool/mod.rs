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
//! * Fair shares: while another account waits for memory (it was refused for want of
//!   it in the last [`WAIT_WINDOW`]), an account holding its equal share of the worker
//!   (capacity split among the accounts holding or waiting for memory, by the operator's
//!   weights, equal by default) or more is refused, even a warm
//!   environment, and its idle environments are evicted for the waiting one. One
//!   tenant's flood thus cannot keep another off a full worker; the refused invocations
//!   are retried elsewhere by the gateway and end as throttles, never as errors.
//!
//! What the pool hands out are guards ([`guards`]): a [`Starting`] reservation for an
//! environment being created and a [`Busy`] environment running an invocation. Each
//! gives its share of the pool back when dropped, so an early return, a panic or a
//! dropped invocation future (the caller went away) cannot leak memory or a slot; the
//! happy paths consume them explicitly (`into_busy`, `into_idle`, `release`, `retire`).
//!
//! The pool is generic over [`Pooled`] so that its policy is tested with plain structs
//! instead of sandboxes (`tests`). Its clock is tokio's, which is the system clock
//! except in a test that paused it.

mod guards;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::environment::ExecutionEnvironment;
use crate::function::FunctionKey;

pub(crate) use guards::{Busy, Starting};

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
    /// Kinds of shells kept ready with a runtime's zygote started (one per runtime and
    /// root that has a zygote).
    pub zygote_shapes: usize,
    /// Of the pre-created shells, those with a zygote started, over all those kinds.
    pub zygotes_ready: usize,
    /// Invocations since the engine started.
    pub invocations: u64,
    /// Environments held for provisioned concurrency (the sum of the holds' counts).
    pub provisioned: usize,
}

/// What the pool needs to know of an environment.
pub(crate) trait Pooled {
    /// The function version it serves (the unit of warm reuse).
    fn key(&self) -> &FunctionKey;
    /// The memory it reserves while it exists.
    fn memory_mb(&self) -> u64;
    /// When it last finished an invocation (LRU and idle timeout).
    fn last_used(&self) -> Instant;
    /// False once its runtime process has exited: it can serve nothing more.
    fn is_alive(&self) -> bool;
    /// Made from a pre-created sandbox shell (counted in the metrics).
    fn made_from_shell(&self) -> bool;
}

impl Pooled for ExecutionEnvironment {
    fn key(&self) -> &FunctionKey {
        &self.key
    }
    fn memory_mb(&self) -> u64 {
        self.memory_mb
    }
    fn last_used(&self) -> Instant {
        self.last_used
    }
    fn is_alive(&self) -> bool {
        ExecutionEnvironment::is_usable(self)
    }
    fn made_from_shell(&self) -> bool {
        self.from_shell
    }
}

/// What [`Pool::acquire`] decided.
pub(crate) enum Acquire<'a, E: Pooled> {
    /// Reuse this warm environment.
    Warm(Busy<'a, E>),
    /// Start a new one in the reserved `slot`; shut down the evicted ones first.
    Cold {
        slot: Starting<'a, E>,
        evicted: Vec<E>,
    },
    /// Does not fit even after evicting every idle environment.
    NoCapacity { free_mb: u64 },
    /// The account holds its fair share or more while another waits; these idle
    /// environments of it were evicted for the waiting one (shut them down).
    OverShare { evicted: Vec<E> },
}

/// How long an account refused for want of memory counts as waiting for it.
pub(crate) const WAIT_WINDOW: Duration = Duration::from_secs(1);

/// The pool shared by every invocation of an engine; each method takes its lock for
/// a few map operations only, never across an await.
pub(crate) struct Pool<E: Pooled = ExecutionEnvironment> {
    state: Mutex<PoolState<E>>,
}

impl<E: Pooled> Pool<E> {
    pub(crate) fn new(capacity_mb: u64) -> Self {
        Pool {
            state: Mutex::new(PoolState {
                idle: HashMap::new(),
                by_account: HashMap::new(),
                waiting: HashMap::new(),
                weights: HashMap::new(),
                busy: 0,
                busy_by_key: HashMap::new(),
                holds: HashMap::new(),
                starting: 0,
                reserved_mb: 0,
                capacity_mb,
                cold_starts: 0,
                cold_starts_from_shells: 0,
                invocations: 0,
            }),
        }
    }

    /// A poisoned lock (a panic inside one of these short sections, which only an
    /// accounting bug could cause) is still used: refusing every later invocation
    /// would be worse than counts that may be off.
    fn state(&self) -> MutexGuard<'_, PoolState<E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a warm environment for `key` (only when `for_invoke`; a prewarm always
    /// wants a new one), or reserves memory for a new one.
    pub(crate) fn acquire(
        &self,
        key: &FunctionKey,
        memory_mb: u64,
        for_invoke: bool,
    ) -> Acquire<'_, E> {
        let mut state = self.state();
        let now = now();
        if for_invoke {
            state.invocations += 1;
        }
        if state.over_share(&key.account_id, now) {
            let evicted = state.evict_idle_of(&key.account_id);
            return Acquire::OverShare { evicted };
        }
        if for_invoke {
            if let Some(env) = state.take_warm(key) {
                return Acquire::Warm(Busy::new(self, env));
            }
        }
        match state.reserve(&key.account_id, memory_mb) {
            Ok(evicted) => Acquire::Cold {
                slot: Starting::new(self, &key.account_id, memory_mb),
                evicted,
            },
            Err(free_mb) => {
                state.waiting.insert(key.account_id.clone(), now);
                Acquire::NoCapacity { free_mb }
            }
        }
    }

    /// Sets the operator's fair-share weights (account id → weight; 1 when absent, 0
    /// counts as 1).
    pub(crate) fn with_weights(self, weights: HashMap<String, u32>) -> Self {
        self.state().weights = weights;
        self
    }

    /// Holds `count` environments of `key` for `hold` from now (provisioned
    /// concurrency); `count` 0 releases the hold. Returns how many environments of
    /// `key` exist now, idle or busy (not those still starting).
    pub(crate) fn hold(&self, key: &FunctionKey, count: usize, hold: Duration) -> usize {
        let mut state = self.state();
        if count == 0 {
            state.holds.remove(key);
        } else {
            let until = now() + hold;
            state.holds.insert(key.clone(), Hold { count, until });
        }
        state.environments(key)
    }

    /// Environments of `key` that exist now, idle or busy (not those still starting).
    pub(crate) fn environments(&self, key: &FunctionKey) -> usize {
        self.state().environments(key)
    }

    /// Removes environments idle for `idle_timeout` or longer (or dead), except those a
    /// hold protects; ends holds that were not renewed in time. The caller shuts the
    /// returned ones down; their memory is already free.
    pub(crate) fn expire(&self, idle_timeout: Duration) -> Vec<E> {
        self.state().expire(idle_timeout, now())
    }

    /// Removes every idle environment (shutdown). Busy ones leave as their guards do.
    pub(crate) fn drain_idle(&self) -> Vec<E> {
        let mut state = self.state();
        let out: Vec<E> = state.idle.drain().flat_map(|(_, v)| v).collect();
        for env in &out {
            state.unreserve(env.key(), env.memory_mb());
        }
        out
    }

    /// Revisions (see [`crate::FunctionSpec::revision`]) with at least one idle environment.
    pub(crate) fn warm_revisions(&self) -> Vec<String> {
        let state = self.state();
        let mut out: Vec<String> = state
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
        let state = self.state();
        PoolMetrics {
            warm: state.idle.values().map(Vec::len).sum(),
            busy: state.busy,
            starting: state.starting,
            reserved_mb: state.reserved_mb,
            capacity_mb: state.capacity_mb,
            cold_starts: state.cold_starts,
            cold_starts_from_shells: state.cold_starts_from_shells,
            shells_ready: 0,
            zygote_shapes: 0,
            zygotes_ready: 0,
            invocations: state.invocations,
            provisioned: state.holds.values().map(|h| h.count).sum(),
        }
    }
}

/// The pool's clock: tokio's, so that a test with paused time drives idle expiry and
/// holds; outside such a test it reads the system's monotonic clock, like
/// `ExecutionEnvironment::last_used`.
fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// Provisioned concurrency for one function version: keep `count` environments until
/// `until`.
#[derive(Debug, Clone, Copy)]
struct Hold {
    count: usize,
    until: Instant,
}

/// The books behind the lock. The guards call the transitions (`started_*`,
/// `release`, `discard`, `start_failed`); nothing else does.
struct PoolState<E> {
    idle: HashMap<FunctionKey, Vec<E>>,
    /// Memory reserved per account (starting, busy and idle environments).
    by_account: HashMap<String, u64>,
    /// Accounts refused for want of memory, and when last.
    waiting: HashMap<String, Instant>,
    /// Fair-share weights set by the operator (1 when absent).
    weights: HashMap<String, u32>,
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

impl<E: Pooled> PoolState<E> {
    /// The most recently used live idle environment of `key`, now busy. Dead ones met
    /// on the way are dropped and their memory released.
    fn take_warm(&mut self, key: &FunctionKey) -> Option<E> {
        while let Some(env) = self.idle.get_mut(key).and_then(Vec::pop) {
            if env.is_alive() {
                self.busy += 1;
                *self.busy_by_key.entry(key.clone()).or_default() += 1;
                return Some(env);
            }
            // Died while idle: release its memory, try the next.
            self.unreserve(key, env.memory_mb());
            drop(env);
        }
        None
    }

    /// Reserves `memory_mb` for a new environment, evicting idle ones (LRU) if that is
    /// needed and enough; the evicted ones, or the free memory when it cannot fit.
    fn reserve(&mut self, account_id: &str, memory_mb: u64) -> Result<Vec<E>, u64> {
        // Evict only if that can make enough room (held environments are not evictable).
        let idle_mb: u64 = self
            .evictable()
            .into_iter()
            .map(|(k, i)| self.idle[&k][i].memory_mb())
            .sum();
        let free_mb = self.capacity_mb.saturating_sub(self.reserved_mb);
        if free_mb + idle_mb < memory_mb {
            return Err(free_mb);
        }
        let mut evicted = Vec::new();
        while self.reserved_mb + memory_mb > self.capacity_mb {
            let Some(env) = self.pop_lru() else { break };
            self.unreserve(env.key(), env.memory_mb());
            evicted.push(env);
        }
        self.reserved_mb += memory_mb;
        *self.by_account.entry(account_id.to_string()).or_default() += memory_mb;
        self.starting += 1;
        self.cold_starts += 1;
        Ok(evicted)
    }

    /// A started environment begins its first invocation.
    fn started_busy(&mut self, env: &E) {
        self.started(env);
        self.busy += 1;
        *self.busy_by_key.entry(env.key().clone()).or_default() += 1;
    }

    /// A started environment (prewarm) goes straight to idle.
    fn started_idle(&mut self, env: E) {
        self.started(&env);
        self.idle.entry(env.key().clone()).or_default().push(env);
    }

    fn started(&mut self, env: &E) {
        self.starting -= 1;
        if env.made_from_shell() {
            self.cold_starts_from_shells += 1;
        }
    }

    /// Start failed (or was abandoned): release its reservation.
    fn start_failed(&mut self, account_id: &str, memory_mb: u64) {
        self.starting -= 1;
        self.reserved_mb -= memory_mb;
        self.unreserve_account(account_id, memory_mb);
    }

    /// Memory an environment of `key` held goes back to the worker.
    fn unreserve(&mut self, key: &FunctionKey, memory_mb: u64) {
        self.reserved_mb -= memory_mb;
        self.unreserve_account(&key.account_id, memory_mb);
    }

    fn unreserve_account(&mut self, account_id: &str, memory_mb: u64) {
        if let Some(mb) = self.by_account.get_mut(account_id) {
            *mb = mb.saturating_sub(memory_mb);
            if *mb == 0 {
                self.by_account.remove(account_id);
            }
        }
    }

    /// Does `account_id` hold its fair share or more while another account waits for
    /// memory? The shares split the worker among the accounts holding memory or waiting
    /// for it, in proportion to their weights (equal by default).
    fn over_share(&mut self, account_id: &str, now: Instant) -> bool {
        self.waiting
            .retain(|_, at| now.duration_since(*at) < WAIT_WINDOW);
        if !self.waiting.keys().any(|a| a != account_id) {
            return false;
        }
        let mut accounts: std::collections::HashSet<&str> =
            self.by_account.keys().map(String::as_str).collect();
        accounts.extend(self.waiting.keys().map(String::as_str));
        accounts.insert(account_id);
        let weight = |a: &str| u64::from(self.weights.get(a).copied().unwrap_or(1).max(1));
        let total: u64 = accounts.iter().map(|a| weight(a)).sum();
        let share = self.capacity_mb * weight(account_id) / total;
        self.by_account.get(account_id).copied().unwrap_or(0) >= share
    }

    /// Evicts the idle environments of `account_id` (not those a hold protects).
    fn evict_idle_of(&mut self, account_id: &str) -> Vec<E> {
        let mut victims = self.evictable();
        victims.retain(|(k, _)| k.account_id == account_id);
        // Highest index first within a key, so earlier indexes stay valid.
        victims.sort_by_key(|v| std::cmp::Reverse(v.1));
        let mut out = Vec::new();
        for (key, index) in victims {
            let Some(envs) = self.idle.get_mut(&key) else {
                continue;
            };
            let env = envs.remove(index);
            if envs.is_empty() {
                self.idle.remove(&key);
            }
            self.unreserve(&key, env.memory_mb());
            out.push(env);
        }
        out
    }

    /// An invocation finished on a healthy environment.
    fn release(&mut self, env: E) {
        self.busy -= 1;
        self.not_busy(env.key());
        self.idle.entry(env.key().clone()).or_default().push(env);
    }

    /// An invocation finished (or was abandoned) and the environment leaves the pool.
    fn discard(&mut self, key: &FunctionKey, memory_mb: u64) {
        self.busy -= 1;
        self.not_busy(key);
        self.unreserve(key, memory_mb);
    }

    fn not_busy(&mut self, key: &FunctionKey) {
        if let Some(n) = self.busy_by_key.get_mut(key) {
            *n -= 1;
            if *n == 0 {
                self.busy_by_key.remove(key);
            }
        }
    }

    fn environments(&self, key: &FunctionKey) -> usize {
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

    fn pop_lru(&mut self) -> Option<E> {
        let (key, index) = self
            .evictable()
            .into_iter()
            .min_by_key(|(k, i)| self.idle[k][*i].last_used())?;
        let envs = self.idle.get_mut(&key)?;
        let env = envs.remove(index);
        if envs.is_empty() {
            self.idle.remove(&key);
        }
        Some(env)
    }

    fn expire(&mut self, idle_timeout: Duration, now: Instant) -> Vec<E> {
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
                let idle_too_long = now.duration_since(env.last_used()) >= idle_timeout;
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
            self.unreserve(env.key(), env.memory_mb());
        }
        out
    }
}
