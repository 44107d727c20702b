//! `inv-kill-worker`: kill -9 of a worker's container while invocations run on it,
//! restarted after the hold time. The sync invocations that ran there fail (they may have
//! run, so nobody retries them); the accepted events must still all complete, and the
//! limit must hold while the gateways notice.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::Rng;

use super::{Faulting, WORKERS};

/// Kills the busiest worker, holds, restarts it; returns the number of faults.
pub(super) async fn inject(
    f: &Faulting<'_>,
    rng: &mut StdRng,
    hold: Duration,
) -> anyhow::Result<u32> {
    let cluster = f.cluster;
    // The worker running the most invocations (as the functions' source addresses
    // show), once some run, so the kill lands in the middle of them; the seed breaks
    // ties.
    let t = Instant::now();
    let mut i = rng.gen_range(0..WORKERS.len());
    while t.elapsed() < Duration::from_secs(10) {
        let from = cluster.counter.running_from(f.function);
        let busiest = (0..WORKERS.len()).max_by_key(|&k| (running_on(&from, k), k == i));
        if let Some(b) = busiest {
            if running_on(&from, b) > 0 {
                i = b;
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let running = running_on(&cluster.counter.running_from(f.function), i);
    cluster.kill_worker(i).await?;
    eprintln!(
        "  killed {} with {running} invocation(s) running on it",
        WORKERS[i].0
    );
    tokio::time::sleep(hold).await;
    cluster.start_worker(i).await?;
    Ok(1)
}

/// Of the invocations running by source address (`Counter::running_from`), those on
/// worker `k`.
fn running_on(from: &HashMap<IpAddr, u32>, k: usize) -> u32 {
    let ip: IpAddr = WORKERS[k].1.parse().expect("worker address");
    from.get(&ip).copied().unwrap_or(0)
}
