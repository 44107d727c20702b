//! Liveness off the Raft log (issue 18): what workers cost the metadata cluster at idle,
//! and how fast a gateway stops counting a dead worker, in one run.
//!
//! - **Raft entries at idle.** `--workers` simulated workers register with a 3-node
//!   metadata cluster (separate processes on loopback) and then run the registration
//!   policy of a real worker node (`nimbus_worker::node::registration`) every heartbeat
//!   (2 s): first as before issue 18 (every heartbeat written: a registration whose
//!   refresh period is zero), then as now (written when it changes, refreshed every
//!   5 minutes). The leader's last log index over `--idle-secs` gives entries per second.
//!   Simulated workers register in a region of their own, so no gateway probes them.
//! - **A dead worker.** A gateway and two real workers: once the gateway counts both live
//!   (`nimbus_gateway_live_workers` on its admin endpoint), one worker is killed with
//!   SIGKILL and the gauge is polled every 20 ms until it shows one.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nimbus_meta::MetaClient;
use nimbus_tls::Transport;
use nimbus_types::{Command as MetaCommand, Placement, Worker};
use nimbus_worker::node::registration::Registration;

use crate::nimbus_cluster::{gateway_command, worker_command, NimbusCluster};
use crate::processes::{free_ports, ProcessGroup};

/// A real worker's default heartbeat (`nimbus worker --heartbeat-ms`).
const HEARTBEAT: Duration = Duration::from_secs(2);
/// A real worker's default registration refresh (`--registration-refresh-secs`).
const REFRESH: Duration = Duration::from_secs(300);
const SIM_REGION: &str = "sim-1";

/// One round's figures.
pub struct LivenessRound {
    /// Raft entries per second at idle, every heartbeat written (before issue 18).
    pub every_heartbeat: f64,
    /// The same, with the registration policy workers run now.
    pub registration: f64,
    /// From SIGKILL of a worker to the gateway counting it dead, ms.
    pub dead_after_ms: f64,
}

pub async fn round(
    nimbus_bin: &Path,
    work_dir: &Path,
    workers: usize,
    idle: Duration,
) -> anyhow::Result<LivenessRound> {
    let mut meta = NimbusCluster::start(nimbus_bin, work_dir, 3, None)?;
    meta.wait_leader(Duration::from_secs(30)).await?;
    let before = idle_entries(&meta, workers, Duration::ZERO, idle, "before").await?;
    let now = idle_entries(&meta, workers, REFRESH, idle, "now").await?;
    let dead_after_ms = dead_worker(nimbus_bin, work_dir, &meta).await?;
    meta.check_alive()?;
    Ok(LivenessRound {
        every_heartbeat: before,
        registration: now,
        dead_after_ms,
    })
}

/// The leader's last log index.
async fn last_log(meta: &NimbusCluster) -> anyhow::Result<u64> {
    let mut best = 0;
    for addr in &meta.addrs {
        if let Ok(s) = MetaClient::node_status(addr, &Transport::Plaintext).await {
            best = best.max(s.last_log);
        }
    }
    Ok(best)
}

fn simulated(tag: &str, i: usize, used_mb: u64) -> Worker {
    Worker {
        id: format!("sim-{tag}-{i:05}"),
        addr: format!("127.0.0.1:{}", 20_000 + i),
        region: SIM_REGION.into(),
        placement: Placement::Zone(format!("{SIM_REGION}a")),
        memory_total_mb: 4096,
        memory_used_mb: used_mb,
        environments_warm: 0,
        environments_busy: 0,
        last_heartbeat_ms: 0,
        runtimes: vec!["python3.11".into()],
    }
}

/// Raft entries per second while `workers` simulated idle workers run the registration
/// policy with `refresh`.
async fn idle_entries(
    meta: &NimbusCluster,
    workers: usize,
    refresh: Duration,
    idle: Duration,
    tag: &str,
) -> anyhow::Result<f64> {
    let addrs: Vec<&str> = meta.addrs.iter().map(String::as_str).collect();
    let client = MetaClient::new(&addrs, &Transport::Plaintext)?;
    let stop = Arc::new(AtomicBool::new(false));
    let registered = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for i in 0..workers {
        let (client, stop, registered) = (client.clone(), stop.clone(), registered.clone());
        let tag = tag.to_string();
        tasks.push(tokio::spawn(async move {
            // Spread over a heartbeat, as independent workers are.
            tokio::time::sleep(HEARTBEAT.mul_f64(i as f64 / workers as f64)).await;
            let first = simulated(&tag, i, 0);
            while client
                .write(MetaCommand::RegisterWorker {
                    worker: first.clone(),
                })
                .await
                .is_err()
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            registered.fetch_add(1, Ordering::Relaxed);
            let mut registration = Registration::written(&first, refresh);
            let mut tick = tokio::time::interval(HEARTBEAT);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                n += 1;
                // Idle, but its load is never quite the same (page cache, a reaped
                // environment): what a heartbeat carried changes all the time.
                let worker = simulated(&tag, i, n % 7);
                if registration.due(&worker)
                    && client
                        .write(MetaCommand::RegisterWorker {
                            worker: worker.clone(),
                        })
                        .await
                        .is_ok()
                {
                    registration.wrote(&worker);
                }
            }
        }));
    }
    let t = Instant::now();
    while registered.load(Ordering::Relaxed) < workers as u64 {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(300),
            "only {} of {workers} simulated workers registered",
            registered.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // One heartbeat for the registration burst to settle, then the idle window.
    tokio::time::sleep(HEARTBEAT).await;
    let (i0, t0) = (last_log(meta).await?, Instant::now());
    tokio::time::sleep(idle).await;
    let (i1, t1) = (last_log(meta).await?, Instant::now());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    Ok(i1.saturating_sub(i0) as f64 / (t1 - t0).as_secs_f64())
}

/// The gateway's `nimbus_gateway_live_workers`.
async fn live_workers(admin: &str) -> Option<i64> {
    let mut stream = tokio::net::TcpStream::connect(admin).await.ok()?;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let req = format!("GET /metrics HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n");
    stream.write_all(req.as_bytes()).await.ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).await.ok()?;
    body.lines()
        .find(|l| l.starts_with("nimbus_gateway_live_workers"))
        .and_then(|l| l.split_whitespace().last())
        .and_then(|v| v.parse().ok())
}

/// Milliseconds from SIGKILL of one of two workers to the gateway counting one.
async fn dead_worker(
    nimbus_bin: &Path,
    work_dir: &Path,
    meta: &NimbusCluster,
) -> anyhow::Result<f64> {
    let metas = meta.addrs.join(",");
    let mut processes = ProcessGroup::new(work_dir, "nimbus-bench-liveness-")?;
    let ports = free_ports(4)?;
    let addr = |i: usize| format!("127.0.0.1:{}", ports[i]);
    let (gateway, admin) = (addr(0), addr(1));
    for (name, listen, pool) in [
        ("worker-a", addr(2), "100.92"),
        ("worker-b", addr(3), "100.93"),
    ] {
        let mut worker = worker_command(
            nimbus_bin,
            None,
            &processes.dir().join(name),
            &listen,
            &metas,
        );
        worker
            .args(["--zone", "us-east-1a"])
            .args(["--memory-mb", "1024", "--nat-pool", pool]);
        processes.spawn(name, name, worker)?;
    }
    let mut gw = gateway_command(nimbus_bin, None, &gateway, &metas);
    gw.args(["--admin-listen", &admin]);
    processes.spawn("gateway", "gateway", gw)?;
    processes
        .wait_listening(&[&gateway, &admin], || Ok(()), Duration::from_secs(120))
        .await?;
    let t = Instant::now();
    while live_workers(&admin).await != Some(2) {
        processes.check_alive()?;
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(120),
            "the gateway never counted both workers live\n{}",
            processes.log_tails(20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    processes.kill("worker-b").context("killing worker-b")?;
    let killed = Instant::now();
    while live_workers(&admin).await != Some(1) {
        anyhow::ensure!(
            killed.elapsed() < Duration::from_secs(60),
            "the gateway still counts a worker killed 60 s ago"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ms = killed.elapsed().as_secs_f64() * 1e3;
    processes.stop().await;
    Ok(ms)
}
