//! What every service of one node shares: Raft, the state machine, the cluster key, the
//! lease ledger and the channels to peers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nimbus_proto::meta::metadata_client::MetadataClient;
use nimbus_tls::Transport;
use tonic::transport::Channel;
use tonic::Status;

use super::leases::LEASE;
use crate::crypto::ClusterKey;
use crate::leases::Ledger;
use crate::raft_types::{NodeId, Raft};
use crate::state_machine::StateMachineStore;
use crate::sync::lock;

/// Everything the services of one node share.
pub struct NodeContext {
    pub id: NodeId,
    pub addr: String,
    pub raft: Raft,
    pub sm: StateMachineStore,
    pub key: ClusterKey,
    /// How long a write may wait to commit before the caller is told the cluster has no
    /// quorum (instead of hanging).
    pub write_timeout: Duration,
    /// The committed index the log store was last told of: openraft 0.9's `RaftMetrics`
    /// has no committed index, so node status reads it from here.
    pub(super) committed: Arc<AtomicU64>,
    /// Serializes membership changes on this node.
    pub(super) admin_lock: tokio::sync::Mutex<()>,
    /// Concurrency leases handed to gateways while this node leads.
    pub(super) leases: Mutex<Ledger>,
    /// The term this node leads and since when (the lease ledger's warm-up counts from it).
    pub(super) leading_since: Arc<Mutex<Option<(u64, Instant)>>>,
    /// One channel per peer address, reused by every forwarded call.
    peers: Mutex<HashMap<String, Channel>>,
    /// How this node dials its peers.
    transport: Transport,
}

impl NodeContext {
    /// `committed` is the log store's committed index ([`crate::log_store::LogStore::committed_index`]);
    /// the write timeout and the transport come from `cfg`.
    pub fn new(
        cfg: &crate::node::NodeConfig,
        addr: String,
        raft: Raft,
        sm: StateMachineStore,
        key: ClusterKey,
        committed: Arc<AtomicU64>,
    ) -> Self {
        let (id, write_timeout, transport) = (cfg.id, cfg.write_timeout, cfg.transport.clone());
        Self {
            id,
            addr,
            raft,
            sm,
            key,
            write_timeout,
            committed,
            admin_lock: tokio::sync::Mutex::new(()),
            leases: Mutex::new(Ledger::new(LEASE)),
            leading_since: Arc::default(),
            peers: Mutex::default(),
            transport,
        }
    }

    /// The highest log index this node knows to be committed. Before the log store has
    /// been told of a commit (just started, or committed entries only came in a
    /// snapshot), what the node applied is committed, so that is the floor.
    pub fn committed_index(&self) -> u64 {
        let applied = self
            .raft
            .metrics()
            .borrow()
            .last_applied
            .map_or(0, |l| l.index);
        self.committed.load(Ordering::Relaxed).max(applied)
    }

    /// A client for the peer at `addr`, on a channel kept for the next call.
    pub(super) fn peer(&self, addr: &str) -> Result<MetadataClient<Channel>, Status> {
        let mut peers = lock(&self.peers);
        let ch = match peers.get(addr) {
            Some(c) => c.clone(),
            None => {
                let c = crate::network::channel(addr, &self.transport)
                    .map_err(|e| Status::unavailable(e.to_string()))?;
                peers.insert(addr.to_string(), c.clone());
                c
            }
        };
        Ok(MetadataClient::new(ch)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20))
    }
}
