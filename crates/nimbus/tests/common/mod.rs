//! A metadata cluster of real `nimbus meta` processes on loopback, for black-box tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nimbus_meta::MetaClient;

pub mod dev;
pub mod otlp;

pub const BIN: &str = env!("CARGO_BIN_EXE_nimbus");

/// Free loopback ports (bound then released; fine for tests on one machine).
pub fn free_ports(n: usize) -> Vec<u16> {
    let listeners: Vec<std::net::TcpListener> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

pub struct Node {
    pub id: u64,
    pub addr: String,
    pub dir: PathBuf,
    pub child: Option<Child>,
}

pub struct Cluster {
    pub nodes: Vec<Node>,
    pub initial: String,
    pub key_file: PathBuf,
    pub extra: Vec<String>,
    pub root: tempfile::TempDir,
}

impl Cluster {
    /// Starts `n` founding members with extra `nimbus meta` flags.
    pub fn start(n: usize, extra: &[&str]) -> Self {
        let root = tempfile::tempdir().unwrap();
        let key_file = root.path().join("cluster.key");
        std::fs::write(&key_file, [42u8; 32]).unwrap();
        let ports = free_ports(n);
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                id: i as u64 + 1,
                addr: format!("127.0.0.1:{}", ports[i]),
                dir: root.path().join(format!("node{}", i + 1)),
                child: None,
            })
            .collect();
        let initial = nodes
            .iter()
            .map(|n| format!("{}={}", n.id, n.addr))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = Cluster {
            nodes,
            initial,
            key_file,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            root,
        };
        for i in 0..n {
            c.spawn(i, true);
        }
        c
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.root
            .path()
            .join(format!("node{}.log", self.nodes[i].id))
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    /// (Re)starts node `i`; `founding` passes --initial-cluster.
    pub fn spawn(&mut self, i: usize, founding: bool) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .unwrap();
        let node = &self.nodes[i];
        let mut cmd = Command::new(BIN);
        cmd.arg("--insecure-plaintext");
        cmd.args(["meta", "--id", &node.id.to_string(), "--listen", &node.addr])
            .arg("--data-dir")
            .arg(&node.dir)
            .arg("--key-file")
            .arg(&self.key_file)
            .args(&self.extra)
            .env("RUST_LOG", "info,openraft=info")
            .stdout(Stdio::null())
            .stderr(log);
        if founding {
            cmd.args(["--initial-cluster", &self.initial]);
        }
        let child = cmd.spawn().expect("spawn nimbus meta");
        self.nodes[i].child = Some(child);
    }

    /// Adds a node that is not a founding member (started without --initial-cluster).
    pub fn spawn_joiner(&mut self, id: u64) -> usize {
        let port = free_ports(1)[0];
        self.nodes.push(Node {
            id,
            addr: format!("127.0.0.1:{port}"),
            dir: self.root.path().join(format!("node{id}")),
            child: None,
        });
        let i = self.nodes.len() - 1;
        self.spawn(i, false);
        i
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(|n| n.addr.clone()).collect()
    }

    pub fn client(&self) -> MetaClient {
        MetaClient::new(&self.addrs(), &nimbus_tls::Transport::Plaintext).unwrap()
    }

    pub fn client_for(&self, i: usize) -> MetaClient {
        MetaClient::new(
            &[self.nodes[i].addr.clone()],
            &nimbus_tls::Transport::Plaintext,
        )
        .unwrap()
    }

    /// Waits until a live node reports a leader; returns the leader's index in `nodes`.
    pub async fn wait_leader(&self, timeout: Duration) -> usize {
        let start = Instant::now();
        loop {
            for n in self.nodes.iter().filter(|n| n.child.is_some()) {
                if let Ok(s) =
                    MetaClient::node_status(&n.addr, &nimbus_tls::Transport::Plaintext).await
                {
                    if let Some(l) = s.leader {
                        if let Some(i) = self
                            .nodes
                            .iter()
                            .position(|x| x.id == l && x.child.is_some())
                        {
                            return i;
                        }
                    }
                }
            }
            assert!(start.elapsed() < timeout, "no leader within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until node `i` has applied at least `index`.
    pub async fn wait_applied(
        &self,
        i: usize,
        index: u64,
        timeout: Duration,
    ) -> nimbus_proto::meta::NodeStatusResponse {
        let start = Instant::now();
        loop {
            if let Ok(s) =
                MetaClient::node_status(&self.nodes[i].addr, &nimbus_tls::Transport::Plaintext)
                    .await
            {
                if s.applied >= index {
                    return s;
                }
            }
            assert!(
                start.elapsed() < timeout,
                "node {} did not reach applied index {index} within {timeout:?}\n{}",
                self.nodes[i].id,
                self.log(i)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            if let Some(mut c) = n.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// Runs the nimbus binary with arguments and returns (status, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--insecure-plaintext")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
