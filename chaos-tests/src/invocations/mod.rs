//! The invocation side of the cluster under faults: gateways (Compose services) and
//! workers, a function whose every invocation reports to the runner's [`Counter`], and
//! the scenarios that kill a worker mid-invocation, kill a gateway right after it
//! accepted async events, and restart every node under load.
//!
//! Workers are started with `docker run` and the capabilities the sandbox needs spelled
//! out, on the Compose project's `control` network: Docker Engines that themselves lack a
//! capability (nested engines, like this project's CI machines) refuse `privileged`, and
//! docker-compose 1.x cannot express `systempaths=unconfined` (docs/operations.md).
//!
//! Layout: this module is the runner every scenario shares ([`run`]: the function, its
//! `live` alias, the load, then the checks); [`cluster`] starts and stops gateways and
//! workers; [`api`] is the SDK-like client; [`workload`] is the load and what it saw.
//! One module per fault scenario injects and heals its fault: [`kill_worker`],
//! [`kill_gateway_after_accept`], [`rolling_restart`]; the load each runs under is its
//! [`Plan`] (the kill scenarios share one, `pressed`). [`edge_partition`] has a site of
//! its own (an edge location's gateway and worker) and its own checks.
//!
//! [`Counter`]: crate::counter::Counter

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::lock;
use crate::scenario::{MetaCluster, Pace, RECOVERY_BOUND};
use crate::summary::{longest_gap_ms, Summary};

pub mod api;
pub mod attack;
pub mod cluster;
pub mod edge_partition;
pub mod kill_gateway_after_accept;
pub mod kill_worker;
pub mod rolling_restart;
pub mod workload;

pub use api::{Api, SyncOutcome};
pub use cluster::{remove_workers, InvocationCluster};
pub use workload::{InvokeObservations, InvokeWorkload};

/// The gateways' Compose services and where their Lambda API is published on the host.
pub const GATEWAYS: [(&str, &str); 2] = [
    ("gateway1", "172.28.1.21:9000"),
    ("gateway2", "172.28.1.22:9000"),
];
/// (container suffix, fixed address on `control`, zone) of each worker.
pub const WORKERS: [(&str, &str, &str); 2] = [
    ("worker-a1", "172.28.0.31", "us-east-1a"),
    ("worker-b1", "172.28.0.32", "us-east-1b"),
];
/// The edge location of the edge scenario, its gateway and worker (name, fixed address
/// on `control`; started with `docker run` like the workers).
pub const EDGE_LOCATION: &str = "fra1";
pub const EDGE_GATEWAY: (&str, &str) = ("gateway-fra1", "172.28.0.23");
pub const EDGE_WORKER: (&str, &str) = ("worker-fra1", "172.28.0.33");
/// The host as the containers see it (the `control` network's gateway): the counter.
pub const HOST_IP: &str = "172.28.0.1";
pub const ACCOUNT: &str = "123456789012";
pub const ACCESS_KEY_ID: &str = "AKIANIMBUSCHAOS00001";
/// Passed to Compose's `bootstrap` service as NIMBUS_SECRET_ACCESS_KEY.
pub const SECRET_ACCESS_KEY: &str = "nimbus-chaos-secret-access-key-00000000";
/// The reserved concurrency of each scenario's function: the limit checked from inside.
pub const LIMIT: u32 = 4;
/// The rolling restart's limit: far above its load, so that a throttle there can only
/// come from the restart (a lease lost), not from cold starts pushing the load to it.
pub const ROLLING_LIMIT: u32 = 10;

/// The invocation fault kinds, one scenario each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationFault {
    /// kill -9 of a worker's container while invocations run on it, restarted later.
    KillWorker,
    /// A burst of async events accepted by one gateway, which is killed right after.
    KillGatewayAfterAccept,
    /// Every node (metadata, gateways, workers) stopped cleanly and restarted, one at a
    /// time, under load: no sync invocation may fail.
    RollingRestart,
}

impl InvocationFault {
    pub const ALL: [InvocationFault; 3] = [
        InvocationFault::KillWorker,
        InvocationFault::KillGatewayAfterAccept,
        InvocationFault::RollingRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            InvocationFault::KillWorker => "inv-kill-worker",
            InvocationFault::KillGatewayAfterAccept => "inv-kill-gateway-after-202",
            InvocationFault::RollingRestart => "inv-rolling-restart",
        }
    }

    /// The load and the limit the scenario runs with.
    fn plan(self, pace: Pace) -> Plan {
        match self {
            InvocationFault::KillWorker | InvocationFault::KillGatewayAfterAccept => pressed(pace),
            InvocationFault::RollingRestart => rolling_restart::plan(pace),
        }
    }

    /// Injects and heals the scenario's fault; returns how many faults it injected.
    async fn inject(
        self,
        f: &Faulting<'_>,
        rng: &mut StdRng,
        hold: Duration,
    ) -> anyhow::Result<u32> {
        match self {
            InvocationFault::KillWorker => kill_worker::inject(f, rng, hold).await,
            InvocationFault::KillGatewayAfterAccept => {
                kill_gateway_after_accept::inject(f, rng, hold).await
            }
            InvocationFault::RollingRestart => rolling_restart::inject(f, rng, hold).await,
        }
    }
}

/// What a scenario asks of the runner.
pub struct Plan {
    /// The function's reserved concurrency.
    pub limit: u32,
    /// Sync clients invoking the `live` alias in a loop.
    pub sync_clients: usize,
    /// How often the async producer sends an event, if at all.
    pub async_every: Option<Duration>,
    /// Whether sync invocations may fail (they may when the fault cuts them; a clean
    /// restart must cut none).
    pub failures_allowed: bool,
}

/// The load of the scenarios that kill something: more sync clients than the limit, so
/// the limit is pressed while the fault lands, and an event every 100 ms.
fn pressed(pace: Pace) -> Plan {
    Plan {
        limit: LIMIT,
        sync_clients: pace.clients.max(LIMIT as usize + 2),
        async_every: Some(Duration::from_millis(100)),
        failures_allowed: true,
    }
}

/// What a scenario's fault acts on, while the load runs.
pub struct Faulting<'a> {
    pub meta: &'a MetaCluster,
    pub cluster: &'a InvocationCluster,
    /// The scenario's function (also its counter scope).
    pub function: &'a str,
    pub workload: &'a InvokeWorkload,
}

/// How long accepted events may take to run after the faults healed.
const DRAIN_BOUND: Duration = Duration::from_secs(120);

/// Runs one invocation scenario on the running cluster.
pub async fn run(
    meta: &MetaCluster,
    cluster: &InvocationCluster,
    fault: InvocationFault,
    seed: u64,
    pace: Pace,
) -> anyhow::Result<Summary> {
    let mut rng = StdRng::seed_from_u64(seed ^ (0x100 + fault as u64));
    let name = fault.name();
    let plan = fault.plan(pace);
    let limit = plan.limit;
    let function = cluster
        .create_function(&format!("{name}-{seed}"), Some(limit))
        .await?;
    publish_live_alias(&cluster.api(), &function).await?;
    let workload = Arc::new(InvokeWorkload {
        api: cluster.api(),
        control: cluster.api(),
        function: function.clone(),
        obs: Arc::default(),
        origin: Instant::now(),
        sync_sleep_s: 0.2,
        counter_port: cluster.counter.port,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(workload.clone().run(
        plan.sync_clients,
        plan.async_every,
        stop.clone(),
    ));
    let began = workload.now();
    tokio::time::sleep(Duration::from_secs(3)).await;

    let mut unrecovered = 0;
    // Drawn before the scenario draws its own: a seed replays the same run.
    let hold = Duration::from_millis(rng.gen_range(1_000..=pace.max_hold.as_millis() as u64));
    let faulting = Faulting {
        meta,
        cluster,
        function: &function,
        workload: &workload,
    };
    let faults = fault.inject(&faulting, &mut rng, hold).await?;
    let healed = workload.now();
    if !recovered(&workload, healed).await {
        unrecovered += 1;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    running.await?;
    let ended = workload.now();

    // Every accepted event must run to its end (at least once) within the bound.
    let accepted: Vec<String> = lock(&workload.obs.accepted).clone();
    let t = Instant::now();
    let lost = loop {
        let (_, completed, _) = cluster.counter.observed(&function);
        let lost: Vec<&String> = accepted
            .iter()
            .filter(|id| !completed.contains(*id))
            .collect();
        if lost.is_empty() || t.elapsed() > DRAIN_BOUND {
            break lost.into_iter().cloned().collect::<Vec<_>>();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let (acked_writes_lost, lost_notes) = workload.lost_writes().await?;
    let (max, _, cut_short) = cluster.counter.observed(&function);
    let obs = &workload.obs;
    let failed = obs.failed.load(Ordering::Relaxed);
    let successes = lock(&obs.successes).clone();
    let mut notes = Vec::new();
    if acked_writes_lost > 0 {
        notes.push(lost_notes);
    }
    if max > limit {
        notes.push(format!(
            "{max} invocations overlapped (limit {limit}): {}",
            cluster.counter.witness(&function)
        ));
    }
    if !lost.is_empty() {
        notes.push(format!(
            "{} accepted event(s) never completed, e.g. {}",
            lost.len(),
            lost[0]
        ));
    }
    if unrecovered > 0 {
        notes.push(format!(
            "no successful invocation within {RECOVERY_BOUND:?} of healing"
        ));
    }
    // Killing a worker or a gateway fails the sync invocations running through it (they
    // may have run, so they are not retried); a clean restart must fail none.
    let failures_allowed = plan.failures_allowed;
    // Below the limit (the rolling restart), a call still throttled after the SDK-style
    // retries is a failure too: nothing but the restart could have caused it.
    let throttled = obs.throttled.load(Ordering::Relaxed);
    if throttled > 0 && !failures_allowed {
        notes.push(format!(
            "{throttled} sync invocation(s) still throttled after retries"
        ));
    }
    if failed > 0 && !failures_allowed {
        notes.push(format!(
            "{failed} sync invocation(s) failed: {}",
            lock(&obs.first_failure).clone().unwrap_or_default()
        ));
    }
    eprintln!(
        "  versions published={} (control-plane calls failed: {}); sync ok={} throttled={} failed={failed}; events accepted={} completed={}; cut short={cut_short}",
        lock(&obs.acked_versions).len(),
        obs.admin_failed.load(Ordering::Relaxed),
        obs.ok.load(Ordering::Relaxed),
        obs.throttled.load(Ordering::Relaxed),
        accepted.len(),
        accepted.len() - lost.len(),
    );
    Ok(Summary {
        scenario: name.into(),
        seed,
        ops: obs.ops.load(Ordering::Relaxed),
        faults,
        acked_writes_lost,
        events_lost: lost.len(),
        max_concurrency: (max, limit),
        longest_unavailable_ms: longest_gap_ms(&successes, began, ended),
        // No register history in these scenarios: nothing to contradict.
        linearizable: true,
        recovered: unrecovered == 0 && (failures_allowed || failed + throttled == 0),
        notes: notes.join("; "),
    })
}

/// Version 1 of `function` and its `live` alias, which the sync clients invoke.
pub(super) async fn publish_live_alias(api: &Api, function: &str) -> anyhow::Result<()> {
    let r = api
        .call(
            "POST",
            &format!("/2015-03-31/functions/{function}/versions"),
            "{}".into(),
        )
        .await?;
    api::expect_status(&r, &[201], "PublishVersion")?;
    let body = serde_json::json!({"Name": "live", "FunctionVersion": "1"}).to_string();
    let r = api
        .call(
            "POST",
            &format!("/2015-03-31/functions/{function}/aliases"),
            body,
        )
        .await?;
    api::expect_status(&r, &[201], "CreateAlias")
}

/// A successful sync invocation completed after `healed`, within the bound.
pub(super) async fn recovered(w: &InvokeWorkload, healed: u64) -> bool {
    let t = Instant::now();
    while t.elapsed() < RECOVERY_BOUND {
        if lock(&w.obs.successes).iter().any(|s| *s >= healed) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn wait_port(addr: &str) -> anyhow::Result<()> {
    let t = Instant::now();
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        anyhow::ensure!(
            t.elapsed() < RECOVERY_BOUND,
            "{addr} not listening within {RECOVERY_BOUND:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}
