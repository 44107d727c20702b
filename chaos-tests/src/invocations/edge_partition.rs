//! `edge-partition`: an edge location cut off from the core under load (issue 16).
//!
//! fra1 has its own gateway and worker and holds a budget of the account's concurrency.
//! The function's `live` alias is deployed there; sync clients (one more than the
//! budget) call it through fra1's gateway while the control plane publishes versions and
//! moves the alias through the region's gateways. Then fra1 is cut off from every other
//! node (iptables inside its containers; the callers and the counter on the host still
//! reach it) for longer than a concurrency lease and a worker heartbeat's freshness, and
//! healed. Checks:
//! - fra1 served the deployed version throughout: no call through it failed, and calls
//!   succeeded during the cut;
//! - once the leases it held when cut had run out, no more than its budget ran at once
//!   (counted from inside the functions); the account's limit holds in total;
//! - every write acknowledged by the region during the cut is there after it;
//! - after the heal fra1 serves the version the alias points at in the core.
//!
//! The cut lands at a moment drawn from the seed while the alias keeps moving, so it may
//! fall between a move and the push of the new version's code: fra1 then runs the version
//! it holds (`edge::ready`, docs/design/0008).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::api::expect_status;
use super::{publish_live_alias, recovered, InvocationCluster, InvokeWorkload, EDGE_LOCATION};
use crate::lock;
use crate::scenario::{MetaCluster, RECOVERY_BOUND};
use crate::summary::{longest_gap_ms, Summary};

/// The account's concurrency set aside for fra1.
pub const BUDGET: u32 = 3;
/// A gateway's concurrency lease (nimbus_meta::service::leases::LEASE) plus a margin:
/// after this long into the cut, fra1 can only be admitting against its budget.
const LEASES_RUN_OUT: f64 = 6.0;

pub const NAME: &str = "edge-partition";

fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Runs the scenario on the running cluster (it starts fra1's nodes first).
pub async fn run(
    meta: &MetaCluster,
    cluster: &InvocationCluster,
    seed: u64,
) -> anyhow::Result<Summary> {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x200);
    cluster.start_edge(meta, BUDGET).await?;
    let function = cluster
        .create_function(&format!("{NAME}-{seed}"), None)
        .await?;
    let region = cluster.api();
    publish_live_alias(&region, &function).await?;
    let body = serde_json::json!({ "Locations": [EDGE_LOCATION] }).to_string();
    let r = region
        .call(
            "PUT",
            &format!("/nimbus/2026-12-01/functions/{function}/edge-deployments/live"),
            body,
        )
        .await?;
    expect_status(&r, &[200], "deploy live to the edge")?;
    let edge = cluster.edge_api();
    // fra1 serves it (its catalog has the deployment) before the load starts.
    let t = Instant::now();
    while executed_at_edge(cluster, &function).await.is_none() {
        anyhow::ensure!(
            t.elapsed() < RECOVERY_BOUND,
            "fra1 never served {function}:live"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let workload = Arc::new(InvokeWorkload {
        api: edge,
        control: region.clone(),
        function: function.clone(),
        obs: Arc::default(),
        origin: Instant::now(),
        sync_sleep_s: 0.2,
        counter_port: cluster.counter.port,
    });
    let stop = Arc::new(AtomicBool::new(false));
    // One client more than the budget, so the budget is pressed while cut off.
    let running = tokio::spawn(
        workload
            .clone()
            .run(BUDGET as usize + 1, None, stop.clone()),
    );
    let began = workload.now();
    tokio::time::sleep(Duration::from_millis(rng.gen_range(3_000..=6_000))).await;

    // Past a lease and a heartbeat's freshness (10 s): fra1 admits on its budget alone
    // and sees its worker only by probing it.
    let hold = Duration::from_millis(rng.gen_range(15_000..=20_000));
    let cut = epoch();
    let cut_at = workload.now();
    cluster.partition_edge(true).await?;
    eprintln!("  cut fra1 off for {hold:?}");
    tokio::time::sleep(hold).await;
    let healed_epoch = epoch();
    let healed = workload.now();
    cluster.partition_edge(false).await?;
    let mut unrecovered = u32::from(!recovered(&workload, healed).await);
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::Relaxed);
    running.await?;
    let ended = workload.now();

    let mut notes = Vec::new();
    // After the heal fra1 follows the core again: it runs the alias's current target.
    let t = Instant::now();
    let converged = loop {
        let target = alias_target(cluster, &function).await?;
        let at_edge = executed_at_edge(cluster, &function).await;
        if at_edge == Some(target) {
            break true;
        }
        if t.elapsed() > RECOVERY_BOUND {
            notes.push(format!(
                "fra1 runs version {at_edge:?} {RECOVERY_BOUND:?} after the heal; the alias is at {target}"
            ));
            break false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    unrecovered += u32::from(!converged);

    let (acked_writes_lost, lost_notes) = workload.lost_writes().await?;
    if acked_writes_lost > 0 {
        notes.push(lost_notes);
    }
    let obs = &workload.obs;
    let during: Vec<u64> = lock(&obs.successes)
        .iter()
        .copied()
        .filter(|t| (cut_at..healed).contains(t))
        .collect();
    if during.is_empty() {
        notes.push("no call through fra1 succeeded while it was cut off".into());
        unrecovered += 1;
    }
    let failed = obs.failed.load(Ordering::Relaxed);
    if failed > 0 {
        notes.push(format!(
            "{failed} call(s) through fra1 failed: {}",
            lock(&obs.first_failure).clone().unwrap_or_default()
        ));
    }
    let max_cut = cluster
        .counter
        .observed_during(&function, cut + LEASES_RUN_OUT, healed_epoch);
    if max_cut > BUDGET {
        notes.push(format!(
            "{max_cut} invocations overlapped at fra1 while cut off (budget {BUDGET}): {}",
            cluster.counter.witness(&function)
        ));
    }
    let (max_all, _, cut_short) = cluster.counter.observed(&function);
    let successes = lock(&obs.successes).clone();
    eprintln!(
        "  versions published={} (control-plane calls failed: {}); through fra1 ok={} ({} while cut off) throttled={} failed={failed}; most at once: {max_cut} while cut off, {max_all} in all; cut short={cut_short}",
        lock(&obs.acked_versions).len(),
        obs.admin_failed.load(Ordering::Relaxed),
        obs.ok.load(Ordering::Relaxed),
        during.len(),
        obs.throttled.load(Ordering::Relaxed),
    );
    Ok(Summary {
        scenario: NAME.into(),
        seed,
        ops: obs.ops.load(Ordering::Relaxed),
        faults: 1,
        acked_writes_lost,
        events_lost: 0,
        max_concurrency: (max_cut, BUDGET),
        longest_unavailable_ms: longest_gap_ms(&successes, began, ended),
        linearizable: true,
        recovered: unrecovered == 0 && failed == 0,
        notes: notes.join("; "),
    })
}

/// The version `live` points at, as the region's gateways answer.
async fn alias_target(cluster: &InvocationCluster, function: &str) -> anyhow::Result<u64> {
    let r = cluster
        .api()
        .get(
            &format!("/2015-03-31/functions/{function}/aliases/live"),
            "",
        )
        .await?;
    expect_status(&r, &[200], "GetAlias")?;
    let v: serde_json::Value = serde_json::from_slice(&r.body)?;
    v["FunctionVersion"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("GetAlias: no version in {v}"))
}

/// The version fra1's gateway runs for `live` now (one quick invocation), if it answers.
async fn executed_at_edge(cluster: &InvocationCluster, function: &str) -> Option<u64> {
    let payload = cluster.event("edge-probe", "probe", 0.0);
    let mut c = nimbus_gateway::client::LambdaConnection::connect(
        &cluster.edge_api().gateways[0],
        cluster.api().credentials,
    )
    .await
    .ok()?;
    let r = c
        .invoke(&format!("{function}:live"), &payload, &[])
        .await
        .ok()?;
    if r.status != 200 || r.header("x-amz-function-error").is_some() {
        return None;
    }
    r.header("x-amz-executed-version")?.parse().ok()
}
