//! Chaos tests for a Nimbus cluster running in Docker Compose.
//!
//! Layout: [`history`] records each client operation with its start, end and result;
//! [`linearizability`] checks a register history (Wing–Gong/Lowe, per key); [`docker`]
//! drives containers (kill, pause, disconnect, netem, fill a disk); [`workload`] issues
//! the metadata operations; [`scenario`] combines a workload with faults and computes the
//! summary line; [`invocations`] adds gateways and workers and the invocation scenarios,
//! judged by what the functions report to the runner's [`counter`]; `main.rs` is the
//! `chaos-tests/run` command line.

pub mod counter;
pub mod docker;
pub mod history;
pub mod invocations;
pub mod linearizability;
pub mod scenario;
pub mod summary;
pub mod workload;

/// Locks `m` even when a client task panicked while holding it: what the other clients
/// recorded is still what the checks must judge, so the data is read, not discarded.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
