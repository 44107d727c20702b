//! Metadata leader failover (issue 18): from SIGKILL of the leader to the first
//! acknowledgement of a write sent after it, through the client, on a 3-node cluster of separate processes on
//! loopback, fsync on, under one client writing back to back. After each kill the node
//! is started again and the cluster settles before the next kill. Run once with the
//! default Raft timing and once with the given faster one, in the same run.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use nimbus_meta::MetaClient;
use nimbus_tls::Transport;
use nimbus_types::Command as MetaCommand;

use crate::nimbus_cluster::NimbusCluster;

/// Failover times in ms, one per kill, with `flags` on every node.
pub async fn run(
    nimbus_bin: &Path,
    work_dir: &Path,
    kills: usize,
    flags: &[String],
) -> anyhow::Result<Vec<f64>> {
    let mut cluster = NimbusCluster::start_with(nimbus_bin, work_dir, 3, None, flags)?;
    let leader = cluster.wait_leader(Duration::from_secs(30)).await?;
    let addrs: Vec<&str> = cluster.addrs.iter().map(String::as_str).collect();
    let client = MetaClient::new(&addrs, &Transport::Plaintext)?;
    client
        .write(MetaCommand::PutRegion {
            name: "failover-bench".into(),
        })
        .await?;
    // (sent, acknowledged) of every write.
    let acks: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (acks, stop) = (acks.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // Idempotent and cheap: each is one Raft entry all the same.
                let put = MetaCommand::PutRegion {
                    name: "failover-bench".into(),
                };
                let sent = Instant::now();
                if client.write(put).await.is_ok() {
                    acks.lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push((sent, Instant::now()));
                }
            }
        })
    };
    let mut leader = leader;
    let mut out = Vec::with_capacity(kills);
    for k in 0..kills {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let i = cluster
            .addrs
            .iter()
            .position(|a| *a == leader)
            .ok_or_else(|| anyhow::anyhow!("leader {leader} is not a member"))?;
        let killed = Instant::now();
        cluster.kill(i)?;
        let acked = loop {
            // A write sent after the kill: one in flight at the kill may have been
            // committed already, its answer only read afterwards.
            let first = acks
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .iter()
                .find(|(sent, _)| *sent > killed)
                .map(|(_, acked)| *acked);
            if let Some(t) = first {
                break t;
            }
            anyhow::ensure!(
                killed.elapsed() < Duration::from_secs(60),
                "no write acknowledged within 60 s of kill {}",
                k + 1
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let ms = (acked - killed).as_secs_f64() * 1e3;
        eprintln!(
            "  kill {}: node {} was leader; next write acknowledged after {ms:.0} ms",
            k + 1,
            i + 1
        );
        out.push(ms);
        acks.lock().unwrap_or_else(PoisonError::into_inner).clear();
        cluster.restart(i)?;
        leader = cluster.wait_leader(Duration::from_secs(60)).await?;
    }
    stop.store(true, Ordering::Relaxed);
    let _ = writer.await;
    cluster.check_alive()?;
    Ok(out)
}
