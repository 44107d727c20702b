//! A 3-member etcd cluster of real `etcd` processes on loopback, default durability
//! (every Raft append is fsync'd, as in production).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::etcd_gateway::GatewayConnection;
use crate::processes::{free_ports, ProcessGroup};

/// A running cluster; dropping it stops the members and removes their data.
pub struct EtcdCluster {
    /// Client URLs' `host:port`, member `m{i + 1}` at index `i`.
    pub client_addrs: Vec<String>,
    processes: ProcessGroup,
}

impl EtcdCluster {
    /// Starts `size` members of a new cluster with the given binary, data under `parent`.
    pub fn start(etcd_bin: &Path, parent: &Path, size: usize) -> anyhow::Result<Self> {
        let mut processes = ProcessGroup::new(parent, "nimbus-bench-etcd-")?;
        let ports = free_ports(size * 2)?;
        let client_addrs: Vec<String> = ports[..size]
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let peer_urls: Vec<String> = ports[size..]
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        let initial = peer_urls
            .iter()
            .enumerate()
            .map(|(i, u)| format!("m{}={u}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!("nimbus-bench-{}", std::process::id());
        for i in 0..size {
            let name = format!("m{}", i + 1);
            let client_url = format!("http://{}", client_addrs[i]);
            let mut cmd = Command::new(etcd_bin);
            cmd.args(["--name", &name])
                .arg("--data-dir")
                .arg(processes.dir().join(&name))
                .args(["--listen-client-urls", &client_url])
                .args(["--advertise-client-urls", &client_url])
                .args(["--listen-peer-urls", &peer_urls[i]])
                .args(["--initial-advertise-peer-urls", &peer_urls[i]])
                .args(["--initial-cluster", &initial])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--logger", "zap", "--log-outputs", "stderr"])
                .args(["--log-level", "warn"]);
            processes.spawn(&format!("etcd {name}"), &name, cmd)?;
        }
        Ok(Self {
            client_addrs,
            processes,
        })
    }

    /// Waits until every member reports the same leader; returns the leader's client address.
    pub async fn wait_leader(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let start = Instant::now();
        loop {
            self.processes.check_alive()?;
            let mut statuses = Vec::new();
            for addr in &self.client_addrs {
                if let Ok(s) = member_status(addr).await {
                    statuses.push((addr.clone(), s));
                }
            }
            if statuses.len() == self.client_addrs.len() {
                let leader = statuses[0].1.leader.clone();
                if !leader.is_empty()
                    && leader != "0"
                    && statuses.iter().all(|(_, s)| s.leader == leader)
                {
                    if let Some((addr, _)) = statuses.iter().find(|(_, s)| s.member_id == leader) {
                        return Ok(addr.clone());
                    }
                }
            }
            if start.elapsed() > timeout {
                anyhow::bail!(
                    "no etcd leader within {timeout:?}\n{}",
                    self.processes.log_tails(20)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails if a member has exited.
    pub fn check_alive(&mut self) -> anyhow::Result<()> {
        self.processes.check_alive()
    }
}

/// What `/v3/maintenance/status` says about one member (ids as the gateway prints them).
struct MemberStatus {
    member_id: String,
    leader: String,
}

async fn member_status(addr: &str) -> anyhow::Result<MemberStatus> {
    let mut conn = GatewayConnection::connect(addr).await?;
    let v = conn.post_json("/v3/maintenance/status", "{}").await?;
    let field = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    Ok(MemberStatus {
        member_id: field(&v["header"]["member_id"]),
        leader: field(&v["leader"]),
    })
}
