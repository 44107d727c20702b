//! Scenarios: a workload running while one kind of fault is injected and healed, then
//! the checks. Each returns a [`Summary`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nimbus_meta::MetaClient;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::docker::{self, Compose};
use crate::history::History;
use crate::linearizability;
use crate::summary::{longest_gap_ms, Summary};
use crate::workload::MetaWorkload;

/// A fault must be healed and the cluster serving again within this bound.
pub const RECOVERY_BOUND: Duration = Duration::from_secs(20);

/// The kinds of fault, one scenario each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// kill -9 of the metadata leader, restarted after the hold time.
    KillLeader,
    /// kill -9 of a random metadata node.
    KillRandom,
    /// SIGSTOP of the leader's process, SIGCONT after the hold time.
    PauseLeader,
    /// The leader disconnected from the network (a minority of one against a majority).
    PartitionLeader,
    /// The leader stops receiving from its peers but can still send (one-way).
    PartitionOneWay,
    /// Delay with jitter and packet loss on every metadata node.
    Netem,
    /// A metadata node's file system filled to the last byte.
    DiskFull,
    /// Every metadata node stopped cleanly and restarted, one at a time.
    RollingRestart,
}

impl Fault {
    pub const ALL: [Fault; 8] = [
        Fault::KillLeader,
        Fault::KillRandom,
        Fault::PauseLeader,
        Fault::PartitionLeader,
        Fault::PartitionOneWay,
        Fault::Netem,
        Fault::DiskFull,
        Fault::RollingRestart,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::KillLeader => "meta-kill-leader",
            Fault::KillRandom => "meta-kill-random",
            Fault::PauseLeader => "meta-pause-leader",
            Fault::PartitionLeader => "meta-partition-leader",
            Fault::PartitionOneWay => "meta-partition-one-way",
            Fault::Netem => "meta-netem",
            Fault::DiskFull => "meta-disk-full",
            Fault::RollingRestart => "meta-rolling-restart",
        }
    }
}

/// The metadata cluster under test: its Compose project and each node's fixed address.
pub struct MetaCluster {
    pub compose: Compose,
    /// (service, id, ip) of each metadata node.
    pub nodes: Vec<(String, u64, String)>,
    /// Host directory of each node's data (a small loop-mounted file system).
    pub data_dirs: Vec<PathBuf>,
    /// The TLS directories of every node (`TLS/<service>`) and of the runner (`TLS/admin`).
    pub tls: PathBuf,
    /// The runner's own transport: mutual TLS with the admin certificate.
    pub transport: nimbus_tls::Transport,
}

impl MetaCluster {
    pub fn addrs(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|(_, _, ip)| format!("{ip}:17001"))
            .collect()
    }

    /// A client with a gateway's certificate: function metadata, as gateways write it.
    pub fn gateway_client(&self) -> anyhow::Result<MetaClient> {
        let tls = nimbus_tls::Tls::load(self.tls.join("gateway1"), nimbus_tls::Role::Gateway)?;
        Ok(MetaClient::new(
            &self.addrs(),
            &nimbus_tls::Transport::Tls(tls),
        )?)
    }

    /// A client with the operator's (admin) certificate.
    pub fn client(&self) -> anyhow::Result<MetaClient> {
        Ok(MetaClient::new(&self.addrs(), &self.transport)?)
    }

    /// The index of the current leader, as any reachable node reports it.
    pub async fn leader(&self, timeout: Duration) -> anyhow::Result<usize> {
        let start = Instant::now();
        loop {
            for (_, _, ip) in &self.nodes {
                let status = tokio::time::timeout(
                    Duration::from_secs(2),
                    MetaClient::node_status(&format!("{ip}:17001"), &self.transport),
                )
                .await;
                if let Ok(Ok(s)) = status {
                    if let Some(l) = s.leader {
                        if let Some(i) = self.nodes.iter().position(|n| n.1 == l) {
                            return Ok(i);
                        }
                    }
                }
            }
            anyhow::ensure!(start.elapsed() < timeout, "no leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until node `i` answers and knows a leader.
    pub async fn wait_ready(&self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let start = Instant::now();
        let addr = format!("{}:17001", self.nodes[i].2);
        loop {
            let s = tokio::time::timeout(
                Duration::from_secs(2),
                MetaClient::node_status(&addr, &self.transport),
            )
            .await;
            if matches!(s, Ok(Ok(ref s)) if s.leader.is_some()) {
                return Ok(());
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "{} not ready within {timeout:?}",
                self.nodes[i].0
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// How long faults last and how many there are.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Fault cycles per scenario.
    pub cycles: usize,
    /// How long each fault is held, at most (the actual hold is drawn from the seed).
    pub max_hold: Duration,
    /// Concurrent workload clients.
    pub clients: usize,
    /// Registers (functions) per scenario.
    pub keys: usize,
}

/// Runs one scenario on a running cluster.
pub async fn run(
    cluster: &MetaCluster,
    fault: Fault,
    seed: u64,
    pace: Pace,
) -> anyhow::Result<Summary> {
    let mut rng = StdRng::seed_from_u64(seed ^ fault as u64);
    let history = Arc::new(History::new());
    let name = fault.name();
    let workload = Arc::new(
        MetaWorkload::setup(
            cluster.gateway_client()?,
            cluster.client()?,
            history.clone(),
            &format!("{name}-{seed}"),
            pace.keys,
        )
        .await?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let running = tokio::spawn(workload.clone().run(pace.clients, seed, stop.clone()));
    let began = history.now();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut faults = 0;
    let mut recoveries_ms = Vec::new();
    for _ in 0..pace.cycles {
        let hold = Duration::from_millis(rng.gen_range(1_000..=pace.max_hold.as_millis() as u64));
        faults += inject_and_heal(cluster, fault, hold, &mut rng).await?;
        let healed = history.now();
        recoveries_ms.push(wait_recovered(&workload, healed).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    stop.store(true, Ordering::Relaxed);
    running.await?;
    let ended = history.now();
    let acked_writes_lost = workload.final_check().await?;
    let ops = history.operations();
    let verdict = linearizability::check(&ops);
    let successes = crate::lock(&workload.obs.successes).clone();
    let unrecovered = recoveries_ms.iter().filter(|r| r.is_none()).count();
    Ok(Summary {
        scenario: name.into(),
        seed,
        ops: workload.obs.ops.load(Ordering::Relaxed),
        faults,
        acked_writes_lost,
        events_lost: 0,
        max_concurrency: (0, 0),
        longest_unavailable_ms: longest_gap_ms(&successes, began, ended),
        linearizable: verdict.is_linearizable(),
        notes: match (&verdict, unrecovered) {
            (linearizability::Verdict::Linearizable, 0) => String::new(),
            (linearizability::Verdict::Linearizable, n) => {
                format!("{n} fault(s) not recovered within {RECOVERY_BOUND:?}")
            }
            (v, _) => format!("{v:?}"),
        },
        recovered: unrecovered == 0,
    })
}

/// Time from `healed` until the workload's first success after it; `None` past the bound.
async fn wait_recovered(workload: &MetaWorkload, healed: u64) -> Option<u64> {
    let start = Instant::now();
    while start.elapsed() < RECOVERY_BOUND {
        let first = crate::lock(&workload.obs.successes)
            .iter()
            .copied()
            .filter(|t| *t >= healed)
            .min();
        if let Some(t) = first {
            return Some((t - healed) / 1_000_000);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Injects one fault, holds it, heals it. Returns how many faults were injected.
async fn inject_and_heal(
    cluster: &MetaCluster,
    fault: Fault,
    hold: Duration,
    rng: &mut StdRng,
) -> anyhow::Result<u32> {
    let c = &cluster.compose;
    let leader = cluster.leader(Duration::from_secs(30)).await?;
    let svc = |i: usize| cluster.nodes[i].0.as_str();
    match fault {
        Fault::KillLeader | Fault::KillRandom => {
            let i = if fault == Fault::KillLeader {
                leader
            } else {
                rng.gen_range(0..cluster.nodes.len())
            };
            c.kill(svc(i)).await?;
            tokio::time::sleep(hold).await;
            c.start(svc(i)).await?;
            cluster.wait_ready(i, RECOVERY_BOUND).await?;
        }
        Fault::PauseLeader => {
            c.signal_nimbus(svc(leader), false).await?;
            tokio::time::sleep(hold).await;
            c.signal_nimbus(svc(leader), true).await?;
        }
        Fault::PartitionLeader => {
            c.disconnect("control", svc(leader)).await?;
            tokio::time::sleep(hold).await;
            let (s, _, ip) = &cluster.nodes[leader];
            c.connect("control", s, ip, s).await?;
        }
        Fault::PartitionOneWay => {
            let peers: Vec<&str> = (0..cluster.nodes.len())
                .filter(|&i| i != leader)
                .map(|i| cluster.nodes[i].2.as_str())
                .collect();
            for p in &peers {
                c.drop_from(svc(leader), p, true).await?;
            }
            tokio::time::sleep(hold).await;
            for p in &peers {
                c.drop_from(svc(leader), p, false).await?;
            }
        }
        Fault::Netem => {
            for (s, _, _) in &cluster.nodes {
                let how = c.degrade_network(s, true).await?;
                eprintln!("  {s}: {how}");
            }
            tokio::time::sleep(hold).await;
            for (s, _, _) in &cluster.nodes {
                c.degrade_network(s, false).await?;
            }
        }
        Fault::DiskFull => {
            let i = if rng.gen_bool(0.5) {
                leader
            } else {
                rng.gen_range(0..cluster.nodes.len())
            };
            docker::fill_disk(&cluster.data_dirs[i], true).await?;
            tokio::time::sleep(hold).await;
            docker::fill_disk(&cluster.data_dirs[i], false).await?;
            // A node whose storage failed exits; the restart policy brings it back.
            let _ = c.start(svc(i)).await;
            cluster.wait_ready(i, RECOVERY_BOUND * 2).await?;
        }
        Fault::RollingRestart => {
            for i in 0..cluster.nodes.len() {
                c.stop(svc(i)).await?;
                c.start(svc(i)).await?;
                cluster.wait_ready(i, RECOVERY_BOUND).await?;
            }
            return Ok(cluster.nodes.len() as u32);
        }
    }
    Ok(1)
}
