//! `inv-kill-gateway-after-202`: a burst of async events accepted by one gateway, which
//! is killed (-9) right after the last 202 and restarted after the hold time. Accepted
//! means durable: every one of those events must still run to its end.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::Rng;

use super::{Faulting, GATEWAYS};
use crate::lock;

/// Sends the burst through one gateway, kills it, holds, restarts it; returns the number
/// of faults. The burst's accepted ids join the workload's, for the drain check.
pub(super) async fn inject(
    f: &Faulting<'_>,
    rng: &mut StdRng,
    hold: Duration,
) -> anyhow::Result<u32> {
    let (cluster, function) = (f.cluster, f.function);
    let g = rng.gen_range(0..GATEWAYS.len());
    let api = cluster.api();
    let mut burst = Vec::new();
    for n in 0..30 {
        let id = format!("burst-{n}");
        let payload = cluster.event(function, &id, 0.1);
        if api.invoke_async(g, function, &payload).await {
            burst.push(id);
        }
    }
    // Right after the last 202: kill -9, before its dispatcher could run them all.
    f.meta.compose.kill(GATEWAYS[g].0).await?;
    eprintln!(
        "  {} accepted {} events, then was killed",
        GATEWAYS[g].0,
        burst.len()
    );
    lock(&f.workload.obs.accepted).extend(burst);
    tokio::time::sleep(hold).await;
    f.meta.compose.start(GATEWAYS[g].0).await?;
    Ok(1)
}
