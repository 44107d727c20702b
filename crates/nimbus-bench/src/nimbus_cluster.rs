//! A 3-node Nimbus metadata cluster of real `nimbus meta` processes on loopback.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context;
use nimbus_meta::MetaClient;
use nimbus_tls::{Role, Transport};

use crate::processes::{free_ports, ProcessGroup};

fn now_ms() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis())
}

/// A running cluster; dropping it stops the nodes and removes their data.
pub struct NimbusCluster {
    /// Node addresses, node id `i + 1` at index `i`.
    pub addrs: Vec<String>,
    processes: ProcessGroup,
    /// How the harness itself reaches the nodes.
    transport: Transport,
    /// How each node is started (again, after a kill); boxed, as it is seldom read.
    launch: Box<Launch>,
}

/// What a node's command line is made of.
struct Launch {
    nimbus_bin: std::path::PathBuf,
    certs: Option<std::path::PathBuf>,
    key_file: std::path::PathBuf,
    initial: String,
    extra: Vec<String>,
}

/// Certificates for a benchmark cluster with mutual TLS, made with `nimbus-tls` like
/// `nimbus cert` makes them: `meta1`…, `gateway`, `worker`, `admin` under `root`.
pub struct BenchCerts {
    pub root: std::path::PathBuf,
}

/// `nimbus worker` of region us-east-1 as every benchmark starts one: its TLS flags, data
/// under `data_dir`, listening on `listen`, joined to `metas`, logging warnings only.
/// Callers add its site, sizes and NAT pool.
pub fn worker_command(
    nimbus_bin: &Path,
    certs: Option<&BenchCerts>,
    data_dir: &Path,
    listen: &str,
    metas: &str,
) -> Command {
    let mut cmd = Command::new(nimbus_bin);
    cmd.args(BenchCerts::flags(certs, "worker"))
        .arg("worker")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", listen, "--meta", metas, "--region", "us-east-1"])
        .env("RUST_LOG", "warn");
    cmd
}

/// `nimbus gateway` of region us-east-1 as every benchmark starts one: its TLS flags,
/// listening on `listen`, joined to `metas`, logging warnings only.
pub fn gateway_command(
    nimbus_bin: &Path,
    certs: Option<&BenchCerts>,
    listen: &str,
    metas: &str,
) -> Command {
    let mut cmd = Command::new(nimbus_bin);
    cmd.args(BenchCerts::flags(certs, "gateway"))
        .args(["gateway", "--listen", listen, "--meta", metas])
        .args(["--region", "us-east-1"])
        .env("RUST_LOG", "warn");
    cmd
}

impl BenchCerts {
    pub fn make(root: &Path, metas: usize) -> anyhow::Result<Self> {
        use nimbus_tls::issue::{init_ca, issue, Request};
        let ca = root.join("ca");
        init_ca(&ca)?;
        let mut names: Vec<(Role, String)> = (1..=metas)
            .map(|i| (Role::Meta, format!("meta{i}")))
            .collect();
        names.push((Role::Gateway, "gateway".into()));
        names.push((Role::Worker, "worker".into()));
        names.push((Role::Admin, "admin".into()));
        for (role, name) in names {
            let out = root.join(&name);
            let req = Request {
                role,
                name,
                sans: Vec::new(),
                days: 1,
            };
            issue(&ca, &req, &out)?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// The flags that put a process of `name`'s TLS directory on the cluster.
    pub fn flags(certs: Option<&Self>, name: &str) -> Vec<String> {
        match certs {
            Some(c) => vec!["--tls-dir".into(), c.root.join(name).display().to_string()],
            None => vec!["--insecure-plaintext".into()],
        }
    }
}

impl NimbusCluster {
    /// Starts `size` founding members with the given binary, data under `parent`, with
    /// mutual TLS when `certs` are given (plaintext otherwise).
    pub fn start(
        nimbus_bin: &Path,
        parent: &Path,
        size: usize,
        certs: Option<&BenchCerts>,
    ) -> anyhow::Result<Self> {
        Self::start_with(nimbus_bin, parent, size, certs, &[])
    }

    /// [`Self::start`] with `extra` flags for every `nimbus meta` (Raft timing, say).
    pub fn start_with(
        nimbus_bin: &Path,
        parent: &Path,
        size: usize,
        certs: Option<&BenchCerts>,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let transport = match certs {
            Some(c) => Transport::Tls(nimbus_tls::Tls::load(c.root.join("admin"), Role::Admin)?),
            None => Transport::Plaintext,
        };
        let processes = ProcessGroup::new(parent, "nimbus-bench-meta-")?;
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
        let mut cluster = Self {
            addrs,
            processes,
            transport,
            launch: Box::new(Launch {
                nimbus_bin: nimbus_bin.to_path_buf(),
                certs: certs.map(|c| c.root.clone()),
                key_file,
                initial,
                extra: extra.to_vec(),
            }),
        };
        for i in 0..size {
            cluster.spawn_node(i)?;
        }
        Ok(cluster)
    }

    /// Starts node `i + 1` (on a restart it recovers from its data directory).
    fn spawn_node(&mut self, i: usize) -> anyhow::Result<()> {
        let l = &self.launch;
        let id = (i + 1).to_string();
        let mut cmd = Command::new(&l.nimbus_bin);
        match &l.certs {
            Some(root) => cmd.arg("--tls-dir").arg(root.join(format!("meta{id}"))),
            None => cmd.arg("--insecure-plaintext"),
        };
        cmd.args(["meta", "--id", &id, "--listen", &self.addrs[i]])
            .arg("--data-dir")
            .arg(self.processes.dir().join(format!("node{id}")))
            .arg("--key-file")
            .arg(&l.key_file)
            .args(["--initial-cluster", &l.initial])
            .args(&l.extra)
            .env("RUST_LOG", "warn");
        self.processes.spawn(
            &format!("nimbus meta {id}"),
            &format!("node{id}-{}", now_ms()),
            cmd,
        )
    }

    /// Kills node `i + 1` with SIGKILL: a crash.
    pub fn kill(&mut self, i: usize) -> anyhow::Result<()> {
        self.processes.kill(&format!("nimbus meta {}", i + 1))
    }

    /// Starts node `i + 1` again after [`Self::kill`].
    pub fn restart(&mut self, i: usize) -> anyhow::Result<()> {
        self.spawn_node(i)
    }

    /// Waits until every node reports the same leader; returns the leader's address.
    pub async fn wait_leader(&mut self, timeout: Duration) -> anyhow::Result<String> {
        let start = Instant::now();
        loop {
            self.processes.check_alive()?;
            let mut leaders = Vec::new();
            for addr in &self.addrs {
                if let Ok(s) = MetaClient::node_status(addr, &self.transport).await {
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
