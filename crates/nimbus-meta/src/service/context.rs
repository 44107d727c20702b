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
use crate::check_quorum::CheckQuorum;
use crate::crypto::ClusterKey;
use crate::leases::Ledger;
use crate::proposals::Proposer;
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
    /// Client writes are proposed through it, batched under load.
    pub proposer: Proposer,
    /// The committed index the log store was last told of: openraft 0.9's `RaftMetrics`
    /// has no committed index, so node status reads it from here.
    pub(super) committed: Arc<AtomicU64>,
    /// Serializes membership changes on this node.
    pub(super) admin_lock: tokio::sync::Mutex<()>,
    /// Concurrency leases handed to gateways while this node leads.
    pub(super) leases: Mutex<Ledger>,
    /// Check-quorum, shared with the Raft transport: a leader that no quorum answers
    /// refuses the calls only a leader serves.
    pub(super) quorum: Arc<CheckQuorum>,
    /// One channel per peer address, reused by every forwarded call.
    peers: Mutex<HashMap<String, Channel>>,
    /// How this node dials its peers.
    transport: Transport,
}

impl NodeContext {
    /// `committed` is the log store's committed index ([`crate::log_store::LogStore::committed_index`]);
    /// `quorum` is the one the Raft transport was built with; the write timeout and the
    /// transport come from `cfg`.
    pub fn new(
        cfg: &crate::node::NodeConfig,
        addr: String,
        raft: Raft,
        sm: StateMachineStore,
        key: ClusterKey,
        committed: Arc<AtomicU64>,
        quorum: Arc<CheckQuorum>,
    ) -> Self {
        let (id, write_timeout, transport) = (cfg.id, cfg.write_timeout, cfg.transport.clone());
        Self {
            id,
            addr,
            proposer: Proposer::start(raft.clone(), cfg.proposals_in_flight),
            raft,
            sm,
            key,
            write_timeout,
            committed,
            admin_lock: tokio::sync::Mutex::new(()),
            leases: Mutex::new(Ledger::new(LEASE)),
            quorum,
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

    /// Refuses a call only the leader serves while this node, as leader, has lost its
    /// quorum (see [`crate::check_quorum`]): it cannot commit anything, so the client is
    /// told at once, with the status of a node that knows no leader, and tries another
    /// node instead of waiting out a write.
    pub(super) fn ensure_quorum_heard(&self) -> Result<(), Status> {
        if self.quorum.lost_quorum(self.term(), Instant::now()) {
            return Err(self.no_quorum_heard());
        }
        Ok(())
    }

    /// Resolves, with that refusal, once this node loses its quorum as leader of the
    /// term it is in now: a call waiting on a quorum (a write, a read-index round) that
    /// races it ends then instead of at its timeout.
    pub(super) async fn quorum_lost(&self) -> Status {
        self.quorum.until_lost(self.term()).await;
        self.no_quorum_heard()
    }

    fn no_quorum_heard(&self) -> Status {
        Status::unavailable(format!(
            "this leader heard from no quorum of metadata nodes for {:?} (check-quorum); \
             retry on another node",
            self.quorum.timeout()
        ))
    }

    /// The term this node is in, by its metrics.
    fn term(&self) -> u64 {
        self.raft.metrics().borrow().current_term
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
