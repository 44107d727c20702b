//! The write workload: `writes` puts of unique, sequential keys from `concurrency`
//! clients, each with a connection of its own, timed one by one.
//!
//! Both systems get the same payload bytes. For Nimbus a write is a
//! `Command::RegisterWorker` whose postcard encoding is padded to `value_bytes`; for etcd
//! the value of the put is that same encoding, under `/nimbus-bench/workers/<seq>`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use nimbus_meta::MetaClient;
use nimbus_types::{Command, Placement, Worker};
use tokio::sync::Barrier;

use crate::etcd_gateway::GatewayConnection;

/// Where a run sends its writes.
#[derive(Clone, Debug)]
pub enum Target {
    /// Metadata node addresses, leader first (the client stays on the first that answers).
    Nimbus { addrs: Vec<String> },
    /// The client address of the etcd leader.
    Etcd { addr: String },
}

/// One benchmark client and its connection.
enum Client {
    Nimbus(MetaClient),
    Etcd(GatewayConnection),
}

impl Client {
    async fn connect(target: &Target) -> anyhow::Result<Self> {
        Ok(match target {
            // A client per task: its own channel, so its own HTTP/2 connection.
            Target::Nimbus { addrs } => {
                Self::Nimbus(MetaClient::new(addrs, &nimbus_tls::Transport::Plaintext)?)
            }
            Target::Etcd { addr } => Self::Etcd(GatewayConnection::connect(addr).await?),
        })
    }

    async fn put(&mut self, seq: u64, value_bytes: usize) -> anyhow::Result<()> {
        let command = register_worker(seq, value_bytes);
        match self {
            Self::Nimbus(c) => {
                c.write(command).await?;
            }
            Self::Etcd(c) => {
                let key = format!("/nimbus-bench/workers/{seq:012}");
                c.put(key.as_bytes(), &nimbus_types::encode(&command))
                    .await?;
            }
        }
        Ok(())
    }
}

/// A worker registration for sequence number `seq` whose encoding is `value_bytes` long
/// (or as short as it can be, if that is less than the unpadded record).
pub fn register_worker(seq: u64, value_bytes: usize) -> Command {
    let build = |pad: usize| Command::RegisterWorker {
        worker: Worker {
            id: format!("{seq:012}"),
            addr: format!("w{seq:012}{}.nimbus.internal:9000", "x".repeat(pad)),
            region: "us-east-1".into(),
            placement: Placement::Zone("us-east-1a".into()),
            memory_total_mb: 4096,
            memory_used_mb: 512,
            environments_warm: 3,
            environments_busy: 1,
            // Fixed, so every record has the same size.
            last_heartbeat_ms: 1_700_000_000_000,
            runtimes: vec!["python3.11".into()],
        },
    };
    let unpadded = nimbus_types::encode(&build(0)).len();
    build(value_bytes.saturating_sub(unpadded))
}

/// What one run measured.
pub struct RunStats {
    /// Latency of every acknowledged write, sorted ascending.
    pub latencies: Vec<Duration>,
    /// From the moment every client was connected until the last one finished.
    pub elapsed: Duration,
    /// Clients that stopped on an error (each stops at its first).
    pub failures: u64,
    pub first_error: Option<String>,
}

/// Runs `writes` timed puts from `concurrency` clients. Keys come from `next_seq`, which
/// the caller keeps per system so that no key is ever written twice.
pub async fn run(
    target: &Target,
    concurrency: usize,
    writes: u64,
    value_bytes: usize,
    next_seq: &Arc<AtomicU64>,
) -> anyhow::Result<RunStats> {
    let barrier = Arc::new(Barrier::new(concurrency + 1));
    let claimed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        let (target, barrier, claimed, next_seq) = (
            target.clone(),
            barrier.clone(),
            claimed.clone(),
            next_seq.clone(),
        );
        tasks.push(tokio::spawn(async move {
            // Connect and make one untimed write first, so the timed part measures
            // writes, not connection set-up. Every task reaches the barrier, even on error.
            let ready = async {
                let mut client = Client::connect(&target).await?;
                client
                    .put(next_seq.fetch_add(1, Ordering::Relaxed), value_bytes)
                    .await?;
                anyhow::Ok(client)
            }
            .await;
            barrier.wait().await;
            let mut client = ready?;
            let mut latencies = Vec::new();
            while claimed.fetch_add(1, Ordering::Relaxed) < writes {
                let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                let start = Instant::now();
                client
                    .put(seq, value_bytes)
                    .await
                    .with_context(|| format!("write #{seq}"))?;
                latencies.push(start.elapsed());
            }
            anyhow::Ok(latencies)
        }));
    }
    barrier.wait().await;
    let start = Instant::now();
    let mut stats = RunStats {
        latencies: Vec::with_capacity(usize::try_from(writes)?),
        elapsed: Duration::ZERO,
        failures: 0,
        first_error: None,
    };
    for task in tasks {
        match task.await.context("a client task panicked")? {
            Ok(l) => stats.latencies.extend(l),
            Err(e) => {
                stats.failures += 1;
                stats.first_error.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
    stats.elapsed = start.elapsed();
    stats.latencies.sort_unstable();
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_requested_size_for_any_key() {
        for seq in [0, 1, 999_999_999_999] {
            assert_eq!(nimbus_types::encode(&register_worker(seq, 100)).len(), 100);
        }
        // Too small to pad: the unpadded record.
        assert!(nimbus_types::encode(&register_worker(1, 10)).len() > 10);
    }
}
