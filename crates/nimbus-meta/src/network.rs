//! The Raft transport: openraft's RPCs over tonic, one lazily connected channel per peer.
//!
//! It is also where check-quorum lives ([`crate::check_quorum`]): every answer to a
//! replication call is recorded, and a leader that no quorum answers sends no replication
//! call, only a status probe, until a quorum answers again or its term ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nimbus_proto::meta::metadata_client::MetadataClient;
use nimbus_proto::meta::raft_client::RaftClient;
use nimbus_proto::meta::{NodeStatusRequest, RaftMessage};
use nimbus_tls::{Role, Transport};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use tonic::transport::Channel;

use crate::check_quorum::CheckQuorum;
use crate::raft_types::{Node, NodeId, TypeConfig};

/// Builds connections to peers.
#[derive(Clone)]
pub struct Network {
    /// How peers are dialled (mutual TLS, or plaintext in tests).
    pub transport: Transport,
    /// Shared with the node's services: who answered when, and whether this node, as
    /// leader, has gone silent for its term.
    pub quorum: Arc<CheckQuorum>,
}

/// A connection to one peer.
pub struct PeerConnection {
    client: Result<RaftClient<Channel>, String>,
    /// The peer's metadata service on the same channel, for check-quorum's status probes.
    status: Option<MetadataClient<Channel>>,
    /// The peer's id, for check-quorum's record of answers.
    target: NodeId,
    quorum: Arc<CheckQuorum>,
}

/// Opens a lazily-connecting channel to a metadata node's address (`host:port`): the
/// server must hold a metadata node's certificate when `transport` is TLS.
pub fn channel(addr: &str, transport: &Transport) -> Result<Channel, nimbus_tls::TlsError> {
    transport.channel(addr, Role::Meta, |e| {
        e.connect_timeout(Duration::from_millis(500))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
    })
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerConnection;

    async fn new_client(&mut self, target: NodeId, node: &Node) -> PeerConnection {
        let channel = channel(&node.addr, &self.transport).map_err(|e| e.to_string());
        let status = channel
            .as_ref()
            .ok()
            .map(|c| MetadataClient::new(c.clone()));
        let client = channel.map(|c| {
            RaftClient::new(c)
                .max_decoding_message_size(64 * 1024 * 1024)
                .max_encoding_message_size(64 * 1024 * 1024)
        });
        PeerConnection {
            client,
            status,
            target,
            quorum: self.quorum.clone(),
        }
    }
}

type RpcErr<E = openraft::error::Infallible> = RPCError<NodeId, Node, RaftError<NodeId, E>>;

fn encode<T: serde::Serialize, E: std::error::Error>(
    v: &T,
) -> Result<RaftMessage, RPCError<NodeId, Node, E>> {
    postcard::to_stdvec(v)
        .map(|payload| RaftMessage { payload })
        .map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

fn decode<T: serde::de::DeserializeOwned, E: std::error::Error>(
    m: RaftMessage,
) -> Result<T, RPCError<NodeId, Node, E>> {
    postcard::from_bytes(&m.payload).map_err(|e| RPCError::Network(NetworkError::new(&e)))
}

/// A transport failure. The peer's own Raft errors come back as gRPC statuses too; either
/// way openraft backs off and retries, which is what both need.
fn status_err<E: std::error::Error>(s: tonic::Status) -> RPCError<NodeId, Node, E> {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            RPCError::Unreachable(Unreachable::new(&s))
        }
        _ => RPCError::Network(NetworkError::new(&s)),
    }
}

impl PeerConnection {
    fn client<E: std::error::Error>(
        &self,
    ) -> Result<RaftClient<Channel>, RPCError<NodeId, Node, E>> {
        self.client
            .clone()
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&std::io::Error::other(e))))
    }

    /// Refuses to send a replication call of `term` while check-quorum keeps this leader
    /// silent: to openraft the peer looks unreachable, and the peer hears nothing. Instead
    /// the peer is asked for its status, a call outside Raft that renews no follower's
    /// view of the leader; its answer counts as hearing from the peer, and once a quorum
    /// answers the leader replicates again.
    async fn may_replicate<E: std::error::Error>(
        &self,
        term: u64,
    ) -> Result<(), RPCError<NodeId, Node, E>> {
        if !self.quorum.silenced(term, Instant::now()) {
            return Ok(());
        }
        if self.probe().await {
            self.quorum.answered(self.target, Instant::now());
            if !self.quorum.silenced(term, Instant::now()) {
                return Ok(());
            }
        }
        let why =
            "check-quorum: this leader heard from no quorum; not replicating until one answers";
        Err(RPCError::Unreachable(Unreachable::new(
            &std::io::Error::other(why),
        )))
    }

    /// Does the peer answer a status request within a quarter of the election timeout?
    async fn probe(&self) -> bool {
        let Some(mut status) = self.status.clone() else {
            return false;
        };
        let wait = self.quorum.timeout() / 4;
        let mut req = tonic::Request::new(NodeStatusRequest {});
        req.set_timeout(wait);
        matches!(
            tokio::time::timeout(wait, status.node_status(req)).await,
            Ok(Ok(_))
        )
    }
}

fn with_timeout<T>(msg: T, option: &RPCOption) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.set_timeout(option.hard_ttl());
    req
}

impl RaftNetwork<TypeConfig> for PeerConnection {
    /// How long openraft waits after an `Unreachable` before it tries a peer again:
    /// openraft's 500 ms, but at most half an election timeout, so that a silent leader
    /// probes each peer at least twice per timeout.
    fn backoff(&self) -> Backoff {
        let wait = Duration::from_millis(500).min(self.quorum.timeout() / 2);
        Backoff::new(std::iter::repeat(wait))
    }

    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RpcErr> {
        self.may_replicate(rpc.vote.leader_id().get_term()).await?;
        let msg = encode(&rpc)?;
        let resp = self
            .client()?
            .append_entries(with_timeout(msg, &option))
            .await
            .map_err(status_err)?;
        self.quorum.answered(self.target, Instant::now());
        decode(resp.into_inner())
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RpcErr<InstallSnapshotError>> {
        self.may_replicate(rpc.vote.leader_id().get_term()).await?;
        let msg = encode(&rpc)?;
        let resp = self
            .client()?
            .install_snapshot(with_timeout(msg, &option))
            .await
            .map_err(status_err)?;
        self.quorum.answered(self.target, Instant::now());
        decode(resp.into_inner())
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RpcErr> {
        let msg = encode(&rpc)?;
        let resp = self
            .client()?
            .vote(with_timeout(msg, &option))
            .await
            .map_err(status_err)?;
        decode(resp.into_inner())
    }
}
