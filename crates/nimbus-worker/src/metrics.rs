//! The engine's pool as Prometheus metrics: environments warm, busy and starting, memory
//! reserved and used, cold starts. Read from [`Engine::metrics`] at each scrape.

use std::path::{Path, PathBuf};

use nimbus_telemetry::prometheus_client::metrics::counter::Counter;
use nimbus_telemetry::prometheus_client::metrics::gauge::Gauge;
use nimbus_telemetry::MetricsRegistry;

use crate::engine::Engine;

/// Registers `engine`'s metrics in `registry`.
pub fn register(engine: &Engine, registry: &MetricsRegistry) {
    let warm = Gauge::<i64>::default();
    let busy = Gauge::<i64>::default();
    let starting = Gauge::<i64>::default();
    let reserved = Gauge::<i64>::default();
    let capacity = Gauge::<i64>::default();
    let used = Gauge::<i64>::default();
    let cold_starts = Counter::<u64>::default();
    let from_shells = Counter::<u64>::default();
    let shells_ready = Gauge::<i64>::default();
    let zygotes_ready = Gauge::<i64>::default();
    let invocations = Counter::<u64>::default();
    let provisioned = Gauge::<i64>::default();
    registry.register(
        "nimbus_worker_environments_provisioned",
        "Execution environments held for provisioned concurrency",
        provisioned.clone(),
    );
    registry.register(
        "nimbus_worker_environments_warm",
        "Idle, initialised execution environments",
        warm.clone(),
    );
    registry.register(
        "nimbus_worker_environments_busy",
        "Execution environments running an invocation",
        busy.clone(),
    );
    registry.register(
        "nimbus_worker_environments_starting",
        "Execution environments in Init",
        starting.clone(),
    );
    registry.register(
        "nimbus_worker_memory_reserved_bytes",
        "Memory reserved by execution environments (sum of their MemorySize)",
        reserved.clone(),
    );
    registry.register(
        "nimbus_worker_memory_capacity_bytes",
        "Memory execution environments may reserve in total",
        capacity.clone(),
    );
    registry.register(
        "nimbus_worker_memory_used_bytes",
        "Memory execution environments use now (their cgroups' usage, pre-created shells included; 0 without isolation)",
        used.clone(),
    );
    registry.register(
        "nimbus_worker_cold_starts",
        "Execution environments started",
        cold_starts.clone(),
    );
    registry.register(
        "nimbus_worker_cold_starts_from_shells",
        "Execution environments made from a pre-created shell",
        from_shells.clone(),
    );
    registry.register(
        "nimbus_worker_shells_ready",
        "Pre-created environment shells waiting for a cold start",
        shells_ready.clone(),
    );
    registry.register(
        "nimbus_worker_zygotes_ready",
        "Pre-created environment shells with a runtime's zygote started, waiting for a cold start",
        zygotes_ready.clone(),
    );
    registry.register(
        "nimbus_worker_invocations",
        "Invocations this worker accepted",
        invocations.clone(),
    );

    let engine = engine.clone();
    let cgroup = cgroup_usage_file(&engine.config().cgroup_parent);
    registry.on_scrape(move || {
        let m = engine.metrics();
        warm.set(m.warm as i64);
        busy.set(m.busy as i64);
        provisioned.set(m.provisioned as i64);
        starting.set(m.starting as i64);
        reserved.set((m.reserved_mb * 1024 * 1024) as i64);
        capacity.set((m.capacity_mb * 1024 * 1024) as i64);
        used.set(cgroup.as_deref().and_then(read_number).unwrap_or(0) as i64);
        // Counters only go up: add what happened since the last scrape.
        cold_starts.inc_by(m.cold_starts.saturating_sub(cold_starts.get()));
        from_shells.inc_by(m.cold_starts_from_shells.saturating_sub(from_shells.get()));
        shells_ready.set(m.shells_ready as i64);
        zygotes_ready.set(m.zygotes_ready as i64);
        invocations.inc_by(m.invocations.saturating_sub(invocations.get()));
    });
}

/// The file holding the memory usage of every environment: the parent cgroup's
/// `memory.current` (cgroup v2) or `memory.usage_in_bytes` (v1).
fn cgroup_usage_file(parent: &str) -> Option<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    [
        root.join(parent).join("memory.current"),
        root.join("memory")
            .join(parent)
            .join("memory.usage_in_bytes"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

fn read_number(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
