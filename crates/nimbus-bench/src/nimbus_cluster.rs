//! A 3-node Nimbus metadata cluster of real `nimbus meta` processes on loopback.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use nimbus_meta::MetaClient;

use crate::processes::{free_ports, ProcessGroup};

/// A running cluster; dropping it stops the nodes and removes their data.
pub struct NimbusCluster {
    /// Node addresses, node id `i + 1` at index `i`.
    pub addrs: Vec<String>,
    processes: ProcessGroup,
}

impl NimbusCluster {
    /// Starts `size` founding members with the given binary, data under `parent`.
    pub fn start(nimbus_bin: &Path, parent: &Path, size: usize) -> anyhow::Result<Self> {
        let mut processes = ProcessGroup::new(parent, "nimbus-bench-meta-")?;
        let key_file = processes.dir().join("cluster.key");
        // Any 32 bytes: the benchmark writes nothing that is encrypted at rest.
        std::fs::write(&key_file, [7u8; 32]).context("writing the cluster key")?;
        let addrs: Vec<String> = free_ports(size)?
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let initial = addrs
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{}={a}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        for (i, addr) in addrs.iter().enumerate() {
            let id = (i + 1).to_string();
            let mut cmd = Command::new(nimbus_bin);
            cmd.arg("--insecure-plaintext");
            cmd.args(["meta", "--id", &id, "--listen", addr])
                .arg("--data-dir")
                .arg(processes.dir().join(format!("node{id}")))
                .arg("--key-file")
                .arg(&key_file)
                .args(["--initial-cluster", &initial])
                .env("RUST_LOG", "warn");
            processes.spawn(&format!("nimbus meta {id}"), &format!("node{id}"), cmd)?;
        }
        Ok(Self { addrs, processes })
    }

    /// Waits until every node reports the same leader; returns the leader's address.
    pub async fn wait_leader(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let start = Instant::now();
        loop {
            self.processes.check_alive()?;
            let mut leaders = Vec::new();
            for addr in &self.addrs {
                if let Ok(s) =
                    MetaClient::node_status(addr, &nimbus_tls::Transport::Plaintext).await
                {
                    leaders.push(s.leader);
                }
            }
            if leaders.len() == self.addrs.len() {
                if let Some(Some(id)) = leaders.first().copied() {
                    if leaders.iter().all(|l| *l == Some(id)) {
                        let i = usize::try_from(id)?.checked_sub(1);
                        if let Some(addr) = i.and_then(|i| self.addrs.get(i)) {
                            return Ok(addr.clone());
                        }
                    }
                }
            }
            if start.elapsed() > timeout {
                anyhow::bail!(
                    "no Nimbus metadata leader within {timeout:?}\n{}",
                    self.processes.log_tails(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails if a node has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.processes.check_alive()
    }
}
