//! Starting and running one metadata node.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nimbus_proto::meta::metadata_server::MetadataServer;
use nimbus_proto::meta::raft_server::RaftServer;
use nimbus_tls::{AuthorityLayer, Transport};
use openraft::{BasicNode, SnapshotPolicy};

use crate::check_quorum::CheckQuorum;
use crate::crypto::ClusterKey;
use crate::error::NodeError;
use crate::log_store::LogStore;
use crate::network::Network;
use crate::raft_types::{NodeId, Raft};
use crate::service::{MetadataService, NodeContext, RaftService};
use crate::state_machine::StateMachineStore;

/// See [`NodeConfig::proposals_in_flight`]; chosen by `nimbus-bench meta-writes`
/// (docs/benchmarks.md, "Proposal batching").
pub const DEFAULT_PROPOSALS_IN_FLIGHT: usize = 1;

/// Everything a metadata node is configured with. Shared by the CLI and tests.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub id: NodeId,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// The members of the cluster on its first start: id → address. Ignored on restart.
    pub initial_cluster: BTreeMap<NodeId, String>,
    /// The AES-256 key file; all members must share it. Created if absent and `create_key`.
    pub key_file: PathBuf,
    pub create_key: bool,
    pub heartbeat_interval: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// Build a snapshot after this many applied entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, for followers that lag a little.
    pub keep_after_snapshot: u64,
    /// How long a write waits for a quorum before failing with "unavailable".
    pub write_timeout: Duration,
    /// Most write proposals (log entries of client writes) outstanding at once on a
    /// leader; writes arriving meanwhile are batched into the next one
    /// ([`crate::proposals`]). 0: no batching, each write its own entry.
    pub proposals_in_flight: usize,
    /// Mutual TLS with per-role authority, or plaintext. `new` leaves it plaintext for
    /// tests that start nodes in-process; the `nimbus` binary always sets it, and refuses
    /// plaintext unless the operator asks for it.
    pub transport: Transport,
}

impl NodeConfig {
    /// Defaults for a node with this id, data dir and address.
    pub fn new(id: NodeId, data_dir: PathBuf, listen: SocketAddr) -> Self {
        Self {
            id,
            key_file: data_dir.join("cluster.key"),
            data_dir,
            listen,
            initial_cluster: BTreeMap::new(),
            create_key: true,
            heartbeat_interval: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(600),
            election_timeout_max: Duration::from_millis(1200),
            snapshot_every: 10_000,
            keep_after_snapshot: 1_000,
            write_timeout: Duration::from_secs(5),
            proposals_in_flight: DEFAULT_PROPOSALS_IN_FLIGHT,
            transport: Transport::Plaintext,
        }
    }

    /// Checks the configuration before anything is opened.
    pub fn validate(&self) -> Result<(), NodeError> {
        if self.id == 0 {
            return Err(NodeError::Config("node id must be at least 1".into()));
        }
        if !self.initial_cluster.is_empty() && !self.initial_cluster.contains_key(&self.id) {
            return Err(NodeError::Config(format!(
                "--initial-cluster does not contain this node's id {}",
                self.id
            )));
        }
        if self.election_timeout_min <= self.heartbeat_interval * 2
            || self.election_timeout_max <= self.election_timeout_min
        {
            return Err(NodeError::Config(
                "election timeouts must exceed twice the heartbeat and be ordered min < max".into(),
            ));
        }
        for addr in self.initial_cluster.values() {
            if !is_node_addr(addr) {
                return Err(NodeError::Config(format!(
                    "'{addr}' in --initial-cluster is not HOST:PORT"
                )));
            }
        }
        Ok(())
    }

    fn raft_config(&self) -> Result<openraft::Config, NodeError> {
        let c = openraft::Config {
            cluster_name: "nimbus-meta".into(),
            heartbeat_interval: self.heartbeat_interval.as_millis() as u64,
            election_timeout_min: self.election_timeout_min.as_millis() as u64,
            election_timeout_max: self.election_timeout_max.as_millis() as u64,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_after_snapshot,
            // Chunks of 1 MiB: a snapshot streams as many small messages.
            snapshot_max_chunk_size: 1024 * 1024,
            install_snapshot_timeout: 10_000,
            ..Default::default()
        };
        c.validate().map_err(|e| NodeError::Config(e.to_string()))
    }
}

/// A running metadata node.
pub struct MetaNode {
    pub ctx: Arc<NodeContext>,
    pub local_addr: SocketAddr,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// Ends with an error when this node's key is not the cluster's (see [`key_check`]).
    key_check: tokio::task::JoinHandle<Result<(), NodeError>>,
}

/// How often a starting node looks for the cluster's key check value.
const KEY_CHECK_POLL: Duration = Duration::from_millis(200);

/// Makes sure this node holds the cluster's key before it can serve anything sealed
/// under another one: once the node's state has the cluster's check value, it must open
/// under this node's key; until then, the leader records its own. A node that was
/// started with another key file (a cluster whose nodes each made their own key, say)
/// ends with [`NodeError::Key`] instead of failing later with "ciphertext failed
/// authentication".
async fn key_check(ctx: Arc<NodeContext>) -> Result<(), NodeError> {
    loop {
        match ctx.sm.query(&nimbus_types::Query::Get {
            key: nimbus_types::keys::CLUSTER_KEY_CHECK.into(),
        }) {
            Ok(nimbus_types::QueryOutput::Entity(Some(nimbus_types::Entity::ClusterKeyCheck(
                sealed,
            )))) => {
                return if ctx.key.verifies(&sealed) {
                    tracing::info!("cluster key verified against the cluster's check value");
                    Ok(())
                } else {
                    Err(NodeError::Key(
                        "this node's cluster key (--key-file) is not the key of the cluster it \
                         belongs to; give every metadata node the same key file"
                            .into(),
                    ))
                };
            }
            Ok(_) => {
                let leads = ctx.raft.metrics().borrow().current_leader == Some(ctx.id);
                if leads {
                    let entry = crate::raft_types::Request {
                        request_id: "cluster-key-check".into(),
                        command: nimbus_types::Command::SetClusterKeyCheck {
                            sealed: ctx.key.key_check(),
                        },
                    };
                    if let Err(e) = ctx.raft.client_write(entry).await {
                        tracing::debug!("recording the cluster key check: {e}");
                    }
                }
            }
            Err(e) => tracing::debug!("reading the cluster key check: {e}"),
        }
        tokio::time::sleep(KEY_CHECK_POLL).await;
    }
}

impl MetaNode {
    /// Opens storage, starts Raft and the gRPC server, and forms the initial cluster on a
    /// first start. Serves until `shutdown` resolves.
    pub async fn start(
        cfg: NodeConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Self, NodeError> {
        cfg.validate()?;
        let raft_config = Arc::new(cfg.raft_config()?);
        std::fs::create_dir_all(&cfg.data_dir).map_err(|e| NodeError::io(&cfg.data_dir, e))?;
        let key = ClusterKey::load_or_create(&cfg.key_file, cfg.create_key)?;
        let log = LogStore::open(&cfg.data_dir.join("raft"))?;
        let committed = log.committed_index();
        let sm =
            StateMachineStore::open(&cfg.data_dir.join("sm"), &cfg.data_dir.join("snapshots"))?;
        let quorum = Arc::new(CheckQuorum::new(cfg.id, cfg.election_timeout_max));
        let network = Network {
            transport: cfg.transport.clone(),
            quorum: quorum.clone(),
        };
        let raft = Raft::new(cfg.id, raft_config, network, log, sm.clone())
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;

        let listener = tokio::net::TcpListener::bind(cfg.listen)
            .await
            .map_err(|e| NodeError::io(cfg.listen.to_string(), e))?;
        let local_addr = listener
            .local_addr()
            .map_err(|e| NodeError::io(cfg.listen.to_string(), e))?;
        let advertised = cfg
            .initial_cluster
            .get(&cfg.id)
            .cloned()
            .unwrap_or_else(|| local_addr.to_string());
        let ctx = Arc::new(NodeContext::new(
            &cfg,
            advertised,
            raft.clone(),
            sm,
            key,
            committed,
            quorum,
        ));
        ctx.track_leadership();

        let raft_svc = RaftServer::new(RaftService(ctx.clone()))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        let meta_svc = MetadataServer::new(MetadataService(ctx.clone()))
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20);
        // TLS handshakes (or plaintext accepts) with Nagle off; every RPC then passes
        // the role table before a service sees it.
        let incoming = cfg.transport.incoming(listener);
        let authority = AuthorityLayer::new(&cfg.transport, crate::service::authority::policy);
        let shutdown_raft = raft.clone();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .layer(authority)
                .add_service(raft_svc)
                .add_service(meta_svc)
                .serve_with_incoming_shutdown(incoming, async move {
                    shutdown.await;
                    let _ = shutdown_raft.shutdown().await;
                }),
        );

        let initialized = raft
            .is_initialized()
            .await
            .map_err(|e| NodeError::Raft(e.to_string()))?;
        if initialized {
            tracing::info!(
                id = cfg.id,
                "recovered from {}; --initial-cluster ignored",
                cfg.data_dir.display()
            );
        } else if !cfg.initial_cluster.is_empty() {
            let members: BTreeMap<NodeId, BasicNode> = cfg
                .initial_cluster
                .iter()
                .map(|(id, addr)| (*id, BasicNode { addr: addr.clone() }))
                .collect();
            // Every founding member initializes with the same membership; openraft
            // accepts that, and the cluster forms as soon as a quorum is up.
            match raft.initialize(members).await {
                Ok(()) => tracing::info!(id = cfg.id, "initialized a new cluster"),
                Err(openraft::error::RaftError::APIError(
                    openraft::error::InitializeError::NotAllowed(_),
                )) => {}
                Err(e) => return Err(NodeError::Raft(e.to_string())),
            }
        } else {
            tracing::info!(
                id = cfg.id,
                "waiting to be added to a cluster (nimbus cluster add-member)"
            );
        }
        let key_check = tokio::spawn(key_check(ctx.clone()));
        Ok(Self {
            ctx,
            local_addr,
            server,
            key_check,
        })
    }

    /// Waits until the server stops (after `shutdown` resolved), or until this node
    /// finds its key is not the cluster's: then Raft is shut down and the error returned.
    pub async fn wait(mut self) -> Result<(), NodeError> {
        let checked = tokio::select! {
            r = &mut self.server => return match r {
                Ok(r) => r.map_err(NodeError::Transport),
                Err(e) => Err(NodeError::Raft(format!("server task: {e}"))),
            },
            checked = &mut self.key_check => checked,
        };
        match checked {
            Ok(Err(e)) => {
                tracing::error!("{e}");
                let _ = self.ctx.raft.shutdown().await;
                self.server.abort();
                Err(e)
            }
            // Verified: serve until shutdown.
            _ => match self.server.await {
                Ok(r) => r.map_err(NodeError::Transport),
                Err(e) => Err(NodeError::Raft(format!("server task: {e}"))),
            },
        }
    }
}

/// Is `addr` a `HOST:PORT` peers can dial? HOST is an IP or a DNS name (containers and
/// Kubernetes pods address each other by name; the name is resolved at connect time).
pub fn is_node_addr(addr: &str) -> bool {
    if addr.parse::<SocketAddr>().is_ok() {
        return true;
    }
    let Some((host, port)) = addr.rsplit_once(':') else {
        return false;
    };
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        && port.parse::<u16>().is_ok_and(|p| p != 0)
}

/// Parses `1=127.0.0.1:17001,2=127.0.0.1:17002`.
pub fn parse_initial_cluster(s: &str) -> Result<BTreeMap<NodeId, String>, NodeError> {
    let mut out = BTreeMap::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| NodeError::Config(format!("'{part}' is not ID=HOST:PORT")))?;
        let id: NodeId = id
            .parse()
            .map_err(|_| NodeError::Config(format!("'{id}' is not a node id")))?;
        if out.insert(id, addr.to_string()).is_some() {
            return Err(NodeError::Config(format!("node id {id} appears twice")));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn initial_cluster_parses_and_rejects() {
        let m = parse_initial_cluster("1=127.0.0.1:1,2=127.0.0.1:2").unwrap();
        assert_eq!(m.len(), 2);
        assert!(parse_initial_cluster("1=a,1=b").is_err());
        assert!(parse_initial_cluster("x=a").is_err());
        assert!(parse_initial_cluster("1").is_err());
    }

    #[test]
    fn config_validation() {
        let mut c = NodeConfig::new(1, "/tmp/x".into(), "127.0.0.1:0".parse().unwrap());
        c.initial_cluster = parse_initial_cluster("2=127.0.0.1:2").unwrap();
        assert!(
            c.validate().is_err(),
            "own id must be in the initial cluster"
        );
        c.initial_cluster = parse_initial_cluster("1=127.0.0.1:2").unwrap();
        assert!(c.validate().is_ok());
        c.initial_cluster = parse_initial_cluster("1=meta1.nimbus-meta:17001").unwrap();
        assert!(c.validate().is_ok(), "DNS names are addresses too");
        for bad in [
            "1=meta1",
            "1=meta1:0",
            "1=:17001",
            "1=a b:1",
            "1=http://x:1",
        ] {
            c.initial_cluster = parse_initial_cluster(bad).unwrap();
            assert!(c.validate().is_err(), "{bad}");
        }
        c.initial_cluster = parse_initial_cluster("1=127.0.0.1:2").unwrap();
        c.id = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn election_timeouts_must_be_ordered_and_above_the_heartbeat() {
        let mut c = NodeConfig::new(1, "/tmp/x".into(), "127.0.0.1:0".parse().unwrap());
        c.heartbeat_interval = Duration::from_millis(50);
        c.election_timeout_min = Duration::from_millis(150);
        c.election_timeout_max = Duration::from_millis(200);
        assert!(c.validate().is_ok(), "a narrow window is allowed");
        for (min, max) in [(150, 150), (150, 100), (100, 300)] {
            c.election_timeout_min = Duration::from_millis(min);
            c.election_timeout_max = Duration::from_millis(max);
            let e = c.validate().unwrap_err();
            assert!(
                e.to_string().contains("election timeouts"),
                "{min}/{max}: {e}"
            );
        }
    }
}
