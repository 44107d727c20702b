//! `inv-rolling-restart`: every node (metadata, gateways, workers) stopped cleanly and
//! restarted, one at a time, under load, the way docs/operations.md tells an operator
//! to. Nothing may fail and nothing may be throttled: the load stays far below the limit.

use std::time::Duration;

use rand::rngs::StdRng;

use super::{wait_port, Faulting, Plan, GATEWAYS, ROLLING_LIMIT, WORKERS};
use crate::scenario::{Pace, RECOVERY_BOUND};

/// A new metadata leader's concurrency-lease warm-up (`nimbus_meta::service::LEASE`),
/// plus a second.
const LEASE_WARM_UP: Duration = Duration::from_secs(6);

/// A throttle counts as a failure here, so the load stays far below the limit: 2 sync
/// clients and an event every 500 ms, even while cold starts (each published version,
/// every environment after a worker restart) make invocations longer.
pub(super) fn plan(_pace: Pace) -> Plan {
    Plan {
        limit: ROLLING_LIMIT,
        sync_clients: 2,
        async_every: Some(Duration::from_millis(500)),
        failures_allowed: false,
    }
}

/// Restarts every node in turn; returns the number of faults (one per node). Draws
/// nothing from `rng` and ignores `hold`: the order is the procedure's.
pub(super) async fn inject(
    f: &Faulting<'_>,
    _rng: &mut StdRng,
    _hold: Duration,
) -> anyhow::Result<u32> {
    let (meta, cluster, workload) = (f.meta, f.cluster, f.workload);
    let restarting = |name: &str| eprintln!("  [{:.1}s] restarting {name}", workload.seconds());
    let mut faults = 0;
    // The procedure in docs/operations.md: followers first, the leader last, each
    // serving again before the next; after the leader, wait out the new leader's
    // lease warm-up (it renews what gateways hold but grants nothing new for one
    // lease, docs/design/0005-admission.md) before restarting gateways, whose
    // clients then move to the other gateway and need more slots there.
    let leader = meta.leader(RECOVERY_BOUND).await?;
    let order: Vec<usize> = (0..meta.nodes.len())
        .filter(|&i| i != leader)
        .chain([leader])
        .collect();
    for i in order {
        let svc = &meta.nodes[i].0;
        restarting(svc);
        meta.compose.stop(svc).await?;
        meta.compose.start(svc).await?;
        meta.wait_ready(i, RECOVERY_BOUND).await?;
        faults += 1;
    }
    tokio::time::sleep(LEASE_WARM_UP).await;
    for (svc, addr) in GATEWAYS {
        restarting(svc);
        meta.compose.stop(svc).await?;
        meta.compose.start(svc).await?;
        wait_port(addr).await?;
        faults += 1;
    }
    for (i, (name, ip, _)) in WORKERS.iter().enumerate() {
        restarting(name);
        cluster.stop_worker(i).await?;
        cluster.start_worker(i).await?;
        // As an operator would: the next one goes once this one serves again (it
        // listens after registering) and gateways have seen a heartbeat.
        wait_port(&format!("{ip}:18001")).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        faults += 1;
    }
    Ok(faults)
}
